"""The scenario registry: every implemented scenario by name, in report order.

Adding a scenario: subclass :class:`benchmarks.scenario.Scenario` in a module of this package,
decorate it with :func:`register`, and name the module in :data:`SCENARIO_MODULES`.
"""

from __future__ import annotations

import importlib

from benchmarks.scenario import Scenario

#: name -> scenario class, filled by :func:`register`.
REGISTRY: dict[str, type[Scenario]] = {}

#: Scenarios reserved for later work: accepted names that are not implemented yet.
PLANNED: dict[str, str] = {}

#: Modules that define the implemented scenarios, in report order.
SCENARIO_MODULES = ("chat", "transcription", "speech", "embeddings", "realtime", "admission")


def register(cls: type[Scenario]) -> type[Scenario]:
    """Class decorator: add a scenario to :data:`REGISTRY` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Scenario]]:
    """Import every scenario module and return :data:`REGISTRY`."""
    for module in SCENARIO_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return REGISTRY
