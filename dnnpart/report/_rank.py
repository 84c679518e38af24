"""Rank leaderboard rows: feasible first, then by the user's objective, with ties.

Within each (model, granularity, k) the rows that ran are ordered by

1. feasibility: a row is *feasible* when every device holds its part (``memory_ok``) and
   the split is balanced -- within the run's tolerance (``balance_ok``) or no worse than
   the vertical baseline of the same problem (coarse layers may make the tolerance
   unreachable for every split). At layer granularity the time objectives need no balance:
   they charge each device its load already (see :mod:`dnnpart.problem._objective`);
   infeasible rows are ranked after every feasible one and marked (``feasible`` False);
2. the objective (``objective=`` or the row's own, default ``throughput``): the pipelined
   time per sample at layer granularity -- on a problem that carries measured times (a
   profiled graph, a model planned on ``dnnpart profile``'s times) the paper's
   ``max_load``, which then also titles the table and has its own column; else
   ``time_per_sample_s`` (``latency_s`` when a scorer gives none) --, the
   layer-synchronous ``latency_s`` at neuron granularity; ``latency`` ranks by
   ``latency_s``, ``volume`` by ``volume_bytes``;
3. ties: a row within :data:`TIE_RTOL` (1 %) of the first row of its rank shares that rank
   (ranks 1, 1, 3, ...: differences in the fourth digit of a time are noise, not a
   ranking); within a rank and on equal figures, ``volume_bytes``, ``imbalance``, then the
   name order the rows, so the order is total and reproducible.

Rows that failed, timed out or were skipped come last without a rank. Every figure is also
given as a ratio to the vertical baseline of the same problem (the thesis' "overall reduce"
is ``1 - ratio``), taken from the row's own ``ratios``: the baseline is scored in the same
run, so a ratio exists even when ``vertical`` is not on the board.

:data:`COLUMNS` is the one list of figures every renderer shows (lower is better for all
of them); :func:`best_values` gives the best of each column in a group, for highlighting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dnnpart.problem._objective import check_objective, objective_score
from dnnpart.report._rows import Row

__all__ = [
    "Column",
    "COLUMNS",
    "rank",
    "rank_metric",
    "rank_label",
    "rank_text",
    "is_feasible",
    "is_profiled",
    "TIE_RTOL",
    "group_rows",
    "columns_for",
    "best_values",
    "flat_record",
]


TIE_RTOL = 0.01  # rows within 1 % of their rank's first row share its rank


def rank_metric(granularity: str, objective: str | None = None, profiled: bool = False) -> str:
    """The score key rows are ranked by at this granularity for ``objective``
    (``profiled``: the problem carries measured times, see :func:`is_profiled`)."""
    objective = check_objective(objective or "throughput")
    if objective == "throughput":
        if granularity != "layer":
            return "latency_s"
        return "max_load" if profiled else "time_per_sample_s"
    return "latency_s" if objective == "latency" else "volume_bytes"


def rank_label(granularity: str, objective: str | None = None, profiled: bool = False) -> str:
    """What rows are ranked by, for people (the column label of :func:`rank_metric`)."""
    key = rank_metric(granularity, objective, profiled)
    return next(c.label for c in COLUMNS if c.key == key)


def is_profiled(row: Row) -> bool:
    """The row's problem carries measured times: its scores have the paper's max-load."""
    return row.scores is not None and row.scores.get("max_load") is not None


def _objective(row: Row, objective: str | None) -> str:
    return objective or getattr(row, "objective", None) or "throughput"


def _metric_value(row: Row, objective: str | None = None) -> float | None:
    if row.scores is None:
        return None
    return objective_score(row.scores, _objective(row, objective))


def _metric_ratio(row: Row, objective: str | None = None) -> float | None:
    if row.ratios is None:
        return None
    return objective_score(row.ratios, _objective(row, objective))


def is_feasible(row: Row, objective: str | None = None) -> bool:
    """Memory holds and the split is balanced (module docstring); False for rows that
    did not run."""
    scores = row.scores
    if row.status != "ok" or scores is None or scores.get("memory_ok") is False:
        return False
    if row.granularity == "layer" and _objective(row, objective) != "volume":
        return True
    if scores.get("balance_ok"):
        return True
    imbalance, base = scores.get("imbalance"), (row.baseline or {}).get("imbalance")
    if imbalance is None:
        return True
    return base is not None and imbalance <= base * (1 + 1e-9)


def rank_text(row: Row) -> str:
    """The rank as printed: ``-`` for rows that did not run, ``✗`` after an infeasible
    row's rank."""
    if row.rank is None:
        return "-"
    return f"{row.rank}" if row.feasible is not False else f"{row.rank} ✗"


def _score(key: str) -> Callable[[Row], Any]:
    return lambda row: None if row.scores is None else row.scores.get(key)


def _ratio(key: str) -> Callable[[Row], Any]:
    return lambda row: None if row.ratios is None else row.ratios.get(key)


def _memory_max(row: Row) -> float | None:
    mem = None if row.scores is None else row.scores.get("memory_bytes")
    return float(max(mem)) if mem else None


