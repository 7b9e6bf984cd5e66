"""A plain WebSocket client for realtime tests, behaving like the Naia reference client: no
headers, no subprotocol, base64 PCM16 24 kHz audio in 2048-sample (~85 ms) chunks at real-time
pace."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from websockets.sync.client import connect

from models.audio import OPENAI_PCM_RATE, resample

CHUNK = 2048


def load_pcm16(path: Path) -> bytes:
    """A speech file as PCM16 mono little-endian at 24 kHz."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = resample(data.mean(axis=1), rate, OPENAI_PCM_RATE)
    return (np.clip(mono, -1, 1) * 32767).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(seconds * OPENAI_PCM_RATE)


class RealtimeClient:
    """Connects, collects every server event (with its arrival time) on a reader thread."""

    def __init__(self, url: str, **connect_kwargs):
        self.ws = connect(url, max_size=None, open_timeout=30, **connect_kwargs)
        self.events: list[tuple[float, dict]] = []
        self._q: queue.Queue = queue.Queue()
        self.close_code: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                ev = json.loads(raw)
                stamped = (time.monotonic(), ev)
                self.events.append(stamped)
                self._q.put(stamped)
        except Exception:
            pass
        finally:
            self.close_code = self.ws.close_code
            self._q.put((time.monotonic(), {"type": "__closed__", "code": self.ws.close_code}))

    def send(self, event: dict) -> None:
        self.ws.send(json.dumps(event))

    def send_raw(self, data: str | bytes) -> None:
        self.ws.send(data)

    def wait_for(self, type_: str, timeout: float = 60.0, where=None) -> tuple[float, dict]:
        """The next event of ``type_`` (optionally matching ``where``); raises on timeout/close."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {type_} within {timeout} s; seen {[e['type'] for _, e in self.events][-15:]}")
            try:
                t, ev = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if ev["type"] == type_ and (where is None or where(ev)):
                return t, ev
            if ev["type"] == "__closed__" and type_ != "__closed__":
                raise ConnectionError(f"closed with {ev['code']} while waiting for {type_}")

    def next_event(self, timeout: float = 30.0) -> dict:
        """The next server event (or ``{"type": "__closed__", "code": ...}``)."""
        return self._q.get(timeout=timeout)[1]

    def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Wait for the server to close the socket; returns the close code."""
        self._reader.join(timeout)
        return self.close_code

    def stream_audio(self, pcm: bytes, realtime: bool = True, stop: threading.Event | None = None) -> None:
        """Send PCM16 24 kHz in 2048-sample chunks, paced at real time."""
        step = CHUNK * 2
        t0 = time.monotonic()
        for i, off in enumerate(range(0, len(pcm), step)):
            if stop is not None and stop.is_set():
                return
            self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[off : off + step]).decode()})
            if realtime:
                delay = t0 + (i + 1) * CHUNK / OPENAI_PCM_RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def of_type(self, type_: str, after: float = 0.0) -> list[dict]:
        return [e for t, e in self.events if e["type"] == type_ and t >= after]

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
