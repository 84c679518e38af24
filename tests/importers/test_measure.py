"""The measuring onnxruntime run: it keeps what it measured when onnxruntime refuses a
late node, and counts the iterations of Loops whose trip count comes from data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dnnpart
from dnnpart.importers import _measure

_F, _I = TensorProto.FLOAT, TensorProto.INT64


def _save(nodes, inputs, outputs, inits, tmp_path, domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def _vi(name, shape, elem=_F):
    return helper.make_tensor_value_info(name, elem, shape)


def _const(name, value, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


@pytest.mark.parametrize("late", ["reshape", "unknown op"])
def test_a_run_refused_at_a_late_node_keeps_the_shapes_before_it(tmp_path, late):
    """NonZero's length only a run knows; onnxruntime then refuses a late node (a Reshape
    to a size the data does not have, or an op it does not implement): the shapes before
    that node are measured, the node is named, and what depends on it is named unshaped."""
    if late == "reshape":
        bad = helper.make_node("Reshape", ["f", "four"], ["r"], name="bad")
        domains = ()
    else:
        bad = helper.make_node("Foo", ["f"], ["r"], name="bad", domain="custom.ops")
        domains = ("custom.ops",)
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"),
        helper.make_node("Cast", ["nz"], ["f"], name="cast", to=_F),
        helper.make_node("MatMul", ["f", "w"], ["y"], name="dense"),
        bad,
        helper.make_node("NonZero", ["r"], ["z"], name="after"),
    ]
    path = _save(
        nodes,
        [_vi("x", [3], _I)],
        [_vi("y", None), _vi("z", None, _I)],
        [_const("four", [4]), numpy_helper.from_array(np.ones((3, 5), np.float32), "w")],
        tmp_path,
        domains,
    )
    g = dnnpart.load(path)
    assert g.tensors["nz"].shape == (1, 3)  # x is all ones: three non-zeros
    assert g.tensors["y"].shape == (1, 5)
    assert g.layer("dense").macs == 1 * 5 * 3
    refused = [w for w in g.warnings if "could not run node 'bad'" in w]
    assert len(refused) == 1, g.warnings
    unshaped = [w for w in g.warnings if "no known shape" in w]
    assert len(unshaped) == 1 and "'z'" in unshaped[0] and "'nz'" not in unshaped[0]


def test_a_refusal_that_names_no_node_measures_nothing(tmp_path, monkeypatch):
    def refuse(model, feeds):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(_measure, "_run", refuse)
    path = _save(
        [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero")],
        [_vi("x", [3], _I)],
        [_vi("nz", None, _I)],
        [],
        tmp_path,
    )
    g = dnnpart.load(path)
    assert any("could not measure the open shapes (out of memory)" in w for w in g.warnings)
    assert any("no known shape" in w and "'nz'" in w for w in g.warnings)


@pytest.mark.parametrize(
    "message, node",
    [
        ("Non-zero status code returned while running Reshape node. Name:'r1' Status", "r1"),
        ('This is an invalid model. In Node, ("foo", Foo, "bad", -1) : ...', "foo"),
        ("Could not find an implementation for Foo(1) node with name 'n7'", "n7"),
        ("no node here", None),
    ],
)
def test_the_node_an_onnxruntime_message_names(message, node):
    assert _measure.ort_node(message) == node


def _counting_loop(tmp_path, m, carried=(1, 4)):
    """A Loop (trip count ``m``, or none) whose body stops after iteration 2, as
    ``while i < 2``: it runs 3 times; its body is a 4x4 MatMul on a loop-carried value
    declared ``carried`` in the body."""
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["v_in", "w"], ["v_out"], name="body.mm"),
            helper.make_node("Less", ["i", "two"], ["cond_out"], name="body.cond"),
        ],
        "body",
        [_vi("i", [], _I), _vi("cond_in", [], TensorProto.BOOL), _vi("v_in", list(carried))],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("v_out", list(carried))],
        [_const("two", 2)],
    )
    inits = [numpy_helper.from_array(np.array(True), "go"), _const("w", np.eye(4), np.float32)]
    if m is not None:
        inits.append(_const("m", m))
    trips = "m" if m is not None else ""
    return _save(
        [helper.make_node("Loop", [trips, "go", "x"], ["y"], name="loop", body=body)],
        [_vi("x", [1, 4])],
        [_vi("y", [1, 4])],
        inits,
        tmp_path,
    )


@pytest.mark.parametrize("m", [None, 10])
def test_a_loop_stopped_by_its_data_is_costed_by_the_trips_it_ran(tmp_path, m):
    g = dnnpart.load(_counting_loop(tmp_path, m))
    assert g.layer("loop").macs == 3 * 4 * 4
    assert not [w for w in g.warnings if "trip" in w], g.warnings


def test_a_body_declared_with_symbolic_dims_gets_the_node_s_shapes(tmp_path):
    """torch declares a loop-carried value with the model's symbols (``[batch, 4]``); onnx
    keeps them, the body is inferred again from the Loop's concrete inputs."""
    g = dnnpart.load(_counting_loop(tmp_path, 10, carried=("batch", 4)))
    assert g.layer("loop").macs == 3 * 4 * 4
    assert not [w for w in g.warnings if "unknown" in w], g.warnings


