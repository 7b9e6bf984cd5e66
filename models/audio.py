"""Audio decoding, encoding and resampling at the edges of the stack.

Everything here works on mono ``float32`` PCM in ``[-1, 1]`` (shape ``(n,)``) with its sample
rate in Hz next to it, like :class:`models.base.Audio`. The codecs are the libraries', not ours:

- decoding: `soundfile` (libsndfile: WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF...) first, then
  PyAV (FFmpeg: M4A/MP4/AAC, WebM, everything else FFmpeg demuxes);
- encoding: libsndfile for ``wav`` and ``flac``; FFmpeg (through PyAV) for ``mp3`` (libmp3lame),
  ``opus`` (libopus in an Ogg container) and ``aac`` (FFmpeg's native AAC encoder in ADTS);
- resampling: `soxr` (libsoxr, "HQ" quality).

The only bytes assembled by hand are PCM16 samples and the 44-byte header of a *streaming* WAV
(:func:`wav_header`), which libsndfile cannot produce because it needs to seek back to write sizes.

Format names follow OpenAI's ``response_format`` of ``POST /v1/audio/speech``: ``mp3``, ``opus``,
``aac``, ``flac``, ``wav`` and ``pcm`` (raw 16-bit little-endian mono; OpenAI sends it at 24 kHz,
:data:`OPENAI_PCM_RATE`, and resampling to it is the caller's job).
"""

from __future__ import annotations

import io
import logging
import struct
from functools import lru_cache
from pathlib import PurePath

import numpy as np

from models.base import Audio, InvalidInput, Unsupported

logger = logging.getLogger(__name__)

#: Sample rate (Hz) of OpenAI's ``pcm`` speech output and of realtime PCM16 audio.
OPENAI_PCM_RATE = 24000

#: Every format name :func:`encode_audio` knows; :func:`available_formats` says which work here.
ENCODE_FORMATS = ("wav", "pcm", "flac", "mp3", "opus", "aac")

#: ``Content-Type`` for each encoded format (IANA media types; Ogg Opus is ``audio/ogg``, RFC 7845).
CONTENT_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
}

# format -> (FFmpeg muxer, FFmpeg encoder, default bit rate in bit/s or None)
_FFMPEG_FORMATS = {
    "mp3": ("mp3", "libmp3lame", 64_000),
    "opus": ("ogg", "libopus", 32_000),
    "aac": ("adts", "aac", 64_000),
    "flac": ("flac", "flac", None),  # used by StreamEncoder only; encode_audio uses libsndfile
}

# File extensions libsndfile cannot read; decode_audio goes straight to FFmpeg for them.
_FFMPEG_ONLY_EXTENSIONS = {".m4a", ".mp4", ".webm", ".aac", ".mka", ".mkv", ".3gp", ".wma", ".amr"}

_PCM16_MAX = 32767.0


# --------------------------------------------------------------------------------------------
# PCM16
# --------------------------------------------------------------------------------------------


