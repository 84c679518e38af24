"""dnnpart: split trained deep neural networks across devices.

The Python API mirrors the command line::

    graph = dnnpart.load("model.onnx")                    # dnnpart import
    plan = dnnpart.partition(graph, k=4, method="metis")  # dnnpart partition
    dnnpart.export("model.onnx", plan, "split/")          # dnnpart export
    report = dnnpart.verify("split/")                     # dnnpart verify
    report = dnnpart.run("split/", compare=True)          # dnnpart run (on Ray)
    rows = dnnpart.leaderboard(["model.onnx"], ks=[2, 4]) # dnnpart leaderboard
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from dnnpart._version import __version__
from dnnpart.errors import DnnpartError
from dnnpart.importers import load

if TYPE_CHECKING:
    from dnnpart._partition import partition
    from dnnpart._plan import Plan
    from dnnpart.exporters import export
    from dnnpart.report import run_leaderboard as leaderboard
    from dnnpart.runtime import run, verify


# imported on first use: the CLI's start-up (and ``--help``) must not pay for SciPy's
# solvers, onnxruntime or multiprocessing
_LAZY = {
    "partition": ("dnnpart._partition", "partition"),
    "Plan": ("dnnpart._plan", "Plan"),
    "export": ("dnnpart.exporters", "export"),
    "leaderboard": ("dnnpart.report", "run_leaderboard"),
    "verify": ("dnnpart.runtime", "verify"),
    "run": ("dnnpart.runtime", "run"),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'dnnpart' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "DnnpartError",
    "Plan",
    "export",
    "leaderboard",
    "load",
    "partition",
    "run",
    "verify",
    "__version__",
]
