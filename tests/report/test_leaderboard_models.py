"""The leaderboard on real models: the example MLP and the Graph Challenge layers, k = 2 4,
every partitioner, at both granularities, written in all four formats."""

from __future__ import annotations

import csv
import json

import pytest
from _problems import REPO
from lb_graph_challenge import write_gc_model
from lb_rows import network_references

from dnnpart.plugins import get_registry
from dnnpart.report import run_leaderboard, write_report

MLP = REPO / "examples" / "mlp" / "mlp.onnx"


@pytest.mark.slow
def test_mlp_and_graph_challenge_all_partitioners_all_formats(tmp_path):
    gc = write_gc_model(tmp_path)
    models = [str(MLP), str(gc)]
    rows = run_leaderboard(models, [2, 4], "all", granularity=("neuron", "layer"), timeout=120)

    reg = get_registry()
    builtins = {n for n, owner in reg.owner.items() if owner == "dnnpart"}
    expected = {
        (m, g, k, name)
        for m in models
        for g in ("neuron", "layer")
        for k in (2, 4)
        for name, cls in reg.partitioners.items()
        if g in cls.granularities
    }
    assert {(r.model, r.granularity, r.k, r.partitioner) for r in rows} == expected
    for r in rows:
        if r.partitioner in builtins:
            assert r.status == "ok", (r.model, r.granularity, r.k, r.partitioner, r.reason)
    # the Graph Challenge facts of the shared data README hold on the board too
    vertical = next(
        r for r in rows
        if r.model == str(gc) and (r.granularity, r.k, r.partitioner) == ("neuron", 2, "vertical")
    )  # fmt: skip
    assert vertical.scores["cut"] == 65536 and vertical.scores["volume"] == 4096

    paths = {ext: tmp_path / f"board.{ext}" for ext in ("html", "md", "json", "csv")}
    for path in paths.values():
        write_report(rows, path)

    doc = json.loads(paths["json"].read_text())
    assert len(doc["rows"]) == len(rows)
    assert {r["rank"] for r in doc["rows"] if r["status"] == "ok"} >= {1, 2}
    records = list(csv.DictReader(paths["csv"].open()))
    assert len(records) == len(rows)
    md = paths["md"].read_text()
    for name in ("mlp.onnx", "gc.onnx"):
        for g in ("neuron", "layer"):
            assert f"## {name}, {g} granularity" in md
    page = paths["html"].read_text()
    assert page.count('src="data:image/png;base64,') == 3 * 2 * 2  # 3 plots x models x grans
    assert network_references(page) == []
