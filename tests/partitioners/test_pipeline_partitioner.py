"""The pipeline partitioner end to end: profiled graphs, ONNX layers, devices, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from _problems import shared_data
from click.testing import CliRunner

import dnnpart
from dnnpart.cli import main
from dnnpart.devices import Device, DeviceSet, Link
from dnnpart.errors import UsageError

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
OPTIMA = {  # contiguous optimum from the paper's own DP (shared/data/README.md)
    "layer_bert24_inference.json": 17.7899,
    "operator_resnet50_inference.json": 124.349,
}


def rescore_from_json(path: Path, plan) -> float:
    """Max-load computed straight from the file and the plan's layer names (independent)."""
    doc = json.loads(path.read_text())
    nodes = {n["id"]: n for n in doc["nodes"]}
    graph = dnnpart.load(path)
    start = plan.offsets[plan.groups.index("layers")]
    device_of = {
        layer.attributes["id"]: int(plan.labels[start + i]) for i, layer in enumerate(graph.layers)
    }
    accelerators = doc["maxFPGAs"]
    load = [0.0] * (accelerators + doc["maxCPUs"])
    for nid, node in nodes.items():
        d = device_of[nid]
        load[d] += node["fpgaLatency"] if d < accelerators else node["cpuLatency"]
    cost = {e["sourceId"]: e["cost"] for e in doc["edges"]}
    receivers: dict[int, set[int]] = {}
    for e in doc["edges"]:
        receivers.setdefault(e["sourceId"], set()).add(device_of[e["destId"]])
    for src, devs in receivers.items():
        own = device_of[src]
        others = devs - {own}
        if others and own < accelerators:
            load[own] += cost[src]
        for d in others:
            if d < accelerators:
                load[d] += cost[src]
    return max(load)


@pytest.mark.parametrize("name", sorted(OPTIMA))
def test_pipeline_reaches_the_papers_contiguous_optimum(name):
    path = shared_data() / "tarnawski" / name
    graph = dnnpart.load(path)
    plan = dnnpart.partition(graph, method="pipeline")
    assert plan.granularity == "layer"
    assert plan.scores["max_load"] == pytest.approx(OPTIMA[name], rel=1e-4)
    assert rescore_from_json(path, plan) == pytest.approx(plan.scores["max_load"], rel=1e-9)
    refined = dnnpart.partition(graph, method="pipeline", refine=True)
    assert refined.scores["max_load"] <= plan.scores["max_load"] + 1e-9
    assert rescore_from_json(path, refined) == pytest.approx(refined.scores["max_load"], rel=1e-9)
    assert plan.baseline["max_load"] >= plan.scores["max_load"]


def test_import_and_partition_cli_on_a_profiled_graph():
    path = shared_data() / "tarnawski" / "layer_bert24_inference.json"
    runner = CliRunner()
    res = runner.invoke(main, ["import", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["layers"] == 32
    res = runner.invoke(main, ["partition", str(path), "-p", "pipeline", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["k"] == 7 and doc["scores"]["max_load"] == pytest.approx(17.7899, rel=1e-4)


def _resnet():
    path = LIGHT / "light_resnet50.onnx"
    if not path.is_file():
        pytest.skip(f"onnx backend test data not found at {path}")
    return dnnpart.load(path)


def test_pipeline_beats_vertical_on_resnet50_time_per_sample():
    plan = dnnpart.partition(_resnet(), k=4, method="pipeline")
    assert plan.granularity == "layer"
    assert plan.scores["time_per_sample_s"] < plan.baseline["time_per_sample_s"]


def test_heterogeneous_devices_get_work_by_speed():
    # a fast network, so that sharing the work pays off (on slow links the fastest
    # device alone wins: moving ResNet activations costs more than it saves)
    speeds = (1e12, 1e12, 2e12, 4e12)
    devices = DeviceSet(
        tuple(Device(n, s) for n, s in zip("abcd", speeds, strict=True)), Link(1e13, 5e-5)
    )
    plan = dnnpart.partition(_resnet(), devices=devices, method="pipeline")
    loads = np.asarray(plan.scores["loads"][plan.groups.index("layers")])
    share = loads / loads.sum()
    assert share[3] > share[2] > max(share[0], share[1])
    assert share[3] > 0.4


def test_pipeline_refuses_neuron_granularity():
    graph = dnnpart.load(Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx")
    with pytest.raises(UsageError, match="granularity"):
        dnnpart.partition(graph, k=2, method="pipeline", granularity="neuron")
    plan = dnnpart.partition(graph, k=2, method="pipeline")  # picks layer granularity
    assert plan.granularity == "layer"


def test_pipeline_fallback_is_reported_to_the_user():
    path = shared_data() / "tarnawski" / "operator_resnet50_inference.json"
    graph = dnnpart.load(path)
    plan = dnnpart.partition(graph, method="pipeline", options={"max_ideals": 10})
    assert plan.messages and "ideals" in " ".join(plan.messages)
    # a linearised search is still a valid, scored split, never better than the optimum
    assert plan.scores["max_load"] >= OPTIMA[path.name] * (1 - 1e-4)
