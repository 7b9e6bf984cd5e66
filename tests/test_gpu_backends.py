"""GPU-profile backends (transformers Whisper, NeMo ASR, F5-TTS) on tiny random checkpoints.

Their real weights cannot be downloaded here, so each test module builds TINY randomly
initialised checkpoints with the library's own save function and loads them through the same
code path a user's checkpoint takes (``models.registry.create_backend`` with ``source`` +
``options``):

- transformers Whisper: ``WhisperConfig`` + ``WhisperForConditionalGeneration(config)
  .save_pretrained(dir)`` with a ``WhisperProcessor`` saved beside it. The tokenizer is built
  offline: a byte-level BPE with the 256-symbol byte alphabet of ``tokenizers`` and no merges,
  then Whisper's special tokens (``<|endoftext|>``, ``<|startoftranscript|>``, four language
  tokens, task tokens, ``<|notimestamps|>``) and the 1501 timestamp tokens ``<|0.00|>`` ..
  ``<|30.00|>`` in Whisper's order, so the id layout matches real Whisper vocabularies (text <
  special < timestamps). The generation config carries Whisper's decoding metadata
  (``lang_to_id``, ``task_to_id``, ``alignment_heads``...).
- NeMo: a one-layer FastConformer ``EncDecCTCModelBPE`` and a TDT ``EncDecRNNTBPEModel`` built
  from configs here, with a SentencePiece BPE tokenizer trained offline on a few sentences
  (NeMo's ``create_spt_model``), saved with ``save_to(path.nemo)``.
- F5-TTS: a two-block DiT inside f5-tts's ``CFM`` (f5-tts's inference mel constants and shipped
  vocab), saved as released (EMA ``.safetensors``) and as a trainer checkpoint (``.pt`` holding
  ``ema_pytorch.EMA(...).state_dict()``); a one-layer Vocos written as ``config.yaml`` +
  ``pytorch_model.bin``. The architecture is a YAML in f5-tts's config format (``model_name``).

Outputs of random models are noise; the tests check types, shapes, units and error handling.
``device="auto"`` picks CUDA when there is one, so the same tests run on a GPU machine.
"""

from __future__ import annotations

import inspect
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("nemo", reason="NeMo is not installed (the `gpu` extra: pip install -e '.[gpu]')")
pytest.importorskip("f5_tts", reason="f5-tts is not installed (the `gpu` extra: pip install -e '.[gpu]')")

from models.base import (  # noqa: E402
    Audio,
    InvalidInput,
    Segment,
    STTBackend,
    Transcription,
    TTSBackend,
    Unsupported,
    VoiceReference,
    Word,
)
from models.registry import backend_class, create_backend  # noqa: E402

# f5-tts imports pydub, which warns when no ffmpeg binary is on PATH (not used here).
pytestmark = pytest.mark.filterwarnings("ignore:Couldn't find ffmpeg or avconv:RuntimeWarning")

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["en", "de", "fr", "es"]
NEMO_TEXT = [
    "some call me nature others call me mother nature",
    "the quick brown fox jumps over the lazy dog",
    "speech recognition with word and segment timestamps",
    "hello world this is a tiny test model",
]


@pytest.fixture(scope="module", autouse=True)
def _torchaudio_loads():
    """f5-tts, vocos and NeMo import torchaudio; with the CPU torch build, the CUDA torchaudio
    wheel's native libraries fail to load (see scripts/setup.sh)."""
    try:
        import torchaudio  # noqa: F401
    except OSError as exc:
        pytest.fail(f"`import torchaudio` fails ({exc}); remove torchaudio/lib/*.so as scripts/setup.sh does")


def _speech_16k() -> np.ndarray:
    """5.3 s of real speech (the example clip shipped with f5-tts) at 16 kHz, float32."""
    from importlib.resources import files

    from models.audio import decode_audio, resample

    data = files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav").read_bytes()
    audio = decode_audio(data, "basic_ref_en.wav")
    return resample(audio.samples, audio.sample_rate, 16000)


