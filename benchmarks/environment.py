"""What a report names: the machine, the profile (configuration file) and the endpoint's models."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import ROOT, SHARED

#: Distributions whose versions a report records (``None`` when not installed).
VERSIONED = (
    "torch",
    "ray",
    "transformers",
    "sentence-transformers",
    "faster-whisper",
    "ctranslate2",
    "piper-tts",
    "onnxruntime",
    "locust",
    "matplotlib",
)

#: The id each role is requested with when the profile does not name an id the endpoint serves.
OPENAI_DEFAULT_IDS = {"llm": "gpt-4o-mini", "stt": "whisper-1", "tts": "tts-1", "embeddings": "text-embedding-3-small"}


def machine_info() -> dict[str, Any]:
    """CPU model, logical/physical cores, RAM (GiB), OS, Python and library versions.

    Reads ``/proc`` and package metadata only: nothing heavy is imported.
    """
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": None,
        "ram_gib": None,
        "os": _os_name(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "gpu": None,
        "load_avg_1_5_15": load_average(),
    }
    try:
        import psutil

        info["cpu_cores_physical"] = psutil.cpu_count(logical=False)
        info["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    versions = {}
    for dist in VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    info["versions"] = versions
    return info


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (runnable processes; other work on a shared machine
    shows up here), or ``None`` where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


# ------------------------------------------------------------------------------------- profile
def read_profile(path: str | Path) -> dict[str, Any]:
    """The omniserve application of a Serve config file (a profile such as
    ``configs/embedded.yaml``): ``{"path", "sha256", "cascade", "models", "by_role"}``.

    ``by_role`` maps each role to the model the cascade uses for it (``cascade.<role>``, else
    the first model of the role): ``{"id", "role", "backend", "source", "options", "aliases",
    "num_cpus"}`` (``num_cpus``: the deployment's ``num_cpus``, default 1).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file has no application with ``import_path: deployments.app:build_app``.
    """
    import yaml

    path = Path(path)
    raw = path.read_bytes()
    config = yaml.safe_load(raw)
    apps = [a for a in config.get("applications", []) if a.get("import_path") == "deployments.app:build_app"]
    if not apps:
        raise ValueError(f"{path}: no application with import_path deployments.app:build_app")
    args = apps[0].get("args") or {}
    models = [
        {
            "id": m["id"],
            "role": m["role"],
            "backend": m["backend"],
            "source": m.get("source"),
            "options": m.get("options") or {},
            "aliases": m.get("aliases") or [],
            "num_cpus": float((m.get("deployment") or {}).get("num_cpus", 1.0)),
        }
        for m in args.get("models", [])
    ]
    cascade = args.get("cascade") or {}
    by_role: dict[str, dict] = {}
    for m in models:
        if m["role"] not in by_role:
            by_role[m["role"]] = m
    for role in list(by_role):
        ref = cascade.get(role)
        if ref:
            by_role[role] = next((m for m in models if m["id"] == ref), by_role[role])
    try:
        shown = str(path.resolve().relative_to(ROOT))
    except ValueError:
        shown = str(path.resolve())
    return {
        "path": shown,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "cascade": cascade.get("id"),
        "models": models,
        "by_role": by_role,
    }


# ------------------------------------------------------------------------------------ endpoint
def http_json(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    """``GET url`` → ``(status, parsed JSON or None)``; status 0 when the server is unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, _maybe_json(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _maybe_json(exc.read())
    except (urllib.error.URLError, OSError):
        return 0, None


def _maybe_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def endpoint_models(base_url: str) -> list[str]:
    """Ids listed by ``GET /v1/models`` (empty when the call fails)."""
    status, body = http_json(f"{base_url}/v1/models")
    if status != 200 or not isinstance(body, dict):
        return []
    return [m.get("id") for m in body.get("data", []) if isinstance(m, dict)]


def request_ids(profile: dict | None, served: list[str], overrides: dict[str, str]) -> dict[str, str]:
    """The model id each role is requested with: an override, else the profile's model for the
    role when the endpoint lists it, else OpenAI's usual id (which omniserve aliases)."""
    out = {}
    for role, default in OPENAI_DEFAULT_IDS.items():
        model = (profile or {}).get("by_role", {}).get(role)
        if role in overrides:
            out[role] = overrides[role]
        elif model and (not served or model["id"] in served):
            out[role] = model["id"]
        else:
            out[role] = default
    return out


def wait_ready(base_url: str, wait_s: float) -> tuple[int, Any]:
    """Poll ``GET /readyz`` until 200 or ``wait_s`` seconds have passed; the last answer
    (status 0 when nothing answered)."""
    deadline = time.monotonic() + wait_s
    while True:
        status, body = http_json(f"{base_url}/readyz", timeout=5)
        if status == 200 or time.monotonic() >= deadline:
            return status, body
        time.sleep(1.0)


def default_audio() -> list[Path]:
    """The transcription scenario's default clips: ``shared/audio``'s WAV (24 kHz, 5.3 s) and
    FLAC (44.1 kHz, 6.7 s), those that exist."""
    return [p for p in (SHARED / "audio" / "basic_ref_en.wav", SHARED / "audio" / "story_main_44k.flac") if p.exists()]
