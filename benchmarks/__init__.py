"""Load and overhead benchmarks for a running omniserve endpoint.

One entry point, ``python -m benchmarks run --base-url URL``: each scenario (a route of the
OpenAI surface) is driven for a bounded time and concurrency with Locust used as a library, the
same inputs are timed on the bare model libraries in a separate process (the *baseline*), and a
JSON report plus a PNG chart are written. See ``benchmarks/README.md``.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root (the directory holding ``benchmarks/``).
ROOT = Path(__file__).resolve().parents[1]
#: Shared reference material next to the repository (test audio lives in ``SHARED / "audio"``).
SHARED = ROOT.parent / "shared"
#: Version of the report layout; bump it when keys change meaning.
REPORT_SCHEMA = "omniserve-benchmark/1"
