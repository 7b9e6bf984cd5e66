"""Speech-to-text: request latency and real-time factor per audio file."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from benchmarks.scenario import Input, RequestFailed, Scenario, resolve_model_path
from benchmarks.scenarios import register

MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}


@register
class TranscriptionScenario(Scenario):
    """``POST /v1/audio/transcriptions`` (multipart ``file``, ``response_format=json``) with each
    clip in turn (by default ``shared/audio/basic_ref_en.wav``, 5.3 s, and
    ``story_main_44k.flac``, 6.7 s).

    Per request: ``latency_ms`` (upload sent → JSON parsed) and ``rtf`` (real-time factor:
    latency ÷ audio duration; below 1 is faster than real time). The load phase adds
    ``audio_s_per_s``: seconds of audio transcribed per wall-clock second.

    Bare baseline: ``faster_whisper.WhisperModel`` from the profile's ``source`` and
    ``options`` (``device``, ``compute_type``...; ``cpu_threads`` from
    :meth:`Scenario.baseline_threads` unless the options set it), ``transcribe()`` of the same
    file bytes with the server's decoding settings (beam 5, temperature fallback), segments
    consumed.
    """

    name = "transcription"
    title = "Transcription"
    route = "POST /v1/audio/transcriptions"
    metrics = ("latency_ms", "rtf")
    rates = {"audio_s_per_s": "audio_s"}
    baseline_role = "stt"
    baseline_backends = ("faster-whisper",)
    baseline_modules = ("faster_whisper", "ctranslate2")

    def inputs(self) -> list[Input]:
        import soundfile

        out = []
        for path in self.ctx.audio_files:
            path = Path(path)
            info = soundfile.info(str(path))
            out.append(
                Input(
                    path.name,
                    {"name": path.name, "bytes": path.read_bytes(), "seconds": info.duration},
                    {
                        "path": str(path),
                        "audio_s": round(info.duration, 3),
                        "sample_rate": info.samplerate,
                        "format": info.format,
                    },
                )
            )
        if not out:
            raise FileNotFoundError("no audio files for the transcription scenario")
        return out

    def describe(self) -> dict:
        return {
            "model": self.ctx.model_ids.get("stt"),
            "response_format": "json",
            "files": [str(p) for p in self.ctx.audio_files],
        }

    def request(self, client: Any, inp: Input) -> dict:
        d = inp.data
        suffix = Path(d["name"]).suffix.lower()
        t0 = time.perf_counter()
        r = client.post(
            self.url("/v1/audio/transcriptions"),
            files={"file": (d["name"], d["bytes"], MIME.get(suffix, "application/octet-stream"))},
            data={"model": self.ctx.model_ids["stt"], "response_format": "json"},
            timeout=self.settings.timeout_s,
        )
        if r.status_code != 200:
            raise RequestFailed(f"HTTP {r.status_code}: {r.text[:200]}")
        text = r.json().get("text", "")
        latency = time.perf_counter() - t0
        if not text.strip():
            raise RequestFailed("empty transcript")
        return {
            "latency_ms": latency * 1000.0,
            "rtf": latency / d["seconds"],
            "audio_s": d["seconds"],
            "bytes": len(d["bytes"]),
        }

    # ------------------------------------------------------------------ baseline
    def baseline_setup(self) -> Any:
        from faster_whisper import WhisperModel

        model = self.baseline_model()
        opts = model["options"]
        device = opts.get("device", "auto")
        compute_type = opts.get("compute_type") or ("int8" if device == "cpu" else "default")
        threads = int(opts.get("cpu_threads") or self.baseline_threads() or 0)
        whisper = WhisperModel(
            resolve_model_path(model),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=int(opts.get("num_workers", 1)),
        )
        return {
            "model": whisper,
            "beam_size": int(opts.get("beam_size", 5)),
            "vad_filter": bool(opts.get("vad_filter", False)),
            "device": device,
            "compute_type": compute_type,
            "threads": threads or "default",
        }

    def baseline_call(self, model: Any, inp: Input) -> dict:
        d = inp.data
        t0 = time.perf_counter()
        segments, _info = model["model"].transcribe(
            io.BytesIO(d["bytes"]), beam_size=model["beam_size"], vad_filter=model["vad_filter"]
        )
        text = "".join(s.text for s in segments)  # decoding is lazy: consume the segments
        latency = time.perf_counter() - t0
        if not text.strip():
            raise RequestFailed("empty transcript")
        return {"latency_ms": latency * 1000.0, "rtf": latency / d["seconds"], "audio_s": d["seconds"]}

    def baseline_info(self, model: Any) -> dict:
        return {
            "library": "faster_whisper.WhisperModel",
            "device": model["device"],
            "compute_type": model["compute_type"],
            "beam_size": model["beam_size"],
            "cpu_threads": model["threads"],
        }
