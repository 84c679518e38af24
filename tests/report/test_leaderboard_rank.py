"""Ranking leaderboard rows: feasible first, by the objective (latency; time per sample for
layer placement), ties within 1 %, failures last."""

from __future__ import annotations

import pytest
from lb_rows import make_row

from dnnpart.errors import UsageError
from dnnpart.report import COLUMNS, best_values, flat_record, rank, rank_metric
from dnnpart.report._rank import is_feasible, rank_text


def names(rows):
    return [(r.k, r.rank, r.partitioner) for r in rows]


def test_rank_by_latency_within_each_k():
    rows = [
        make_row("a", 4, latency=3e-3),
        make_row("b", 2, latency=2e-3),
        make_row("c", 2, latency=1e-3),
        make_row("d", 4, latency=1e-3),
        make_row("e", 2, status="failed", reason="boom"),
    ]
    ranked = rank(rows)
    assert names(ranked) == [(2, 1, "c"), (2, 2, "b"), (2, None, "e"), (4, 1, "d"), (4, 2, "a")]
    assert rows[0].rank is None  # rank returns copies, the input is untouched


def test_ties_broken_by_volume_then_imbalance_then_name():
    rows = [
        make_row("z", latency=1e-3, volume=500, imbalance=1.0),
        make_row("y", latency=1e-3, volume=500, imbalance=1.2),
        make_row("x", latency=1e-3, volume=900),
        make_row("w", latency=1e-3, volume=500, imbalance=1.0),
    ]
    assert [r.partitioner for r in rank(rows)] == ["w", "z", "y", "x"]


def test_layer_granularity_ranks_by_time_per_sample():
    assert rank_metric("layer") == "time_per_sample_s"
    assert rank_metric("neuron") == "latency_s"
    rows = [
        make_row("fast-latency", granularity="layer", latency=1e-3, tps=9e-3),
        make_row("fast-pipeline", granularity="layer", latency=5e-3, tps=2e-3),
    ]
    assert [r.partitioner for r in rank(rows)] == ["fast-pipeline", "fast-latency"]


def test_rows_with_measured_times_rank_by_max_load():
    assert rank_metric("layer", profiled=True) == "max_load"
    assert rank_metric("neuron", profiled=True) == "latency_s"
    assert rank_metric("layer", "volume", profiled=True) == "volume_bytes"
    # max-load and the scorer's time per sample can disagree (a tensor sent to two
    # devices): on measured times the paper's max-load decides
    rows = [
        make_row("a", 3, granularity="layer", tps=1e-3, max_load=4e-3),
        make_row("b", 3, granularity="layer", tps=2e-3, max_load=3e-3),
    ]
    ranked = rank(rows)
    assert [(r.partitioner, r.rank) for r in ranked] == [("b", 1), ("a", 2)]
    rec = flat_record(ranked[0])
    assert rec["rank_metric"] == "max_load" and rec["rank_value"] == 3e-3
    assert rec["max_load"] == 3e-3 and rec["max_load_ratio"] == 0.25
    assert flat_record(make_row("c", granularity="layer", tps=1e-3))["rank_metric"] == (
        "time_per_sample_s"
    )


def test_failures_follow_in_status_order_and_groups_keep_model_order():
    rows = [
        make_row("s", status="skipped", reason="layer only", model="b.onnx"),
        make_row("t", status="timeout", reason="slow", model="b.onnx"),
        make_row("f", status="failed", reason="boom", model="b.onnx"),
        make_row("ok", model="b.onnx"),
        make_row("first", model="a.onnx"),
    ]
    ranked = rank(rows)
    assert [(r.model, r.partitioner, r.rank) for r in ranked] == [
        ("b.onnx", "ok", 1),
        ("b.onnx", "f", None),
        ("b.onnx", "t", None),
        ("b.onnx", "s", None),
        ("a.onnx", "first", 1),
    ]


def test_best_values_ignore_failed_rows_and_missing_figures():
    rows = [
        make_row("a", latency=2e-3, volume=100, imbalance=1.3),
        make_row("b", latency=1e-3, volume=300, imbalance=1.1),
        make_row("c", status="failed", reason="x"),
    ]
    best = best_values(rows)
    assert best["latency_s"] == 1e-3
    assert best["volume_bytes"] == 100
    assert best["imbalance"] == 1.1
    assert best["latency_ratio"] == 0.5  # 1e-3 / 2e-3
    assert "time_per_sample_s" not in best  # None at neuron granularity


def test_flat_record_has_every_column_and_the_ranking_figure():
    row = rank([make_row("a", latency=1e-3, base_latency=4e-3)])[0]
    rec = flat_record(row)
    for col in COLUMNS:
        assert col.key in rec
    assert rec["rank"] == 1 and rec["rank_metric"] == "latency_s"
    assert rec["rank_value"] == 1e-3 and rec["rank_ratio"] == 0.25
    assert rec["memory_max_bytes"] == 2000.0


