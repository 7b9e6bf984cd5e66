"""Paused speech: how often a turn detector cuts a speaker off in mid-sentence.

Twenty requests, each spoken by espeak-ng (``en-us``, 165 words/min) in two parts with a
400–700 ms pause between them where a person stops to think: "I would like to book a flight
to … Paris." Each is streamed at real-time pace to ``/v1/realtime`` once per detector,
``server_vad`` (``silence_duration_ms`` 500, OpenAI's default) and ``semantic_vad``
(``eagerness`` medium), both sessions at once, with ``create_response: false`` (only turn
detection is measured) and silence afterwards as a microphone keeps sending.

Per detector: ``false_cutoffs`` (utterances where a turn ended before the second part began),
their rate, and ``end_ms`` p50 (end of speech → the ``speech_stopped`` that ended the whole
utterance, client clock) for the utterances not cut off.
"""

from __future__ import annotations

import base64
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import soundfile as sf

from models.audio import OPENAI_PCM_RATE, resample

CHUNK = 2048
#: (first part, second part): a request, and where a speaker might pause in it.
UTTERANCES = (
    ("I would like to book a flight to", "Paris on Friday."),
    ("Can you remind me to call", "my mother tomorrow?"),
    ("The best time to visit is", "early in the spring."),
    ("Please add eggs, milk and", "some bread to the list."),
    ("I think the meeting should start at", "ten o'clock."),
    ("What is the weather going to be like in", "London this weekend?"),
    ("My favourite kind of music is", "jazz from the fifties."),
    ("Could you tell me how to get to", "the train station?"),
    ("I need to buy a present for", "my sister's birthday."),
    ("Turn off the lights in the", "living room."),
    ("Set a timer for", "twenty minutes."),
    ("I was wondering if you could", "recommend a good book."),
    ("The package should arrive by", "Thursday afternoon."),
    ("Send a message to Alex saying that", "I will be late."),
    ("How far is it from Berlin to", "Munich by car?"),
    ("I would like a table for two at", "half past seven."),
    ("Play something relaxing, maybe", "some piano music."),
    ("Remind me that the rent is due on", "the first of the month."),
    ("Can you translate good morning into", "Spanish?"),
    ("My flight leaves from gate", "twenty four."),
)
DETECTORS = {
    "server_vad": {"type": "server_vad", "silence_duration_ms": 500},
    "semantic_vad": {"type": "semantic_vad", "eagerness": "medium"},
}
LEAD_S = 0.3  # silence before the speech
TAIL_S = 5.0  # silence streamed after it: more than medium's 4 s limit


def pause_ms(i: int, n: int = len(UTTERANCES)) -> int:
    """The pause of utterance ``i``: spread evenly over 400–700 ms."""
    return 400 + round(300 * i / max(1, n - 1))


def _espeak(text: str, workdir: Path) -> Any:
    """``text`` spoken by espeak-ng: float32 ``(n,)`` at :data:`~models.audio.OPENAI_PCM_RATE` Hz."""
    path = workdir / "part.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(path), text], check=True, capture_output=True, timeout=60
    )
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(data.mean(axis=1), rate, OPENAI_PCM_RATE)


