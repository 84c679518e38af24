"""Rank leaderboard rows: by the time a user feels, with every figure against vertical.

Within each (model, granularity, k) the rows that ran are ordered by

* ``latency_s`` at neuron granularity (layer-synchronous latency of one sample), or
* ``time_per_sample_s`` at layer granularity (the pipelined time per sample, Tarnawski et
  al. 2020; ``latency_s`` when a scorer gives none),

ties broken by ``volume_bytes``, then ``imbalance``, then name, so the order is total and
reproducible. Rows that failed, timed out or were skipped come last without a rank. Every
figure is also given as a ratio to the vertical baseline of the same problem (the thesis'
"overall reduce" is ``1 - ratio``), taken from the row's own ``ratios``: the baseline is
scored in the same run, so a ratio exists even when ``vertical`` is not on the board.

:data:`COLUMNS` is the one list of figures every renderer shows (lower is better for all
of them); :func:`best_values` gives the best of each column in a group, for highlighting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dnnpart.report._rows import Row

__all__ = [
    "Column",
    "COLUMNS",
    "rank",
    "rank_metric",
    "rank_label",
    "group_rows",
    "columns_for",
    "best_values",
    "flat_record",
]


def rank_metric(granularity: str) -> str:
    """The score key rows are ranked by at this granularity."""
    return "time_per_sample_s" if granularity == "layer" else "latency_s"


def rank_label(granularity: str) -> str:
    """What rows are ranked by, for people (the column label of :func:`rank_metric`)."""
    key = rank_metric(granularity)
    return next(c.label for c in COLUMNS if c.key == key)


def _metric_value(row: Row) -> float | None:
    if row.scores is None:
        return None
    value = row.scores.get(rank_metric(row.granularity))
    return row.scores.get("latency_s") if value is None else value


def _metric_ratio(row: Row) -> float | None:
    if row.ratios is None:
        return None
    value = row.ratios.get(rank_metric(row.granularity))
    return row.ratios.get("latency_s") if value is None else value


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


def _key(row: Row) -> tuple:
    inf = float("inf")
    metric = _metric_value(row)
    volume = row.scores.get("volume_bytes") if row.scores else None
    imbalance = row.scores.get("imbalance") if row.scores else None
    return (
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


def rank(rows: Sequence[Row]) -> list[Row]:
    """Copies of ``rows``, grouped (see :func:`group_rows`) and ranked within each group.

    Rows with status ``ok`` get ``rank`` 1, 2, ... by the key in the module docstring;
    the others follow with ``rank`` None, in the order failed, timeout, skipped.
    """
    status_order = {"failed": 0, "timeout": 1, "skipped": 2, "interrupted": 3}
    out: list[Row] = []
    for group in group_rows(rows).values():
        ok = sorted((r for r in group if r.status == "ok"), key=_key)
        rest = sorted(
            (r for r in group if r.status != "ok"),
            key=lambda r: (status_order.get(r.status, 3), r.partitioner),
        )
        out += [dataclasses.replace(r, rank=i) for i, r in enumerate(ok, start=1)]
        out += [dataclasses.replace(r, rank=None) for r in rest]
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
        "rank_metric": rank_metric(row.granularity),
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
