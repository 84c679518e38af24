"""The IR -> Problem bridge, the Plan, dnnpart.partition and the partition CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import dnnpart
from dnnpart._plan import Plan
from dnnpart.cli import main
from dnnpart.errors import UsageError
from dnnpart.plugins import get_registry
from dnnpart.problem._build import layer_problem, neuron_problem

REPO = Path(__file__).resolve().parents[1]
MLP = REPO / "examples" / "mlp" / "mlp.onnx"


def _two_layer(tmp_path: Path) -> Path:
    """x[1,3] -> MatMul W1[3,2] (+b1) -> Relu -> MatMul W2[2,2] -> y, with one zero weight."""
    w1 = np.array([[1, 0], [2, 3], [0, 4]], dtype=np.float32)  # 4 synapses
    w2 = np.array([[1, 1], [0, 1]], dtype=np.float32)  # 3 synapses
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(np.zeros(2, np.float32), "b1"),
            numpy_helper.from_array(w2, "w2"),
        ],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_neuron_problem_of_a_tiny_mlp_has_known_vertices_and_synapses(tmp_path):
    g = dnnpart.load(_two_layer(tmp_path))
    assert [layer.op_type for layer in g.layers] == ["MatMul", "Relu", "MatMul"]
    p = neuron_problem(g, 2)
    assert list(p.layer_offsets) == [0, 3, 5, 7]  # 3 inputs, 2 + 2 neurons; Relu adds none
    assert list(p.balanced) == [False, True, True]
    assert p.synapses.nnz == 4 + 3
    # neuron MACs = synapses into it: fc1 columns have 2 and 2, fc2 columns 1 and 2
    assert p.vertex_weight.tolist() == [0, 0, 0, 2, 2, 1, 2]
    s = p.synapses.toarray()
    assert s[1, 3] == 1 and s[0, 4] == 0  # W1[0, 1] is zero: no synapse
    assert s[3, 5] == 1 and s[3, 6] == 1 and s[4, 6] == 1 and s[4, 5] == 0


def test_layer_problem_edges_carry_tensor_bytes(tmp_path):
    g = dnnpart.load(_two_layer(tmp_path))
    p = layer_problem(g, 2)
    assert p.num_vertices == 1 + 3  # the input tensor, then one vertex per layer
    s = p.synapses.toarray()
    assert s[0, 1] == 12 and s[1, 2] == 8 and s[2, 3] == 8  # float32 [1,3] and [1,2]


def test_neuron_problem_of_the_example_mlp_counts_every_synapse():
    g = dnnpart.load(MLP)
    p = neuron_problem(g, 4)
    assert p.layer_names == ("input:input", "fc1", "fc2", "fc3", "softmax")
    dense = sum(layer.synapse_count() for layer in g.splittable_layers)
    # synapses of the three dense layers + the 10 outputs feeding the softmax vertex
    assert p.synapses.sum() == dense + 10
    # a neuron's weight is its synapses in: the MACs of the dense layers without the
    # weights that are exactly 0 (the model's flushed denormals), + the softmax vertex
    softmax = g.layers[-1].macs
    assert p.vertex_weight.sum() == dense + softmax
    assert dense < g.macs


@pytest.mark.parametrize("method", ["vertical", "metis", "kl", "munkres", "spectral"])
def test_partition_api_returns_a_valid_scored_plan(method):
    g = dnnpart.load(MLP)
    plan = dnnpart.partition(g, k=3, method=method, prune=0.5, seed=1)
    assert plan.labels.shape == (np.diff(plan.offsets).sum(),)
    assert plan.labels.min() >= 0 and plan.labels.max() < 3
    assert plan.scores["volume"] >= 0 and plan.baseline["volume"] > 0
    again = dnnpart.partition(g, k=3, method=method, prune=0.5, seed=1)
    assert np.array_equal(plan.labels, again.labels)


def test_partition_refuses_bad_arguments():
    g = dnnpart.load(MLP)
    with pytest.raises(UsageError, match="unknown partitioner"):
        dnnpart.partition(g, k=2, method="nope")
    with pytest.raises(UsageError, match="k must be"):
        dnnpart.partition(g, k=0, method="vertical")
    with pytest.raises(UsageError, match="prune"):
        dnnpart.partition(g, k=2, method="vertical", prune=1.5)
    with pytest.raises(UsageError, match="granularity"):
        dnnpart.partition(g, k=2, method="munkres", granularity="layer")


def test_plan_round_trips_through_json(tmp_path):
    g = dnnpart.load(MLP)
    plan = dnnpart.partition(g, k=2, method="vertical")
    out = tmp_path / "plan.json"
    plan.save(out)
    back = Plan.load(out)
    assert np.array_equal(back.labels, plan.labels)
    assert back.offsets == plan.offsets and back.groups == plan.groups
    assert back.scores == json.loads(out.read_text())["scores"]
    assert back.model_sha256 == plan.model_sha256 and len(plan.model_sha256) == 64


def test_plan_load_rejects_junk(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    with pytest.raises(dnnpart.DnnpartError, match="not a valid dnnpart plan"):
        Plan.load(bad)


def test_partition_cli_json_and_plan_file(tmp_path):
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(
        main, ["partition", str(MLP), "-k", "2", "-p", "metis", "-o", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["method"] == "metis" and doc["k"] == 2 and doc["granularity"] == "neuron"
    for key in ("cut", "volume", "volume_bytes", "imbalance", "memory_bytes", "latency_s"):
        assert key in doc["scores"] and key in doc["baseline"]
    assert out.is_file()


def test_partition_cli_usage_errors_exit_2():
    runner = CliRunner()
    res = runner.invoke(main, ["partition", str(MLP)])
    assert res.exit_code == 2 and "-k" in res.stderr
    res = runner.invoke(main, ["partition", str(MLP), "-k", "2", "-p", "nope"])
    assert res.exit_code == 2 and "unknown partitioner 'nope'" in res.stderr
    assert "Traceback" not in res.stderr


def test_builtins_are_registered_through_the_plugin_hook():
    reg = get_registry()
    assert {"vertical", "metis", "kl", "munkres", "spectral", "pipeline"} <= set(reg.partitioners)
    assert all(reg.owner[name] == "dnnpart" for name in ("vertical", "metis"))
    res = CliRunner().invoke(main, ["partitioners", "--json"])
    assert res.exit_code == 0
    names = {row["name"] for row in json.loads(res.stdout)}
    assert "vertical" in names
    res = CliRunner().invoke(main, ["plugins", "--json"])
    plugins = json.loads(res.stdout)
    assert plugins[0]["name"] == "dnnpart" and plugins[0]["error"] is None


def test_layer_problem_counts_only_outputs_that_travel(tmp_path):
    """Dropout's mask is declared but read by nobody: it is not part of the bytes sent."""
    nodes = [
        helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop"),
        helper.make_node("Relu", ["y"], ["z"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "drop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8])],
    )
    path = tmp_path / "drop.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    p = layer_problem(dnnpart.load(path), 2)
    assert p.activation_bytes.tolist() == [32, 32, 32]  # x, drop's y (no mask), relu's z