def pcm16_bytes(samples: np.ndarray) -> bytes:
    """Float samples to raw 16-bit signed little-endian PCM.

    Args:
        samples: float array of shape ``(n,)``, nominally in ``[-1, 1]``; values outside are
            clipped.

    Returns:
        ``2 * n`` bytes.
    """
    x = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return np.round(x * _PCM16_MAX).astype("<i2").tobytes()


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Raw 16-bit signed little-endian PCM to float32 samples in ``[-1, 1]``.

    Returns:
        array of shape ``(len(data) // 2,)``.

    Raises:
        InvalidInput: ``data`` has an odd number of bytes (not whole 16-bit samples).
    """
    if len(data) % 2:
        raise InvalidInput(f"PCM16 audio must have an even number of bytes, got {len(data)}", param="audio")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / _PCM16_MAX


# --------------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------------


def resample(samples: np.ndarray, src_hz: int, dst_hz: int) -> np.ndarray:
    """Resample mono audio with libsoxr (``soxr.resample``, "HQ" quality).

    Args:
        samples: float array of shape ``(n,)`` at ``src_hz``.
        src_hz: input sample rate in Hz.
        dst_hz: output sample rate in Hz.

    Returns:
        float32 array of shape ``(round(n * dst_hz / src_hz),)`` (the input, as float32, when
        the rates are equal).

    Raises:
        ValueError: a rate is not positive or ``samples`` is not one-dimensional.
    """
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample expects mono samples of shape (n,), got shape {x.shape}")
    if src_hz <= 0 or dst_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {src_hz} -> {dst_hz}")
    if src_hz == dst_hz or x.size == 0:
        return x
    import soxr

    return soxr.resample(x, src_hz, dst_hz, quality="HQ")


class StreamResampler:
    """Resample a stream chunk by chunk without clicks at chunk boundaries (``soxr.ResampleStream``).

    Call :meth:`process` per chunk and :meth:`flush` once at the end; the concatenated outputs
    equal :func:`resample` of the whole signal up to filter-edge effects. A pass-through when the
    rates are equal. One instance per stream; not thread-safe.
    """

    def __init__(self, src_hz: int, dst_hz: int):
        if src_hz <= 0 or dst_hz <= 0:
            raise ValueError(f"sample rates must be positive, got {src_hz} -> {dst_hz}")
        self.src_hz, self.dst_hz = int(src_hz), int(dst_hz)
        self._stream = None
        if self.src_hz != self.dst_hz:
            import soxr

            self._stream = soxr.ResampleStream(self.src_hz, self.dst_hz, 1, dtype="float32", quality="HQ")

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk (float array of shape ``(n,)``); may return fewer samples
        than expected because the filter holds some back until later chunks or :meth:`flush`."""
        x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if self._stream is None:
            return x
        return self._stream.resample_chunk(x, last=False)

    def flush(self) -> np.ndarray:
        """The samples still held by the filter; call once after the last chunk."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------


def decode_audio(data: bytes, filename: str | None = None) -> Audio:
    """Decode an uploaded audio file to mono float32 at its own sample rate.

    Accepts what OpenAI's transcription endpoint accepts (flac, mp3, mp4, mpeg, mpga, m4a, ogg,
    wav, webm) and anything else libsndfile or FFmpeg can read. libsndfile is tried first (WAV,
    FLAC, OGG/Vorbis/Opus, MP3, AIFF...), then FFmpeg through PyAV. Channels are averaged into
    one. A file whose *data* is cut short decodes to the part that is there, as FFmpeg does; a
    file with nothing decodable raises.

    Args:
        data: the file's bytes.
        filename: the upload's file name; its extension only picks which decoder is tried first
            and names the file in error messages (the content decides the format).

    Returns:
        :class:`Audio` with ``samples`` of shape ``(n,)``, ``n > 0``, values in ``[-1, 1]``, and
        the file's ``sample_rate`` in Hz.

    Raises:
        InvalidInput (``param="file"``): empty data; data neither library can decode (not audio,
            a truncated header, an unknown container); no audio stream; zero-length audio;
            non-finite samples.
    """
    name = filename or "the uploaded file"
    if not data:
        raise InvalidInput(f"{name} is empty", param="file")
    ext = PurePath(filename).suffix.lower() if filename else ""
    errors: list[str] = []
    result: tuple[np.ndarray, int] | None = None
    if ext not in _FFMPEG_ONLY_EXTENSIONS:
        try:
            result = _decode_soundfile(data)
        except Exception as exc:  # libsndfile: "Format not recognised", "unimplemented format"...
            errors.append(f"libsndfile: {_error_text(exc)}")
    if result is None:
        try:
            result = _decode_ffmpeg(data)
        except _NoAudio as exc:
            raise InvalidInput(f"{name} has no audio stream ({exc})", param="file") from None
        except Exception as exc:
            errors.append(f"ffmpeg: {_error_text(exc)}")
    if result is None:
        raise InvalidInput(
            f"{name} could not be decoded as audio; supported formats: flac, mp3, mp4, mpeg, mpga, "
            f"m4a, ogg, opus, wav, webm ({'; '.join(errors)})",
            param="file",
        )
    samples, rate = result
    if samples.size == 0 or rate <= 0:
        raise InvalidInput(f"{name} contains no audio samples", param="file")
    if not np.all(np.isfinite(samples)):
        raise InvalidInput(f"{name} contains non-finite samples (NaN or infinity)", param="file")
    return Audio(samples=np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False), sample_rate=int(rate))


class _NoAudio(Exception):
    pass


def _error_text(exc: Exception) -> str:
    """A library's error message without object reprs ("Error opening <_io.BytesIO ...>: ")."""
    text = getattr(exc, "strerror", None) or str(exc)
    if text.startswith("Error opening <") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text.strip().rstrip(".")


