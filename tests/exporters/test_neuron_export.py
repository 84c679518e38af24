"""Neuron placement export: sliced weights per device, only the activations needed."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dnnpart
from dnnpart.compress import magnitude_prune, remove_dead_neurons
from dnnpart.errors import UnsupportedModelError
from dnnpart.exporters import export
from dnnpart.plugins import get_registry
from dnnpart.problem._build import build_problem
from dnnpart.runtime import verify
from dnnpart.scoring import score

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
NEURON_METHODS = sorted(
    name
    for name, cls in get_registry().partitioners.items()
    if "neuron" in getattr(cls, "granularities", ())
)


def export_and_verify(model, plan, out: Path, **kwargs):
    doc = export(model, plan, out)
    for s in doc["stages"]:
        onnx.checker.check_model(str(out / s["file"]), full_check=True)
    report = verify(out, model=model, **kwargs)
    assert report.ok, report.problems
    assert report.bytes_measured == report.bytes_planned == plan.scores["volume_bytes"]
    return doc, report


def dense_weights(out: Path, doc) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Per original dense layer: (device, weight) of every sub-model holding a part of it."""
    found: dict[str, list[tuple[int, np.ndarray]]] = {}
    for s in doc["stages"]:
        proto = onnx.load(str(out / s["file"]))
        inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        for node in proto.graph.node:
            if node.op_type in ("MatMul", "Gemm") and node.input[1] in inits:
                found.setdefault(node.name, []).append((s["device"], inits[node.input[1]]))
    return found


@pytest.mark.parametrize("prune", [None, 0.9])
@pytest.mark.parametrize("method", NEURON_METHODS)
@pytest.mark.parametrize("k", [2, 3, 4])
def test_example_mlp_neuron_split_verifies(tmp_path, prune, method, k):
    graph = dnnpart.load(MLP)
    plan = dnnpart.partition(graph, k=k, method=method, granularity="neuron", prune=prune)
    export_and_verify(MLP, plan, tmp_path / "out", samples=2)


@pytest.mark.parametrize("prune", [None, 0.9])
def test_sub_models_do_no_duplicated_work(tmp_path, prune):
    graph = dnnpart.load(MLP)
    plan = dnnpart.partition(graph, k=3, method="metis", granularity="neuron", prune=prune)
    doc = export(MLP, plan, tmp_path / "out")
    # the plan's pruning: magnitude pruning, then the neurons it left dead
    reference = remove_dead_neurons(magnitude_prune(graph, prune))[0] if prune else graph
    sub_macs = sum(dnnpart.load(tmp_path / "out" / s["file"]).macs for s in doc["stages"])
    assert sub_macs == sum(s["macs"] for s in doc["stages"])
    if prune:
        assert sub_macs < reference.macs  # rows without a synapse into a device are dropped
    else:
        assert sub_macs == reference.macs
    parts = dense_weights(tmp_path / "out", doc)
    for layer in reference.splittable_layers:
        pieces = parts[layer.name]
        # every neuron's column exactly once, every synapse exactly once
        assert sum(w.shape[1] for _, w in pieces) == layer.neurons
        assert sum(int(np.count_nonzero(w)) for _, w in pieces) == layer.synapse_count()
        assert len({d for d, _ in pieces}) == len(pieces)


def test_each_device_receives_exactly_the_activations_its_neurons_need(tmp_path):
    graph = dnnpart.load(MLP)
    plan = dnnpart.partition(graph, k=3, method="metis", granularity="neuron", prune=0.9)
    doc = export(MLP, plan, tmp_path / "out")
    pruned = remove_dead_neurons(magnitude_prune(graph, 0.9))[0]
    labels = np.asarray(plan.labels)
    spans = zip(plan.offsets[:-1], plan.offsets[1:], strict=True)
    group = dict(zip(plan.groups, spans, strict=True))

    def owners(name):
        lo, hi = group[name]
        return labels[lo:hi]

    # dense layer -> (tensor it reads, the group that owns that tensor's neurons)
    reads = {"fc1": ("input", "input:input"), "fc2": ("relu1", "fc1"), "fc3": ("relu2", "fc2")}
    expected = {}
    for layer in pruned.splittable_layers:
        tensor, src_group = reads[layer.name]
        w = layer.weights["weight"].numpy()
        src, dst = owners(src_group), owners(layer.name)
        for d in range(3):
            rows = np.flatnonzero(np.any(w[:, dst == d] != 0, axis=1))
            for o in range(3):
                got = rows[src[rows] == o]
                if o != d and got.size:
                    expected[(tensor, o, d)] = got.tolist()
    soft = int(owners("softmax")[0])  # the softmax gathers every logit
    for o in range(3):
        mine = np.flatnonzero(owners("fc3") == o)
        if o != soft and mine.size:
            expected[("logits", o, soft)] = mine.tolist()
    got = {(t["tensor"], t["from"], t["to"]): t["indices"] for t in doc["transfers"]}
    assert got == expected
    assert doc["transfer_bytes"] == 4 * sum(len(v) for v in expected.values())


