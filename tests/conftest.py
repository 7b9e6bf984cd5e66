"""One local Ray cluster and one omniserve application per test session.

The application is the embedded-default profile (``configs/embedded.yaml``) built by
``deployments.app:build_app`` from the file's own ``args``, served through Serve's HTTP proxy on
a free loopback port. The cluster fakes one GPU (``num_gpus=1``) so placement tests of
fractional ``num_gpus`` can run beside it.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
APP_NAME = "omniserve"
#: Below the per-test timeout (300 s), so a start-up that never ends fails with the last /readyz
#: answer, and later tests reuse the cached error at once.
STARTUP_TIMEOUT_S = 270

pytest_plugins = ["tests.session_deadline"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster (2 CPUs, one fake GPU) with Serve's proxy on a free loopback port and
    Ray's metrics export on another (``metrics_port``), reported every second."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import ray
    from ray import serve

    # replica logs stay in /tmp/ray/session_latest/logs instead of interleaving with pytest's output
    metrics_port = free_port()
    ray.init(
        address="local",  # a cluster of its own, even when another one runs on this machine
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        object_store_memory=200_000_000,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        },
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield {"port": port, "base_url": f"http://127.0.0.1:{port}", "metrics_port": metrics_port}
    serve.shutdown()
    ray.shutdown()


def profile_args(name: str = "embedded") -> dict:
    from deployments.config import load_profile

    _, args = load_profile(ROOT / "configs" / f"{name}.yaml")
    return args


def scripted_args(options: dict, roles: tuple[str, ...]) -> dict:
    """The embedded profile with the scripted chat model (``scripted-chat``, ``options`` as its
    backend options: a replacement replica starts in seconds) and the real models of ``roles``;
    every replica at ``num_cpus: 0``."""
    args = copy.deepcopy(profile_args("embedded"))
    llm = next(m for m in args["models"] if m["role"] == "llm")
    llm.update(id="scripted-chat", backend="scripted", aliases=[], options=options)
    llm.pop("source")
    args["models"] = [llm, *(m for m in args["models"] if m["role"] in roles)]
    for m in args["models"]:
        m["deployment"]["num_cpus"] = 0
    args["ingress"]["deployment"]["num_cpus"] = 0
    return args


@pytest.fixture(scope="session")
def omni(ray_cluster):
    """The embedded-default application, deployed once. While it starts, ``/readyz`` is polled
    and every status seen is kept in ``readyz_seen`` (the readiness test reads it)."""
    from ray import serve

    from deployments.app import build_app

    base = ray_cluster["base_url"]
    app = build_app(profile_args("embedded"))
    done = threading.Event()
    error: list[BaseException] = []

    def deploy():
        try:
            serve.run(app, name=APP_NAME, route_prefix="/")
        except BaseException as exc:  # surfaced below
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=deploy, daemon=True).start()
    seen: list[tuple[int, dict | None]] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                r = http.get(f"{base}/readyz")
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
                seen.append((r.status_code, body))
                if r.status_code == 200 and done.is_set():
                    break
            except httpx.TransportError:
                pass
            if error:
                raise error[0]
            time.sleep(0.5)
        else:
            raise TimeoutError(f"omniserve not ready after {STARTUP_TIMEOUT_S} s; last /readyz: {seen[-1:]}")
    return {"base_url": base, "readyz_seen": seen}


@pytest.fixture(scope="session")
def client(omni):
    """The official OpenAI SDK pointed at the endpoint (only ``base_url`` changed)."""
    from openai import OpenAI

    return OpenAI(base_url=f"{omni['base_url']}/v1", api_key="naia", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(omni):
    with httpx.Client(base_url=omni["base_url"], timeout=120) as c:
        yield c
