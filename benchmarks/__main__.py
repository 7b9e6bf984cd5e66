"""Command line: ``python -m benchmarks run|compare|list|baseline``.

``run`` drives a running endpoint; ``compare`` sends the same requests to two endpoints, paired
(:mod:`benchmarks.compare`); ``list`` shows the scenarios; ``baseline`` is the child process
``run`` starts and drives to time the bare libraries (not meant to be called by hand).
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import ROOT

DEFAULT_CONFIG = ROOT / "configs" / "embedded.yaml"


def parse_scenarios(value: str) -> list[str]:
    from benchmarks.scenarios import PLANNED, load_all

    registry = load_all()
    names = [n.strip() for n in value.split(",") if n.strip()]
    for n in names:
        if n in PLANNED and n not in registry:
            raise argparse.ArgumentTypeError(f"scenario {n!r} is planned but not implemented yet: {PLANNED[n]}")
        if n not in registry:
            raise argparse.ArgumentTypeError(f"unknown scenario {n!r}; available: {', '.join(registry)}")
    if not names:
        raise argparse.ArgumentTypeError("no scenario given")
    return list(dict.fromkeys(names))


def threads_mode(value: str) -> str:
    if value in ("replica", "default") or (value.isdigit() and int(value) > 0):
        return value
    raise argparse.ArgumentTypeError("expected 'replica', 'default' or a positive number")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="benchmark a running endpoint; write report.json and chart.png")
    run.add_argument("--base-url", required=True, help="endpoint root, e.g. http://127.0.0.1:8892")
    run.add_argument(
        "--scenarios",
        dest="scenario_names",
        type=parse_scenarios,
        default=None,
        metavar="A,B",
        help="comma-separated scenarios (default: every implemented one: chat,transcription,speech,embeddings)",
    )
    run.add_argument(
        "--duration", type=float, default=None, help="seconds of load per scenario (default 30; 4 with --smoke)"
    )
    run.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="concurrent closed-loop users in the load phase (default 4; 2 with --smoke)",
    )
    run.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="sequential requests per input for the overhead comparison (default 5; 2 with --smoke)",
    )
    run.add_argument("--max-requests", type=int, default=1000, help="most requests per load phase (default 1000)")
    run.add_argument(
        "--admission-clients", type=int, default=None, help="clients of the admission scenario (default 200; smoke 16)"
    )
    run.add_argument(
        "--admission-hold",
        type=float,
        default=None,
        help="seconds each admitted admission client holds its session (default 0.5; smoke 0.2)",
    )
    run.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds (default 120)")
    run.add_argument(
        "--smoke",
        action="store_true",
        help="every scenario briefly, with shorter generations (a quick check, not a measurement)",
    )
    run.add_argument("--out", default=None, help="output directory (default benchmarks/results/<UTC timestamp>/)")
    run.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG),
        help="profile the endpoint runs, for model names and the baseline (default configs/embedded.yaml)",
    )
    run.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time the bare model libraries in a child process (default: when they are importable)",
    )
    run.add_argument(
        "--baseline-threads",
        default="replica",
        type=threads_mode,
        help="intra-op threads of the bare libraries: 'replica' (default: what Ray gives the "
        "model's replica, max(1, floor(num_cpus))), 'default' (the libraries' own) or a number",
    )
    run.add_argument(
        "--baseline-timeout",
        type=float,
        default=600.0,
        help="seconds one model load (plus warm-up) in the baseline process may take",
    )
    run.add_argument(
        "--audio",
        action="append",
        default=[],
        help="audio file for the transcription scenario (repeatable; default: shared/audio's WAV and FLAC)",
    )
    run.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="ROLE=ID",
        help="model id to request for a role (llm, stt, tts, embeddings); default: the profile's",
    )
    run.add_argument("--wait-ready", type=float, default=60.0, help="seconds to wait for /readyz 200 (default 60)")

    cmp = sub.add_parser("compare", help="two endpoints on the same requests, paired; write compare.json")
    cmp.add_argument("--a", required=True, help="endpoint A's root, e.g. http://127.0.0.1:8892/on")
    cmp.add_argument("--b", required=True, help="endpoint B's root")
    cmp.add_argument("--a-label", default="A", help="A's name in the table (default A)")
    cmp.add_argument("--b-label", default="B", help="B's name in the table (default B)")
    cmp.add_argument(
        "--scenarios",
        dest="scenario_names",
        type=parse_scenarios,
        default=["chat", "embeddings", "transcription"],
        metavar="A,B",
        help="request/response scenarios to compare (default chat,embeddings,transcription)",
    )
    cmp.add_argument("--repeats", type=int, default=20, help="pairs per input (default 20)")
    cmp.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds (default 120)")
    cmp.add_argument("--config", default=str(DEFAULT_CONFIG), help="the profile both endpoints run")
    cmp.add_argument("--wait-ready", type=float, default=60.0, help="seconds to wait for each /readyz 200")
    cmp.add_argument("--out", required=True, help="output directory for compare.json")

    sub.add_parser("list", help="list the scenarios")

    base = sub.add_parser("baseline", help="(internal) the bare-library process `run` drives over stdin/stdout")
    base.add_argument("--config", required=True)
    base.add_argument("--smoke", action="store_true")
    base.add_argument("--threads", default="replica", type=threads_mode)
    base.add_argument("--audio", action="append", default=[])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        import benchmarks.load  # noqa: F401  (Locust's gevent monkey-patching before anything else)
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from benchmarks.run import run
        from benchmarks.scenarios import load_all

        for kv in args.model:
            if "=" not in kv:
                build_parser().error(f"--model expects ROLE=ID, got {kv!r}")
        if args.scenario_names is None:
            args.scenario_names = list(load_all())
        return run(args)
    if args.command == "compare":
        from benchmarks.compare import compare

        return compare(args)
    if args.command == "list":
        from benchmarks.scenarios import PLANNED, load_all

        for name, cls in load_all().items():
            print(f"{name:14} {cls.route:32} {cls.title}")
        for name, what in PLANNED.items():
            print(f"{name:14} {'(planned)':32} {what}")
        return 0
    from benchmarks.baseline import main as baseline_main

    return baseline_main(args)


if __name__ == "__main__":
    sys.exit(main())