@pytest.mark.parametrize("method", ["vertical", "metis"])
def test_gemm_mlp_neuron_split_verifies(tmp_path, method):
    path = models.save(models.mlp_gemm((8, 6, 5, 3)), tmp_path, "gemm.onnx")
    plan = dnnpart.partition(dnnpart.load(path), k=3, method=method, granularity="neuron")
    export_and_verify(path, plan, tmp_path / "out", samples=2)


def test_symbolic_batch_runs_any_batch(tmp_path):
    path = models.save(models.mlp_matmul((6, 5, 4, 3), batch="N", prune=0.3), tmp_path, "m.onnx")
    plan = dnnpart.partition(dnnpart.load(path), k=2, method="vertical", granularity="neuron")
    export_and_verify(path, plan, tmp_path / "out", samples=1)
    x = np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32)
    report = verify(tmp_path / "out", inputs={"input": x})
    assert report.ok and report.samples == 7


# Mt-KaHyPar's placement of this model sends two tensors of one vertex (an op's input and
# a neuron-wise op's output, both read by the If/Loop bodies) to one device: the plan's
# nets count both (44 bytes; a per-vertex count said 28).
@pytest.mark.parametrize("method", NEURON_METHODS)
def test_control_flow_model_neuron_split_verifies(tmp_path, method):
    path = models.save(models.control_flow(), tmp_path, "cf.onnx")
    plan = dnnpart.partition(dnnpart.load(path), k=3, method=method, granularity="neuron")
    export_and_verify(path, plan, tmp_path / "out", samples=3)


def test_dense_reading_another_axis_than_the_neurons_is_refused(tmp_path):
    # Conv (4 channels of 8 x 8) -> MatMul over the last axis (8 columns): the dense layer's
    # features are not the conv's neurons
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    m = rng.standard_normal((8, 5)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("MatMul", ["c", "m"], ["y"], name="dense"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(m, "m")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = models.save(model, tmp_path, "bad.onnx")
    plan = dnnpart.partition(dnnpart.load(path), k=2, method="vertical", granularity="neuron")
    with pytest.raises(UnsupportedModelError, match="dense"):
        export(path, plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"groups": 1},
        {"groups": 2},
        {"groups": 2, "prune": 0.6},
        {"channels": (4, 6, 6), "groups": 6},  # depthwise
        {"channels": (4, 6, 6), "groups": 3, "prune": 0.5},
    ],
)
@pytest.mark.parametrize("method", ["vertical", "metis"])
@pytest.mark.parametrize("k", [2, 3])
def test_conv_chain_neuron_split_computes_the_same_outputs(tmp_path, kwargs, method, k):
    path = models.save(models.conv_net(**kwargs), tmp_path, "conv.onnx")
    graph = dnnpart.load(path)
    plan = dnnpart.partition(graph, k=k, method=method, granularity="neuron")
    doc = export(path, plan, tmp_path / "out")
    report = verify(tmp_path / "out", samples=2)
    assert not [p for p in report.problems if "output" in p], report.problems
    assert report.bytes_measured == doc["transfer_bytes"]
    # A channel sent to the whole Flatten after the global average pool is 1 value, not
    # conv1's 8 x 8: the plan counts the pooled tensor, as the split sends it.
    assert report.bytes_planned == report.bytes_measured == plan.scores["volume_bytes"]
    pooled = [t for t in doc["transfers"] if t["tensor"] == "p"]
    others = [t for t in doc["transfers"] if t["tensor"] != "p"]
    assert all(t["bytes"] == len(t["indices"]) * 1 * 4 for t in pooled)
    assert all(t["bytes"] == len(t["indices"] or [0]) * 64 * 4 for t in others if t["indices"])
    sub_macs = sum(dnnpart.load(tmp_path / "out" / s["file"]).macs for s in doc["stages"])
    assert sub_macs == sum(s["macs"] for s in doc["stages"])
    assert sub_macs <= graph.macs
    if "prune" not in kwargs:
        assert sub_macs == graph.macs


