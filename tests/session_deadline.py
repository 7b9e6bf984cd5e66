"""A deadline for the whole test session, so a run never dies silently at CI's limit.

Each test has its own limit (pytest-timeout, ``timeout`` in ``pyproject.toml``: the test fails
with every thread's stack and the run goes on). This plugin bounds the session: when it has run
``OMNISERVE_TEST_SESSION_TIMEOUT_S`` seconds (default 3600, about 60 minutes, well inside CI's
90; ``0`` turns it off), it prints which test is running and every thread's stack to the real
stderr, then interrupts the main thread as Ctrl-C would. pytest then stops, tears the session's
fixtures down (the Ray cluster) and prints its summary with the slowest tests; the exit status is
2. If the session has still not ended 120 s later, the process exits with status 3.

Registered by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time

import pytest

DEFAULT_S = 3600.0
GRACE_S = 120.0

_running = {"nodeid": "(between tests)", "since": time.monotonic()}
_timer: threading.Timer | None = None


def _expire(config: pytest.Config, limit_s: float) -> None:
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        try:  # output of a running test is captured; this must reach the real stderr
            capman.suspend_global_capture(in_=True)
        except Exception:  # noqa: BLE001 - best effort from a non-main thread
            pass
    ran = time.monotonic() - _running["since"]
    err = sys.stderr
    err.write(
        f"\n{'!' * 30} test session deadline: {limit_s:.0f} s passed {'!' * 30}\n"
        f"running: {_running['nodeid']} (for {ran:.0f} s)\nstacks of every thread:\n"
    )
    err.flush()
    faulthandler.dump_traceback(file=err, all_threads=True)
    err.write("stopping the session (as Ctrl-C would)\n")
    err.flush()
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    time.sleep(GRACE_S)
    err.write(f"test session still running {GRACE_S:.0f} s after the deadline: exiting\n")
    err.flush()
    os._exit(3)


def pytest_sessionstart(session: pytest.Session) -> None:
    global _timer
    limit_s = float(os.environ.get("OMNISERVE_TEST_SESSION_TIMEOUT_S", DEFAULT_S))
    if limit_s > 0:
        _timer = threading.Timer(limit_s, _expire, args=(session.config, limit_s))
        _timer.daemon = True
        _timer.name = "session-deadline"
        _timer.start()


def pytest_runtest_logstart(nodeid: str, location) -> None:
    _running.update(nodeid=nodeid, since=time.monotonic())


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    _running.update(nodeid=f"(after {nodeid})", since=time.monotonic())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _timer is not None:
        _timer.cancel()
