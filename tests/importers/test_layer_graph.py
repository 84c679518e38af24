"""The :class:`dnnpart.graph.LayerGraph` API on tiny named models (``tests/models.py``).

Adjacency is checked edge by edge against the models' wiring, and the views
(``predecessors``, ``successors``, ``edges``, ``to_networkx``, ``summary``) against each
other.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import dnnpart

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the builders
import models  # noqa: E402

BUILDERS = {
    "mlp": models.mlp_matmul,
    "gemm": models.mlp_gemm,
    "conv": models.conv_net,
    "transformer": models.transformer_block,
    "control_flow": models.control_flow,
}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {name: dnnpart.load(models.save(b(), root / name)) for name, b in BUILDERS.items()}


def named_edges(graph) -> set[tuple[str, str, str]]:
    return {(graph.layers[s].name, graph.layers[d].name, t) for s, d, t in graph.edges()}


def test_edges_of_the_mlp_chain(graphs):
    g = graphs["mlp"]
    assert g.edges() == [(0, 1, "z0"), (1, 2, "h0"), (2, 3, "z1"), (3, 4, "h1"), (4, 5, "z2")]
    assert [g.predecessors(i) for i in range(len(g))] == [[], [0], [1], [2], [3], [4]]
    assert [g.successors(i) for i in range(len(g))] == [[1], [2], [3], [4], [5], []]


def test_edges_of_the_transformer_block(graphs):
    g = graphs["transformer"]
    e = named_edges(g)
    # LN1 feeds the three projections; x1 feeds LN2 and the second residual
    assert {(s, d) for s, d, t in e if t == "n1"} == {("ln1", "q"), ("ln1", "k"), ("ln1", "v")}
    assert {d for s, d, t in e if t == "x1"} == {"ln2", "residual2"}
    assert ("scores", "scores.scale", "scores.raw") in e
    assert ("v.transpose", "context", "vh") in e
    # the model input x is read by ln1 and residual1 but produced by no layer: not an edge
    assert all(t != "x" for _, _, t in e)
    i = {la.name: k for k, la in enumerate(g)}
    assert g.successors(i["ln1"]) == [i["q"], i["k"], i["v"]]
    assert sorted(g.predecessors(i["context"])) == sorted([i["softmax"], i["v.transpose"]])
    # no tensor-less edges: every tensor between layers is some layer's output
    assert len(g.edges()) == sum(len(g.successors(k)) for k in range(len(g)))


def test_captured_values_are_edges(graphs):
    g = graphs["control_flow"]
    assert named_edges(g) == {
        ("fc", "relu", "mm"),
        ("relu", "branch", "h"),
        ("relu", "repeat", "h"),
        ("sig", "repeat", "s"),
        ("branch", "repeat", "b"),
    }


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_predecessors_and_successors_agree_with_edges(graphs, name):
    g = graphs[name]
    pairs = {(s, d) for s, d, _ in g.edges()}
    for i in range(len(g)):
        preds, succs = g.predecessors(i), g.successors(i)
        assert len(preds) == len(set(preds)) and len(succs) == len(set(succs))
        assert set(preds) == {s for s, d in pairs if d == i}
        assert set(succs) == {d for s, d in pairs if s == i}
        assert all(p < i for p in preds) and all(s > i for s in succs)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_to_networkx(graphs, name):
    g = graphs[name]
    nxg = g.to_networkx()
    assert isinstance(nxg, nx.MultiDiGraph)
    assert nxg.number_of_nodes() == len(g)
    assert nxg.number_of_edges() == len(g.edges())
    assert nx.is_directed_acyclic_graph(nxg)
    for i, layer in enumerate(g):
        assert nxg.nodes[i] == {"name": layer.name, "op": layer.op_type, "macs": layer.macs}
    for s, d, data in nxg.edges(data=True):
        assert data["bytes"] == g.tensors[data["tensor"]].nbytes
        assert g.producer[data["tensor"]] == s and s < d
    # the layer order is one of the DAG's topological orders
    assert all(s < d for s, d in nxg.edges())


def test_to_networkx_edge_bytes_of_the_conv_net(graphs):
    nxg = graphs["conv"].to_networkx()
    by_tensor = {data["tensor"]: data["bytes"] for _, _, data in nxg.edges(data=True)}
    assert by_tensor == {
        "c0": 4 * 6 * 8 * 8,
        "r0": 4 * 6 * 8 * 8,
        "c1": 4 * 4 * 8 * 8,
        "r1": 4 * 4 * 8 * 8,
        "p": 4 * 4,
        "f": 4 * 4,
    }


def _split_then_add() -> onnx.ModelProto:
    """``a, b = Split(x)``; ``y = Add(a, b)``; ``z = Mul(y, y)``: a parallel edge, a repeat."""
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [
            helper.make_node("Split", ["x"], ["a", "b"], name="split", axis=1, num_outputs=2),
            helper.make_node("Add", ["a", "b"], ["y"], name="add"),
            helper.make_node("Mul", ["y", "y"], ["z"], name="square"),
        ],
        "split_add",
        [helper.make_tensor_value_info("x", f, [1, 4])],
        [helper.make_tensor_value_info("z", f, [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def test_parallel_edges_and_repeated_inputs(tmp_path):
    g = dnnpart.load(models.save(_split_then_add(), tmp_path))
    # two tensors from split to add: two edges; y read twice by square: one edge
    assert sorted(g.edges()) == [(0, 1, "a"), (0, 1, "b"), (1, 2, "y")]
    assert g.successors(0) == [1] and g.predecessors(2) == [1]
    nxg = g.to_networkx()
    assert nxg.number_of_edges(0, 1) == 2 and nxg.number_of_edges(1, 2) == 1
    assert all(data["bytes"] == 8 for _, _, data in nxg.edges(data=True))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_summary_agrees_with_the_graph(graphs, name):
    g = graphs[name]
    doc = g.summary()
    json.dumps(doc)  # plain JSON types only
    assert doc["layers"] == len(g)
    assert (doc["params"], doc["param_bytes"], doc["macs"]) == (g.params, g.param_bytes, g.macs)
    assert doc["activation_bytes"] == g.activation_bytes
    assert doc["ops"] == g.op_histogram() and sum(doc["ops"].values()) == len(g)
    assert doc["warnings"] == g.warnings
    assert [s["name"] for s in doc["splittable"]] == [la.name for la in g.splittable_layers]
    for entry, layer in zip(doc["splittable"], g.splittable_layers, strict=True):
        assert entry["op"] == layer.op_type and entry["neurons"] == layer.neurons
        assert entry["synapses"] == layer.synapse_count()
        assert entry["density"] == pytest.approx(
            layer.synapse_count() / layer.weights["weight"].size
        )
    no_syn = g.summary(synapses=False)
    assert all("synapses" not in s for s in no_syn["splittable"])
    assert [s["neurons"] for s in no_syn["splittable"]] == [s["neurons"] for s in doc["splittable"]]


def test_summary_inputs_and_outputs(graphs):
    doc = graphs["control_flow"].summary()
    assert doc["inputs"] == [
        {"name": "x", "shape": [1, 4], "dtype": "FLOAT"},
        {"name": "flag", "shape": [], "dtype": "BOOL"},
    ]
    assert doc["outputs"] == [{"name": "y", "shape": [1, 4], "dtype": "FLOAT"}]


def test_lookup_iteration_and_totals(graphs):
    g = graphs["conv"]
    assert len(g) == len(list(g)) == 7
    for i, layer in enumerate(g):
        assert g.index(layer) == i and g.layer(layer.name) is layer
    with pytest.raises(KeyError):
        g.layer("no such layer")
    assert g.op_histogram() == {
        "Conv": 2,
        "Flatten": 1,
        "Gemm": 1,
        "GlobalAveragePool": 1,
        "Relu": 2,
    }
    assert [la.name for la in g.splittable_layers] == ["conv0", "conv1", "fc"]
    assert g.macs == sum(la.macs for la in g)
    assert g.activation_bytes == sum(la.activation_bytes for la in g)
    assert g.params == sum(w.size for w in g.weights.values())
    assert [t.name for t in g.inputs] == ["input"] and [t.name for t in g.outputs] == ["output"]
    assert g.tensors["input"].shape == (1, 4, 8, 8) and g.tensors["input"].nbytes == 4 * 256


def test_synapse_matrix_is_csr_inputs_by_neurons(graphs):
    for layer in graphs["transformer"].splittable_layers:
        s = layer.synapse_matrix()
        w = layer.weights["weight"].numpy()
        assert s.format == "csr" and s.shape == w.shape  # MatMul weight is (in, out)
        np.testing.assert_array_equal(s.toarray(), (w != 0).astype(s.dtype))
    with pytest.raises(ValueError):
        graphs["transformer"].layer("softmax").synapse_matrix()
