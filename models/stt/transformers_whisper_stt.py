"""Speech-to-text with Whisper on Hugging Face transformers (``WhisperForConditionalGeneration``).

The GPU profiles use this backend for Whisper checkpoints in transformers format
(``openai/whisper-large-v3-turbo``...), mainly for ``task="translate"`` which Parakeet cannot do.
On CPU the ``faster-whisper`` backend is faster for the same model.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterator

import numpy as np

from models.base import InvalidInput, Segment, Transcription, Unsupported, Word, collect_transcription
from models.sources import resolve_source

logger = logging.getLogger(__name__)

#: Whisper's input window: 30 s of 16 kHz audio, 3000 log-mel frames (``WhisperFeatureExtractor``).
WINDOW_SAMPLES = 30 * 16000


class TransformersWhisperSTT:
    """A Whisper checkpoint (hub id or local directory) run with ``model.generate``.

    The directory (or hub repo) must hold what ``save_pretrained`` writes for the model
    (``config.json``, ``generation_config.json``, weights) and for a ``WhisperProcessor``
    (feature extractor + tokenizer files). The generation config carries Whisper's decoding
    metadata (``lang_to_id``, ``task_to_id``, ``is_multilingual``, ``no_timestamps_token_id``,
    ``alignment_heads``); it decides what this backend can do:

    - ``can_translate``: ``is_multilingual`` and a ``"translate"`` task token (override with the
      ``can_translate`` option: ``whisper-large-v3-turbo`` has the token but was not trained to
      translate);
    - ``languages``: the codes of ``lang_to_id`` (``["en"]`` for English-only models);
    - word timestamps: need ``alignment_heads`` (cross-attention heads aligned with time, DTW
      over them as in OpenAI's Whisper; transformers switches the model to eager attention the
      first time they are requested).

    Decoding: clips up to 30 s are decoded as one window with timestamp tokens (one
    ``generate`` call); longer clips use transformers' sequential long-form decoding (30 s
    windows, seeking to the last predicted timestamp). Language detection runs on the first
    30 s when ``language`` is not given (``model.detect_language``).

    Concurrency: ``transcribe`` may be called from several threads; each call is its own
    ``generate`` (no batching across requests; scale with replicas).

    Args:
        source: hub id (``openai/whisper-large-v3-turbo``), local directory, or ``package://``
            source.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` (float16 on CUDA, float32 on CPU) or a torch dtype name.
        num_beams: beam width (1: greedy) at temperature 0.
        can_translate: force translation support on or off (``None``: from the generation config).
        attn_implementation: passed to ``from_pretrained`` (``"sdpa"``, ``"eager"``, ...).
        torch_threads: intra-op threads for this process (``None`` keeps torch's default).
        local_files_only: never download (fail when ``source`` is not a directory or in the cache).

    Attributes:
        sample_rate: 16000 Hz (the feature extractor's ``sampling_rate``).
        can_translate: whether ``task="translate"`` is accepted.
        languages: ISO-639-1 codes accepted as ``language``.

    Raises:
        OSError / ValueError from transformers when the checkpoint cannot be loaded.
    """

    def __init__(
        self,
        source: str,
        device: str = "auto",
        dtype: str = "auto",
        num_beams: int = 1,
        can_translate: bool | None = None,
        attn_implementation: str | None = None,
        torch_threads: int | None = None,
        local_files_only: bool = False,
    ):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        path = resolve_source(source)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            torch_dtype = torch.float16 if device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        t0 = time.monotonic()
        self.processor = WhisperProcessor.from_pretrained(path, local_files_only=local_files_only)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = WhisperForConditionalGeneration.from_pretrained(
            path, dtype=torch_dtype, local_files_only=local_files_only, **kwargs
        ).to(device)
        self.model.eval()
        logger.info("loaded whisper %s on %s (%s) in %.1f s", path, device, torch_dtype, time.monotonic() - t0)
        self._torch = torch
        self.device = device
        self.dtype = torch_dtype
        self.num_beams = int(num_beams)
        self.sample_rate: int = int(self.processor.feature_extractor.sampling_rate)
        self.tokenizer = self.processor.tokenizer

        gen = self.model.generation_config
        lang_to_id = dict(getattr(gen, "lang_to_id", None) or {})
        self._multilingual = bool(getattr(gen, "is_multilingual", bool(lang_to_id))) and bool(lang_to_id)
        # "<|en|>" -> "en"; id -> code for language detection
        self._lang_codes = {tok.strip("<|>"): int(i) for tok, i in lang_to_id.items()}
        self._code_by_id = {i: code for code, i in self._lang_codes.items()}
        self.languages: list[str] = sorted(self._lang_codes) if self._multilingual else ["en"]
        has_translate = "translate" in (getattr(gen, "task_to_id", None) or {})
        self.can_translate: bool = (
            (self._multilingual and has_translate) if can_translate is None else bool(can_translate)
        )
        self._word_timestamps_ok = bool(getattr(gen, "alignment_heads", None))
        no_ts = getattr(gen, "no_timestamps_token_id", None)
        # Whisper's vocabulary: text tokens, then special tokens (from <|endoftext|>), then the
        # timestamp tokens right after <|notimestamps|>.
        self._timestamp_begin = int(no_ts) + 1 if no_ts is not None else None
        self._text_token_limit = int(self.tokenizer.eos_token_id)

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
        """Transcribe (or translate to English) a whole clip.

        Args:
            audio: float32 array of shape ``(n,)`` at 16000 Hz, ``n > 0``.
            language: ISO-639-1 code (or Whisper language name) of the speech; ``None`` detects
                it (English-only models always report ``"en"``).
            prompt: text that conditions the first window (OpenAI ``prompt``).
            temperature: ``0`` decodes greedily (or with ``num_beams``); ``> 0`` samples at that
                temperature.
            word_timestamps: fill :attr:`Transcription.words` (needs ``alignment_heads`` in the
                generation config; without them ``words`` stays empty).
            task: ``"transcribe"`` or ``"translate"`` (to English).
            cancel: accepted for interface parity; a ``generate`` call cannot be interrupted,
                so it only skips work when already set on entry.

        Returns:
            :class:`Transcription`: text (stripped), language (the given or detected code; for
            ``translate`` the source language), duration (seconds), segments numbered from 0
            with times clipped to the clip, words with ``start <= end`` in seconds.

        Raises:
            InvalidInput: empty or non-1-D audio, unknown ``task`` or ``language``,
                ``temperature`` outside ``[0, 1]``.
            Unsupported: ``task="translate"`` when :attr:`can_translate` is false, or a
                non-English ``language`` on an English-only model.
        """
        return collect_transcription(
            self.transcribe_stream(audio, language, prompt, temperature, word_timestamps, task, cancel)
        )

    def transcribe_stream(
        self,
        audio: np.ndarray,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        word_timestamps: bool = False,
        task: str = "transcribe",
        cancel: threading.Event | None = None,
    ) -> Iterator[Segment | Transcription]:
        """Like :meth:`transcribe`, yielding each :class:`Segment` and then the
        :class:`Transcription`. ``generate`` decodes the whole clip before returning, so the
        segments all arrive at the end; arguments are validated on the first ``next()``."""
        torch = self._torch
        x = _check_audio(audio)
        language, temperature = self._check_options(language, temperature, task)
        duration = x.size / float(self.sample_rate)
        if cancel is not None and cancel.is_set():
            yield Transcription(text="", language=language or "en", duration=duration)
            return
        long_form = x.size > WINDOW_SAMPLES
        fe = self.processor.feature_extractor
        if long_form:
            feats = fe(
                x,
                sampling_rate=self.sample_rate,
                return_tensors="pt",
                truncation=False,
                padding="longest",
                return_attention_mask=True,
            )
        else:
            feats = fe(x, sampling_rate=self.sample_rate, return_tensors="pt", return_attention_mask=True)
        input_features = feats.input_features.to(self.device, self.dtype)
        attention_mask = feats.attention_mask.to(self.device)

        want_words = bool(word_timestamps) and self._word_timestamps_ok
        if word_timestamps and not want_words:
            logger.warning("word timestamps requested but the generation config has no alignment_heads")
        kwargs: dict = dict(
            attention_mask=attention_mask,
            return_timestamps=True,
            return_segments=True,
            return_dict_in_generate=False,
            return_token_timestamps=want_words,
        )
        if self._multilingual:
            if language is None:
                with torch.inference_mode():
                    lang_id = int(self.model.detect_language(input_features[:, :, :3000])[0])
                language = self._code_by_id.get(lang_id, "en")
            kwargs["language"] = language
            kwargs["task"] = task
        else:
            language = "en"
        if not long_form:
            # One window: a single generate call. (Without this transformers keeps seeking
            # through the zero padding after the last timestamp of a short clip.)
            kwargs["force_unique_generate_call"] = True
        if prompt:
            kwargs["prompt_ids"] = self.processor.get_prompt_ids(prompt, return_tensors="pt").to(self.device)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        elif self.num_beams > 1:
            kwargs["num_beams"] = self.num_beams
        with torch.inference_mode():
            out = self.model.generate(input_features, **kwargs)

        segments: list[Segment] = []
        words: list[Word] = []
        for seg in out["segments"][0]:
            start = _clip(float(seg["start"]), 0.0, duration)
            if start >= duration and segments:
                continue  # a window decoded past the end of the audio
            end = _clip(float(seg["end"]), start, duration)
            tokens = [int(t) for t in seg["tokens"]]
            text = self.tokenizer.decode(self._text_tokens(tokens), skip_special_tokens=True)
            if not text.strip():
                continue
            segments.append(
                Segment(
                    id=len(segments),
                    start=start,
                    end=end,
                    text=text,
                    temperature=float(temperature),
                    compression_ratio=_compression_ratio(text),
                )
            )
            if want_words and "token_timestamps" in seg:
                words.extend(self._words(tokens, seg["token_timestamps"].tolist(), start, end, language))
        for seg in segments:
            yield seg
        yield Transcription(
            text="".join(s.text for s in segments).strip(),
            language=language,
            duration=duration,
            segments=segments,
            words=words,
        )

    # ------------------------------------------------------------------------------------------
    def _check_options(self, language: str | None, temperature, task: str) -> tuple[str | None, float]:
        """Validated ``(language code or None, temperature)``."""
        if task not in ("transcribe", "translate"):
            raise InvalidInput(f"task must be 'transcribe' or 'translate', got {task!r}", param="task")
        if task == "translate" and not self.can_translate:
            raise Unsupported("this speech-to-text model cannot translate", param="task")
        if language:
            language = _language_code(language.strip().lower())
            if language not in self.languages:
                if not self._multilingual:
                    raise Unsupported(
                        f"this speech-to-text model is English-only; language {language!r} is not supported",
                        param="language",
                    )
                raise InvalidInput(f"unknown language {language!r}; expected an ISO-639-1 code", param="language")
        else:
            language = None
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise InvalidInput(f"temperature must be a number, got {temperature!r}", param="temperature") from None
        if not 0.0 <= temperature <= 1.0:
            raise InvalidInput(f"temperature must be between 0 and 1, got {temperature}", param="temperature")
        return language, temperature

    def _text_tokens(self, tokens: list[int]) -> list[int]:
        """``tokens`` without timestamp and special tokens."""
        return [t for t in tokens if t < self._text_token_limit]

    def _words(
        self, tokens: list[int], token_times: list[float], seg_start: float, seg_end: float, language: str
    ) -> list[Word]:
        """Group one segment's tokens into words timed by their DTW token timestamps.

        ``token_times[i]`` is the time at which token ``i`` ends (transformers' convention: the
        ASR pipeline times token ``i`` as ``(token_times[i-1], token_times[i])``). Word times are
        clipped to the segment's ``[seg_start, seg_end]``.
        """
        from transformers.models.whisper.tokenization_whisper import LANGUAGES, _combine_tokens_into_words

        keep = [i for i, t in enumerate(tokens) if t < self._text_token_limit]
        if not keep:
            return []
        text_tokens = [tokens[i] for i in keep]
        names, _, groups = _combine_tokens_into_words(self.tokenizer, text_tokens, LANGUAGES.get(language, "english"))
        words = []
        for name, group in zip(names, groups, strict=True):
            first, last = keep[group[0]], keep[group[-1]]
            start = token_times[first - 1] if first > 0 else seg_start
            start = _clip(float(start), seg_start, seg_end)
            end = _clip(float(token_times[last]), start, seg_end)
            if name.strip():
                words.append(Word(word=name.strip(), start=start, end=end))
        return words


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


def _language_code(language: str) -> str:
    """``"english"`` / ``"<|en|>"`` / ``"en"`` -> ``"en"`` (Whisper's own name table)."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    language = language.strip("<|>")
    return TO_LANGUAGE_CODE.get(language, language)


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _compression_ratio(text: str) -> float:
    """Whisper's gzip compression ratio of a segment's text (high means repetitive)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0
