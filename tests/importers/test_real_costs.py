"""Costs that count all the work, checked against hand counts on small cases of each
family, and against the published totals of ViT-B/16 at 224 and BERT-base at 128; shapes
computed at run time (torch-style exports) known once the inputs are."""

from __future__ import annotations

import blocks
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dnnpart

_F = TensorProto.FLOAT


def _save(nodes, inputs, outputs, inits, tmp_path, opset=17, name="m.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _vi(name, shape, elem=_F):
    return helper.make_tensor_value_info(name, elem, shape)


def _w(name, *shape, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype), name)


def _layer(graph, op):
    return next(layer for layer in graph.layers if layer.op_type == op)


# -- attention ------------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [3, 16])
def test_attention_block_at_sequence_s_counts_qkt_and_av(tmp_path, seq):
    path = tmp_path / "enc.onnx"
    onnx.save(blocks.encoder(layers=1, d=8, heads=2, ff=16), path)
    g = dnnpart.load(path, dims={"S": seq})
    assert g.macs == blocks.encoder_macs(seq, 8, 16, 1)
    scores = g.layer("l0.scores")
    assert scores.macs == seq * seq * 8  # heads * S * S * dh
    assert g.layer("l0.context").macs == seq * seq * 8
    assert all(t.shape is not None and None not in t.shape for t in g.tensors.values())


