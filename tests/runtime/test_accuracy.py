"""Accuracy on the user's data: top-1, labels, agreement, and ``dnnpart compress`` and
``dnnpart verify --labels`` on the digits MLP (353 of its 360 test digits are right)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import dnnpart
from dnnpart._accuracy import accuracy, load_data, top1
from dnnpart.cli import main
from dnnpart.errors import OutputConflictError, UsageError
from dnnpart.exporters import export
from dnnpart.runtime import compress_model, verify

ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
DIGITS = ROOT / "examples" / "mlp" / "digits_test.npz"
MLP_ACCURACY = 353 / 360  # examples/mlp/README.md
SPECS = [("input", np.dtype(np.float32), [None, 64])]


def _run(path, x):
    """Top-1 of a whole ONNX file on all of ``x`` in one batch (an independent check)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.argmax(session.run(None, {session.get_inputs()[0].name: x})[0], axis=-1)


# -- top-1 and the data file --------------------------------------------------------------


def test_top1_of_scores_and_of_labels():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32)
    np.testing.assert_array_equal(top1(scores), [1, 0])
    np.testing.assert_array_equal(top1(scores[:1]), [1])  # one sample, batch of 1
    np.testing.assert_array_equal(top1(np.array([[4]], np.int64)), [4])  # already a label
    assert accuracy(np.array([1, 0, 2]), np.array([1, 1, 2])) == pytest.approx(2 / 3)
    with pytest.raises(UsageError, match="scalar"):
        top1(np.float32(1.0))
    with pytest.raises(UsageError, match="predictions"):
        accuracy(np.array([1, 2]), np.array([1, 2, 3]))


def test_data_file_labels_default_to_y_and_the_input_to_x():
    data = load_data(DIGITS, SPECS)
    assert len(data.feeds) == 360 and data.feeds[0]["input"].shape == (1, 64)
    assert data.label_name == "y" and data.labels.shape == (360,)
    x = np.zeros((3, 64), np.float32)
    assert load_data({"x": x}, SPECS).labels is None
    assert load_data({"x": x, "cls": np.arange(3)}, SPECS, labels="cls").label_name == "cls"


@pytest.mark.parametrize(
    "arrays, labels, match",
    [
        ({"x": np.zeros((3, 64), np.float32)}, "y", "no label array 'y'"),
        ({"x": np.zeros((3, 64), np.float32), "y": np.arange(2)}, None, "2 labels"),
        ({"x": np.zeros((3, 64), np.float32), "y": np.ones(3)}, None, "integers"),
    ],
)
def test_bad_labels_are_usage_errors(arrays, labels, match):
    with pytest.raises(UsageError, match=match):
        load_data(arrays, SPECS, labels=labels)


# -- compress ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    out = tmp_path_factory.mktemp("compress") / "mlp-small.onnx"
    report = compress_model(MLP, out, prune=0.9, share_bits=5, data=DIGITS)
    return out, report


def test_compress_writes_a_valid_model_with_the_shared_weights(compressed):
    out, report = compressed
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, size in (("fc1.weight", 64 * 300), ("fc2.weight", 300 * 100)):
        w = weights[name]
        assert w.size == size and np.count_nonzero(w) <= round(0.1 * size)
        assert 1 < np.unique(w[w != 0]).size <= 32
    assert [p["name"] for p in report.passes][-1] == "share_weights"
    assert [r.layer for r in report.layers] == ["fc1", "fc2", "fc3"]


def test_compress_accuracy_is_that_of_the_written_model(compressed):
    out, report = compressed
    with np.load(DIGITS) as d:
        x, y = d["x"], d["y"]
    assert report.reference_accuracy == pytest.approx(MLP_ACCURACY)
    assert report.accuracy == pytest.approx(float(np.mean(_run(out, x) == y)))
    assert report.samples == 360 and report.accuracy_of == "labels y"


def test_compress_refuses_an_existing_output_and_needs_something_to_do(compressed, tmp_path):
    out, _ = compressed
    with pytest.raises(OutputConflictError):
        compress_model(MLP, out, prune=0.5)
    with pytest.raises(UsageError, match="nothing to do"):
        compress_model(MLP, tmp_path / "x.onnx", prune=0.0)
    assert not (tmp_path / "x.onnx").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_cli_compress_json(tmp_path):
    out = tmp_path / "small.onnx"
    args = ["compress", str(MLP), "--prune", "0.5", "-o", str(out), "--json"]
    result = CliRunner().invoke(main, [*args, "--data", str(DIGITS)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reference_accuracy"] == pytest.approx(MLP_ACCURACY)
    assert doc["accuracy_drop"] == pytest.approx(doc["reference_accuracy"] - doc["accuracy"])
    assert doc["total"]["weights"] == 50200 and doc["total"]["kept_fraction"] <= 0.5
    assert [r["bits"] for r in doc["layers"]] == [32, 32, 32]  # no sharing: raw values
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 6
    text = CliRunner().invoke(main, [*args[:-1], "--force"])
    assert text.exit_code == 0 and "fc2" in text.stdout and "total" in text.stdout


# -- verify --labels ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned_split(tmp_path_factory):
    out = tmp_path_factory.mktemp("split") / "out"
    model = shutil.copy(MLP, out.parent / "mlp.onnx")  # beside the split: verify finds it
    plan = dnnpart.partition(dnnpart.load(model), k=2, method="vertical", prune=0.9)
    export(model, plan, out)
    return out


def test_verify_reports_the_split_and_the_original_accuracy(pruned_split, tmp_path):
    report = verify(pruned_split, inputs=DIGITS, labels="y")
    assert report.ok
    assert report.reference_accuracy == pytest.approx(MLP_ACCURACY)
    # the split computes the model after the plan's passes: that model's accuracy
    pruned = compress_model(MLP, tmp_path / "pruned.onnx", prune=0.9, data=DIGITS)
    assert report.accuracy == pytest.approx(pruned.accuracy)
    assert report.accuracy_of == "labels y"


def test_verify_without_labels_measures_agreement(pruned_split, tmp_path):
    with np.load(DIGITS) as d:
        x = d["x"][:40]
    np.savez(tmp_path / "x.npz", x=x)
    report = verify(pruned_split, inputs=tmp_path / "x.npz")
    pruned = compress_model(MLP, tmp_path / "pruned.onnx", prune=0.9)
    agree = float(np.mean(_run(pruned.out, x) == _run(MLP, x)))
    assert report.accuracy == pytest.approx(agree) and report.reference_accuracy == 1.0
    assert report.accuracy_of == "agreement with the original model"
    with pytest.raises(UsageError, match="needs --inputs"):
        verify(pruned_split, labels="y")


def test_cli_verify_labels_json(pruned_split):
    args = ["verify", str(pruned_split), "--inputs", str(DIGITS), "--labels", "y", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["reference_accuracy"] == pytest.approx(MLP_ACCURACY)
    assert 0 < doc["accuracy"] <= 1
    bad = CliRunner().invoke(main, [*args[:-3], "--labels", "nope"])
    assert bad.exit_code == 2 and "no label array 'nope'" in bad.output
