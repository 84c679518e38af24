"""Layer placement export (``dnnpart.exporters``) checked end to end by ``verify``.

Every case exports a split, checks each sub-model with the ONNX checker, runs it through
the local executor and compares outputs and bytes with the whole model and the plan.
"""

from __future__ import annotations

import json
from pathlib import Path

import models
import numpy as np
import onnx
import pytest

import dnnpart
from dnnpart.exporters import export
from dnnpart.exporters._staging import assign_stages
from dnnpart.plugins import get_registry
from dnnpart.problem._build import build_problem
from dnnpart.runtime import verify
from dnnpart.scoring import score

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LAYER_METHODS = sorted(
    name
    for name, cls in get_registry().partitioners.items()
    if "layer" in getattr(cls, "granularities", ())
)


def plan_with_labels(graph, k: int, granularity: str, labels) -> dnnpart._plan.Plan:
    """A plan whose labels are given (scored like any plan)."""
    plan = dnnpart.partition(graph, k=k, method="vertical", granularity=granularity)
    plan.labels = np.asarray(labels, dtype=np.int64)
    plan.scores = score(build_problem(graph, granularity, k=k), plan.labels).to_dict()
    return plan


def export_and_verify(model, plan, out: Path, **kwargs):
    doc = export(model, plan, out)
    for s in doc["stages"]:
        onnx.checker.check_model(str(out / s["file"]), full_check=True)
    report = verify(out, model=model, **kwargs)
    assert report.ok, report.problems
    assert report.bytes_measured == report.bytes_planned == plan.scores["volume_bytes"]
    return doc, report


# -- staging ---------------------------------------------------------------------------


def test_round_trip_between_devices_cuts_a_device_into_two_stages():
    # a (dev 0) -> b (dev 1) -> c (dev 0): c must wait for b, so device 0 has two stages
    stage_of, order = assign_stages([0, 1, 0], [[], [0], [1]])
    assert stage_of == [(0, 0), (1, 0), (0, 1)]
    assert order == [(0, 0), (1, 0), (0, 1)]


def test_independent_work_of_a_device_shares_one_stage():
    # a (dev 0) -> b (dev 1); c (dev 0) reads b, d (dev 0) reads nothing: d joins a stage
    stage_of, order = assign_stages([0, 1, 0, 0], [[], [0], [1], []])
    assert stage_of[0] == stage_of[3] == (0, 0)
    assert stage_of[2] == (0, 1)
    assert len(order) == 3


def test_stages_run_after_every_stage_they_read():
    rng = np.random.default_rng(0)
    n, k = 40, 3
    devices = rng.integers(0, k, n).tolist()
    deps = [sorted(set(rng.integers(0, u, 3).tolist())) if u else [] for u in range(n)]
    stage_of, order = assign_stages(devices, deps)
    pos = {key: i for i, key in enumerate(order)}
    for u in range(n):
        assert stage_of[u][0] == devices[u]
        for p in deps[u]:
            assert pos[stage_of[p]] <= pos[stage_of[u]]
            if devices[p] != devices[u]:
                assert pos[stage_of[p]] < pos[stage_of[u]]


# -- the example MLP -------------------------------------------------------------------


@pytest.mark.parametrize("method", LAYER_METHODS)
@pytest.mark.parametrize("k", [2, 3, 4])
def test_example_mlp_layer_split_verifies(tmp_path, method, k):
    graph = dnnpart.load(MLP)
    plan = dnnpart.partition(graph, k=k, method=method, granularity="layer")
    doc, report = export_and_verify(MLP, plan, tmp_path / "out", samples=2)
    placed = [name for s in doc["stages"] for name in s["layers"]]
    assert sorted(placed) == sorted(layer.name for layer in graph.layers)  # each layer once
    assert sum(s["macs"] for s in doc["stages"]) == graph.macs


