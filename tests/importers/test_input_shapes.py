"""Concrete input shapes: --input-shape, --dim, --inputs; the batch default; usage errors;
plans and manifests that record the shapes; verify checking arrays against them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import dnnpart
from dnnpart.cli import main
from dnnpart.errors import UsageError
from dnnpart.importers._input_shapes import (
    parse_dim,
    parse_input_shape,
    resolve_input_shapes,
)

_F = TensorProto.FLOAT


def seq_dense(d_in=4, d_out=3, *, seq="S", batch="B", reshape=None) -> onnx.ModelProto:
    """``y = x @ W`` on ``x [batch, seq, d_in]``; ``reshape`` adds a constant Reshape after."""
    w = np.random.default_rng(0).standard_normal((d_in, d_out)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")]
    inits = [numpy_helper.from_array(w, "w")]
    out = "y"
    if reshape is not None:
        inits.append(numpy_helper.from_array(np.array(reshape, np.int64), "target"))
        nodes.append(helper.make_node("Reshape", ["y", "target"], ["z"], name="fixed_reshape"))
        out = "z"
    graph = helper.make_graph(
        nodes,
        "seq_dense",
        [helper.make_tensor_value_info("x", _F, [batch, seq, d_in])],
        [helper.make_tensor_value_info(out, _F, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def seq_path(tmp_path):
    path = tmp_path / "seq.onnx"
    onnx.save(seq_dense(), path)
    return path


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- parsing and resolving ------------------------------------------------------------


def test_parse_flags():
    assert parse_input_shape("x=1,3,224,224") == ("x", (1, 3, 224, 224))
    assert parse_input_shape("a=b=2,3") == ("a=b", (2, 3))
    assert parse_dim("sequence=128") == ("sequence", 128)
    for bad in ("x", "x=1,a", "x=0,3"):
        with pytest.raises(UsageError, match="--input-shape"):
            parse_input_shape(bad)
    for bad in ("S", "S=0", "S=x"):
        with pytest.raises(UsageError, match="--dim"):
            parse_dim(bad)


DECLARED = [("ids", ["batch", "seq"]), ("img", [None, 3, "H", "W"]), ("flag", [])]


def test_batch_defaults_to_one_with_a_note_and_dims_close_symbols():
    shapes, notes = resolve_input_shapes(DECLARED, None, {"seq": 16, "H": 8, "W": 10})
    assert shapes == {"ids": (1, 16), "img": (1, 3, 8, 10), "flag": ()}
    assert len(notes) == 2 and "'ids'" in notes[0] and "'batch'" in notes[0]
    shapes, notes = resolve_input_shapes(
        DECLARED, {"img": (2, 3, 8, 8)}, {"seq": 4, "batch": 3}, None
    )
    assert shapes["ids"] == (3, 4) and shapes["img"] == (2, 3, 8, 8) and notes == []


def test_a_sample_gives_the_shapes_and_stacked_samples_drop_their_axis():
    sample = {"ids": (1, 7), "img": (5, 1, 3, 4, 4), "labels": (5,)}
    shapes, _ = resolve_input_shapes(DECLARED, None, None, sample)
    assert shapes == {"ids": (1, 7), "img": (1, 3, 4, 4), "flag": ()}


@pytest.mark.parametrize(
    "input_shapes, dims, match",
    [
        (None, {"seq": 4}, r"input 'img' dimension 2 \('H'\).*--dim H=VALUE.*--input-shape img="),
        (None, {"H": 2, "W": 2}, r"input 'ids' dimension 1 \('seq'\).*--dim seq=VALUE"),
        ({"img": (1, 4, 8, 8)}, {"seq": 4}, "dimension 1 is fixed at 3"),
        ({"img": (1, 3, 8)}, {"seq": 4}, "rank 4"),
        ({"nope": (1,)}, None, "no input 'nope'"),
        (None, {"T": 3}, "no input has a dimension named 'T'"),
        ({"ids": (1, 5)}, {"seq": 4, "H": 1, "W": 1}, "--dim seq=4 but --input-shape gives 5"),
    ],
)
def test_open_or_contradicting_dimensions_are_usage_errors(input_shapes, dims, match):
    with pytest.raises(UsageError, match=match):
        resolve_input_shapes(DECLARED, input_shapes, dims)


# -- load, CLI ------------------------------------------------------------------------


def test_load_costs_the_declared_sequence(seq_path):
    with pytest.raises(UsageError, match=r"'x' dimension 1 \('S'\)"):
        dnnpart.load(seq_path)
    g = dnnpart.load(seq_path, dims={"S": 16})
    assert g.macs == 16 * 4 * 3 and g.input_shapes == {"x": (1, 16, 4)}
    assert any("'B'" in w and "set to 1" in w for w in g.warnings)
    g = dnnpart.load(seq_path, input_shapes={"x": (2, 5, 4)})
    assert g.macs == 2 * 5 * 4 * 3 and g.tensors["y"].shape == (2, 5, 3)


def test_cli_import_flags(seq_path, tmp_path):
    r = _cli("import", seq_path, "--json")
    assert r.exit_code == 2 and "--dim S=VALUE" in r.stderr and "Traceback" not in r.stderr
    r = _cli("import", seq_path, "--json", "--dim", "S=8")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["macs"] == 8 * 12
    r = _cli("import", seq_path, "--json", "--input-shape", "x=3,2,4")
    assert json.loads(r.stdout)["macs"] == 6 * 12
    np.savez(tmp_path / "s.npz", x=np.zeros((1, 9, 4), np.float32), labels=np.zeros(1))
    r = _cli("import", seq_path, "--json", "--inputs", tmp_path / "s.npz")
    assert json.loads(r.stdout)["inputs"][0]["shape"] == [1, 9, 4]


# -- plan, manifest, verify -------------------------------------------------------------


@pytest.fixture
def split(seq_path, tmp_path):
    plan = tmp_path / "plan.json"
    r = _cli("partition", seq_path, "-k", 2, "-p", "vertical", "--dim", "S=6", "-o", plan)
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "split"
    assert _cli("export", seq_path, plan, "-o", out).exit_code == 0
    return plan, out


def test_plan_and_manifest_record_the_shapes_and_verify_uses_them(split):
    plan, out = split
    assert json.loads(plan.read_text())["input_shapes"] == {"x": [1, 6, 4]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["input_shapes"] == {"x": [1, 6, 4]}
    # the declared sequence is carried; the batch axis the model left open stays open
    first = next(s for s in manifest["stages"] if s["device"] == 0 and s["stage"] == 0)
    sub = onnx.load(out / first["file"])
    dims = [d.dim_param or d.dim_value for d in sub.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", 6, 4]
    r = _cli("verify", out, "--json")
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros((1, 5, 4), np.float32)}, r"'x': expected shape \[1, 6, 4\].*\[1, 5, 4\]"),
        ({"x": np.zeros((6, 4), np.float32)}, r"'x': expected shape \[1, 6, 4\].*given \[6, 4\]"),
        ({"a": np.zeros((1, 6, 4), np.float32), "b": np.zeros(1)}, "no array 'x'"),
        ({"x": np.zeros((1, 6, 4), np.int64)}, "the model wants float32"),
    ],
)
def test_verify_rejects_bad_arrays_with_exit_2(split, tmp_path, arrays, match):
    _, out = split
    np.savez(tmp_path / "in.npz", **arrays)
    r = _cli("verify", out, "--inputs", tmp_path / "in.npz")
    assert r.exit_code == 2, r.stderr
    assert __import__("re").search(match, r.stderr), r.stderr


def test_verify_refuses_pickles_and_takes_stacked_samples(split, tmp_path):
    _, out = split
    np.savez(tmp_path / "p.npz", x=np.array([object()], dtype=object))
    r = _cli("verify", out, "--inputs", tmp_path / "p.npz")
    assert r.exit_code == 2 and "pickle" in r.stderr.lower(), r.stderr
    np.savez(tmp_path / "ok.npz", x=np.ones((3, 1, 6, 4), np.float32))
    r = _cli("verify", out, "--inputs", tmp_path / "ok.npz", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["samples"] == 3, r.stderr


def test_a_shape_onnxruntime_rejects_is_exit_3_naming_the_node(tmp_path):
    path = tmp_path / "r.onnx"
    onnx.save(seq_dense(reshape=[2, 6]), path)  # 12 elements: runs only at S = 4
    plan, out = tmp_path / "plan.json", tmp_path / "split"
    r = _cli("partition", path, "-k", 2, "-p", "vertical", "--dim", "S=5", "-o", plan)
    assert r.exit_code == 0, r.stderr
    assert _cli("export", path, plan, "-o", out).exit_code == 0
    r = _cli("verify", out)
    assert r.exit_code == 3, r.stderr
    assert "fixed_reshape" in r.stderr and "internal error" not in r.stderr


def test_leaderboard_takes_the_shapes(seq_path):
    r = _cli("leaderboard", seq_path, "-k", 2, "-p", "vertical", "--granularity", "layer",
             "--json", "-j", 1, "--dim", "S=4", "--verify")  # fmt: skip
    row = json.loads(r.stdout)["rows"][0]
    assert r.exit_code == 0 and row["status"] == "ok", row
    assert row["verify"]["ok"] is True
