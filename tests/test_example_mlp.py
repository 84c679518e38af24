"""Tests of the committed example model ``examples/mlp`` (digits MLP 64-300-100-10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mlp"
MODEL = EXAMPLE / "mlp.onnx"
DATA = EXAMPLE / "digits_test.npz"


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(MODEL)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA, allow_pickle=False) as d:
        return d["x"], d["y"]


def _run_ort(x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"input": x})[0]


def test_model_passes_checker_and_has_documented_layout(model):
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 64]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    ops = [(n.name, n.op_type) for n in model.graph.node]
    assert ops == [
        ("fc1", "MatMul"), ("fc1.add", "Add"), ("relu1", "Relu"),
        ("fc2", "MatMul"), ("fc2.add", "Add"), ("relu2", "Relu"),
        ("fc3", "MatMul"), ("fc3.add", "Add"), ("softmax", "Softmax"),
    ]  # fmt: skip
    assert model.graph.node[-1].input == ["logits"]
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert shapes == {
        "fc1.weight": (64, 300), "fc1.bias": (300,),
        "fc2.weight": (300, 100), "fc2.bias": (100,),
        "fc3.weight": (100, 10), "fc3.bias": (10,),
    }  # fmt: skip
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)


def test_weights_hold_no_subnormal_values(model):
    # subnormal operands take a slow path on x86: onnxruntime ran this model ~40x slower
    # while weight decay had left 2,602 weights below the smallest normal float32
    tiny = np.finfo(np.float32).tiny
    for t in model.graph.initializer:
        w = numpy_helper.to_array(t)
        assert not ((w != 0) & (np.abs(w) < tiny)).any(), t.name


def test_test_split_is_scaled_digits(data):
    x, y = data
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (len(y), 64) and 340 <= len(y) <= 380
    # Pixels are 0..16 divided by 16: in [0, 1] and exact multiples of 1/16.
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(x * 16, np.round(x * 16))
    # Stratified split: every digit present, roughly one tenth each.
    counts = np.bincount(y, minlength=10)
    assert len(counts) == 10 and counts.min() >= 0.08 * len(y)


def test_onnxruntime_accuracy_and_probabilities(data):
    x, y = data
    proba = _run_ort(x)
    assert proba.shape == (len(y), 10)
    assert proba.min() >= 0.0
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    acc = (proba.argmax(axis=1) == y).mean()
    assert acc > 0.9, f"accuracy {acc:.4f}"


def test_onnxruntime_matches_numpy_forward_pass_and_any_batch_size(model, data):
    x, _ = data
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    h = x.astype(np.float64)
    for i in (1, 2):
        h = np.maximum(h @ w[f"fc{i}.weight"] + w[f"fc{i}.bias"], 0.0)
    logits = h @ w["fc3.weight"] + w["fc3.bias"]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_run_ort(x), expected, atol=1e-5)
    # The batch dimension is symbolic: one sample at a time gives the same rows.
    np.testing.assert_allclose(_run_ort(x[3:4]), expected[3:4], atol=1e-5)


def test_training_script_reproduces_committed_files(tmp_path):
    """The script makes a model of the committed one's structure and quality on the same
    test split. Weights are floating-point results of scikit-learn, NumPy and SciPy, whose
    versions the project does not pin: they are compared by behaviour, not bytes."""
    ort = pytest.importorskip("onnxruntime")
    script = EXAMPLE / "train_mlp.py"
    out = subprocess.run(
        [sys.executable, str(script), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert "test accuracy (onnxruntime)" in out.stdout
    with np.load(tmp_path / "digits_test.npz", allow_pickle=False) as new, np.load(DATA) as old:
        assert sorted(new.files) == sorted(old.files) == ["x", "y"]
        np.testing.assert_array_equal(new["x"], old["x"])  # the same held-out split
        np.testing.assert_array_equal(new["y"], old["y"])
        x, y = old["x"], old["y"]
    fresh, committed = onnx.load(tmp_path / "mlp.onnx"), onnx.load(MODEL)
    onnx.checker.check_model(fresh, full_check=True)

    def layout(m):
        shapes = {t.name: (tuple(t.dims), t.data_type) for t in m.graph.initializer}
        return [(n.name, n.op_type, list(n.input)) for n in m.graph.node], shapes

    assert layout(fresh) == layout(committed)
    predictions = []
    for m in (fresh, committed):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        predictions.append(sess.run(["probabilities"], {"input": x})[0].argmax(axis=1))
    assert (predictions[0] == y).mean() > 0.95
    assert (predictions[0] == predictions[1]).mean() > 0.95
