"""Text-to-speech: time to first audio byte and real-time factor."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.scenario import Input, RequestFailed, Scenario, resolve_model_path
from benchmarks.scenarios import register

#: Two sentences, so the first audio arrives before the whole text is synthesised.
TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank. "
    "Later that afternoon, the children walked home through the quiet park."
)
#: The endpoint's ``pcm`` output: 24 kHz mono PCM16 little-endian (OpenAI's convention).
PCM_RATE = 24000


@register
class SpeechScenario(Scenario):
    """``POST /v1/audio/speech`` with ``response_format: "pcm"`` (raw 24 kHz PCM16, so no
    encoder cost and the audio duration is bytes ÷ 48000), read as a stream.

    Per request: ``latency_ms`` (request sent → last byte), ``ttfb_ms`` (→ first audio byte),
    ``rtf`` (real-time factor: latency ÷ seconds of audio returned). The load phase adds
    ``audio_s_per_s``: seconds of speech produced per wall-clock second.

    Bare baseline: ``piper.PiperVoice`` loaded from the profile's ``source`` (and its
    ``.onnx.json`` config), ``synthesize()`` of the same text; ``ttfb_ms`` is the first chunk
    (Piper yields one per sentence), the audio duration its samples ÷ the voice's sample rate.
    """

    name = "speech"
    title = "Speech (TTS)"
    route = "POST /v1/audio/speech"
    metrics = ("latency_ms", "ttfb_ms", "rtf")
    ratio_metrics = ("latency_ms", "ttfb_ms")
    rates = {"audio_s_per_s": "audio_s"}
    baseline_role = "tts"
    baseline_backends = ("piper",)
    baseline_modules = ("piper", "onnxruntime")

    def inputs(self) -> list[Input]:
        return [Input("two_sentences", TEXT, {"text": TEXT, "characters": len(TEXT)})]

    def describe(self) -> dict:
        return {"model": self.ctx.model_ids.get("tts"), "voice": "alloy", "response_format": "pcm", "text": TEXT}

    def request(self, client: Any, inp: Input) -> dict:
        body = {"model": self.ctx.model_ids["tts"], "input": inp.data, "voice": "alloy", "response_format": "pcm"}
        t0 = time.perf_counter()
        first = None
        n = 0
        with client.post(self.url("/v1/audio/speech"), json=body, stream=True, timeout=self.settings.timeout_s) as r:
            if r.status_code != 200:
                raise RequestFailed(f"HTTP {r.status_code}: {r.text[:200]}")
            for piece in r.iter_content(chunk_size=None):
                if piece:
                    if first is None:
                        first = time.perf_counter()
                    n += len(piece)
        end = time.perf_counter()
        if not n or first is None:
            raise RequestFailed("no audio")
        audio_s = n / 2 / PCM_RATE
        return {
            "latency_ms": (end - t0) * 1000.0,
            "ttfb_ms": (first - t0) * 1000.0,
            "rtf": (end - t0) / audio_s,
            "audio_s": audio_s,
            "bytes": n,
        }

    # ------------------------------------------------------------------ baseline
    def baseline_setup(self) -> Any:
        from piper import PiperVoice

        model = self.baseline_model()
        path = resolve_model_path(model)
        config = model["options"].get("config")
        if config:
            from models.sources import resolve_source

            config = resolve_source(config)
        return PiperVoice.load(path, config_path=config or path + ".json", use_cuda=False)

    def baseline_call(self, model: Any, inp: Input) -> dict:
        t0 = time.perf_counter()
        first = None
        samples = 0
        for chunk in model.synthesize(inp.data):
            if first is None:
                first = time.perf_counter()
            samples += len(chunk.audio_float_array)
        end = time.perf_counter()
        if not samples or first is None:
            raise RequestFailed("no audio")
        audio_s = samples / model.config.sample_rate
        return {
            "latency_ms": (end - t0) * 1000.0,
            "ttfb_ms": (first - t0) * 1000.0,
            "rtf": (end - t0) / audio_s,
            "audio_s": audio_s,
        }

    def baseline_info(self, model: Any) -> dict:
        # onnxruntime sizes its own thread pool (it ignores OMP_NUM_THREADS), in the replica too
        return {
            "library": "piper.PiperVoice",
            "device": "cpu",
            "sample_rate": model.config.sample_rate,
            "threads": "onnxruntime default",
        }