@dataclass(frozen=True)
class Column:
    """One figure of a leaderboard row.

    ``kind`` says how to print it: ``time`` (seconds of the model), ``seconds`` (run
    time), ``size`` (bytes), ``count``, ``ratio``. ``layer_only`` columns are shown only at
    layer granularity. Lower is better for every column.
    """

    key: str
    label: str
    kind: str
    get: Callable[[Row], Any]
    layer_only: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("latency_s", "latency", "time", _score("latency_s")),
    Column("latency_ratio", "latency ×vert", "ratio", _ratio("latency_s")),
    Column(
        "time_per_sample_s", "time/sample", "time", _score("time_per_sample_s"), layer_only=True
    ),
    Column(
        "time_per_sample_ratio",
        "time/sample ×vert",
        "ratio",
        _ratio("time_per_sample_s"),
        layer_only=True,
    ),
    Column("max_load", "max-load", "time", _score("max_load"), layer_only=True),
    Column("max_load_ratio", "max-load ×vert", "ratio", _ratio("max_load"), layer_only=True),
    Column("volume_bytes", "volume", "size", _score("volume_bytes")),
    Column("volume_ratio", "volume ×vert", "ratio", _ratio("volume_bytes")),
    Column("volume", "activations sent", "count", _score("volume")),
    Column("cut", "cut", "count", _score("cut")),
    Column("cut_ratio", "cut ×vert", "ratio", _ratio("cut")),
    Column("imbalance", "imbalance", "ratio", _score("imbalance")),
    Column("imbalance_total", "imbalance (model)", "ratio", _score("imbalance_total")),
    Column("memory_max_bytes", "memory max", "size", _memory_max),
    Column("volume_bytes_sparse", "volume sparse", "size", _score("volume_bytes_sparse")),
    Column("accuracy_drop", "accuracy drop", "ratio", _score("accuracy_drop")),
    Column("seconds", "run time", "seconds", lambda row: row.seconds),
)


def columns_for(granularity: str) -> list[Column]:
    """The columns shown at ``granularity``."""
    return [c for c in COLUMNS if granularity == "layer" or not c.layer_only]


def _key(row: Row, objective: str | None) -> tuple:
    inf = float("inf")
    metric = _metric_value(row, objective)
    volume = row.scores.get("volume_bytes") if row.scores else None
    imbalance = row.scores.get("imbalance") if row.scores else None
    return (
        not is_feasible(row, objective),
        inf if metric is None else metric,
        inf if volume is None else volume,
        inf if imbalance is None else imbalance,
        row.partitioner,
    )


def group_rows(rows: Iterable[Row]) -> dict[tuple[str, str, int], list[Row]]:
    """Rows by (model, granularity, k), in first-appearance order of models and
    granularities and increasing k."""
    groups: dict[tuple[str, str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.model, row.granularity, row.k), []).append(row)
    models = list(dict.fromkeys(key[0] for key in groups))
    grans = list(dict.fromkeys(key[1] for key in groups))
    order = sorted(groups, key=lambda g: (models.index(g[0]), grans.index(g[1]), g[2]))
    return {key: groups[key] for key in order}


def rank(rows: Sequence[Row], objective: str | None = None) -> list[Row]:
    """Copies of ``rows``, grouped (see :func:`group_rows`) and ranked within each group.

    Rows with status ``ok`` get ``rank`` 1, 2, ... and ``feasible`` by the rules of the
    module docstring (``objective``: default each row's own, else ``throughput``); the
    others follow with ``rank`` None, in the order failed, timeout, skipped.
    """
    if objective is not None:
        check_objective(objective)
    status_order = {"failed": 0, "timeout": 1, "skipped": 2, "interrupted": 3}
    out: list[Row] = []
    for group in group_rows(rows).values():
        ok = sorted((r for r in group if r.status == "ok"), key=lambda r: _key(r, objective))
        rest = sorted(
            (r for r in group if r.status != "ok"),
            key=lambda r: (status_order.get(r.status, 3), r.partitioner),
        )
        lead: tuple[bool, float] | None = None
        current = 0
        for i, r in enumerate(ok, start=1):
            feasible, value = _key(r, objective)[:2]
            if lead is None or feasible != lead[0] or not value <= lead[1] * (1 + TIE_RTOL):
                lead, current = (feasible, value), i
            out.append(dataclasses.replace(r, rank=current, feasible=not feasible))
        out += [dataclasses.replace(r, rank=None, feasible=None) for r in rest]
    return out


def best_values(group: Sequence[Row], columns: Sequence[Column] = COLUMNS) -> dict[str, Any]:
    """The lowest value of each column among the ``ok`` rows of one group."""
    best: dict[str, Any] = {}
    for col in columns:
        values = [col.get(r) for r in group if r.status == "ok"]
        values = [v for v in values if v is not None]
        if values:
            best[col.key] = min(values)
    return best


def flat_record(row: Row) -> dict[str, Any]:
    """One row as a flat dict of scalars (CSV, tables): identity, status, every column."""
    rec: dict[str, Any] = {
        "model": row.model,
        "granularity": row.granularity,
        "k": row.k,
        "rank": row.rank,
        "partitioner": row.partitioner,
        "plugin": row.plugin,
        "status": row.status,
        "reason": row.reason,
        "feasible": row.feasible,
        "objective": _objective(row, None),
        "rank_metric": rank_metric(row.granularity, _objective(row, None), is_profiled(row)),
        "rank_value": _metric_value(row),
        "rank_ratio": _metric_ratio(row),
    }
    for col in COLUMNS:
        rec[col.key] = col.get(row)
    rec["messages"] = row.scores.get("messages") if row.scores else None
    rec["memory_ok"] = row.scores.get("memory_ok") if row.scores else None
    rec["wall_seconds"] = row.wall_seconds
    rec["verify_ok"] = row.verify.get("ok") if row.verify else None
    return rec