def test_a_loop_whose_trips_cannot_be_measured_costs_one_trip_and_is_named(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise _measure.MeasureError("no run")

    monkeypatch.setattr(_measure, "measure_shapes", fail)
    g = dnnpart.load(_counting_loop(tmp_path, None))
    assert g.layer("loop").macs == 4 * 4
    assert any("trip count of Loop 'loop'" in w and "one trip" in w for w in g.warnings)


def _optimized_transformer_piece(tmp_path):
    """As onnxruntime's transformer optimizer writes them: com.microsoft BiasGelu and
    SkipLayerNormalization between two MatMuls; onnx's inference stops at the first."""
    vec = [numpy_helper.from_array(np.ones(16, np.float32), n) for n in ("bias", "gamma", "beta")]
    mats = [
        numpy_helper.from_array(np.ones((8, 16), np.float32), "w"),
        numpy_helper.from_array(np.ones((16, 4), np.float32), "w2"),
    ]
    ms = "com.microsoft"
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="up"),
        helper.make_node("BiasGelu", ["a", "bias"], ["b"], name="gelu", domain=ms),
        helper.make_node(
            "SkipLayerNormalization", ["b", "b", "gamma", "beta"], ["c"], name="sln", domain=ms
        ),
        helper.make_node("MatMul", ["c", "w2"], ["y"], name="down"),
    ]
    return _save(nodes, [_vi("x", [1, 5, 8])], [_vi("y", None)], mats + vec, tmp_path, (ms,))


def test_symbolic_shape_inference_shapes_contrib_ops_without_a_run(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("onnxruntime was run")

    monkeypatch.setattr(_measure, "measure_shapes", refuse)
    g = dnnpart.load(_optimized_transformer_piece(tmp_path))
    assert g.tensors["c"].shape == (1, 5, 16) and g.tensors["y"].shape == (1, 5, 4)
    assert g.layer("down").macs == 5 * 16 * 4
    assert not [w for w in g.warnings if "shape" in w or "cost unknown" in w], g.warnings


def test_without_symbolic_inference_the_contrib_ops_leave_shapes_open(tmp_path, monkeypatch):
    """The control: onnx's inference and the value propagation alone leave them open."""
    from dnnpart.importers import _symbolic

    def fail(*args, **kwargs):
        raise _measure.MeasureError("no run")

    monkeypatch.setattr(_measure, "measure_shapes", fail)
    monkeypatch.setattr(_symbolic, "symbolic_shapes", lambda light, names: {})
    g = dnnpart.load(_optimized_transformer_piece(tmp_path))
    assert g.tensors["y"].shape is None
    assert any("cost unknown" in w and "'down'" in w for w in g.warnings), g.warnings
