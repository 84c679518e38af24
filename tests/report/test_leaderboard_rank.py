"""Ranking leaderboard rows: by latency (time per sample for layer placement), ties, failures."""

from __future__ import annotations

from lb_rows import make_row

from dnnpart.report import COLUMNS, best_values, flat_record, rank, rank_metric


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