def test_computed_reshape_targets_are_propagated_without_onnxruntime(tmp_path, monkeypatch):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape and a causal mask from Range: known
    from the values of the shape subgraph alone (onnxruntime is not asked)."""
    from dnnpart.importers import _measure

    def refuse(*args, **kwargs):
        raise AssertionError("onnxruntime was asked")

    monkeypatch.setattr(_measure, "measure_shapes", refuse)
    path = tmp_path / "gpt.onnx"
    onnx.save(blocks.encoder(layers=2, d=8, heads=2, ff=16, causal=True), path)
    g = dnnpart.load(path, dims={"S": 7})
    assert g.macs == blocks.encoder_macs(7, 8, 16, 2)
    assert not any("no known shape" in w or "cost unknown" in w for w in g.warnings)


def test_data_dependent_shapes_are_measured_by_onnxruntime(tmp_path):
    # NonZero's output length depends on the data: only a run knows it
    path = _save(
        [
            helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"),
            helper.make_node("Cast", ["nz"], ["f"], name="cast", to=_F),
            helper.make_node("MatMul", ["f", "w"], ["y"], name="dense"),
        ],
        [_vi("x", [1, 6])],
        [_vi("y", [2, None])],
        [],
        tmp_path,
    )
    m = onnx.load(path)
    m.graph.initializer.append(_w("w", 6, 5))
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    onnx.save(m, path)
    g = dnnpart.load(path)
    assert g.tensors["nz"].shape == (2, 6)  # random normal inputs: no zero
    assert g.layer("dense").macs == 2 * 5 * 6
    assert not any("no known shape" in w for w in g.warnings)


def test_a_tensor_without_a_shape_is_named(tmp_path, monkeypatch):
    from dnnpart.importers import _measure

    def fail(*args, **kwargs):
        raise _measure.MeasureError("no run")

    monkeypatch.setattr(_measure, "measure_shapes", fail)
    path = _save(
        [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero")],
        [_vi("x", [1, 6])],
        [_vi("nz", [2, None], TensorProto.INT64)],
        [],
        tmp_path,
    )
    g = dnnpart.load(path)
    assert any("no known shape" in w and "'nz'" in w for w in g.warnings), g.warnings


# -- products of two activations, convolutions ---------------------------------------------


def test_einsum_and_gemm_between_two_activations(tmp_path):
    path = _save(
        [
            helper.make_node("Einsum", ["a", "b"], ["e"], name="einsum", equation="bij,bjk->bik"),
            helper.make_node("Einsum", ["e"], ["t"], name="trace", equation="bik->bki"),
            helper.make_node("Einsum", ["c", "d"], ["f"], name="ell", equation="...ij,jk->...ik"),
            helper.make_node("Gemm", ["p", "q"], ["g"], name="gemm", transA=1),
        ],
        [_vi("a", [2, 3, 4]), _vi("b", [2, 4, 5]), _vi("c", [2, 6, 3, 4]), _vi("d", [4, 7])]
        + [_vi("p", [4, 3]), _vi("q", [4, 5])],
        [_vi("t", [2, 5, 3]), _vi("f", [2, 6, 3, 7]), _vi("g", [3, 5])],
        [],
        tmp_path,
    )
    g = dnnpart.load(path)
    assert g.layer("einsum").macs == 2 * 3 * 4 * 5
    assert g.layer("trace").macs == 0
    assert g.layer("ell").macs == 2 * 6 * 3 * 4 * 7
    assert g.layer("gemm").macs == 3 * 5 * 4


def test_grouped_dilated_conv_and_grouped_conv_transpose(tmp_path):
    path = _save(
        [
            # 4 -> 6 channels in 2 groups, 3x3 dilated by 2 on 8x8: 4x4 outputs
            helper.make_node("Conv", ["x", "wc"], ["c"], name="conv", group=2, dilations=[2, 2]),
            # 6 -> 4 channels in 2 groups, 3x3, stride 2 on 4x4: every input pixel
            # scatters into (out channels / groups) x 3 x 3 outputs
            helper.make_node(
                "ConvTranspose", ["c", "wt"], ["y"], name="deconv", group=2, strides=[2, 2]
            ),  # fmt: skip
        ],
        [_vi("x", [1, 4, 8, 8])],
        [_vi("y", [1, 4, 9, 9])],
        [_w("wc", 6, 2, 3, 3), _w("wt", 6, 2, 3, 3)],
        tmp_path,
    )
    g = dnnpart.load(path)
    assert g.tensors["c"].shape == (1, 6, 4, 4)
    assert g.layer("conv").macs == (6 * 4 * 4) * (2 * 3 * 3)
    assert g.layer("deconv").macs == (6 * 4 * 4) * (2 * 3 * 3)


# -- recurrent cells --------------------------------------------------------------------


@pytest.mark.parametrize("op, gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
@pytest.mark.parametrize("direction, dirs", [("forward", 1), ("bidirectional", 2)])
def test_recurrent_cells_count_gates_directions_and_steps(tmp_path, op, gates, direction, dirs):
    seq, batch, n_in, hidden = 5, 2, 3, 4
    path = _save(
        [
            helper.make_node(
                op, ["x", "w", "r"], ["y"], name="cell", hidden_size=hidden, direction=direction
            ),  # fmt: skip
        ],
        [_vi("x", [seq, batch, n_in])],
        [_vi("y", [seq, dirs, batch, hidden])],
        [_w("w", dirs, gates * hidden, n_in), _w("r", dirs, gates * hidden, hidden)],
        tmp_path,
    )
    g = dnnpart.load(path)
    # per step, sample and direction: every gate multiplies the input and the state
    assert g.macs == seq * batch * dirs * gates * hidden * (n_in + hidden)


# -- control flow ----------------------------------------------------------------------


def _branch(name, out, sizes):
    """``x @ W0 @ W1 ...`` with weights of ``sizes`` (a chain of products)."""
    nodes, inits, x = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        inits.append(_w(f"{name}.w{i}", a, b))
        y = out if i == len(sizes) - 2 else f"{name}.h{i}"
        nodes.append(helper.make_node("MatMul", [x, f"{name}.w{i}"], [y], name=f"{name}.mm{i}"))
        x = y
    return helper.make_graph(nodes, name, [], [_vi(out, [1, sizes[-1]])], inits)


def test_if_costs_its_costlier_branch(tmp_path):
    then_g, else_g = _branch("t", "ty", [4, 8]), _branch("e", "ey", [4, 4, 8])
    path = _save(
        [
            helper.make_node(
                "If", ["flag"], ["y"], name="if", then_branch=then_g, else_branch=else_g
            )
        ],  # noqa: E501
        [_vi("x", [1, 4]), _vi("flag", [], TensorProto.BOOL)],
        [_vi("y", [1, 8])],
        [],
        tmp_path,
    )
    g = dnnpart.load(path)
    assert g.layer("if").macs == 4 * 4 + 4 * 8  # else: 16 + 32; then: 32


@pytest.mark.parametrize("trips", [1, 3])
def test_loop_costs_body_times_constant_trip_count(tmp_path, trips):
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["v_in", "w"], ["v_out"], name="body.mm"),
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body.cond"),
        ],
        "body",
        [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL)]
        + [_vi("v_in", [1, 4])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("v_out", [1, 4])],
    )
    path = _save(
        [helper.make_node("Loop", ["m", "go", "x"], ["y"], name="loop", body=body)],
        [_vi("x", [1, 4])],
        [_vi("y", [1, 4])],
        [
            numpy_helper.from_array(np.array(trips, np.int64), "m"),
            numpy_helper.from_array(np.array(True), "go"),
            _w("w", 4, 4),
        ],
        tmp_path,
    )
    g = dnnpart.load(path)
    assert g.layer("loop").macs == trips * 4 * 4


def test_scan_costs_body_times_sequence_length(tmp_path):
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["x_t", "w"], ["p"], name="body.mm"),
            helper.make_node("Add", ["s_in", "p"], ["s_out"], name="body.add"),
            helper.make_node("Identity", ["s_out"], ["y_t"], name="body.id"),
        ],
        "body",
        [_vi("s_in", [1, 3]), _vi("x_t", [1, 4])],
        [_vi("s_out", [1, 3]), _vi("y_t", [1, 3])],
    )
    path = _save(
        [
            helper.make_node(
                "Scan", ["s0", "xs"], ["s", "ys"], name="scan", body=body, num_scan_inputs=1
            )
        ],  # fmt: skip
        [_vi("s0", [1, 3]), _vi("xs", [6, 1, 4])],
        [_vi("s", [1, 3]), _vi("ys", [6, 1, 3])],
        [_w("w", 4, 3)],
        tmp_path,
    )
    g = dnnpart.load(path)
    assert g.layer("scan").macs == 6 * 4 * 3


# -- published totals --------------------------------------------------------------------


def test_bert_base_at_sequence_128_is_about_11_2_gmacs(tmp_path):
    path = tmp_path / "bert.onnx"
    onnx.save(blocks.encoder(layers=12, d=768, heads=12, ff=3072, light=True), path)
    g = dnnpart.load(path, dims={"S": 128})
    assert g.macs == blocks.encoder_macs(128, 768, 3072, 12)
    assert g.macs == pytest.approx(11.2e9, rel=0.01)


def test_vit_b16_at_224_is_about_17_56_gmacs(tmp_path):
    path = tmp_path / "vit.onnx"
    onnx.save(
        blocks.encoder(
            layers=12, d=768, heads=12, ff=3072, vit=(224, 16, 3), classes=1000, light=True
        ),
        path,
    )
    g = dnnpart.load(path)
    patches = 196 * 768 * 3 * 16 * 16
    assert g.macs == patches + blocks.encoder_macs(197, 768, 3072, 12) + 768 * 1000
    assert g.macs == pytest.approx(17.56e9, rel=0.005)
