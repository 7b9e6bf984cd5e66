"""Make ``import torchaudio`` work beside the CPU build of torch.

torchaudio on the package index is a CUDA build only (no CPU wheel, and no release matching
torch 2.13): its native extension (``torchaudio/lib/*.so``) fails to load against CPU torch.
torchaudio skips the native extension when those files are absent, and the pure-PyTorch parts
that f5-tts, vocos and NeMo use for inference (MelSpectrogram, Resample) then work. So: only when
the import fails, delete the native files and check the import again. Idempotent.
"""

import importlib.util
import pathlib
import subprocess
import sys

spec = importlib.util.find_spec("torchaudio")
if spec is not None and subprocess.run([sys.executable, "-c", "import torchaudio"], capture_output=True).returncode:
    for so in (pathlib.Path(next(iter(spec.submodule_search_locations))) / "lib").glob("*.so"):
        so.unlink()
    subprocess.run([sys.executable, "-c", "import torchaudio"], check=True)
    print("setup: removed torchaudio's native extension (it does not load with this torch build)")