def test_example_mlp_on_its_test_data(tmp_path):
    graph = dnnpart.load(MLP)
    plan = plan_with_labels(graph, 3, "layer", [0, 0, 0, 1, 1, 2, 2])  # input, 6 layers
    doc, report = export_and_verify(
        MLP, plan, tmp_path / "out", inputs=ROOT / "examples" / "mlp" / "digits_test.npz"
    )
    assert report.samples == 360
    # input on 0; fc1,relu1 on 0; fc2,relu2 on 1; fc3,softmax on 2: relu1 0->1, relu2 1->2
    sent = {(t["from"], t["to"], t["tensor"]): t["bytes"] for t in doc["transfers"]}
    assert sent == {(0, 1, "relu1"): 300 * 4, (1, 2, "relu2"): 100 * 4}
    assert report.link_bytes[0][1] == 1200 and report.link_bytes[1][2] == 400


def test_device_graph_cycle_gives_stages_that_wait(tmp_path):
    graph = dnnpart.load(MLP)
    # fc1 on 0, relu1 on 1, fc2 on 0 again: device 0 must run in two stages
    plan = plan_with_labels(graph, 2, "layer", [0, 0, 1, 0, 0, 0, 0])
    doc, _ = export_and_verify(MLP, plan, tmp_path / "out", samples=2)
    dev0 = [s for s in doc["stages"] if s["device"] == 0]
    assert [s["layers"] for s in dev0] == [["fc1"], ["fc2", "relu2", "fc3", "softmax"]]
    order = [doc["stages"][i]["layers"][0] for i in doc["order"]]
    assert order == ["fc1", "relu1", "fc2"]


# -- control flow, transformer block ---------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_control_flow_layers_stay_whole_under_any_placement(tmp_path, seed):
    path = models.save(models.control_flow(), tmp_path, "cf.onnx")
    graph = dnnpart.load(path)
    n = len(graph.inputs) + len(graph.layers)
    labels = np.random.default_rng(seed).integers(0, 3, n)
    plan = plan_with_labels(graph, 3, "layer", labels)
    doc, _ = export_and_verify(path, plan, tmp_path / "out", samples=3, seed=seed)
    for s in doc["stages"]:
        proto = onnx.load(str(tmp_path / "out" / s["file"]))
        ops = {n.op_type for n in proto.graph.node}
        # an If or Loop appears only with its layer, bodies inside it
        assert ("If" in ops) == ("branch" in s["layers"])
        assert ("Loop" in ops) == ("repeat" in s["layers"])


@pytest.mark.parametrize("method", LAYER_METHODS)
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("build", [models.transformer_block, models.control_flow])
def test_transformer_and_control_flow_layer_splits_verify(tmp_path, method, k, build):
    path = models.save(build(), tmp_path, "m.onnx")
    plan = dnnpart.partition(dnnpart.load(path), k=k, method=method, granularity="layer")
    export_and_verify(path, plan, tmp_path / "out", samples=2)


def test_external_weights_are_written_to_a_data_file_by_index(tmp_path):
    path = models.save(models.external_mlp(), tmp_path / "m", external_data=True)
    plan = dnnpart.partition(dnnpart.load(path), k=2, method="vertical", granularity="layer")
    doc = export(path, plan, tmp_path / "out", external_min_bytes=1)
    data = [s["data"] for s in doc["stages"]]
    assert data == [s["file"].replace(".onnx", ".data") for s in doc["stages"]]
    assert all((tmp_path / "out" / d).stat().st_size > 0 for d in data)
    assert verify(tmp_path / "out", samples=2, model=path).ok


# -- real models: the light models of the onnx wheel (weights are ConstantOfShape) -------


@pytest.mark.parametrize("method", ["vertical", "metis"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_resnet50_layer_split_verifies(tmp_path, method, k):
    path = LIGHT / "light_resnet50.onnx"
    plan = dnnpart.partition(dnnpart.load(path), k=k, method=method, granularity="layer")
    export_and_verify(path, plan, tmp_path / "out", samples=1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "light_densenet121.onnx",
        "light_inception_v1.onnx",
        "light_inception_v2.onnx",
        "light_shufflenet.onnx",
        "light_squeezenet.onnx",
        "light_vgg19.onnx",
        "light_zfnet512.onnx",
        "light_bvlc_alexnet.onnx",
    ],
)
def test_light_models_layer_split_verifies(tmp_path, name):
    path = LIGHT / name
    plan = dnnpart.partition(dnnpart.load(path), k=4, method="metis", granularity="layer")
    doc, _ = export_and_verify(path, plan, tmp_path / "out", samples=1)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest == doc
