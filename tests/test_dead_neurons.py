"""Dead-neuron removal after pruning: known answers on tiny models, outputs unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dnnpart
from dnnpart._plan import Plan
from dnnpart.compress import remove_dead_neurons
from dnnpart.exporters import export
from dnnpart.runtime import verify

ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"


def three_layers(*, between: str = "Relu", hidden_output: bool = False) -> onnx.ModelProto:
    """input(3) -> fc0(4) -> act -> fc1(3) -> Relu -> fc2(2) -> output.

    fc2 reads nothing from fc1's neuron 2 (a zero row), so it is dead; fc0's neuron 3 feeds
    only fc1's neuron 2, so it is dead too. fc0's neuron 0 feeds fc1's neurons 0 and 2.
    """
    rng = np.random.default_rng(3)
    w0 = rng.uniform(0.5, 1.0, (3, 4)).astype(np.float32)
    w1 = np.array([[0.7, 0.0, 0.4], [0.0, 0.9, 0.0], [0.5, 0.6, 0.0], [0.0, 0.0, 0.8]], np.float32)
    w2 = np.array([[0.3, -0.2], [0.5, 0.1], [0.0, 0.0]], np.float32)
    inits = [numpy_helper.from_array(w, f"fc{i}.weight") for i, w in enumerate((w0, w1, w2))]
    inits += [
        numpy_helper.from_array(np.full(n, 0.1, np.float32), f"fc{i}.bias")
        for i, n in enumerate((4, 3, 2))
    ]
    nodes = []
    x = "input"
    for i, act in enumerate((between, "Relu", None)):
        nodes.append(helper.make_node("MatMul", [x, f"fc{i}.weight"], [f"m{i}"], name=f"fc{i}"))
        y = f"z{i}" if act else "output"
        nodes.append(helper.make_node("Add", [f"m{i}", f"fc{i}.bias"], [y], name=f"add{i}"))
        if act:
            nodes.append(helper.make_node(act, [y], [f"h{i}"], name=f"act{i}"))
            x = f"h{i}"
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2])]
    if hidden_output:
        outputs.append(helper.make_tensor_value_info("h1", TensorProto.FLOAT, [1, 3]))
    graph = helper.make_graph(
        nodes,
        "three",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        outputs,
        inits,
    )
    return models._model(graph, 17)


def with_weights(model: onnx.ModelProto, graph) -> onnx.ModelProto:
    """``model`` with the splittable weights of ``graph`` written over its initializers."""
    out = copy.deepcopy(model)
    values = {
        layer.weights["weight"].name: layer.weights["weight"].numpy()
        for layer in graph.layers
        if layer.splittable
    }
    for init in out.graph.initializer:
        if init.name in values:
            init.CopyFrom(numpy_helper.from_array(values[init.name].astype(np.float32), init.name))
    return out


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def weight(graph, name: str) -> np.ndarray:
    return next(layer for layer in graph.layers if layer.name == name).weights["weight"].numpy()


def test_dead_neurons_and_the_neurons_feeding_only_them_lose_their_inputs(tmp_path):
    model = three_layers()
    graph = dnnpart.load(models.save(model, tmp_path))
    new, dead = remove_dead_neurons(graph)
    assert dead.per_layer == {"fc0": 1, "fc1": 1}
    assert dead.neurons == 2
    assert dead.synapses == 3 + 2  # fc0's neuron 3 had 3 inputs, fc1's neuron 2 had 2
    assert not weight(new, "fc0")[:, 3].any() and not weight(new, "fc1")[:, 2].any()
    # everything else is untouched
    np.testing.assert_array_equal(weight(new, "fc0")[:, :3], weight(graph, "fc0")[:, :3])
    np.testing.assert_array_equal(weight(new, "fc1")[:, :2], weight(graph, "fc1")[:, :2])
    np.testing.assert_array_equal(weight(new, "fc2"), weight(graph, "fc2"))
    x = np.random.default_rng(0).standard_normal((1, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(with_weights(model, new), x)[0], run(model, x)[0])
    again, none = remove_dead_neurons(new)
    assert again is new and none.synapses == 0  # a fixed point


def test_an_op_that_could_make_an_infinity_keeps_every_neuron(tmp_path):
    # Log(0) is -inf, and -inf times a zero weight is NaN: the pass must not look through it
    graph = dnnpart.load(models.save(three_layers(between="Log"), tmp_path))
    new, dead = remove_dead_neurons(graph)
    assert dead.per_layer == {"fc1": 1}  # fc1 -> Relu -> fc2 is understood
    assert not weight(new, "fc1")[:, 2].any()
    np.testing.assert_array_equal(weight(new, "fc0"), weight(graph, "fc0"))


def test_a_neuron_the_model_returns_is_live(tmp_path):
    graph = dnnpart.load(models.save(three_layers(hidden_output=True), tmp_path))
    new, dead = remove_dead_neurons(graph)
    assert new is graph and dead.neurons == 0


def test_a_norm_over_the_neurons_keeps_every_neuron(tmp_path):
    # input [1, 2, 3] -> fc0 (4 features, last axis) -> InstanceNormalization -> fc1, which
    # reads nothing of feature 3: the norm averages over the features (axes 2..), so feature
    # 3 still moves every output and is not dead (zeroing its inputs changed the outputs)
    rng = np.random.default_rng(0)
    w1 = rng.uniform(0.5, 1.0, (4, 2)).astype(np.float32)
    w1[3] = 0.0
    inits = [
        numpy_helper.from_array(rng.uniform(0.5, 1.0, (3, 4)).astype(np.float32), "w0"),
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(np.ones(2, np.float32), "scale"),
        numpy_helper.from_array(np.zeros(2, np.float32), "bias"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w0"], ["h"], name="fc0"),
            helper.make_node("InstanceNormalization", ["h", "scale", "bias"], ["n"], name="in"),
            helper.make_node("MatMul", ["n", "w1"], ["output"], name="fc1"),
        ],
        "norm",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 2])],
        inits,
    )
    model = models._model(graph, 17)
    graph = dnnpart.load(models.save(model, tmp_path))
    new, dead = remove_dead_neurons(graph)
    assert dead.per_layer == {} and new is graph


def test_gemm_transposed_and_conv_layouts(tmp_path):
    gemm = models.mlp_gemm((4, 5, 3), seed=1)
    w = {i.name: numpy_helper.to_array(i).copy() for i in gemm.graph.initializer}
    w["gemm1.weight"][:, 2] = 0  # (out, in): nothing reads gemm0's neuron 2
    for init in gemm.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(w[init.name], init.name))
    graph = dnnpart.load(models.save(gemm, tmp_path / "gemm"))
    new, dead = remove_dead_neurons(graph)
    assert dead.per_layer == {"gemm0": 1} and dead.synapses == 4
    assert not weight(new, "gemm0")[2].any()  # rows are neurons in the transB layout
    x = np.random.default_rng(1).standard_normal((1, 4)).astype(np.float32)
    np.testing.assert_allclose(run(with_weights(gemm, new), x)[0], run(gemm, x)[0], rtol=1e-6)

    conv = models.conv_net((3, 5, 4), groups=1, seed=2)
    w = {i.name: numpy_helper.to_array(i).copy() for i in conv.graph.initializer}
    w["conv1.weight"][:, 1] = 0  # no output channel of conv1 reads conv0's channel 1
    for init in conv.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(w[init.name], init.name))
    graph = dnnpart.load(models.save(conv, tmp_path / "conv"))
    new, dead = remove_dead_neurons(graph)
    assert dead.per_layer == {"conv0": 1} and dead.synapses == 3 * 9
    assert not weight(new, "conv0")[1].any()
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(with_weights(conv, new), x)[0], run(conv, x)[0], rtol=1e-6)


def synapses_in(out: Path, doc) -> int:
    """Non-zero weights of every MatMul across the written sub-models."""
    total = 0
    for stage in doc["stages"]:
        proto = onnx.load(str(out / stage["file"]))
        inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        for node in proto.graph.node:
            if node.op_type == "MatMul" and node.input[1] in inits:
                total += int(np.count_nonzero(inits[node.input[1]]))
    return total


def test_pruned_plan_records_dead_neurons_and_drops_their_synapses(tmp_path, monkeypatch):
    graph = dnnpart.load(MLP)
    pruned = dnnpart.compress.magnitude_prune(graph, 0.9)
    before = sum(layer.synapse_count() for layer in pruned.splittable_layers)
    plan = dnnpart.partition(graph, k=3, method="metis", prune=0.9)
    dead = plan.parameters["dead_neurons"]
    assert dead > 0 and any("no outgoing synapse" in m for m in plan.messages)
    removed = before - sum(
        layer.synapse_count() for layer in remove_dead_neurons(pruned)[0].splittable_layers
    )
    assert removed > 0
    doc = export(MLP, plan, tmp_path / "new")
    assert doc["model"]["dead_neurons"] == dead
    assert synapses_in(tmp_path / "new", doc) == before - removed
    report = verify(tmp_path / "new", samples=2, model=MLP)
    assert report.ok and report.bytes_measured == report.bytes_planned

    # a plan made before the pass existed has no "dead_neurons": export keeps every neuron
    import dnnpart.compress as compress

    monkeypatch.setattr(compress, "remove_dead_neurons", lambda g: (g, compress.DeadNeurons({}, 0)))
    old = dnnpart.partition(graph, k=3, method="metis", prune=0.9)
    monkeypatch.undo()
    # written as then: no passes list, and parameters without "dead_neurons"
    written = old.to_dict()
    written.pop("passes")
    written["parameters"].pop("dead_neurons")
    (tmp_path / "old.json").write_text(json.dumps(written))
    old = Plan.load(tmp_path / "old.json")
    assert [p["name"] for p in old.passes] == ["magnitude_prune"]
    doc = export(MLP, old, tmp_path / "old")
    assert "dead_neurons" not in doc["model"]
    assert synapses_in(tmp_path / "old", doc) == before
    report = verify(tmp_path / "old", samples=2, model=MLP)
    assert report.ok and report.bytes_measured == report.bytes_planned