def _noise(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def _check_transcription(r: Transcription, duration: float, words: bool) -> None:
    assert isinstance(r, Transcription)
    assert isinstance(r.text, str) and r.text == r.text.strip()
    assert isinstance(r.language, str) and r.language
    assert r.duration == pytest.approx(duration, abs=1e-3)
    assert isinstance(r.segments, list)
    for i, seg in enumerate(r.segments):
        assert isinstance(seg, Segment) and seg.id == i and isinstance(seg.text, str)
        assert 0.0 <= seg.start <= seg.end <= r.duration + 1e-6
    assert isinstance(r.words, list)
    for w in r.words:
        assert isinstance(w, Word) and isinstance(w.word, str) and w.word
        assert 0.0 <= w.start <= w.end <= r.duration + 1e-6
    if not words:
        assert r.words == []


# ============================================================================================
# transformers Whisper
# ============================================================================================


def build_tiny_whisper(path: Path, multilingual: bool = True) -> Path:
    """Save a tiny random Whisper checkpoint + processor the way ``save_pretrained`` does."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    path.mkdir(parents=True, exist_ok=True)
    byte_vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    specials = [
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in LANGS],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]
    tok = WhisperTokenizer(vocab=byte_vocab, merges=[])  # adds <|endoftext|> (unk/bos/eos) as id 256
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    tok.save_pretrained(path)
    tok = WhisperTokenizer.from_pretrained(path)  # reload: prefix tokens now resolve
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok).save_pretrained(path)

    cid = tok.convert_tokens_to_ids
    eot = cid("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=80,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=cid("<|startoftranscript|>"),
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    # Built directly (not from_model_config, whose `_from_model_config` flag makes
    # from_pretrained regenerate it from config.json and drop Whisper's fields).
    model.generation_config = GenerationConfig(
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=config.decoder_start_token_id,
        max_length=48,  # keeps random-model decoding short
        no_timestamps_token_id=cid("<|notimestamps|>"),
        prev_sot_token_id=cid("<|startofprev|>"),
        lang_to_id={f"<|{code}|>": cid(f"<|{code}|>") for code in LANGS},
        task_to_id={"transcribe": cid("<|transcribe|>"), "translate": cid("<|translate|>")},
        is_multilingual=multilingual,
        alignment_heads=[[0, 0], [0, 1]],
        begin_suppress_tokens=[cid("Ġ"), eot],
        suppress_tokens=[],
        max_initial_timestamp_index=50,
    )
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    path = build_tiny_whisper(tmp_path_factory.mktemp("whisper"))
    return create_backend("stt", "transformers-whisper", str(path), {"device": "auto"})


def test_whisper_loads(whisper):
    from models.stt.transformers_whisper_stt import TransformersWhisperSTT

    assert isinstance(whisper, TransformersWhisperSTT) and isinstance(whisper, STTBackend)
    assert whisper.sample_rate == 16000
    assert whisper.can_translate is True
    assert whisper.languages == sorted(LANGS)


def test_whisper_transcribes_with_detected_language(whisper):
    audio = _speech_16k()
    r = whisper.transcribe(audio)
    _check_transcription(r, audio.size / 16000, words=False)
    assert r.language in LANGS
    assert r.segments, "a random model still emits tokens (a segment) for 5 s of speech"


def test_whisper_word_timestamps(whisper):
    audio = _speech_16k()
    r = whisper.transcribe(audio, language="de", word_timestamps=True)
    _check_transcription(r, audio.size / 16000, words=True)
    assert r.language == "de"
    if r.text:
        assert r.words, "alignment_heads are configured, so words come with the segments"
    assert whisper.transcribe(audio, language="German").language == "de"  # Whisper names work too


def test_whisper_translate_prompt_and_sampling(whisper):
    audio = _noise(2.0)
    r = whisper.transcribe(audio, language="fr", task="translate", prompt="Bonjour", temperature=0.4)
    _check_transcription(r, 2.0, words=False)
    assert r.language == "fr"
    assert all(seg.temperature == pytest.approx(0.4) for seg in r.segments)


def test_whisper_long_form(whisper):
    audio = _noise(35.0, seed=1)
    stream = list(whisper.transcribe_stream(audio))
    r = stream[-1]
    _check_transcription(r, 35.0, words=False)
    assert stream[:-1] == r.segments


@pytest.mark.parametrize(
    ("audio", "kwargs", "error", "param"),
    [
        (np.zeros(0, np.float32), {}, InvalidInput, "file"),
        (np.zeros((2, 1600), np.float32), {}, InvalidInput, "file"),
        (np.full(1600, np.nan, np.float32), {}, InvalidInput, "file"),
        (np.zeros(1600, np.float32), {"task": "summarize"}, InvalidInput, "task"),
        (np.zeros(1600, np.float32), {"language": "xx"}, InvalidInput, "language"),
        (np.zeros(1600, np.float32), {"temperature": 2.0}, InvalidInput, "temperature"),
    ],
)
def test_whisper_rejects_bad_input(whisper, audio, kwargs, error, param):
    with pytest.raises(error) as info:
        whisper.transcribe(audio, **kwargs)
    assert info.value.param == param


def test_whisper_english_only(tmp_path):
    path = build_tiny_whisper(tmp_path / "whisper-en", multilingual=False)
    stt = create_backend("stt", "transformers-whisper", str(path), {"device": "auto", "dtype": "float32"})
    assert stt.can_translate is False and stt.languages == ["en"]
    with pytest.raises(Unsupported) as info:
        stt.transcribe(_noise(1.0), task="translate")
    assert info.value.param == "task"
    with pytest.raises(Unsupported):
        stt.transcribe(_noise(1.0), language="de")
    r = stt.transcribe(_noise(1.0), language="en")
    _check_transcription(r, 1.0, words=False)
    assert r.language == "en"


# ============================================================================================
# NeMo
# ============================================================================================

_PREPROCESSOR = {
    "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
    "sample_rate": 16000,
    "normalize": "per_feature",
    "window_size": 0.025,
    "window_stride": 0.01,
    "window": "hann",
    "features": 32,
    "n_fft": 512,
    "log": True,
    "frame_splicing": 1,
    "dither": 1e-5,
    "pad_to": 0,
    "pad_value": 0.0,
}
_ENCODER = {
    "_target_": "nemo.collections.asr.modules.ConformerEncoder",
    "feat_in": 32,
    "feat_out": -1,
    "n_layers": 1,
    "d_model": 32,
    "subsampling": "dw_striding",
    "subsampling_factor": 8,
    "subsampling_conv_channels": 16,
    "ff_expansion_factor": 2,
    "self_attention_model": "rel_pos",
    "n_heads": 2,
    "conv_kernel_size": 9,
    "xscaling": True,
    "dropout": 0.0,
    "dropout_att": 0.0,
    "dropout_emb": 0.0,
    "dropout_pre_encoder": 0.0,
}
_TDT_DURATIONS = [0, 1, 2, 3, 4]


def build_tiny_nemo(path: Path, kind: str) -> Path:
    """Save a tiny random Parakeet-style model (``kind``: ``"ctc"`` or ``"tdt"``) as a .nemo file."""
    import torch
    from nemo.collections.asr.models import EncDecCTCModelBPE, EncDecRNNTBPEModel
    from nemo.collections.common.tokenizers.sentencepiece_tokenizer import create_spt_model
    from omegaconf import OmegaConf

    out = path / f"tiny-{kind}.nemo"
    if out.exists():
        return out
    path.mkdir(parents=True, exist_ok=True)
    tok_dir = path / "tokenizer"
    if not (tok_dir / "tokenizer.model").exists():
        text = path / "text.txt"
        text.write_text("\n".join(NEMO_TEXT * 10) + "\n")
        create_spt_model(
            str(text), vocab_size=40, sample_size=-1, do_lower_case=True, tokenizer_type="bpe", output_dir=str(tok_dir)
        )
    common = {
        "sample_rate": 16000,
        "tokenizer": {"dir": str(tok_dir), "type": "bpe"},
        "preprocessor": _PREPROCESSOR,
        "encoder": _ENCODER,
    }
    torch.manual_seed(0)
    if kind == "ctc":
        cfg = {
            **common,
            "decoder": {
                "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
                "feat_in": 32,
                "num_classes": -1,
                "vocabulary": [],
            },
            "decoding": {"strategy": "greedy_batch"},
        }
        model = EncDecCTCModelBPE(cfg=OmegaConf.create(cfg))
    else:
        cfg = {
            **common,
            "model_defaults": {
                "enc_hidden": 32,
                "pred_hidden": 16,
                "joint_hidden": 16,
                "tdt_durations": _TDT_DURATIONS,
                "num_tdt_durations": len(_TDT_DURATIONS),
            },
            "decoder": {
                "_target_": "nemo.collections.asr.modules.RNNTDecoder",
                "normalization_mode": None,
                "random_state_sampling": False,
                "blank_as_pad": True,
                "prednet": {"pred_hidden": 16, "pred_rnn_layers": 1, "t_max": None, "dropout": 0.0},
            },
            "joint": {
                "_target_": "nemo.collections.asr.modules.RNNTJoint",
                "log_softmax": None,
                "preserve_memory": False,
                "fuse_loss_wer": False,
                "num_extra_outputs": len(_TDT_DURATIONS),
                "jointnet": {
                    "joint_hidden": 16,
                    "activation": "relu",
                    "dropout": 0.0,
                    "encoder_hidden": 32,
                    "pred_hidden": 16,
                },
            },
            "decoding": {
                "strategy": "greedy_batch",
                "model_type": "tdt",
                "durations": _TDT_DURATIONS,
                "greedy": {"max_symbols": 10},
            },
            "loss": {
                "loss_name": "tdt",
                "tdt_kwargs": {
                    "fastemit_lambda": 0.0,
                    "clamp": -1.0,
                    "durations": _TDT_DURATIONS,
                    "sigma": 0.02,
                    "omega": 0.1,
                },
            },
        }
        model = EncDecRNNTBPEModel(cfg=OmegaConf.create(cfg))
    model.save_to(str(out))
    return out


@pytest.fixture(scope="module")
def nemo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("nemo")


@pytest.fixture(scope="module", params=["ctc", "tdt"])
def nemo(request, nemo_dir):
    path = build_tiny_nemo(nemo_dir, request.param)
    return create_backend("stt", "nemo", str(path), {"device": "auto"})


def test_nemo_loads(nemo):
    from models.stt.nemo_stt import NemoSTT

    assert isinstance(nemo, NemoSTT) and isinstance(nemo, STTBackend)
    assert nemo.sample_rate == 16000
    assert nemo.can_translate is False


def test_nemo_transcribes_with_timestamps(nemo):
    audio = _speech_16k()
    r = nemo.transcribe(audio, word_timestamps=True)
    _check_transcription(r, audio.size / 16000, words=True)
    assert r.language == "en"
    if r.text:
        assert r.segments and r.words
        assert " ".join(w.word for w in r.words) == " ".join(r.text.split())
    r = nemo.transcribe(audio, language="de", prompt="ignored", temperature=0.3)
    _check_transcription(r, audio.size / 16000, words=False)
    assert r.language == "de"


def test_nemo_short_clip(nemo):
    r = nemo.transcribe(_noise(0.01))  # padded to the encoder's minimum
    _check_transcription(r, 0.01, words=False)


def test_nemo_rejects_bad_input(nemo):
    with pytest.raises(Unsupported) as info:
        nemo.transcribe(_noise(1.0), task="translate")
    assert info.value.param == "task"
    for audio in (np.zeros(0, np.float32), np.zeros((1, 100), np.float32)):
        with pytest.raises(InvalidInput) as info:
            nemo.transcribe(audio)
        assert info.value.param == "file"
    with pytest.raises(InvalidInput) as info:
        nemo.transcribe(_noise(1.0), temperature=-1)
    assert info.value.param == "temperature"


def test_nemo_directory_source_and_languages(nemo_dir):
    from models.stt.nemo_stt import NemoSTT

    path = build_tiny_nemo(nemo_dir, "ctc")
    single = nemo_dir / "only"
    single.mkdir(exist_ok=True)
    (single / path.name).write_bytes(path.read_bytes())
    stt = NemoSTT(source=str(single), device="auto", default_language="fr", languages=["fr", "de"])
    assert stt.languages == ["fr", "de"]
    assert stt.transcribe(_noise(1.0)).language == "fr"
    with pytest.raises(InvalidInput) as info:
        stt.transcribe(_noise(1.0), language="en")
    assert info.value.param == "language"
    with pytest.raises(FileNotFoundError):
        NemoSTT(source=str(nemo_dir / "tokenizer"), device="cpu")  # a directory without a .nemo


# ============================================================================================
# F5-TTS
# ============================================================================================

_DIT_ARCH = {
    "dim": 32,
    "depth": 2,
    "heads": 2,
    "dim_head": 16,
    "ff_mult": 2,
    "text_dim": 16,
    "text_mask_padding": True,
    "qk_norm": None,
    "conv_layers": 1,
    "pe_attn_head": None,
    "attn_backend": "torch",
    "attn_mask_enabled": False,
    "checkpoint_activations": False,
}


def build_tiny_f5(path: Path) -> dict[str, Path]:
    """Save a tiny random F5-TTS (DiT in CFM) in both checkpoint formats, its config YAML and a
    tiny Vocos; returns their paths."""
    from importlib.resources import files

    import torch
    from ema_pytorch import EMA
    from f5_tts.infer import utils_infer as u
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer
    from safetensors.torch import save_file
    from vocos import Vocos

    path.mkdir(parents=True, exist_ok=True)
    config = path / "F5TTS_tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "name": "F5TTS_tiny",
                    "tokenizer": "custom",
                    "backbone": "DiT",
                    "arch": _DIT_ARCH,
                    "mel_spec": {
                        "target_sample_rate": u.target_sample_rate,
                        "n_mel_channels": u.n_mel_channels,
                        "hop_length": u.hop_length,
                        "win_length": u.win_length,
                        "n_fft": u.n_fft,
                        "mel_spec_type": "vocos",
                    },
                }
            }
        )
    )
    vocab_char_map, vocab_size = get_tokenizer(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), "custom")
    torch.manual_seed(0)
    model = CFM(
        transformer=DiT(**_DIT_ARCH, text_num_embeds=vocab_size, mel_dim=u.n_mel_channels),
        mel_spec_kwargs=dict(
            n_fft=u.n_fft,
            hop_length=u.hop_length,
            win_length=u.win_length,
            n_mel_channels=u.n_mel_channels,
            target_sample_rate=u.target_sample_rate,
            mel_spec_type="vocos",
        ),
        vocab_char_map=vocab_char_map,
    )
    ema = EMA(model, include_online_model=False)
    # f5-tts's trainer checkpoint (Trainer.save_checkpoint keeps these keys, among others)
    pt = path / "model_0.pt"
    torch.save({"ema_model_state_dict": ema.state_dict(), "update": 0}, pt)
    # the released format: the EMA weights alone in safetensors
    st = path / "model_0.safetensors"
    save_file({k: v.contiguous() for k, v in ema.state_dict().items() if k not in ("initted", "step")}, str(st))

    vocoder = path / "vocos"
    vocoder.mkdir(exist_ok=True)
    (vocoder / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "feature_extractor": {
                    "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                    "init_args": {
                        "sample_rate": 24000,
                        "n_fft": 1024,
                        "hop_length": 256,
                        "n_mels": 100,
                        "padding": "center",
                    },
                },
                "backbone": {
                    "class_path": "vocos.models.VocosBackbone",
                    "init_args": {"input_channels": 100, "dim": 32, "intermediate_dim": 64, "num_layers": 1},
                },
                "head": {
                    "class_path": "vocos.heads.ISTFTHead",
                    "init_args": {"dim": 32, "n_fft": 1024, "hop_length": 256, "padding": "center"},
                },
            }
        )
    )
    torch.save(Vocos.from_hparams(str(vocoder / "config.yaml")).state_dict(), vocoder / "pytorch_model.bin")

    import soundfile as sf

    t = np.arange(int(1.5 * 22050)) / 22050
    voice = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(path / "narrator.wav", voice, 22050)
    return {"config": config, "pt": pt, "safetensors": st, "vocoder": vocoder, "voice": path / "narrator.wav"}


@pytest.fixture(scope="module")
def f5_files(tmp_path_factory):
    return build_tiny_f5(tmp_path_factory.mktemp("f5"))


def _f5_options(files: dict, **extra) -> dict:
    return {
        "model_name": str(files["config"]),
        "vocoder": str(files["vocoder"]),
        "device": "auto",
        "nfe_step": 2,
        **extra,
    }


@pytest.fixture(scope="module")
def f5(f5_files):
    options = _f5_options(f5_files, voices={"Narrator": {"audio": str(f5_files["voice"]), "text": "A test voice."}})
    return create_backend("tts", "f5-tts", str(f5_files["safetensors"]), options)


def _check_chunks(chunks: list[np.ndarray], n: int | None = None) -> None:
    assert chunks and (n is None or len(chunks) == n)
    for c in chunks:
        assert isinstance(c, np.ndarray) and c.dtype == np.float32 and c.ndim == 1 and c.size > 0
        assert np.isfinite(c).all() and np.abs(c).max() <= 1.0


def test_f5_loads(f5):
    from models.tts.f5_tts import F5TTS

    assert isinstance(f5, F5TTS) and isinstance(f5, TTSBackend)
    assert f5.sample_rate == 24000
    assert f5.supports_voice_cloning is True
    assert f5.voices() == ["default", "Narrator"]


def test_f5_one_chunk_per_sentence_without_tags(f5, monkeypatch):
    pieces: list[str] = []
    infer = f5._infer

    def spy(piece, *args):
        pieces.append(piece)
        return infer(piece, *args)

    monkeypatch.setattr(f5, "_infer", spy)
    chunks = list(f5.synthesize("Hello there [laughing]. How are you today? [sigh]", voice="narrator"))
    _check_chunks(chunks, 2)
    assert pieces == ["Hello there.", "How are you today?"]
    assert list(f5.synthesize("[sigh] [pause]")) == []  # nothing to say


def test_f5_splits_long_sentences_within_budget(f5):
    ref_audio, ref_text = f5._voices["default"]
    ref_s = ref_audio.shape[-1] / f5.sample_rate
    budget = int(len(ref_text.encode()) / ref_s * (22 - ref_s))
    text = "One short sentence. " + " ".join(f"word{i}" for i in range(120)) + ", and a clause; then more."
    pieces = f5._pieces(text, ref_audio, ref_text, 1.0)
    assert pieces[0] == "One short sentence."
    assert len(pieces) > 2 and all(len(p.encode()) <= budget for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_f5_speed_and_openai_voice_names(f5):
    slow = list(f5.synthesize("Speed changes the planned duration.", voice="alloy", speed=0.5))
    fast = list(f5.synthesize("Speed changes the planned duration.", speed=2.0))
    _check_chunks(slow, 1)
    _check_chunks(fast, 1)
    assert fast[0].size < slow[0].size


def test_f5_voice_cloning(f5):
    rate = 16000
    t = np.arange(2 * rate) / rate
    clip = np.concatenate([np.zeros(rate // 2), 0.3 * np.sin(2 * np.pi * 150 * t), np.zeros(rate // 2)])
    ref = VoiceReference(audio=Audio(clip.astype(np.float32), rate), text="This is my voice")
    _check_chunks(list(f5.synthesize("Cloned voice here. And a second sentence!", reference=ref)), 2)


def test_f5_cancel(f5):
    cancel = threading.Event()
    cancel.set()
    assert list(f5.synthesize("One. Two.", cancel=cancel)) == []
    cancel.clear()
    got = []
    for chunk in f5.synthesize("One sentence here. Two sentences here. Three sentences here.", cancel=cancel):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"text": "  "}, "input"),
        ({"text": "Hi.", "voice": "nobody"}, "voice"),
        ({"text": "Hi.", "speed": 5.0}, "speed"),
        ({"text": "Hi.", "speed": "fast"}, "speed"),
        (
            {"text": "Hi.", "reference": VoiceReference(Audio(np.full(24000, 0.2, np.float32), 24000), " ")},
            "reference_text",
        ),
        (
            {"text": "Hi.", "reference": VoiceReference(Audio(np.zeros(24000, np.float32), 24000), "Silence.")},
            "reference_audio",
        ),
        (
            {"text": "Hi.", "reference": VoiceReference(Audio(np.zeros(0, np.float32), 24000), "Nothing.")},
            "reference_audio",
        ),
        (
            {"text": "Hi.", "reference": VoiceReference(Audio(np.full(20 * 8000, 0.2, np.float32), 8000), "Long.")},
            "reference_audio",
        ),
    ],
)
def test_f5_rejects_bad_input(f5, kwargs, param):
    with pytest.raises(InvalidInput) as info:
        list(f5.synthesize(**kwargs))
    assert info.value.param == param


def test_f5_trainer_checkpoint_and_config_errors(f5_files):
    from models.tts.f5_tts import F5TTS

    tts = F5TTS(source=str(f5_files["pt"]), **_f5_options(f5_files))
    assert tts.voices() == ["default"]
    _check_chunks(list(tts.synthesize("Loaded from a trainer checkpoint.")), 1)
    with pytest.raises(ValueError, match="unknown F5-TTS model_name"):
        F5TTS(source=str(f5_files["pt"]), **_f5_options(f5_files, model_name="F5TTS_v9_Huge"))
    with pytest.raises(FileNotFoundError):
        F5TTS(source=str(f5_files["pt"].with_name("missing.pt")), **_f5_options(f5_files))
    with pytest.raises(ValueError, match="default_voice_audio"):
        F5TTS(source=str(f5_files["pt"]), **_f5_options(f5_files, default_voice_text="Text without a clip."))
    with pytest.raises(ValueError, match="transcript"):
        F5TTS(source=str(f5_files["pt"]), **_f5_options(f5_files, voices={"x": {"audio": str(f5_files["voice"])}}))


def test_f5_hub_sources_go_through_huggingface_hub(f5_files, monkeypatch):
    """``hf://owner/repo/path`` checkpoints and hub vocoder ids are fetched with hf_hub_download
    (here replaced by a fake that serves the tiny files)."""
    import huggingface_hub

    from models.tts import f5_tts

    calls = []
    local = {
        "F5TTS_v1_Base/model_1250000.safetensors": f5_files["safetensors"],
        "config.yaml": f5_files["vocoder"] / "config.yaml",
        "pytorch_model.bin": f5_files["vocoder"] / "pytorch_model.bin",
    }

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str(local[filename])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert f5_tts._fetch("hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors") == str(f5_files["safetensors"])
    assert f5_tts._vocoder_dir("charactr/vocos-mel-24khz") == str(f5_files["vocoder"])
    assert calls == [
        ("SWivid/F5-TTS", "F5TTS_v1_Base/model_1250000.safetensors"),
        ("charactr/vocos-mel-24khz", "config.yaml"),
        ("charactr/vocos-mel-24khz", "pytorch_model.bin"),
    ]
    with pytest.raises(ValueError):
        f5_tts._fetch("hf://SWivid/F5-TTS")


# ============================================================================================
# the GPU profiles configure these backends with options the constructors accept
# ============================================================================================


@pytest.mark.parametrize("profile", ["gpu-24g", "gpu-multinode"])
def test_profile_options_match_constructors(profile):
    doc = yaml.safe_load((ROOT / "configs" / f"{profile}.yaml").read_text())
    models = doc["applications"][0]["args"]["models"]
    checked = 0
    for m in models:
        if (m["role"], m["backend"]) in {("stt", "nemo"), ("stt", "transformers-whisper"), ("tts", "f5-tts")}:
            cls = backend_class(m["role"], m["backend"])
            inspect.signature(cls).bind(source=m["source"], **(m.get("options") or {}))
            checked += 1
    assert checked >= 2
