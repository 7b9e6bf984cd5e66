"""Realtime voice: sessions streaming real speech at real-time pace, voice-to-voice latency."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from benchmarks.results import PhaseResult, measure
from benchmarks.scenario import Input, RequestFailed, Scenario, cascade_id, resolve_model_path
from benchmarks.scenarios import register

#: Realtime audio: PCM16 mono 24 kHz in 2048-sample (~85 ms) chunks, like the Naia client.
RATE = 24000
CHUNK = 2048
#: The reference clip pauses 0.8 s between its phrases; one turn needs a longer silence.
SILENCE_MS = 1000
PERSONA = "You are Naia, a friendly voice assistant."


def _pcm16(path) -> tuple[bytes, float]:
    import numpy as np
    import soundfile as sf

    from models.audio import resample

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = resample(data.mean(axis=1), rate, RATE)
    return (np.clip(mono, -1, 1) * 32767).astype("<i2").tobytes(), len(mono) / RATE


#: Turn detection of the main flow: the clip's 0.8 s pause must not end the turn.
TURN_DETECTION = {"type": "server_vad", "silence_duration_ms": SILENCE_MS}
#: Turn detection of the pipelines comparison, as the Naia client sends it: server_vad with no
#: silence_duration_ms of its own (500 ms; the operator's server_vad_semantic_end may end it early).
NAIA_TURN_DETECTION = {"type": "server_vad"}
#: The pipelines comparison speaks the clip's first phrase, "Some call me nature." (2.4 s).
FIRST_PHRASE_S = 2.4


class _Session:
    """One realtime WebSocket session (the ``websockets`` sync client; under the load phase's
    gevent patching its socket and threads are cooperative).

    Args:
        url: the ``/v1/realtime`` URL.
        timeout_s: per-receive timeout (s).
        session: ``session.update`` fields over the scenario's defaults (``turn_detection``,
            omniserve's ``pipeline`` extension...).
    """

    def __init__(self, url: str, timeout_s: float, session: dict | None = None):
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=timeout_s)
        self.timeout_s = timeout_s
        first = self.recv()
        if first.get("type") != "session.created":
            raise RequestFailed(f"expected session.created, got {first.get('type')}")
        self.send(
            {
                "type": "session.update",
                "session": {
                    "modalities": ["text", "audio"],
                    "input_audio_format": "pcm16",
                    "output_audio_format": "pcm16",
                    "instructions": PERSONA,
                    "input_audio_transcription": {"language": "en"},
                    "turn_detection": TURN_DETECTION,
                    **(session or {}),
                },
            }
        )

    def send(self, event: dict) -> None:
        self.ws.send(json.dumps(event))

    def recv(self, timeout: float | None = None) -> dict:
        return json.loads(self.ws.recv(timeout=self.timeout_s if timeout is None else timeout))

    def close(self) -> None:
        self.ws.close()


@register
class RealtimeScenario(Scenario):
    """``/v1/realtime``: each user opens a session per turn, speaks the reference clip at
    real-time pace (2048-sample chunks, then silence, as a microphone keeps sending) and waits
    for the spoken reply.

    Per turn: ``voice_to_voice_ms`` (end of the user's speech → first ``response.audio.delta``,
    measured by the client), the server's breakdown from ``response.done.response.metadata``
    (``turn_detector_wait_ms``: silence heard before the turn was decided; ``stt_ms`` and
    ``stt_overlap_ms``, the part of it run before the decision; ``llm_first_token_ms``;
    ``first_clause_ms``: response start → first text sent to TTS; ``tts_first_chunk_ms``),
    ``speculation_hit`` (1 when the preemptive LLM stream was used), ``late_chunks`` (audio
    deltas that arrived after the client would have needed them for gapless playback from the
    first delta) and ``reply_audio_s``. A session that closes or errors mid-turn is a failed
    sample (dropped session).

    Pipelines: the clip's first phrase, turn by turn with the two pipelines alternating
    (``session.pipeline`` = ``sequential`` / ``speculative``) and ``server_vad`` as the Naia
    client asks for it, each reply cancelled at its first audio delta, under ``pipelines``,
    with the speculative ÷ sequential p50 ratio.
    Paused speech: :mod:`benchmarks.paused_speech` (false cut-offs of ``server_vad`` 500 ms and
    ``semantic_vad`` medium), under ``paused_speech``.

    Bare baseline: the same clip through faster-whisper, the LLM's decode loop up to its first
    sentence, and piper's first sentence, in one process; ``voice_to_voice_ms`` = the same VAD
    wait + STT + LLM to first sentence + TTS first chunk.
    """

    name = "realtime"
    title = "Realtime voice-to-voice"
    route = "WS /v1/realtime"
    metrics = (
        "voice_to_voice_ms",
        "turn_detector_wait_ms",
        "stt_ms",
        "stt_overlap_ms",
        "llm_first_token_ms",
        "first_clause_ms",
        "tts_first_chunk_ms",
        "server_voice_to_voice_ms",
        "speculation_hit",
        "late_chunks",
        "reply_audio_s",
    )
    ratio_metrics = ("voice_to_voice_ms", "stt_ms", "tts_first_chunk_ms")
    headline = "voice_to_voice_ms"
    rates = {"turns_per_s": "turns"}
    baseline_role = "llm"
    baseline_backends = ("transformers",)
    baseline_modules = ("transformers", "faster_whisper", "piper")

    def inputs(self) -> list[Input]:
        clip = next(p for p in self.ctx.audio_files if p.name == "basic_ref_en.wav")
        pcm, seconds = _pcm16(clip)
        key = "basic_ref_en"
        if self.settings.smoke:  # its first phrase only ("Some call me nature."): a shorter turn
            pcm, seconds, key = pcm[: int(2.4 * RATE) * 2], 2.4, "basic_ref_en_first_phrase"
        return [Input(key, pcm, {"speech_s": round(seconds, 2), "silence_duration_ms": SILENCE_MS})]

    def describe(self) -> dict:
        return {"persona": PERSONA, "chunk_samples": CHUNK, "silence_duration_ms": SILENCE_MS, "pace": "real time"}

    def new_client(self) -> Any:
        """The session URL: each turn opens a fresh session (outside the timed window), so every
        turn has the same one-turn context as the bare pipeline it is compared with."""
        base = self.ctx.base_url.rstrip("/").replace("http://", "ws://").replace("https://", "wss://")
        return f"{base}/v1/realtime?model={cascade_id(self.ctx)}"

    def close_client(self, client: Any) -> None:
        pass

    def request(self, client: str, inp: Input, session: dict | None = None, first_audio_only: bool = False) -> dict:
        """One turn in a fresh session; ``first_audio_only`` cancels the reply at its first audio
        delta (``response.cancel``): the latency and the server's breakdown are known by then."""
        conn = _Session(client, self.settings.timeout_s, session)
        try:
            return self._turn(conn, inp, first_audio_only)
        finally:
            conn.close()

    def extra_blocks(self) -> dict:
        """After the standard flow (endpoint vs bare baseline): the two pipelines compared turn
        by turn and the paused-speech cut-off set (see the class docstring)."""
        from benchmarks.paused_speech import run_paused_speech

        return {
            "pipelines": self._pipelines(),
            "paused_speech": run_paused_speech(self.new_client(), self.settings.timeout_s, smoke=self.settings.smoke),
        }

    def _pipelines(self) -> dict:
        clip = next(p for p in self.ctx.audio_files if p.name == "basic_ref_en.wav")
        pcm, _ = _pcm16(clip)
        inp = Input("basic_ref_en_first_phrase", pcm[: int(FIRST_PHRASE_S * RATE) * 2], {"speech_s": FIRST_PHRASE_S})
        url = self.new_client()
        samples: dict[str, list[dict]] = {"sequential": [], "speculative": []}
        turns = 1 if self.settings.smoke else max(2, 2 * self.settings.repeats)
        if not self.settings.smoke:
            for name in ("sequential", "speculative"):  # warm-up, not recorded
                measure(_Pinned(self, name), url, inp)
        for i in range(turns):  # alternate which pipeline goes first: no order bias
            for name in ("sequential", "speculative") if i % 2 == 0 else ("speculative", "sequential"):
                samples[name].append(measure(_Pinned(self, name), url, inp))
        out: dict[str, Any] = {"turn_detection": NAIA_TURN_DETECTION, "input": inp.key, "turns": turns}
        for name, got in samples.items():
            busy = sum(s.get("elapsed_s", 0.0) for s in got)
            out[name] = PhaseResult(samples=got, wall_s=busy, users=1).report(self)
        p50 = {n: (out[n]["metrics"].get("voice_to_voice_ms") or {}).get("p50") for n in samples}
        out["speculative_over_sequential_p50"] = (
            round(p50["speculative"] / p50["sequential"], 3) if p50["speculative"] and p50["sequential"] else None
        )
        return out

    def _turn(self, client: _Session, inp: Input, first_audio_only: bool = False) -> dict:
        pcm: bytes = inp.data
        step = CHUNK * 2
        t0 = time.perf_counter()
        for i, off in enumerate(range(0, len(pcm), step)):
            client.send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[off : off + step]).decode()}
            )
            _sleep_until(t0 + (i + 1) * CHUNK / RATE)
        t_speech_end = t0 + len(pcm) / 2 / RATE
        silence = base64.b64encode(b"\x00\x00" * CHUNK).decode()
        first_audio = None
        audio_s = 0.0
        late = 0
        deadline = time.perf_counter() + self.settings.timeout_s
        next_silence = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now > deadline:
                raise RequestFailed("no response.done before the timeout")
            if first_audio is None and now >= next_silence:  # the microphone keeps sending
                client.send({"type": "input_audio_buffer.append", "audio": silence})
                next_silence += CHUNK / RATE
            try:
                ev = client.recv(
                    timeout=max(0.005, next_silence - time.perf_counter()) if first_audio is None else None
                )
            except TimeoutError:
                continue
            kind = ev.get("type")
            if kind == "response.audio.delta":
                t = time.perf_counter()
                if first_audio is None:
                    first_audio = t
                    if first_audio_only:
                        client.send({"type": "response.cancel"})
                elif t > first_audio + audio_s:  # the player would have run dry before this chunk
                    late += 1
                audio_s += len(base64.b64decode(ev["delta"])) / 2 / RATE
            elif kind == "error":
                raise RequestFailed(f"error event: {ev['error'].get('message')}")
            elif kind == "response.done":
                status = ev["response"]["status"]
                if status != "completed" and not (first_audio_only and status == "cancelled"):
                    raise RequestFailed(f"response {status}")
                if first_audio is None:
                    raise RequestFailed("the reply had no audio")
                meta = dict(ev["response"].get("metadata") or {})
                sample = {
                    k: float(meta[k])
                    for k in (
                        "turn_detector_wait_ms",
                        "stt_ms",
                        "stt_overlap_ms",
                        "llm_first_token_ms",
                        "first_clause_ms",
                        "tts_first_chunk_ms",
                    )
                    if k in meta
                }
                sample.update(
                    voice_to_voice_ms=(first_audio - t_speech_end) * 1000.0,
                    server_voice_to_voice_ms=(
                        float(meta["voice_to_voice_ms"]) if "voice_to_voice_ms" in meta else None
                    ),
                    speculation_hit=1.0 if meta.get("speculation") == "hit" else 0.0,
                    turn_detector=meta.get("turn_detector"),
                    late_chunks=late,
                    reply_audio_s=audio_s,
                    turns=1,
                )
                if first_audio_only:  # the reply was cut short on purpose
                    del sample["late_chunks"], sample["reply_audio_s"]
                return sample

    # ------------------------------------------------------------------ bare pipeline
    def baseline_setup(self) -> Any:
        from faster_whisper import WhisperModel
        from piper import PiperVoice

        from models.llm.transformers_llm import TransformersChat

        by_role = self.ctx.profile["by_role"]
        threads = self.baseline_threads()
        llm_cfg, stt_cfg, tts_cfg = by_role["llm"], by_role["stt"], by_role["tts"]
        llm = TransformersChat(
            source=llm_cfg["source"],
            torch_threads=threads,
            **{k: v for k, v in (llm_cfg.get("options") or {}).items() if k == "gguf_file"},
        )
        stt = WhisperModel(resolve_model_path(stt_cfg), device="cpu", compute_type="int8", cpu_threads=threads or 0)
        path = resolve_model_path(tts_cfg)
        tts = PiperVoice.load(path, config_path=path + ".json")
        return {"llm": llm, "stt": stt, "tts": tts}

    def baseline_call(self, model: Any, inp: Input) -> dict:
        import numpy as np

        from deployments.realtime.settings import FORMAT_RULES
        from deployments.realtime.text import SentenceSplitter
        from models.audio import resample
        from models.base import GenerationParams

        audio = np.frombuffer(inp.data, dtype="<i2").astype(np.float32) / 32768.0
        t0 = time.perf_counter()
        segments, _ = model["stt"].transcribe(resample(audio, RATE, 16000), language="en", beam_size=1)
        text = " ".join(s.text.strip() for s in segments)
        t1 = time.perf_counter()
        splitter, first = SentenceSplitter(), None
        messages = [{"role": "system", "content": f"{PERSONA}\n\n{FORMAT_RULES}"}, {"role": "user", "content": text}]
        for chunk in model["llm"].generate(messages, GenerationParams(max_tokens=256, temperature=0.8)):
            done = splitter.feed(chunk.text)
            if done:
                first = done[0]
                break
        first = first or (splitter.flush() or ["Hello."])[0]
        t2 = time.perf_counter()
        next(iter(model["tts"].synthesize(first)))
        t3 = time.perf_counter()
        stt_ms, llm_ms, tts_ms = (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000
        return {
            "voice_to_voice_ms": SILENCE_MS + stt_ms + llm_ms + tts_ms,
            "turn_detector_wait_ms": SILENCE_MS,
            "stt_ms": stt_ms,
            "first_clause_ms": llm_ms,
            "tts_first_chunk_ms": tts_ms,
            "turns": 1,
        }

    def baseline_info(self, model: Any) -> dict:
        return {
            "pipeline": "faster-whisper -> TransformersChat (to first sentence) -> piper (first sentence)",
            "threads": self.baseline_threads(),
        }


class _Pinned:
    """The scenario with one pipeline pinned: what :func:`benchmarks.results.measure` calls."""

    def __init__(self, scenario: RealtimeScenario, pipeline: str):
        self.scenario, self.pipeline = scenario, pipeline

    def request(self, client: str, inp: Input) -> dict:
        return self.scenario.request(
            client, inp, {"turn_detection": NAIA_TURN_DETECTION, "pipeline": self.pipeline}, first_audio_only=True
        )


def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