def _decode_soundfile(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.mean(axis=1, dtype=np.float32), int(rate)


def _decode_ffmpeg(data: bytes) -> tuple[np.ndarray, int]:
    import av

    chunks: list[np.ndarray] = []
    rate = 0
    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.audio:
            raise _NoAudio(f"container {container.format.name!r}")
        stream = container.streams.audio[0]
        # Keep layout and rate, convert to planar float so channels can be averaged like above.
        converter = av.AudioResampler(format="fltp")
        try:
            for frame in container.decode(stream):
                rate = rate or frame.sample_rate
                for out in converter.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
        except av.error.FFmpegError as exc:
            if not chunks:
                raise
            logger.warning("audio truncated or corrupt after %d decoded frames: %s", len(chunks), exc)
        for out in converter.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
    if not chunks:
        return np.zeros(0, dtype=np.float32), rate
    return np.concatenate(chunks), rate


# --------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def available_formats() -> frozenset[str]:
    """The :data:`ENCODE_FORMATS` this machine can encode.

    ``wav`` and ``pcm`` always; ``flac`` when libsndfile has FLAC; ``mp3``, ``opus`` and ``aac``
    when the FFmpeg linked into PyAV has the encoder (libmp3lame, libopus, aac) and muxer
    (mp3, ogg, adts). Checked once per process.
    """
    formats = {"wav", "pcm"}
    try:
        import soundfile as sf

        if "FLAC" in sf.available_formats():
            formats.add("flac")
    except Exception as exc:  # pragma: no cover - libsndfile missing
        logger.warning("soundfile unavailable: %s", exc)
    try:
        import av

        for fmt, (muxer, encoder, _) in _FFMPEG_FORMATS.items():
            if fmt == "flac":
                continue
            if muxer in av.formats_available and encoder in av.codecs_available:
                try:
                    av.codec.Codec(encoder, "w")
                except Exception:
                    continue
                formats.add(fmt)
    except Exception as exc:  # pragma: no cover - PyAV missing
        logger.warning("PyAV unavailable: %s", exc)
    return frozenset(formats)


def _check_format(fmt: str) -> str:
    fmt = (fmt or "").lower()
    if fmt not in ENCODE_FORMATS:
        raise InvalidInput(
            f"unknown audio format {fmt!r}; expected one of {', '.join(ENCODE_FORMATS)}",
            param="response_format",
        )
    if fmt not in available_formats():
        raise Unsupported(
            f"audio format {fmt!r} is not available on this server (no encoder); available: "
            f"{', '.join(sorted(available_formats()))}",
            param="response_format",
        )
    return fmt


def _encoder_rate(encoder: str, rate: int) -> int:
    """The rate to encode at: ``rate`` if the encoder takes it, else the next higher one it takes."""
    import av

    rates = av.codec.Codec(encoder, "w").audio_rates
    if not rates or rate in rates:
        return rate
    higher = sorted(r for r in rates if r >= rate)
    return higher[0] if higher else max(rates)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str, bit_rate: int | None = None) -> bytes:
    """Encode mono float audio as a complete file in ``fmt``.

    Args:
        samples: float array of shape ``(n,)`` in ``[-1, 1]`` (clipped).
        sample_rate: rate of ``samples`` in Hz. Kept in the output, except for encoders that do
            not take it (libopus: 8/12/16/24/48 kHz; libmp3lame and aac have their own lists),
            where the audio is resampled (soxr) to the next higher rate the encoder takes.
        fmt: ``wav`` (PCM16 WAV), ``pcm`` (raw PCM16 LE, no header, at ``sample_rate``), ``flac``
            (16-bit), ``mp3``, ``opus`` (Ogg Opus) or ``aac`` (ADTS).
        bit_rate: bits per second for lossy formats (defaults: mp3 64k, opus 32k, aac 64k).

    Returns:
        the encoded bytes.

    Raises:
        InvalidInput: unknown ``fmt``.
        Unsupported: ``fmt`` is known but not in :func:`available_formats`.
    """
    fmt = _check_format(fmt)
    x = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    if fmt == "pcm":
        return pcm16_bytes(x)
    if fmt in ("wav", "flac"):
        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, x, int(sample_rate), format=fmt.upper(), subtype="PCM_16")
        return buf.getvalue()
    encoder = StreamEncoder(fmt, sample_rate, bit_rate=bit_rate, whole_file=True)
    return encoder.encode(x) + encoder.finish()


def wav_header(sample_rate: int, num_samples: int | None = None, channels: int = 1) -> bytes:
    """The 44-byte header of a PCM16 WAV, for streaming the samples after it.

    With ``num_samples=None`` (length unknown) the RIFF and ``data`` sizes are ``0xFFFFFFFF``,
    as in OpenAI's streamed ``wav`` speech responses; browsers, FFmpeg and libsndfile play such
    a stream to its end.

    Args:
        sample_rate: Hz.
        num_samples: samples per channel that will follow, or ``None`` when unknown.
        channels: interleaved channels.
    """
    block_align = 2 * channels
    if num_samples is None:
        data_size = riff_size = 0xFFFFFFFF
    else:
        data_size = num_samples * block_align
        riff_size = 36 + data_size
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        16,
        b"data",
        data_size,
    )


