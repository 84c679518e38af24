"""Leaderboard rows and the runs that make them: what the worker processes are given.

A :class:`Task` is one run (model, granularity, k, partitioner and the options), picklable
so that it can be sent to a worker; a :class:`Row` is its result. :func:`plan_tasks` turns
the user's request into tasks, in model-major order (a worker then loads each model once).
Partitioners that are not installed plugins can take part through
:func:`load_partitioner` paths (``"package.module:Class"``): the worker processes import
them by that path.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dnnpart.errors import UsageError
from dnnpart.partitioners._base import options_for

__all__ = ["Row", "Task", "plan_tasks", "load_partitioner", "STATUSES", "GRANULARITIES"]

STATUSES = ("ok", "failed", "timeout", "skipped", "interrupted")
GRANULARITIES = ("neuron", "layer")


@dataclass
class Task:
    """One leaderboard run, as sent to a worker (picklable)."""

    index: int
    model: str
    k: int
    partitioner: str
    granularity: str
    devices: Any = None  # DeviceSet or None (k identical devices)
    prune: float | None = None
    imbalance: float = 0.03
    seed: int = 0
    repeat: int = 1
    verify: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # the partitioner's parameters
    # dnnpart.load's input_shapes, dims and inputs (the concrete input shapes)
    load_options: Any = None
    objective: str = "throughput"  # what layer placement minimises and rows are ranked by
    # dnnpart.partition's data, holdout, cross_prune, accuracy_budget (accuracy scores)
    measure: dict[str, Any] | None = None


@dataclass
class Row:
    """The result of one run: one row of the leaderboard.

    ``status`` is ``"ok"``, ``"failed"`` (with ``reason``), ``"timeout"``, ``"skipped"``
    (the partitioner does not handle this granularity) or ``"interrupted"`` (Ctrl-C or
    SIGTERM came first). ``scores``, ``baseline`` (the
    vertical split of the same problem) and ``ratios`` (scores / baseline) are the plain
    dicts of :meth:`dnnpart.scoring.Scores.to_dict` and :func:`dnnpart.scoring.ratios`.
    ``groups`` names the rows of ``scores["loads"]`` (the problem's layers), ``devices``
    are the devices of the run. ``rank`` and ``feasible`` are filled by
    :func:`dnnpart.report.rank`.
    """

    model: str
    k: int
    partitioner: str
    granularity: str
    status: str
    reason: str | None = None
    plugin: str | None = None
    scores: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    ratios: dict[str, Any] | None = None
    seconds: float | None = None
    seconds_all: list[float] = field(default_factory=list)
    wall_seconds: float | None = None
    verify: dict[str, Any] | None = None
    groups: list[str] = field(default_factory=list)
    devices: dict[str, Any] | None = None  # the device file format (DeviceSet.to_dict)
    messages: list[str] = field(default_factory=list)  # the plan's notes (Plan.messages)
    exit_code: int | None = None  # a row that did not run: the CLI exit code of its error
    rank: int | None = None
    objective: str | None = None  # the run's objective (None: throughput)
    feasible: bool | None = None  # memory and balance hold (filled by rank)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


# -- partitioners given by dotted path (the test and scripting hook) -------------------------


def load_partitioner(spec: str | type) -> type:
    """A partitioner class from ``"package.module:Class"`` (or the class itself).

    This is how partitioners that are not installed as plugins reach the worker processes
    (which import them again by that path): scripts and tests pass them to
    :func:`run_leaderboard` as ``extra_partitioners``.
    """
    if isinstance(spec, type):
        return spec
    module, sep, qualname = str(spec).partition(":")
    if not sep or not module or not qualname:
        raise UsageError(f"a partitioner path looks like 'package.module:Class', got {spec!r}")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot import partitioner {spec!r}: {exc}") from None
    if not isinstance(obj, type) or not getattr(obj, "name", ""):
        raise UsageError(f"{spec!r} is not a partitioner class with a name")
    return obj


def partitioner_spec(cls_or_spec: str | type) -> str:
    if isinstance(cls_or_spec, type):
        return f"{cls_or_spec.__module__}:{cls_or_spec.__qualname__}"
    return str(cls_or_spec)


# -- the task list ---------------------------------------------------------------------------


def plan_tasks(
    models: Sequence[str],
    ks: Sequence[int],
    partitioners: str | Sequence[str] = "all",
    *,
    granularity: str | Sequence[str] = "neuron",
    devices: Any = None,
    registry_classes: dict[str, type],
    options: dict[str, Any] | None = None,
    **common: Any,
) -> tuple[list[Task], list[Row]]:
    """The runs to do, and rows settled without running (unsupported granularity).

    With ``partitioners="all"`` a partitioner is left out where it does not support the
    granularity; one named explicitly gets a ``skipped`` row saying why.
    """
    grans = [granularity] if isinstance(granularity, str) else list(granularity)
    for g in grans:
        if g not in GRANULARITIES:
            raise UsageError(f"granularity must be one of {GRANULARITIES}, got {g!r}")
    if not models:
        raise UsageError("give at least one model")
    if devices is not None:
        ks = list(ks) or [devices.k]
        wrong = [k for k in ks if k != devices.k]
        if wrong:
            raise UsageError(f"k = {wrong[0]} but the device file lists {devices.k} devices")
    if not ks:
        raise UsageError("give at least one k (or a device file)")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise UsageError(f"k must be a positive integer, got {k!r}")
    if partitioners == "all" or partitioners == ["all"]:
        names, explicit = sorted(registry_classes), False
    else:
        names = [partitioners] if isinstance(partitioners, str) else list(partitioners)
        explicit = True
        unknown = [n for n in names if n not in registry_classes]
        if unknown:
            known = ", ".join(sorted(registry_classes))
            raise UsageError(f"unknown partitioner {unknown[0]!r} (known: {known})")
    for m in models:
        if not Path(m).is_file():
            raise UsageError(f"model not found: {m}")
    options = dict(options or {})
    taken = {key for n in names for key in options if options_for(registry_classes[n], {key: 0})}
    if set(options) - taken:
        stray = sorted(set(options) - taken)[0]
        raise UsageError(f"option {stray!r} is not a parameter of any partitioner of this run")
    tasks: list[Task] = []
    settled: list[Row] = []
    # Model-major order: a worker then loads each model once and keeps it cached.
    for model in dict.fromkeys(models):
        for g in grans:
            for k in dict.fromkeys(ks):
                for name in dict.fromkeys(names):
                    supported = getattr(registry_classes[name], "granularities", GRANULARITIES)
                    if g not in supported:
                        if explicit:
                            reason = f"does not support {g} granularity"
                            settled.append(Row(model, k, name, g, "skipped", reason))
                        continue
                    own = options_for(registry_classes[name], options)
                    tasks.append(
                        Task(len(tasks), model, k, name, g, devices=devices, options=own, **common)
                    )
    return tasks, settled
