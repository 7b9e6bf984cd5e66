"""Voice activity detection with Silero VAD (the ``silero-vad`` package's bundled models).

The model is driven directly rather than through ``silero_vad.OnnxWrapper``, which keeps one
recurrent state for the whole batch inside the wrapper: here every stream owns its state
(:class:`SileroState`) and any set of streams is scored in one batched model call. Per frame and
stream the model takes 64 samples of context (the end of that stream's previous frame) followed
by the 512 new samples, and an LSTM state of shape ``(2, 128)``; a batch stacks these as input
``(batch, 576)`` and state ``(2, batch, 128)``.

``import silero_vad`` runs ``torch.set_num_threads(1)`` for the whole process (in
``silero_vad/model.py``). The ONNX path (the default) never imports the package: it finds the
model file with :func:`models.sources.resolve_source` and needs only numpy and onnxruntime; the
TorchScript path (``onnx=False``) loads its file with ``torch.jit.load``. Only
:meth:`SileroVAD.speech_timestamps` imports the package (for silero's own segmentation), and it
restores torch's thread count afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from models.sources import resolve_source

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_SIZE = 512
CONTEXT_SIZE = 64
STATE_SHAPE = (2, 128)

DEFAULT_ONNX_SOURCE = "package://silero_vad/data/silero_vad.onnx"
DEFAULT_JIT_SOURCE = "package://silero_vad/data/silero_vad.jit"


@dataclass
class SileroState:
    """One stream's recurrent state: LSTM state ``(2, 128)`` and the last 64 samples ``(64,)``."""

    state: np.ndarray = field(default_factory=lambda: np.zeros(STATE_SHAPE, dtype=np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SIZE, dtype=np.float32))


def _import_silero_vad_keeping_threads():
    """Import ``silero_vad`` and undo its ``torch.set_num_threads(1)``."""
    import torch

    threads = torch.get_num_threads()
    import silero_vad

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return silero_vad


class SileroVAD:
    """Silero VAD at 16 kHz, 512-sample (32 ms) frames, batched across streams.

    Args:
        source: the model file (path or ``package://`` source); defaults to the package's
            ``silero_vad.onnx`` (``onnx=True``) or ``silero_vad.jit`` (``onnx=False``).
        onnx: run the ONNX model with onnxruntime (no torch needed) instead of TorchScript.
        threads: intra-op threads of the onnxruntime session (silero's own wrapper uses 1).

    Attributes:
        sample_rate: 16000 Hz.
        frame_size: 512 samples.

    Concurrency: :meth:`speech_probs` has no shared mutable state (the states are the
    caller's), so concurrent calls are safe; batching many streams into one call is what makes
    it cheap (one frame alone costs ~0.6 ms on one core here).
    """

    sample_rate = SAMPLE_RATE
    frame_size = FRAME_SIZE

    def __init__(self, source: str | None = None, onnx: bool = True, threads: int = 1):
        self.onnx = bool(onnx)
        path = resolve_source(source or (DEFAULT_ONNX_SOURCE if self.onnx else DEFAULT_JIT_SOURCE))
        self.path = path
        if self.onnx:
            import onnxruntime

            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3  # the file's unused initialisers warn at load otherwise
            self._session = onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
            self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        else:
            import torch

            module = torch.jit.load(path, map_location="cpu")
            module.eval()
            self._jit = module._model  # the 16 kHz network: forward(x (b, 576), state (2, b, 128))
            self._torch = torch

    def new_state(self) -> SileroState:
        """A fresh state for one stream (silence before the first frame)."""
        return SileroState()

    def speech_probs(self, frames: np.ndarray, states: list[SileroState]) -> tuple[np.ndarray, list[SileroState]]:
        """Score one frame of each of ``len(states)`` streams in one model call.

        Args:
            frames: float array of shape ``(n_streams, 512)`` at 16 kHz.
            states: one :class:`SileroState` per stream (not modified).

        Returns:
            ``(probs, new_states)``: float32 speech probabilities of shape ``(n_streams,)`` in
            ``[0, 1]`` and each stream's next state.

        Raises:
            ValueError: ``frames`` is not ``(len(states), 512)``.
        """
        x = np.asarray(frames, dtype=np.float32)
        n = len(states)
        if x.ndim != 2 or x.shape != (n, FRAME_SIZE):
            raise ValueError(f"frames must have shape ({n}, {FRAME_SIZE}), got {x.shape}")
        if n == 0:
            return np.zeros(0, dtype=np.float32), []
        inp = np.concatenate([np.stack([s.context for s in states]), x], axis=1)  # (n, 576)
        state = np.stack([s.state for s in states], axis=1)  # (2, n, 128)
        if self.onnx:
            out, new_state = self._session.run(None, {"input": inp, "state": state, "sr": self._sr})
        else:
            torch = self._torch
            with torch.inference_mode():
                out_t, state_t = self._jit(torch.from_numpy(inp), torch.from_numpy(state))
            out, new_state = out_t.numpy(), state_t.numpy()
        probs = np.asarray(out, dtype=np.float32).reshape(n)
        new_state = np.asarray(new_state, dtype=np.float32)
        new_states = [
            SileroState(state=np.ascontiguousarray(new_state[:, i, :]), context=inp[i, -CONTEXT_SIZE:].copy())
            for i in range(n)
        ]
        return probs, new_states

    def frame_probs(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of every 512-sample frame of one clip (16 kHz, shape ``(n,)``),
        the last frame zero-padded; returns shape ``(ceil(n / 512),)``."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        n_frames = -(-x.size // FRAME_SIZE)
        padded = np.zeros(n_frames * FRAME_SIZE, dtype=np.float32)
        padded[: x.size] = x
        state = self.new_state()
        probs = np.empty(n_frames, dtype=np.float32)
        for i, frame in enumerate(padded.reshape(n_frames, FRAME_SIZE)):
            p, (state,) = self.speech_probs(frame[None, :], [state])
            probs[i] = p[0]
        return probs

    def speech_timestamps(
        self,
        audio: np.ndarray,
        threshold: float = 0.5,
        min_speech_duration_ms: int = 250,
        min_silence_duration_ms: int = 100,
        speech_pad_ms: int = 30,
    ) -> list[tuple[float, float]]:
        """Speech regions of a whole clip, as silero's ``get_speech_timestamps`` finds them.

        Args:
            audio: float32 array of shape ``(n,)`` at 16 kHz.
            threshold: speech probability above which a frame is speech (silero's default 0.5;
                speech ends below ``threshold - 0.15``).
            min_speech_duration_ms, min_silence_duration_ms, speech_pad_ms: silero's
                segmentation settings, with its defaults.

        Returns:
            ``[(start_s, end_s), ...]`` in seconds, in order.

        Imports ``silero_vad`` (and torch) on first use for its segmentation state machine
        (``get_speech_timestamps_from_probs``), keeping torch's thread count.
        """
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return []
        probs = self.frame_probs(x)
        silero_vad = _import_silero_vad_keeping_threads()
        spans = silero_vad.get_speech_timestamps_from_probs(
            probs.tolist(),
            sampling_rate=SAMPLE_RATE,
            threshold=threshold,
            min_speech_duration_ms=min_speech_duration_ms,
            min_silence_duration_ms=min_silence_duration_ms,
            speech_pad_ms=speech_pad_ms,
            audio_length_samples=x.size,
        )
        return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in spans]