def build_set(n: int | None = None) -> list[dict]:
    """The utterances as ``{"text", "pause_ms", "pcm", "second_start_ms", "speech_end_ms"}``
    (``pcm``: PCM16 mono 24 kHz with :data:`LEAD_S` of silence in front; times in ms of it).

    Raises:
        FileNotFoundError: espeak-ng is not installed.
    """
    import numpy as np

    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (first, second) in enumerate(UTTERANCES[:n]):
            a, b = _espeak(first, Path(tmp)), _espeak(second, Path(tmp))
            a, b = np.trim_zeros(a, "b"), np.trim_zeros(b, "f")  # the pause is exactly ours
            gap = np.zeros(int(pause_ms(i) * OPENAI_PCM_RATE / 1000), dtype=np.float32)
            lead = np.zeros(int(LEAD_S * OPENAI_PCM_RATE), dtype=np.float32)
            audio = np.concatenate([lead, a, gap, b])
            out.append(
                {
                    "text": f"{first} … {second}",
                    "pause_ms": pause_ms(i),
                    "pcm": (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(),
                    "second_start_ms": (len(lead) + len(a) + len(gap)) * 1000 / OPENAI_PCM_RATE,
                    "speech_end_ms": len(audio) * 1000 / OPENAI_PCM_RATE,
                }
            )
    return out


def _one(url: str, timeout_s: float, turn_detection: dict, utt: dict) -> dict:
    """Stream one utterance to a fresh session; the turns it was cut into."""
    from websockets.sync.client import connect

    ws = connect(url, max_size=None, open_timeout=timeout_s)
    stops: list[tuple[float, float]] = []  # (client time, audio_end_ms)
    errors: list[str] = []
    done = threading.Event()

    def read() -> None:
        try:
            for raw in ws:
                ev = json.loads(raw)
                if ev.get("type") == "input_audio_buffer.speech_stopped":
                    stops.append((time.perf_counter(), float(ev["audio_end_ms"])))
                    if ev["audio_end_ms"] >= utt["second_start_ms"]:
                        done.set()
                elif ev.get("type") == "error":
                    errors.append(ev["error"].get("message", ""))
        except Exception:
            pass
        done.set()

    try:
        if json.loads(ws.recv(timeout=timeout_s)).get("type") != "session.created":
            raise RuntimeError("no session.created")
        ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "input_audio_transcription": {"language": "en"},
                        "turn_detection": {**turn_detection, "create_response": False},
                    },
                }
            )
        )
        threading.Thread(target=read, daemon=True).start()
        pcm = utt["pcm"] + b"\x00\x00" * int(TAIL_S * OPENAI_PCM_RATE)
        t0 = time.perf_counter()
        for i, off in enumerate(range(0, len(pcm), CHUNK * 2)):
            if done.is_set():
                break
            ws.send(
                json.dumps(
                    {
                        "type": "input_audio_buffer.append",
                        "audio": base64.b64encode(pcm[off : off + CHUNK * 2]).decode(),
                    }
                )
            )
            delay = t0 + (i + 1) * CHUNK / OPENAI_PCM_RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        done.wait(2.0)
    finally:
        ws.close()
    t_end = t0 + utt["speech_end_ms"] / 1000
    cut = any(end < utt["second_start_ms"] for _, end in stops)
    final = [t for t, end in stops if end >= utt["second_start_ms"]]
    return {
        "cut_off": cut,
        "end_ms": (final[0] - t_end) * 1000 if final and not cut else None,
        "ended": bool(final),
        "errors": errors,
    }


def run_paused_speech(url: str, timeout_s: float, smoke: bool = False) -> dict:
    """The paused-speech block of the report (see the module docstring); ``{"status":
    "skipped", "reason"}`` without espeak-ng."""
    try:
        utterances = build_set(2 if smoke else None)
    except (FileNotFoundError, subprocess.SubprocessError) as exc:
        return {"status": "skipped", "reason": str(exc)}
    results: dict[str, list[dict]] = {name: [] for name in DETECTORS}
    for utt in utterances:
        got: dict[str, dict] = {}
        threads = [
            threading.Thread(
                target=lambda n=n, td=td, utt=utt, got=got: got.__setitem__(n, _one(url, timeout_s, td, utt))
            )
            for n, td in DETECTORS.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name in DETECTORS:
            results[name].append(
                got.get(name) or {"cut_off": None, "end_ms": None, "ended": False, "errors": ["no result"]}
            )
    out: dict[str, Any] = {
        "status": "ok",
        "utterances": len(utterances),
        "pauses_ms": [u["pause_ms"] for u in utterances],
        "voice": "espeak-ng en-us, 165 wpm",
        "detectors": {},
    }
    for name, rs in results.items():
        cuts = [r for r in rs if r["cut_off"]]
        ends = [r["end_ms"] for r in rs if r["end_ms"] is not None]
        out["detectors"][name] = {
            "turn_detection": DETECTORS[name],
            "false_cutoffs": len(cuts),
            "false_cutoff_rate": round(len(cuts) / len(rs), 3) if rs else None,
            "cut_off": [u["text"] for u, r in zip(utterances, rs, strict=False) if r["cut_off"]],
            "not_ended": sum(1 for r in rs if not r["ended"]),
            "end_ms_p50": round(statistics.median(ends), 1) if ends else None,
            "errors": sum(len(r["errors"]) for r in rs),
        }
    return out
