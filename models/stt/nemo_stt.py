"""Speech-to-text with NVIDIA NeMo ASR models (Parakeet CTC / RNNT / TDT, Canary)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from models.base import InvalidInput, Segment, Transcription, Unsupported, Word
from models.sources import resolve_source

logger = logging.getLogger(__name__)

#: Clips shorter than this are padded with trailing silence: the encoder's convolutional
#: subsampling (8x on FastConformer) needs a few frames to produce any output.
MIN_SAMPLES_S = 0.5


class NemoSTT:
    """A NeMo ASR model loaded from a ``.nemo`` file or by name.

    ``source`` is a ``.nemo`` archive (what ``model.save_to`` writes; loaded with
    ``ASRModel.restore_from``), a directory holding exactly one ``.nemo`` file, or a pretrained
    name (``nvidia/parakeet-tdt-0.6b-v3``, loaded with ``ASRModel.from_pretrained``, which
    downloads from the Hugging Face hub or NGC into NeMo's cache).

    Transcription uses the model's own ``transcribe`` on the numpy clip with
    ``timestamps=True``, which on Parakeet models (CTC, RNNT and TDT decoders) returns
    hypotheses with ``timestamp["segment"]`` and ``timestamp["word"]`` entries in seconds.
    Segments are split by the decoding config's segment delimiters (sentence punctuation).

    Language: Parakeet does not report the language it heard. :attr:`Transcription.language`
    is the ``language`` argument, else ``default_language``. With ``languages`` configured,
    other ``language`` values are rejected.

    Canary (``EncDecMultiTaskModel``) is driven with its prompt: ``source_lang`` = the language
    (or ``default_language``), ``target_lang`` = the same for ``transcribe`` and ``"en"`` for
    ``translate``; it returns one segment for the whole clip (no timestamps requested).

    Concurrency: NeMo's ``transcribe`` switches the model's mode and decoding config while it
    runs, so calls are serialised with a lock (one transcription at a time per replica; scale
    with replicas). ``prompt`` and ``temperature`` are accepted and ignored (greedy decoding).

    Args:
        source: ``.nemo`` path, directory with one ``.nemo`` file, ``package://`` source, or a
            pretrained model name.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        default_language: reported language when the request names none (ISO-639-1).
        languages: ISO-639-1 codes the model accepts (``None``: any code is accepted and
            reported as given).
        batch_size: NeMo ``transcribe`` batch size (one clip per call here, so 1 is enough).
        torch_threads: intra-op threads for this process (``None`` keeps torch's default).

    Attributes:
        sample_rate: the model's ``cfg.sample_rate`` (16000 Hz for Parakeet/Canary).
        can_translate: True only for multi-task (Canary) models.
        languages: the configured ``languages`` (empty when unrestricted).

    Raises:
        FileNotFoundError: a directory source without a ``.nemo`` file.
        Errors from NeMo when the checkpoint cannot be restored or downloaded.
    """

    def __init__(
        self,
        source: str,
        device: str = "auto",
        default_language: str = "en",
        languages: list[str] | None = None,
        batch_size: int = 1,
        torch_threads: int | None = None,
    ):
        import torch
        from nemo.collections.asr.models import ASRModel, EncDecMultiTaskModel

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        path = resolve_source(source)
        local = Path(path)
        if local.is_dir():
            found = sorted(local.glob("*.nemo"))
            if len(found) != 1:
                raise FileNotFoundError(f"expected exactly one .nemo file in {local}, found {len(found)}")
            local = found[0]
        t0 = time.monotonic()
        if local.is_file():
            model = ASRModel.restore_from(str(local), map_location=torch.device(device))
        else:
            model = ASRModel.from_pretrained(model_name=path, map_location=torch.device(device))
        model = model.to(device)
        model.eval()
        logger.info("loaded NeMo %s (%s) on %s in %.1f s", path, type(model).__name__, device, time.monotonic() - t0)
        self.model = model
        self.device = device
        self._torch = torch
        self._lock = threading.Lock()
        cfg = model.cfg
        rate = cfg.get("sample_rate", None) or cfg.get("preprocessor", {}).get("sample_rate", None) or 16000
        self.sample_rate: int = int(rate)
        self._multitask = isinstance(model, EncDecMultiTaskModel)
        self.can_translate: bool = bool(self._multitask)
        self.default_language = default_language
        self.languages: list[str] = [code.lower() for code in (languages or [])]
        self.batch_size = int(batch_size)

    # ------------------------------------------------------------------------------------------
    def transcribe(
        self,
        audio: np.ndarray,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        word_timestamps: bool = False,
        task: str = "transcribe",
        cancel: threading.Event | None = None,
    ) -> Transcription:
        """Transcribe a whole clip.

        Args:
            audio: float32 array of shape ``(n,)`` at :attr:`sample_rate`, ``n > 0``.
            language: ISO-639-1 code of the speech (reported back; Canary's source language).
            prompt: ignored (NeMo ASR models take no text prompt).
            temperature: must be in ``[0, 1]``; decoding is greedy regardless.
            word_timestamps: fill :attr:`Transcription.words`.
            task: ``"transcribe"``, or ``"translate"`` (to English) on Canary models.
            cancel: when already set on entry, returns an empty transcription (a NeMo
                ``transcribe`` call cannot be interrupted).

        Returns:
            :class:`Transcription` with text, language, duration (seconds), segments (from
            NeMo's segment timestamps, else one segment for the clip) and, when asked, words.

        Raises:
            InvalidInput: empty, non-1-D or non-finite audio, unknown ``task``, a language not
                in ``languages``, ``temperature`` outside ``[0, 1]``.
            Unsupported: ``task="translate"`` on a model that cannot translate.
        """
        x = _check_audio(audio)
        language = self._check_options(language, temperature, task)
        duration = x.size / float(self.sample_rate)
        if cancel is not None and cancel.is_set():
            return Transcription(text="", language=language, duration=duration)
        min_samples = int(MIN_SAMPLES_S * self.sample_rate)
        if x.size < min_samples:
            x = np.concatenate([x, np.zeros(min_samples - x.size, np.float32)])
        kwargs: dict = dict(batch_size=self.batch_size, return_hypotheses=True, verbose=False)
        if self._multitask:
            kwargs.update(source_lang=language, target_lang="en" if task == "translate" else language, pnc="yes")
        else:
            kwargs["timestamps"] = True
        with self._lock, self._torch.inference_mode():
            out = self.model.transcribe([x], **kwargs)
        if isinstance(out, tuple):  # older RNNT API: (best hypotheses, all hypotheses)
            out = out[0]
        hyp = out[0]
        text = (hyp if isinstance(hyp, str) else getattr(hyp, "text", "")) or ""
        if not isinstance(text, str):  # some decoders leave token ids when no tokenizer decode ran
            text = str(text)
        stamps = getattr(hyp, "timestamp", None) or {}
        if not isinstance(stamps, dict):
            stamps = {}

        segments: list[Segment] = []
        for item in stamps.get("segment", []) or []:
            seg_text = str(item.get("segment", "")).strip()
            if not seg_text:
                continue
            start = _clip(float(item.get("start", 0.0)), 0.0, duration)
            end = _clip(float(item.get("end", duration)), start, duration)
            segments.append(Segment(id=len(segments), start=start, end=end, text=seg_text))
        if not segments and text.strip():
            segments.append(Segment(id=0, start=0.0, end=duration, text=text.strip()))
        words: list[Word] = []
        if word_timestamps:
            for item in stamps.get("word", []) or []:
                word = str(item.get("word", "")).strip()
                if not word:
                    continue
                start = _clip(float(item.get("start", 0.0)), 0.0, duration)
                end = _clip(float(item.get("end", start)), start, duration)
                words.append(Word(word=word, start=start, end=end))
        return Transcription(text=text.strip(), language=language, duration=duration, segments=segments, words=words)

    # ------------------------------------------------------------------------------------------
    def _check_options(self, language: str | None, temperature, task: str) -> str:
        """The language to report (validated)."""
        if task not in ("transcribe", "translate"):
            raise InvalidInput(f"task must be 'transcribe' or 'translate', got {task!r}", param="task")
        if task == "translate" and not self.can_translate:
            raise Unsupported("this speech-to-text model cannot translate", param="task")
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise InvalidInput(f"temperature must be a number, got {temperature!r}", param="temperature") from None
        if not 0.0 <= temperature <= 1.0:
            raise InvalidInput(f"temperature must be between 0 and 1, got {temperature}", param="temperature")
        if not language:
            return self.default_language
        language = language.strip().lower()
        if self.languages and language not in self.languages:
            raise InvalidInput(
                f"language {language!r} is not supported by this model; expected one of {', '.join(self.languages)}",
                param="language",
            )
        return language


def _check_audio(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim != 1:
        raise InvalidInput(f"audio must be mono samples of shape (n,), got shape {x.shape}", param="file")
    if x.size == 0:
        raise InvalidInput("audio is empty", param="file")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InvalidInput("audio contains NaN or infinite samples", param="file")
    return x


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
