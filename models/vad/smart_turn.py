"""Semantic end-of-turn detection with Smart Turn v3 (pipecat-ai's ONNX model, BSD-2).

Smart Turn reads the sound of the end of an utterance (intonation, a trailing "to…", a filler)
and gives the probability that the speaker has finished their turn. It is what OpenAI's
``turn_detection: {"type": "semantic_vad"}`` needs: a complete utterance may end the turn after a
short silence, an unfinished one waits.

The model file ``smart-turn-v3.2-cpu.onnx`` ships inside the ``pipecat-ai`` wheel (installed with
``--no-deps``: only the file is used, the ``pipecat`` package is never imported). Its input,
as the model card describes it: Whisper log-mel features (80 bins, 10 ms hop, 25 ms window,
computed by ``transformers.WhisperFeatureExtractor`` with an 8 s chunk) of the last 8 s of
16 kHz mono audio, zero-padded at the front when shorter: a float32 tensor
``(batch, 80, 800)``. Its output is the sigmoid probability ``(batch, 1)``; above 0.5 means
"complete".
"""

from __future__ import annotations

import numpy as np

from models.sources import resolve_source

#: Sample rate (Hz) of the audio the model reads.
SAMPLE_RATE = 16000
#: The model reads the last 8 s of audio.
WINDOW_S = 8
#: Probability above which a turn counts as complete (the model card's threshold).
COMPLETE_THRESHOLD = 0.5

DEFAULT_SOURCE = "package://pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


class SmartTurn:
    """Smart Turn v3 end-of-turn model on onnxruntime, batched across streams.

    Args:
        source: the ONNX file (a path or ``package://`` source); defaults to the copy in the
            ``pipecat-ai`` wheel.
        threads: intra-op threads of the onnxruntime session.

    Raises:
        FileNotFoundError: the model file (or the package holding it) is not installed.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, source: str | None = None, threads: int = 1):
        import onnxruntime
        from transformers import WhisperFeatureExtractor

        self.path = resolve_source(source or DEFAULT_SOURCE)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(self.path, sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._features = WhisperFeatureExtractor(chunk_length=WINDOW_S)
        self._window = WINDOW_S * SAMPLE_RATE

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features ``(80, 800)`` float32 of the last 8 s of ``audio`` (16 kHz, shape
        ``(n,)``), zero-padded at the front."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)[-self._window :]
        if x.size < self._window:
            x = np.concatenate([np.zeros(self._window - x.size, dtype=np.float32), x])
        feats = self._features(
            x,
            sampling_rate=SAMPLE_RATE,
            return_tensors="np",
            padding="max_length",
            max_length=self._window,
            truncation=True,
            do_normalize=True,
        ).input_features
        return np.asarray(feats[0], dtype=np.float32)

    def complete_probs(self, clips: list[np.ndarray]) -> np.ndarray:
        """Probability that each clip's speaker has finished the turn.

        Args:
            clips: 16 kHz float32 mono clips, each ending where the silence began (any length;
                only the last 8 s are read).

        Returns:
            float32 array ``(len(clips),)`` in ``[0, 1]``.
        """
        if not clips:
            return np.zeros(0, dtype=np.float32)
        batch = np.stack([self.features(c) for c in clips])
        out = self._session.run(None, {self._input: batch})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(clips))