def _with(row, **scores):
    row.scores.update(scores)
    return row


def test_rows_within_one_percent_share_a_rank():
    # MLP latencies that differ in the fourth digit are one rank, not 1 to 6
    rows = [
        make_row(n, latency=t)
        for n, t in zip("abcdef", [1.0003, 1.0001, 1.0, 1.0004, 1.0002, 1.0005], strict=True)
    ]
    rows += [make_row("slow", latency=1.02), make_row("slower", latency=1.0304)]
    ranked = rank(rows)
    assert [(r.partitioner, r.rank) for r in ranked] == [
        ("c", 1), ("b", 1), ("e", 1), ("a", 1), ("d", 1), ("f", 1), ("slow", 7), ("slower", 8)
    ]  # fmt: skip
    assert all(r.feasible for r in ranked)


def test_ties_are_measured_from_the_first_row_of_the_rank():
    # 1.0 -> 1.009 ties, 1.018 is within 1 % of 1.009 but not of 1.0: a new rank
    rows = [make_row("a", latency=1.0), make_row("b", latency=1.009), make_row("c", latency=1.018)]
    assert [r.rank for r in rank(rows)] == [1, 1, 3]


def test_unbalanced_and_oversized_rows_rank_after_feasible_ones_and_are_marked():
    rows = [
        _with(make_row("unbalanced", latency=1e-4, imbalance=1.9), balance_ok=False),
        _with(make_row("too-big", latency=2e-4), memory_ok=False, balance_ok=True),
        _with(make_row("fair", latency=9e-4), balance_ok=True),
        _with(make_row("fair-slow", latency=2e-3), balance_ok=True),
    ]
    rows[0].baseline["imbalance"] = 1.1  # vertical is better balanced
    ranked = rank(rows)
    assert [(r.partitioner, r.rank, r.feasible) for r in ranked] == [
        ("fair", 1, True),
        ("fair-slow", 2, True),
        ("unbalanced", 3, False),
        ("too-big", 4, False),
    ]
    assert [rank_text(r) for r in ranked] == ["1", "2", "3 ✗", "4 ✗"]
    assert flat_record(ranked[2])["feasible"] is False


def test_as_balanced_as_vertical_counts_as_balanced():
    # coarse layers: no split reaches the tolerance, vertical's own imbalance is the bar
    row = _with(make_row("p", imbalance=1.2), balance_ok=False)
    row.baseline["imbalance"] = 1.25
    assert is_feasible(row)
    row.baseline["imbalance"] = 1.1
    assert not is_feasible(row)


def test_time_objectives_at_layer_granularity_need_no_balance():
    row = _with(make_row("pipe", granularity="layer", tps=1e-3, imbalance=2.0), balance_ok=False)
    row.baseline["imbalance"] = 1.1
    assert is_feasible(row, "throughput") and is_feasible(row, "latency")
    assert not is_feasible(row, "volume")


@pytest.mark.parametrize(
    ("objective", "order"),
    [
        ("throughput", ["pipelined", "one-sample", "few-bytes"]),
        ("latency", ["one-sample", "pipelined", "few-bytes"]),
        ("volume", ["few-bytes", "one-sample", "pipelined"]),
    ],
)
def test_rank_by_the_chosen_objective(objective, order):
    rows = [
        make_row("pipelined", granularity="layer", latency=5e-3, tps=1e-3, volume=900),
        make_row("one-sample", granularity="layer", latency=1e-3, tps=3e-3, volume=500),
        make_row("few-bytes", granularity="layer", latency=9e-3, tps=9e-3, volume=100),
    ]
    for r in rows:
        _with(r, balance_ok=True)
    assert [r.partitioner for r in rank(rows, objective)] == order
    for r in rows:
        r.objective = objective  # the row's own objective (as the leaderboard sets it)
    assert [r.partitioner for r in rank(rows)] == order
    assert rank_metric("layer", objective) == {
        "throughput": "time_per_sample_s", "latency": "latency_s", "volume": "volume_bytes"
    }[objective]  # fmt: skip


def test_leaderboard_runs_and_ranks_on_the_objective():
    from dnnpart.report import run_leaderboard

    rows = run_leaderboard(
        ["examples/mlp/mlp.onnx"], [2], ["vertical", "kl"], granularity="layer",
        objective="volume", jobs=1,
    )  # fmt: skip
    assert {r.objective for r in rows} == {"volume"}
    ranked = rank(rows)
    values = [r.scores["volume_bytes"] for r in ranked]
    assert values == sorted(values)
    kl = next(r for r in ranked if r.partitioner == "kl")
    assert kl.scores["volume_bytes"] <= kl.baseline["volume_bytes"]
    with pytest.raises(UsageError, match="objective"):
        run_leaderboard(["examples/mlp/mlp.onnx"], [2], ["vertical"], objective="cut")
