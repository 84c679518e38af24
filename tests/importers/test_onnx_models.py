"""``dnnpart import`` and :func:`dnnpart.load` on real and tiny named ONNX models.

Real models: every model of the onnx wheel's ``backend/test/data/light`` folder (the ONNX
model zoo's classics with their weights replaced by ``ConstantOfShape``; same shapes, so
the same MACs) and the example MLP. Tiny models (``tests/models.py``): every figure the
importer reports is worked out by hand from the builder's arguments and weights.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import dnnpart
from dnnpart.cli import main
from dnnpart.graph import LayerKind

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the builders
import models  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_MLP = REPO / "examples" / "mlp" / "mlp.onnx"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.name for p in LIGHT.glob("*.onnx")) if LIGHT.is_dir() else []

# Published MACs at 1x3x224x224: torchvision's model table, column "GFLOPS" (which counts a
# multiply-accumulate as one operation, the fvcore convention):
# https://pytorch.org/vision/stable/models.html ("Table of all available classification
# weights"): resnet50 IMAGENET1K_V1 4.09, vgg19 IMAGENET1K_V1 19.63, densenet121
# IMAGENET1K_V1 2.83. The zoo models here are the Caffe2 exports of the same architectures.
PUBLISHED_GMACS = {
    "light_resnet50.onnx": 4.09,
    "light_vgg19.onnx": 19.63,
    "light_densenet121.onnx": 2.83,
}


# -- helpers -------------------------------------------------------------------------
def _cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def import_json(path: Path | str) -> dict:
    """``dnnpart import PATH --json`` in-process; the parsed document (exit 0 required)."""
    result = _cli("import", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    check_contract(doc)
    return doc


@functools.cache
def _light_json(name: str) -> str:
    # cached as text: several tests read the same model, importing once is enough
    return json.dumps(import_json(LIGHT / name))


def check_contract(doc: dict) -> None:
    """The keys DESIGN.md ("Contracts") promises for ``import --json``, with their types."""
    for key in ("layers", "params", "macs"):
        assert isinstance(doc[key], int) and doc[key] >= 0, key
    assert isinstance(doc["warnings"], list)
    assert all(isinstance(w, str) for w in doc["warnings"])
    assert isinstance(doc["splittable"], list)
    names = [s["name"] for s in doc["splittable"]]
    assert len(names) == len(set(names))
    for entry in doc["splittable"]:
        assert isinstance(entry["name"], str) and isinstance(entry["op"], str)
        assert isinstance(entry["neurons"], int) and entry["neurons"] > 0
        assert isinstance(entry["synapses"], int) and 0 <= entry["synapses"] <= doc["params"]
    assert len(doc["splittable"]) <= doc["layers"]


def arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def load(model: onnx.ModelProto, tmp_path: Path, **save_kwargs):
    return dnnpart.load(models.save(model, tmp_path, **save_kwargs))


def check_topological(graph) -> None:
    """Every layer comes after the layers whose outputs it reads (captured values too)."""
    for i, layer in enumerate(graph.layers):
        names = [t.name for t in layer.inputs] + list(layer.captured)
        for name in names:
            if name in graph.producer:
                assert graph.producer[name] < i, (layer.name, name)
        assert all(p < i for p in graph.predecessors(i))


# -- real models -----------------------------------------------------------------------
@pytest.mark.skipif(not LIGHT_MODELS, reason=f"onnx backend test data not found at {LIGHT}")
@pytest.mark.parametrize("name", LIGHT_MODELS or ["none"])
def test_cli_imports_every_light_model(name):
    doc = json.loads(_light_json(name))
    assert doc["layers"] > 0 and doc["params"] > 0 and doc["macs"] > 0
    assert doc["splittable"], "every zoo CNN has conv or dense layers"
    assert {s["op"] for s in doc["splittable"]} <= {"Conv", "Gemm", "MatMul"}
    # the light models carry their weights as ConstantOfShape of a non-zero fill value
    graph = dnnpart.load(LIGHT / name)
    for entry, layer in zip(doc["splittable"], graph.splittable_layers, strict=True):
        assert entry["name"] == layer.name
        assert entry["synapses"] == layer.weights["weight"].size
    check_topological(graph)


@pytest.mark.skipif(not LIGHT_MODELS, reason=f"onnx backend test data not found at {LIGHT}")
@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_macs_match_published_figures(name):
    if name not in LIGHT_MODELS:
        pytest.skip(f"{name} not in {LIGHT}")
    macs = json.loads(_light_json(name))["macs"]
    assert math.isclose(macs / 1e9, PUBLISHED_GMACS[name], rel_tol=0.01), macs


def test_cli_imports_example_mlp():
    ref = arrays(onnx.load(EXAMPLE_MLP))
    doc = import_json(EXAMPLE_MLP)
    # MatMul + Add pairs are single dense layers named after the MatMul
    assert [(s["name"], s["op"], s["neurons"]) for s in doc["splittable"]] == [
        ("fc1", "MatMul", 300),
        ("fc2", "MatMul", 100),
        ("fc3", "MatMul", 10),
    ]
    for s in doc["splittable"]:
        assert s["synapses"] == np.count_nonzero(ref[f"{s['name']}.weight"])
    # batch is symbolic: costs per sample, with a warning naming the input
    assert doc["macs"] == 64 * 300 + 300 * 100 + 100 * 10
    assert any("'input'" in w and "symbolic" in w for w in doc["warnings"])
    assert doc["layers"] == 3 + 2 + 1  # fc1..3, relu1..2, softmax
    assert doc["params"] == sum(a.size for a in ref.values())
    table = _cli("import", str(EXAMPLE_MLP))
    assert table.exit_code == 0, table.stderr
    assert "fc2" in table.stdout and "splittable" in table.stdout


@pytest.mark.parametrize(
    "build",
    [
        models.transformer_block,
        functools.partial(models.transformer_block, gelu="erf"),
        models.control_flow,
        models.mlp_gemm,
        models.conv_net,
    ],
    ids=["transformer", "transformer-erf", "control-flow", "gemm", "conv"],
)
def test_cli_imports_tiny_models(build, tmp_path):
    model = build()
    doc = import_json(models.save(model, tmp_path))
    graph = dnnpart.load(tmp_path / "model.onnx")
    assert doc["layers"] == len(graph) and doc["macs"] == graph.macs
    assert doc["params"] == sum(a.size for a in arrays(model).values())
    # every shape and cost is known (control-flow bodies included): nothing to warn about
    assert doc["warnings"] == []


def test_cli_imports_external_data_model(tmp_path, monkeypatch):
    path = models.save(models.external_mlp(), tmp_path / "model", external_data=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    doc = import_json(path)
    ref = arrays(models.external_mlp())
    assert [s["synapses"] for s in doc["splittable"]] == [
        np.count_nonzero(ref["fc0.weight"]),
        np.count_nonzero(ref["fc1.weight"]),
    ]


# -- known answers on tiny models -----------------------------------------------------------
@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_add_fused_into_one_dense_layer_with_bias(bias_first, tmp_path):
    sizes = (6, 5, 4, 3)
    model = models.mlp_matmul(sizes)
    if bias_first:  # Add(bias, x) is the same bias
        for node in model.graph.node:
            if node.op_type == "Add":
                node.input[:] = list(reversed(node.input))
    graph = load(model, tmp_path)
    ref = arrays(model)
    assert [(la.name, la.op_type, la.kind) for la in graph] == [
        ("fc0", "MatMul", LayerKind.DENSE),
        ("relu0", "Relu", LayerKind.NEURONWISE),
        ("fc1", "MatMul", LayerKind.DENSE),
        ("relu1", "Relu", LayerKind.NEURONWISE),
        ("fc2", "MatMul", LayerKind.DENSE),
        ("softmax", "Softmax", LayerKind.OTHER),
    ]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layer = graph.layer(f"fc{i}")
        assert len(layer.nodes) == 2  # the MatMul and its Add
        assert sorted(layer.weights) == ["bias", "weight"]
        np.testing.assert_array_equal(layer.weights["weight"].numpy(), ref[f"fc{i}.weight"])
        np.testing.assert_array_equal(layer.weights["bias"].numpy(), ref[f"fc{i}.bias"])
        assert [t.name for t in layer.outputs] == [f"z{i}"]  # the Add's output
        assert layer.neurons == n_out and layer.macs == n_in * n_out
        assert layer.param_bytes == 4 * (n_in * n_out + n_out)
    assert graph.macs == 6 * 5 + 5 * 4 + 4 * 3


def test_add_of_two_activations_is_not_a_bias(tmp_path):
    graph = load(models.transformer_block(), tmp_path)
    # residual Adds stay layers; the projection before them keeps its own bias only
    assert graph.layer("residual1").kind == LayerKind.NEURONWISE
    assert sorted(graph.layer("o").weights) == ["bias", "weight"]
    assert [t.name for t in graph.layer("o").outputs] == ["attn"]


def test_gemm_trans_b_neurons_and_synapses(tmp_path):
    sizes = (6, 5, 3)
    model = models.mlp_gemm(sizes)
    ref = arrays(model)
    graph = load(model, tmp_path)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layer = graph.layer(f"gemm{i}")
        assert layer.kind == LayerKind.DENSE and layer.attributes["transB"] == 1
        assert layer.weights["weight"].shape == (n_out, n_in)  # output x input
        assert layer.neurons == n_out and layer.macs == n_in * n_out
        s = layer.synapse_matrix()
        assert s.shape == (n_in, n_out)
        np.testing.assert_array_equal(s.toarray() != 0, ref[f"gemm{i}.weight"].T != 0)


def _conv_synapses_by_hand(w: np.ndarray, groups: int) -> np.ndarray:
    """``S[c, o]`` = non-zero kernel elements from input channel c to output channel o."""
    c_out, c_in_g = w.shape[:2]
    s = np.zeros((c_in_g * groups, c_out))
    for o in range(c_out):
        g = o // (c_out // groups)
        for c in range(c_in_g):
            s[g * c_in_g + c, o] = np.count_nonzero(w[o, c])
    return s


@pytest.mark.parametrize("prune", [0.0, 0.6])
def test_conv_neurons_macs_and_grouped_synapse_matrix(prune, tmp_path):
    c0, c1, c2, groups, image = 4, 6, 4, 2, 8
    model = models.conv_net((c0, c1, c2), groups=groups, image=image, prune=prune)
    ref = arrays(model)
    graph = load(model, tmp_path)
    conv0, conv1 = graph.layer("conv0"), graph.layer("conv1")
    assert conv0.kind == conv1.kind == LayerKind.CONV
    assert (conv0.neurons, conv1.neurons) == (c1, c2)  # output channels
    # MACs = output elements x kernel volume of one group
    assert conv0.macs == c1 * image * image * c0 * 9
    assert conv1.macs == c2 * image * image * (c1 // groups) * 9
    assert graph.layer("fc").macs == c2 * 3 and graph.macs == conv0.macs + conv1.macs + c2 * 3
    s0 = conv0.synapse_matrix().toarray()
    s1 = conv1.synapse_matrix().toarray()
    assert s0.shape == (c0, c1) and s1.shape == (c1, c2)
    np.testing.assert_array_equal(s0, _conv_synapses_by_hand(ref["conv0.weight"], 1))
    np.testing.assert_array_equal(s1, _conv_synapses_by_hand(ref["conv1.weight"], groups))
    # no synapse between channels of different groups
    for c in range(c1):
        for o in range(c2):
            if c // (c1 // groups) != o // (c2 // groups):
                assert s1[c, o] == 0
    assert s1.sum() == conv1.synapse_count() == np.count_nonzero(ref["conv1.weight"])
    if prune:
        assert conv1.synapse_count() < ref["conv1.weight"].size


@pytest.mark.parametrize(
    "build",
    [
        functools.partial(models.mlp_matmul, prune=0.5),
        models.mlp_gemm,
        functools.partial(models.conv_net, prune=0.5),
        models.transformer_block,
    ],
    ids=["mlp-pruned", "gemm", "conv-pruned", "transformer"],
)
def test_synapses_are_nonzero_weights(build, tmp_path):
    model = build()
    ref = arrays(model)
    path = models.save(model, tmp_path)
    graph = dnnpart.load(path)
    doc = import_json(path)
    assert [s["name"] for s in doc["splittable"]] == [la.name for la in graph.splittable_layers]
    for entry, layer in zip(doc["splittable"], graph.splittable_layers, strict=True):
        expected = np.count_nonzero(ref[layer.weights["weight"].name])
        assert entry["synapses"] == layer.synapse_count() == expected
        s = layer.synapse_matrix()
        assert s.shape[1] == layer.neurons
        assert s.sum() == expected
        if layer.kind == LayerKind.DENSE:
            assert s.nnz == expected


def test_pruned_weight_counts_fewer_synapses(tmp_path):
    dense = dnnpart.load(models.save(models.mlp_matmul(), tmp_path / "dense"))
    pruned = dnnpart.load(models.save(models.mlp_matmul(prune=0.5), tmp_path / "pruned"))
    for a, b in zip(dense.splittable_layers, pruned.splittable_layers, strict=True):
        assert a.synapse_count() == a.weights["weight"].size
        assert b.synapse_count() <= a.synapse_count() // 2 + 1
        assert b.neurons == a.neurons and b.macs == a.macs  # pruning does not change MACs


def test_param_and_activation_bytes(tmp_path):
    model = models.conv_net()
    ref = arrays(model)
    graph = load(model, tmp_path)
    assert graph.params == sum(a.size for a in ref.values())
    assert graph.param_bytes == sum(a.nbytes for a in ref.values())
    assert graph.layer("conv1").param_bytes == ref["conv1.weight"].nbytes + 4 * 4
    expected_act = {
        "conv0": 6 * 8 * 8,
        "relu0": 6 * 8 * 8,
        "conv1": 4 * 8 * 8,
        "relu1": 4 * 8 * 8,
        "gap": 4,
        "flatten": 4,
        "fc": 3,
    }
    assert {la.name: la.activation_bytes for la in graph} == {
        k: 4 * v for k, v in expected_act.items()
    }
    assert graph.activation_bytes == 4 * sum(expected_act.values())


def test_transformer_block_known_answers(tmp_path):
    seq, d, heads, d_ff = 4, 8, 2, 16
    for gelu in ("op", "erf"):
        model = models.transformer_block(seq, d, heads, d_ff, gelu=gelu)
        graph = load(model, tmp_path / gelu)
        macs = {la.name: la.macs for la in graph if la.macs}
        assert macs == {
            "q": seq * d * d,
            "k": seq * d * d,
            "v": seq * d * d,
            "scores": heads * seq * seq * (d // heads),
            "context": heads * seq * seq * (d // heads),
            "o": seq * d * d,
            "ff1": seq * d * d_ff,
            "ff2": seq * d_ff * d,
        }
        split = [(la.name, la.neurons) for la in graph.splittable_layers]
        assert split == [("q", d), ("k", d), ("v", d), ("o", d), ("ff1", d_ff), ("ff2", d)]
        # attention products read two activations: placed whole, never split
        assert not graph.layer("scores").splittable and not graph.layer("context").splittable
        for name in ("ln1", "ln2", "softmax", "merge_heads"):
            assert not graph.layer(name).splittable
        assert graph.layer("scores").outputs[0].shape == (1, heads, seq, seq)
        check_topological(graph)
    assert graph.layer("gelu.erf").kind == LayerKind.NEURONWISE


def test_out_of_order_nodes_are_sorted(tmp_path):
    for build in (models.transformer_block, models.control_flow, models.conv_net):
        model = build()
        reference = dnnpart.load(models.save(model, tmp_path / "sorted"))
        nodes = list(model.graph.node)[::-1]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        graph = dnnpart.load(models.save(model, tmp_path / "reversed"))
        check_topological(graph)
        assert sorted(la.name for la in graph) == sorted(la.name for la in reference)
        assert graph.macs == reference.macs


def test_control_flow_layers_kept_whole_with_captured_values(tmp_path):
    model = models.control_flow(4)
    graph = load(model, tmp_path)
    assert [la.name for la in graph] == ["fc", "relu", "sig", "branch", "repeat"]
    branch, repeat = graph.layer("branch"), graph.layer("repeat")
    assert branch.kind == repeat.kind == LayerKind.CONTROL_FLOW
    assert not branch.splittable and not repeat.splittable
    assert set(branch.captured) == {"h", "x"}
    assert set(repeat.captured) == {"s", "h"}  # h through the If nested in the body
    # the body's outer initializer is a weight of the layer, not an activation
    np.testing.assert_array_equal(branch.weights["outer:shift"].numpy(), arrays(model)["shift"])
    assert [t.name for t in branch.inputs] == ["flag"]
    ids = {la.name: i for i, la in enumerate(graph)}
    assert set(graph.predecessors(ids["branch"])) == {ids["relu"]}
    assert set(graph.predecessors(ids["repeat"])) == {ids["branch"], ids["relu"], ids["sig"]}
    check_topological(graph)


def _loop_with_matmul_body(n: int = 16, trips: int = 5) -> onnx.ModelProto:
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["v", "W"], ["v2"], name="body.mm"),
            helper.make_node("Identity", ["c"], ["c2"], name="body.cond"),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v", f, [1, n]),
        ],
        [
            helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v2", f, [1, n]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "C", "x"], ["y"], name="loop", body=body)],
        "loop_matmul",
        [helper.make_tensor_value_info("x", f, [1, n])],
        [helper.make_tensor_value_info("y", f, [1, n])],
        [
            numpy_helper.from_array(np.eye(n, dtype=np.float32), "W"),
            numpy_helper.from_array(np.array(trips, dtype=np.int64), "M"),
            helper.make_tensor("C", TensorProto.BOOL, [], [True]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_control_flow_body_cost_is_counted_or_warned(tmp_path):
    graph = load(_loop_with_matmul_body(), tmp_path)
    layer = graph.layer("loop")
    assert layer.macs > 0 or any("'loop'" in w for w in graph.warnings)


# -- external data ------------------------------------------------------------------------


def test_external_weights_are_read_lazily_and_equal_the_originals(tmp_path, monkeypatch):
    original = models.external_mlp(seed=0)
    changed = models.external_mlp(seed=1)  # same layout and sizes, other values
    path = models.save(original, tmp_path / "model", external_data=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    graph = dnnpart.load(path)
    assert graph.weights and all(w.is_external for w in graph.weights.values())
    assert graph.param_bytes == (tmp_path / "model" / models.EXTERNAL_LOCATION).stat().st_size
    # rewrite the weights file in place (same inode): if the importer had read any weight
    # bytes, the values below would be the original ones
    other = models.save(changed, tmp_path / "other", external_data=True)
    data = (other.parent / models.EXTERNAL_LOCATION).read_bytes()
    with open(path.parent / models.EXTERNAL_LOCATION, "r+b") as f:
        f.write(data)
    for name, expected in arrays(changed).items():
        np.testing.assert_array_equal(graph.weights[name].numpy(), expected)
    for layer in graph.splittable_layers:
        expected = np.count_nonzero(arrays(changed)[layer.weights["weight"].name])
        assert layer.synapse_count() == expected


def test_external_data_is_never_read_from_the_working_directory(tmp_path, monkeypatch):
    path = models.save(models.external_mlp(seed=0), tmp_path / "a", external_data=True)
    decoy = models.save(models.external_mlp(seed=1), tmp_path / "b", external_data=True)
    monkeypatch.chdir(decoy.parent)  # a same-named weights file in the working directory
    graph = dnnpart.load(path)
    for name, expected in arrays(models.external_mlp(seed=0)).items():
        np.testing.assert_array_equal(graph.weights[name].numpy(), expected)
