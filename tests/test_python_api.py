"""The Python API mirrors the command line: load, partition, export, verify, leaderboard,
with the plan's passes and notes as data."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dnnpart
from dnnpart._notes import DnnpartNote, collecting, note

MLP = Path(__file__).resolve().parents[1] / "examples" / "mlp" / "mlp.onnx"


def test_top_level_names_are_the_real_functions_with_their_signatures():
    params = inspect.signature(dnnpart.partition).parameters
    assert {"graph", "k", "method", "devices", "prune", "seed", "options"} <= set(params)
    assert dnnpart.Plan is __import__("dnnpart._plan", fromlist=["Plan"]).Plan
    assert "out_dir" in inspect.signature(dnnpart.export).parameters
    assert "folder" in inspect.signature(dnnpart.verify).parameters
    assert "models" in inspect.signature(dnnpart.leaderboard).parameters
    with pytest.raises(AttributeError):
        dnnpart.no_such_thing  # noqa: B018


def test_importing_dnnpart_does_not_load_the_solvers_or_onnxruntime():
    code = (
        "import sys, dnnpart; "
        "print(sorted(m for m in ('scipy.optimize', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_partition_export_verify_through_the_top_level_api(tmp_path):
    graph = dnnpart.load(MLP)
    plan = dnnpart.partition(graph, k=2, method="metis", prune=0.9, seed=0)
    # the passes are data: the prune ratio, then what the dead-neuron pass found
    assert [p["name"] for p in plan.passes] == ["magnitude_prune", "remove_dead_neurons"]
    assert plan.passes[0]["ratio"] == 0.9
    dead = plan.passes[1]["neurons"]
    assert dead == plan.parameters["dead_neurons"] > 0
    assert any(f"{dead} neurons with no outgoing synapse" in m for m in plan.messages)
    plan.save(tmp_path / "plan.json")
    assert json.loads((tmp_path / "plan.json").read_text())["passes"] == plan.passes
    doc = dnnpart.export(MLP, tmp_path / "plan.json", tmp_path / "split")
    assert doc["model"]["passes"] == plan.passes
    report = dnnpart.verify(tmp_path / "split", samples=2, model=MLP)  # not beside the split
    assert report.ok and report.bytes_measured == report.bytes_planned


def test_a_replay_that_finds_other_dead_neurons_is_refused(tmp_path):
    plan = dnnpart.partition(dnnpart.load(MLP), k=2, method="vertical", prune=0.9)
    plan.passes[1]["neurons"] += 1
    with pytest.raises(dnnpart.DnnpartError, match="not the model the plan was made for"):
        dnnpart.export(MLP, plan, tmp_path / "split")
    assert not (tmp_path / "split").exists()


def test_an_unknown_pass_is_a_usage_error(tmp_path):
    plan = dnnpart.partition(dnnpart.load(MLP), k=2, method="vertical")
    plan.passes = [{"name": "format_disk"}]
    with pytest.raises(dnnpart.DnnpartError, match="unknown model pass"):
        dnnpart.export(MLP, plan, tmp_path / "split")


def test_notes_are_collected_inside_a_block_and_warnings_outside():
    with collecting() as notes:
        note("fell back to the loose capacities")
        note("fell back to the loose capacities")  # said once
        note("another")
    assert notes == ["fell back to the loose capacities", "another"]
    with pytest.warns(DnnpartNote, match="nobody collects"):
        note("nobody collects this")


@pytest.mark.slow
def test_leaderboard_through_the_top_level_api():
    rows = dnnpart.leaderboard([str(MLP)], ks=[2], partitioners=["vertical", "metis"], jobs=1)
    assert {r.partitioner for r in rows} == {"vertical", "metis"}
    assert all(r.status == "ok" for r in rows)
    assert np.isfinite([r.scores["volume"] for r in rows]).all()
