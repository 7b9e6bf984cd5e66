"""The bare-library baseline: the same inputs timed on the model libraries, in a child process.

A fresh child (``python -m benchmarks baseline ...``, started by :class:`BareLibrary`) serves
each scenario, so that the process holds only that model's library (e.g. torch's OpenMP runtime,
loaded for the LLM, measurably slows CTranslate2 in the same process). It answers one JSON line
per request on its standard output:

- ``{"op": "setup", "scenario": name}``: load the profile's model for that scenario
  (:meth:`Scenario.baseline_setup`), time it (``load_s``) and make one warm-up call per input;
- ``{"op": "call", "input": i}``: one timed bare call on input ``i`` → ``{"sample": {...}}``;
- ``{"op": "release"}``: drop the model; ``{"op": "exit"}``: quit (what :meth:`BareLibrary.release`
  sends).

Why child processes: the models they load are freed when they exit; it never shares a process with
Locust's gevent patching; a test session that already holds the models in Ray replicas does not
load them twice in one process; and, being driven call by call, each bare call can sit right next
to the endpoint request it is compared with (:func:`benchmarks.flow.run_scenario`), so both see the same
background load. Anything the libraries print goes to the child's log (``baseline.log``), not
into the protocol.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import ROOT
from benchmarks.environment import read_profile
from benchmarks.results import short_error
from benchmarks.scenario import Context, Input, RequestFailed, Scenario, Settings
from benchmarks.scenarios import load_all


class BaselineFailed(RuntimeError):
    """The baseline process died, timed out or answered out of protocol."""


# ------------------------------------------------------------------------------- parent side
class BareLibrary:
    """Parent-side handle of the baseline processes, one per scenario (used by :func:`benchmarks.flow.run_scenario`).

    Args:
        config: the profile file whose models the baseline loads.
        settings: the run's settings (``smoke`` changes inputs, e.g. chat's ``max_tokens``).
        audio: the transcription clips.
        threads: ``--baseline-threads`` (``replica``, ``default`` or a number).
        log_path: where the children's stdout/stderr go (appended).
        setup_timeout_s: most seconds a model load (plus warm-up) may take.
    """

    def __init__(
        self,
        config: str,
        settings: Settings,
        audio: list[Path],
        threads: str,
        log_path: Path,
        setup_timeout_s: float = 600.0,
    ):
        self.cmd = [sys.executable, "-m", "benchmarks", "baseline", "--config", str(config), "--threads", str(threads)]
        if settings.smoke:
            self.cmd.append("--smoke")
        for a in audio:
            self.cmd += ["--audio", str(a)]
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [self.env.get("PYTHONPATH")])])
        self.env.setdefault("HF_HUB_OFFLINE", "1")
        self.env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.log_path = log_path
        self._log = open(log_path, "a")
        self.proc: subprocess.Popen | None = None
        self.call_timeout_s = settings.timeout_s
        self.setup_timeout_s = setup_timeout_s
        self.dead: str | None = None

    def _start(self) -> None:
        self.release()
        self.dead = None
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )

    def _ask(self, message: dict, timeout_s: float) -> dict:
        if self.dead or self.proc is None:
            raise BaselineFailed(self.dead or "no baseline process")
        import gevent  # the parent is the Locust (gevent) process

        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
            with gevent.Timeout(timeout_s, BaselineFailed(f"no answer to {message['op']} in {timeout_s} s")):
                line = self.proc.stdout.readline()
            if not line:
                raise BaselineFailed(f"baseline process exited ({self.proc.poll()}); see {self.log_path}")
            return json.loads(line)
        except (BaselineFailed, OSError, ValueError) as exc:
            self.dead = short_error(exc)
            self.proc.kill()
            raise BaselineFailed(self.dead) from exc

    def setup(self, scenario: Scenario, inputs: list[Input]) -> dict:
        """Start a fresh process and load the scenario's bare model in it; the report's
        ``baseline`` block (``status`` ``ok`` with ``model``, ``load_s`` and library details,
        ``skipped`` with ``reason``, or ``error``)."""
        reason = scenario.baseline_unavailable()
        if reason:
            return {"status": "skipped", "reason": reason}
        try:
            self._start()
            answer = self._ask({"op": "setup", "scenario": scenario.name}, self.setup_timeout_s)
        except BaselineFailed as exc:
            return {"status": "error", "error": str(exc)}
        if not answer.get("ok"):
            return {"status": "error", "error": answer.get("error")}
        if answer["inputs"] != [i.key for i in inputs]:
            return {"status": "error", "error": f"baseline inputs {answer['inputs']} differ"}
        return {"status": "ok", "model": answer["model"], "load_s": answer["load_s"], **answer["info"]}

    def call(self, index: int, key: str) -> dict:
        """One bare call on input ``index``: a sample like :func:`benchmarks.results.measure`'s."""
        try:
            answer = self._ask({"op": "call", "input": index}, self.call_timeout_s)
        except BaselineFailed as exc:
            return {"input": key, "ok": False, "error": str(exc)}
        return {"input": key, **answer["sample"]}

    def release(self) -> None:
        """Stop the current process (and so free its model)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if not self.dead and proc.poll() is None:
            try:
                proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                proc.stdin.flush()
            except OSError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the process, if any, and close the log."""
        self.release()
        self._log.close()


# -------------------------------------------------------------------------------- child side
def main(args) -> int:
    """Entry point of ``python -m benchmarks baseline``: serve the protocol on stdin/stdout."""
    # keep the protocol channel clean: whatever the libraries print goes to stderr (the log)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")

    ctx = Context(
        base_url=None,
        settings=Settings(smoke=args.smoke),
        profile=read_profile(args.config),
        audio_files=[Path(p) for p in args.audio],
        baseline_threads=args.threads,
    )
    registry = load_all()
    current: dict[str, Any] = {}
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "setup":
                current.clear()
                gc.collect()
                scenario = registry[request["scenario"]](ctx)
                print(f"baseline: {scenario.name}: loading {scenario.baseline_model()['id']}", file=sys.stderr)
                t0 = time.perf_counter()
                model = scenario.baseline_setup()
                load_s = time.perf_counter() - t0
                inputs = scenario.inputs()
                for inp in inputs:  # warm-up, not recorded
                    scenario.baseline_call(model, inp)
                current.update(scenario=scenario, model=model, inputs=inputs)
                reply(
                    {
                        "ok": True,
                        "model": scenario.baseline_model()["id"],
                        "load_s": round(load_s, 2),
                        "info": scenario.baseline_info(model),
                        "inputs": [i.key for i in inputs],
                    }
                )
            elif op == "call":
                scenario, model = current["scenario"], current["model"]
                t0 = time.perf_counter()
                sample: dict[str, Any] = {}
                try:
                    sample.update(scenario.baseline_call(model, current["inputs"][request["input"]]))
                    sample["ok"] = True
                except RequestFailed as exc:
                    sample.update(ok=False, error=short_error(exc))
                sample["elapsed_s"] = time.perf_counter() - t0
                reply({"ok": True, "sample": sample})
            elif op == "release":
                current.clear()
                gc.collect()
                reply({"ok": True})
            elif op == "exit":
                reply({"ok": True})
                break
            else:
                reply({"ok": False, "error": f"unknown op {op!r}"})
        except Exception as exc:
            traceback.print_exc()
            if op == "call":
                reply({"ok": True, "sample": {"ok": False, "error": short_error(exc)}})
            else:
                reply({"ok": False, "error": short_error(exc)})
    return 0
