"""Text-to-speech with F5-TTS (flow-matching DiT + Vocos vocoder), with zero-shot voice cloning.

Loading and inference go through f5-tts's own helpers (``f5_tts.infer.utils_infer``:
``load_model``, ``load_vocoder``, ``infer_batch_process``). What f5-tts would otherwise fetch at
run time is always given to it, so nothing is downloaded unless the configuration names a hub
file (``hf://`` checkpoint, hub id of the vocoder):

- the reference transcript is always passed (f5-tts would run Whisper to transcribe it);
- the vocoder is a local directory (``config.yaml`` + ``pytorch_model.bin``), or a hub repo whose
  two files are fetched with ``huggingface_hub`` into its cache;
- reference audio is decoded here (soundfile/PyAV through :mod:`models.audio`), not with
  ``torchaudio.load``/pydub, which need FFmpeg libraries.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.base import Audio, InvalidInput, VoiceReference
from models.sources import resolve_source
from models.tts.voices import OPENAI_VOICES, check_speed

logger = logging.getLogger(__name__)

HF_SCHEME = "hf://"

#: The example reference clip shipped inside the f5_tts package and its transcript.
DEFAULT_VOICE_AUDIO = "package://f5_tts/infer/examples/basic/basic_ref_en.wav"
DEFAULT_VOICE_TEXT = "Some call me nature, others call me mother nature."


#: Sentence ends (Latin and CJK punctuation); text is synthesised one sentence at a time.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])")


class F5TTS:
    """An F5-TTS model: every voice is a reference clip plus its transcript.

    F5-TTS continues a reference recording: it is given the reference audio, the reference
    transcript followed by the new text, and a total duration, and fills in the mel frames of
    the new text in the reference speaker's voice. So "voices" are reference clips:

    - ``"default"``: ``default_voice_audio`` / ``default_voice_text`` (the example clip shipped
      in the f5_tts package unless configured);
    - named voices from ``voices`` (``{name: {"audio": path, "text": transcript}}``);
    - a per-request :class:`VoiceReference` (voice cloning), which overrides ``voice``.

    OpenAI voice names (``alloy``...) select the default voice and are not listed.

    Synthesis streams one float32 chunk per sentence (sentences longer than f5-tts's chunk
    budget, which depends on the reference's speaking rate, are split further at commas with
    f5-tts's ``chunk_text``, then at spaces). Prosody tags such as ``[laughing]`` are removed first
    (:func:`models.tts.tags.strip_tags`).

    Concurrency: ``synthesize`` may run in several threads at once (inference only reads the
    model); each sentence is one ``model.sample`` call of ``nfe_step`` DiT evaluations.

    Args:
        source: the DiT checkpoint: ``hf://<owner>/<repo>/<path in repo>`` (downloaded with
            ``huggingface_hub`` into its cache), a local ``.safetensors`` (EMA weights, as
            released) or ``.pt`` (f5-tts trainer checkpoint) file, or a ``package://`` source.
        model_name: an architecture config shipped with f5-tts (``F5TTS_v1_Base``,
            ``F5TTS_Base``, ``F5TTS_v1_Small``, ``E2TTS_Base``...) or the path of a YAML file in
            the same format (``model.backbone``, ``model.arch``, ``model.mel_spec``).
        vocab_file: the character vocabulary (``vocab.txt``); ``None`` uses the one shipped
            with f5-tts (what the released models use). Local path, ``package://`` or ``hf://``.
        vocoder: Vocos vocoder: a local directory with ``config.yaml`` and
            ``pytorch_model.bin`` (``package://`` allowed) or a hub repo id
            (``charactr/vocos-mel-24khz``).
        default_voice_audio, default_voice_text: the ``"default"`` voice's clip (any format
            :func:`models.audio.decode_audio` reads) and its exact transcript.
        voices: more named voices, ``{name: {"audio": path, "text": transcript}}``.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...
            (f5-tts loads the DiT in float16 on CUDA GPUs of compute capability >= 7.)
        nfe_step: ODE steps per sentence (quality/speed trade-off; f5-tts's default 32).
        cfg_strength: classifier-free guidance strength.
        sway_sampling_coef: sway sampling coefficient of the ODE time steps.
        ode_method: ``torchdiffeq`` solver (``"euler"``, ``"midpoint"``).
        use_ema: load the EMA weights of a trainer checkpoint (released checkpoints are EMA).
        max_reference_s: longest accepted reference clip in seconds, after trimming silence
            at its ends (f5-tts keeps reference + generated audio under ~30 s per sentence).
        torch_threads: intra-op threads for this process (``None`` keeps torch's default).

    Attributes:
        sample_rate: 24000 Hz.
        supports_voice_cloning: True.

    Raises:
        FileNotFoundError: a checkpoint, config, vocab, vocoder or voice file is missing.
        ValueError: an unknown ``model_name``, a config whose mel settings differ from
            f5-tts's inference constants, a BigVGAN config, or a voice without a transcript.
        InvalidInput: a configured voice clip is empty or longer than ``max_reference_s``.
    """

    supports_voice_cloning = True

    def __init__(
        self,
        source: str,
        model_name: str = "F5TTS_v1_Base",
        vocab_file: str | None = None,
        vocoder: str = "charactr/vocos-mel-24khz",
        default_voice_audio: str | None = None,
        default_voice_text: str | None = None,
        voices: dict[str, dict] | None = None,
        device: str = "auto",
        nfe_step: int = 32,
        cfg_strength: float = 2.0,
        sway_sampling_coef: float = -1.0,
        ode_method: str = "euler",
        use_ema: bool = True,
        max_reference_s: float = 15.0,
        torch_threads: int | None = None,
    ):
        import torch
        from f5_tts.infer import utils_infer
        from hydra.utils import get_class
        from omegaconf import OmegaConf

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._torch = torch
        self._utils = utils_infer
        self.device = device
        self.nfe_step = int(nfe_step)
        self.cfg_strength = float(cfg_strength)
        self.sway_sampling_coef = float(sway_sampling_coef)
        self.max_reference_s = float(max_reference_s)

        cfg = OmegaConf.load(_config_path(model_name))
        mel = cfg.model.mel_spec
        if mel.mel_spec_type != "vocos":
            raise ValueError(f"{model_name}: only Vocos-vocoder models are supported, not {mel.mel_spec_type!r}")
        expected = dict(
            target_sample_rate=utils_infer.target_sample_rate,
            n_mel_channels=utils_infer.n_mel_channels,
            hop_length=utils_infer.hop_length,
            win_length=utils_infer.win_length,
            n_fft=utils_infer.n_fft,
        )
        wrong = {k: mel.get(k) for k, v in expected.items() if mel.get(k, v) != v}
        if wrong:
            raise ValueError(f"{model_name}: mel settings {wrong} differ from f5-tts's inference constants {expected}")
        self.sample_rate: int = int(utils_infer.target_sample_rate)
        model_cls = get_class(f"f5_tts.model.{cfg.model.backbone}")
        arch = OmegaConf.to_container(cfg.model.arch, resolve=True)

        if default_voice_audio is None:
            if default_voice_text:
                raise ValueError("default_voice_text is set but default_voice_audio is not")
            default_voice_audio, default_voice_text = DEFAULT_VOICE_AUDIO, DEFAULT_VOICE_TEXT
        voice_specs = {"default": {"audio": default_voice_audio, "text": default_voice_text}}
        for name, spec in (voices or {}).items():
            if not isinstance(spec, dict):
                raise ValueError(f"voice {name!r}: expected {{'audio': path, 'text': transcript}}, got {spec!r}")
            if str(name).lower() in {n.lower() for n in voice_specs}:
                raise ValueError(f"voice {name!r} is defined twice ('default' is the default voice)")
            voice_specs[str(name)] = spec

        t0 = time.monotonic()
        ckpt = _fetch(source)
        vocab = _fetch(vocab_file) if vocab_file else ""
        self.vocoder = utils_infer.load_vocoder("vocos", is_local=True, local_path=_vocoder_dir(vocoder), device=device)
        self.model = utils_infer.load_model(
            model_cls,
            arch,
            ckpt,
            mel_spec_type="vocos",
            vocab_file=vocab,
            ode_method=ode_method,
            use_ema=use_ema,
            device=device,
        )
        logger.info("loaded F5-TTS %s (%s) on %s in %.1f s", ckpt, model_name, device, time.monotonic() - t0)

        # name -> (reference audio tensor (1, n) at sample_rate, reference text)
        self._voices: dict[str, tuple[object, str]] = {
            name: self._load_voice(name, spec.get("audio"), spec.get("text")) for name, spec in voice_specs.items()
        }
        self._by_lower = {name.lower(): name for name in self._voices}

    # ------------------------------------------------------------------------------------------
    def voices(self) -> list[str]:
        """Voice names: ``"default"`` first, then the configured named voices."""
        return list(self._voices)

    def resolve_voice(self, voice: str | None) -> str:
        """The voice name ``voice`` selects (case-insensitive; ``None`` and OpenAI names that are
        not configured voices give ``"default"``).

        Raises:
            InvalidInput (``param="voice"``): an unknown voice.
        """
        if voice is None or voice == "":
            return "default"
        name = self._by_lower.get(voice.lower())
        if name is None and voice.lower() in OPENAI_VOICES:
            return "default"
        if name is None:
            raise InvalidInput(
                f"unknown voice {voice!r}; this model has {', '.join(self._voices)} "
                "(OpenAI voice names select 'default')",
                param="voice",
            )
        return name

    def synthesize(
        self,
        text: str,
        voice: str | None = None,
        speed: float = 1.0,
        reference: VoiceReference | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[np.ndarray]:
        """Stream ``text`` as float32 chunks of shape ``(n,)`` in ``[-1, 1]`` at 24000 Hz, one per
        sentence.

        Args:
            text: what to say; prosody tags are removed. Text with nothing to say after that
                (only tags or punctuation) yields nothing.
            voice: see :meth:`resolve_voice`; ignored when ``reference`` is given.
            speed: OpenAI's ``speed`` in ``[0.25, 4.0]`` (scales the duration f5-tts plans).
            reference: clone this voice: a clip (any sample rate, resampled to 24 kHz, silence
                at the ends trimmed, at most ``max_reference_s``) and its exact transcript.
            cancel: when set, stops before the next sentence.

        Raises:
            InvalidInput: empty ``text`` (``param="input"``), unknown voice, ``speed`` out of
                range, or a bad reference (``param="reference_audio"`` / ``"reference_text"``).
        """
        from models.tts.tags import strip_tags

        if not text or not text.strip():
            raise InvalidInput("input text is empty", param="input")
        try:
            speed = float(speed)
        except (TypeError, ValueError):
            raise InvalidInput(f"speed must be a number, got {speed!r}", param="speed") from None
        speed = check_speed(speed)
        if reference is not None:
            ref_audio, ref_text = self._prepare_reference(reference.audio, reference.text, "reference_audio")
        else:
            ref_audio, ref_text = self._voices[self.resolve_voice(voice)]
        clean = strip_tags(text).strip()
        if not re.search(r"\w", clean):
            return
        for piece in self._pieces(clean, ref_audio, ref_text, speed):
            if cancel is not None and cancel.is_set():
                return
            wave = self._infer(piece, ref_audio, ref_text, speed)
            if wave.size:
                yield wave
            if cancel is not None and cancel.is_set():
                return

    # ------------------------------------------------------------------------------------------
    def _infer(self, piece: str, ref_audio, ref_text: str, speed: float) -> np.ndarray:
        """One ``infer_batch_process`` call for one text piece -> float32 ``(n,)`` at 24 kHz."""
        wave, _, _ = next(
            self._utils.infer_batch_process(
                (ref_audio, self.sample_rate),
                ref_text,
                [piece],
                self.model,
                self.vocoder,
                mel_spec_type="vocos",
                progress=None,
                nfe_step=self.nfe_step,
                cfg_strength=self.cfg_strength,
                sway_sampling_coef=self.sway_sampling_coef,
                speed=speed,
                device=self.device,
            )
        )
        if wave is None:
            return np.zeros(0, np.float32)
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        wave = np.nan_to_num(wave, nan=0.0, posinf=1.0, neginf=-1.0)
        return np.clip(wave, -1.0, 1.0)

    def _pieces(self, text: str, ref_audio, ref_text: str, speed: float) -> list[str]:
        """Sentences of ``text``; a sentence over f5-tts's per-call budget (``max_chars``, the
        formula of ``infer_process``: the reference's bytes per second times the ~22 s left for
        new speech, times ``speed``) is split further at clause punctuation with f5-tts's
        ``chunk_text``, then at spaces."""
        ref_s = ref_audio.shape[-1] / float(self.sample_rate)
        max_chars = int(len(ref_text.encode("utf-8")) / ref_s * max(22.0 - ref_s, 1.0) * speed)
        pieces: list[str] = []
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            if not sentence:
                continue
            if len(sentence.encode("utf-8")) <= max_chars or max_chars <= 0:
                pieces.append(sentence)
                continue
            for chunk in self._utils.chunk_text(sentence, max_chars=max_chars):
                pieces.extend(_split_words(chunk, max_chars))
        return [p for p in pieces if p.strip()]

    def _load_voice(self, name: str, audio_source: str | None, text: str | None):
        """Decode and prepare a configured voice clip."""
        from models.audio import decode_audio

        if not audio_source:
            raise ValueError(f"voice {name!r} has no audio")
        if not text or not str(text).strip():
            raise ValueError(
                f"voice {name!r} needs the transcript of its clip ('text'); it is not transcribed automatically"
            )
        path = Path(_fetch(audio_source))
        audio = decode_audio(path.read_bytes(), path.name)
        return self._prepare_reference(audio, str(text), "voices")

    def _prepare_reference(self, audio: Audio, text: str, param: str):
        """``(tensor of shape (1, n) at 24 kHz, transcript ending in ". ")`` for f5-tts.

        Mirrors f5-tts's ``preprocess_ref_audio_text`` without pydub/FFmpeg: trims silence at
        the ends (below -42 dBFS, as f5-tts does), appends 50 ms of silence, and ends the
        transcript with sentence punctuation plus a space.

        Raises:
            InvalidInput: empty transcript, empty/silent clip, or a clip over ``max_reference_s``.
        """
        from models.audio import resample

        text = (text or "").strip()
        if not text:
            raise InvalidInput("reference_text is required with reference_audio", param="reference_text")
        x = np.asarray(audio.samples, dtype=np.float32).reshape(-1)
        if x.size == 0 or not audio.sample_rate:
            raise InvalidInput("the reference audio is empty", param=param)
        if not np.isfinite(x).all():
            raise InvalidInput("the reference audio contains NaN or infinite samples", param=param)
        x = resample(x, int(audio.sample_rate), self.sample_rate)
        loud = np.flatnonzero(np.abs(x) > 10 ** (-42 / 20))
        if loud.size == 0:
            raise InvalidInput("the reference audio is silent", param=param)
        x = x[loud[0] : loud[-1] + 1]
        seconds = x.size / float(self.sample_rate)
        if seconds > self.max_reference_s:
            raise InvalidInput(
                f"the reference audio is {seconds:.1f} s long; at most {self.max_reference_s:g} s "
                "(after trimming silence) is accepted",
                param=param,
            )
        if seconds < 0.3:
            raise InvalidInput(f"the reference audio is too short ({seconds:.2f} s of sound)", param=param)
        x = np.concatenate([x, np.zeros(int(0.05 * self.sample_rate), np.float32)])
        if not text.endswith(". ") and not text.endswith("。"):
            text = text + " " if text.endswith(".") else text + ". "
        return self._torch.from_numpy(np.ascontiguousarray(x))[None, :], text


def _split_words(text: str, max_bytes: int) -> list[str]:
    """``text`` cut at spaces into pieces of at most ``max_bytes`` UTF-8 bytes (a single longer
    word stays whole). For clauses without punctuation that ``chunk_text`` cannot split."""
    if len(text.encode("utf-8")) <= max_bytes:
        return [text.strip()]
    pieces, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and len(candidate.encode("utf-8")) > max_bytes:
            pieces.append(current)
            current = word
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def _config_path(model_name: str) -> str:
    """A packaged f5-tts config name or a YAML path -> the YAML path."""
    from importlib.resources import files

    if model_name.endswith((".yaml", ".yml")) or Path(model_name).is_file():
        path = resolve_source(model_name)
        if not Path(path).is_file():
            raise FileNotFoundError(f"model config {path} does not exist")
        return path
    packaged = files("f5_tts").joinpath("configs")
    path = packaged.joinpath(f"{model_name}.yaml")
    if not path.is_file():
        names = sorted(p.name.removesuffix(".yaml") for p in packaged.iterdir() if p.name.endswith(".yaml"))
        raise ValueError(
            f"unknown F5-TTS model_name {model_name!r}; f5-tts ships {', '.join(names)} "
            "(or give the path of a config YAML)"
        )
    return str(path)


def _fetch(spec: str) -> str:
    """``hf://owner/repo/path/in/repo`` -> a file in the Hugging Face cache (downloaded once);
    a local path or ``package://`` source -> that path.

    Raises:
        FileNotFoundError: a local path that does not exist.
        ValueError: an ``hf://`` spec without a file path.
    """
    if spec.startswith(HF_SCHEME):
        from huggingface_hub import hf_hub_download

        parts = spec[len(HF_SCHEME) :].strip("/").split("/")
        if len(parts) < 3:
            raise ValueError(f"expected hf://<owner>/<repo>/<path in repo>, got {spec!r}")
        return hf_hub_download(repo_id="/".join(parts[:2]), filename="/".join(parts[2:]))
    path = resolve_source(spec)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist (give a local path, package:// or hf:// source)")
    return path


def _vocoder_dir(vocoder: str) -> str:
    """A local Vocos directory, or a hub repo id whose ``config.yaml`` and ``pytorch_model.bin``
    are fetched into the Hugging Face cache -> the directory holding both files."""
    local = Path(resolve_source(vocoder))
    if local.is_dir():
        missing = [n for n in ("config.yaml", "pytorch_model.bin") if not (local / n).is_file()]
        if missing:
            raise FileNotFoundError(f"vocoder directory {local} lacks {', '.join(missing)}")
        return str(local)
    from huggingface_hub import hf_hub_download

    repo = vocoder[len(HF_SCHEME) :] if vocoder.startswith(HF_SCHEME) else vocoder
    config = hf_hub_download(repo_id=repo, filename="config.yaml")
    hf_hub_download(repo_id=repo, filename="pytorch_model.bin")
    return str(Path(config).parent)