class _Sink:
    """A write-only file for FFmpeg's muxer; :meth:`take` returns what was written since last."""

    def __init__(self):
        self._buf = bytearray()

    def write(self, data) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class _Buffer(io.BytesIO):
    """A seekable in-memory file (FFmpeg may rewrite headers); :meth:`take` returns nothing until
    :attr:`complete` is set after the muxer closed, then the whole file."""

    complete = False

    def take(self) -> bytes:
        return self.getvalue() if self.complete else b""


class StreamEncoder:
    """Encode audio chunk by chunk for a chunked HTTP response (or an SSE/WebSocket stream).

    ``wav`` starts with :func:`wav_header` of unknown length followed by PCM16; ``pcm`` is bare
    PCM16; ``mp3``, ``opus``, ``aac`` and ``flac`` are muxed by FFmpeg into a non-seekable
    stream (``flac``'s header then lacks the total length and checksum, which players ignore;
    Ogg pages of ``opus`` are flushed at least every ``page_ms``). Concatenating every returned
    piece gives a playable file.

    Args:
        fmt: one of :func:`available_formats`.
        sample_rate: rate (Hz) of the chunks passed to :meth:`encode`.
        out_rate: rate (Hz) to encode at (e.g. :data:`OPENAI_PCM_RATE` for ``pcm``); the chunks
            are resampled with :class:`StreamResampler`. Defaults to ``sample_rate``; a rate the
            encoder does not take becomes the next higher one it takes (see :attr:`out_rate`).
        bit_rate: bits per second for lossy formats.
        page_ms: longest an Ogg page is held back (``opus``), in milliseconds.
        whole_file: mux into a seekable buffer and return everything from :meth:`finish`
            (:meth:`encode` returns ``b""``), so that FFmpeg can rewrite headers at the end
            (e.g. the MP3 Xing/LAME tag with the exact length and encoder delay). Used by
            :func:`encode_audio`.

    Raises:
        InvalidInput / Unsupported: as :func:`encode_audio` for ``fmt``.

    Not thread-safe; one instance per response.
    """

    def __init__(
        self,
        fmt: str,
        sample_rate: int,
        out_rate: int | None = None,
        bit_rate: int | None = None,
        page_ms: int = 100,
        whole_file: bool = False,
    ):
        self.fmt = _check_format(fmt)
        self.content_type = CONTENT_TYPES[self.fmt]
        self._container = self._stream = None
        self._header_sent = False
        if self.fmt in _FFMPEG_FORMATS:
            import av

            muxer, encoder, default_bit_rate = _FFMPEG_FORMATS[self.fmt]
            self.out_rate = _encoder_rate(encoder, int(out_rate or sample_rate))
            self._sink = _Buffer() if whole_file else _Sink()
            options = {"page_duration": str(int(page_ms) * 1000)} if muxer == "ogg" else {}
            self._container = av.open(self._sink, mode="w", format=muxer, options=options)
            self._stream = self._container.add_stream(encoder, rate=self.out_rate, layout="mono")
            if default_bit_rate:
                self._stream.bit_rate = int(bit_rate or default_bit_rate)
            self._av = av
        else:
            self.out_rate = int(out_rate or sample_rate)
        self.sample_rate = int(sample_rate)
        self._resampler = StreamResampler(self.sample_rate, self.out_rate)
        self._pts = 0

    def encode(self, samples: np.ndarray) -> bytes:
        """Encode the next chunk (float array of shape ``(n,)`` at ``sample_rate``); returns the
        bytes ready to send, possibly empty (encoders and muxers buffer)."""
        return self._encode(self._resampler.process(samples))

    def finish(self) -> bytes:
        """Flush the resampler, encoder and muxer; returns the last bytes. Call exactly once."""
        out = self._encode(self._resampler.flush())
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            if isinstance(self._sink, _Buffer):
                self._sink.complete = True
            out += self._sink.take()
        return out

    def _encode(self, x: np.ndarray) -> bytes:
        x = np.clip(np.asarray(x, dtype=np.float32).reshape(-1), -1.0, 1.0)
        head = b""
        if self.fmt == "wav" and not self._header_sent:
            head = wav_header(self.out_rate)
        self._header_sent = True
        if self._container is None:
            return head + pcm16_bytes(x)
        if x.size:
            frame = self._av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
            frame.sample_rate = self.out_rate
            frame.pts = self._pts
            self._pts += x.size
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._sink.take()