@pytest.mark.parametrize("method", ["vertical", "metis"])
def test_transformer_block_neuron_split_verifies(tmp_path, method):
    path = models.save(models.transformer_block(), tmp_path, "tb.onnx")
    plan = dnnpart.partition(dnnpart.load(path), k=3, method=method, granularity="neuron")
    export_and_verify(path, plan, tmp_path / "out", samples=2)


def test_two_tensors_of_one_neuron_sent_to_one_device_cost_twice(tmp_path):
    # Input feature x[5] on device 1, everything else on 0. ln1 (whole, device 0) reads x;
    # residual1 = x + attn follows x, so x1[5] is computed on device 1 and ln2 (device 0)
    # reads it: x[5] and x1[5] both go 1 -> 0: two messages of 4 rows x 4 bytes, and the
    # plan (one net per tensor and neuron) counts both.
    path = models.save(models.transformer_block(seq=4, d_model=8), tmp_path, "tb.onnx")
    graph = dnnpart.load(path)
    plan = dnnpart.partition(graph, k=2, method="vertical", granularity="neuron")
    labels = np.zeros(plan.offsets[-1], dtype=np.int64)
    labels[plan.offsets[plan.groups.index("input:x")] + 5] = 1
    plan.labels = labels
    plan.scores = score(build_problem(graph, "neuron", k=2), labels).to_dict()
    doc = export(path, plan, tmp_path / "out")
    sent = sorted((t["tensor"], t["from"], t["to"], t["indices"][0]) for t in doc["transfers"])
    assert ("x", 1, 0, 5) in sent and ("x1", 1, 0, 5) in sent
    report = verify(tmp_path / "out", samples=2)
    assert not [p for p in report.problems if "output" in p]
    assert report.bytes_measured == report.bytes_planned
    by_tensor = {t["tensor"]: t["bytes"] for t in doc["transfers"] if t["from"] == 1}
    assert by_tensor["x"] == by_tensor["x1"] == 4 * 4


# -- real models: pooling, residuals and concatenations between split convolutions -------
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.parametrize(
    ("name", "method", "k"),
    [
        ("squeezenet", "metis", 3),
        pytest.param("resnet50", "vertical", 2, marks=pytest.mark.slow),
        pytest.param("resnet50", "kl", 4, marks=pytest.mark.slow),
        pytest.param("inception_v2", "metis", 3, marks=pytest.mark.slow),
        pytest.param("densenet121", "munkres", 3, marks=pytest.mark.slow),
    ],
)
def test_light_model_neuron_split_moves_exactly_the_planned_bytes(tmp_path, name, method, k):
    # Max/average pools shrink a channel before it is sent (squeezenet, inception),
    # residual adds read one channel through two tensors (resnet), dense blocks
    # concatenate (densenet): the plan's nets must count what the split sends, byte for
    # byte. Weights are random (models.light_with_weights) so that every channel differs
    # and a misplaced one changes the outputs.
    path = models.save(models.light_with_weights(LIGHT / f"light_{name}.onnx"), tmp_path, "m.onnx")
    plan = dnnpart.partition(dnnpart.load(path), k=k, method=method, granularity="neuron")
    doc = export(path, plan, tmp_path / "out")
    report = verify(tmp_path / "out", samples=2)
    assert report.ok, report.problems
    assert report.bytes_measured == report.bytes_planned == plan.scores["volume_bytes"]
    assert report.bytes_measured == doc["transfer_bytes"] > 0


@pytest.mark.parametrize("op", ["GlobalAveragePool", "InstanceNormalization"])
def test_per_channel_op_after_dense_on_the_last_axis_is_placed_whole(tmp_path, op):
    # MatMul [1, 6, 8] -> op: the dense neurons run along axis 2, which the pool averages
    # (tf2onnx writes a layer norm's moments this way) and instance norm normalises over;
    # found in examples/corpus/tf_attention.onnx, where following the split gave pieces of
    # [1, 6, 4] whose pool output the exporter shaped [1, 6, 4] (the checker refused it)
    rng = np.random.default_rng(0)
    m = rng.standard_normal((8, 8)).astype(np.float32)
    inits = [numpy_helper.from_array(m, "m")]
    args = ["h"]
    if op == "InstanceNormalization":  # scale and bias per channel: axis 1, six of them
        inits += [numpy_helper.from_array(np.full(6, 1.5, np.float32), n) for n in "sb"]
        args += ["s", "b"]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "m"], ["h"], name="dense"),
            helper.make_node(op, args, ["y"], name="per_channel"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8 if args[1:] else 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = models.save(model, tmp_path, "m.onnx")
    graph = dnnpart.load(path)
    plan = dnnpart.partition(graph, k=2, method="metis", granularity="neuron")
    export_and_verify(path, plan, tmp_path / "out", samples=2)
