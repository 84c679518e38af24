"""The local executor and ``verify``: feeding samples, routing bytes, comparing outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import models
import numpy as np
import pytest
from click.testing import CliRunner

import dnnpart
from dnnpart._accuracy import samples_from as _samples_from
from dnnpart.cli import main
from dnnpart.errors import UsageError
from dnnpart.exporters import export
from dnnpart.runtime import Executor, verify
from dnnpart.runtime._verify import _compare

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
DIGITS = ROOT / "examples" / "mlp" / "digits_test.npz"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("split") / "out"
    plan = dnnpart.partition(dnnpart.load(MLP), k=4, method="metis", granularity="neuron")
    export(MLP, plan, out)
    return out, plan


# -- samples --------------------------------------------------------------------------


def test_symbolic_batch_is_cut_into_samples_of_one():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    feeds = _samples_from({"x": x}, [("x", np.dtype(np.float32), [None, 4])])
    assert len(feeds) == 3
    assert all(f["x"].shape == (1, 4) for f in feeds)
    np.testing.assert_array_equal(feeds[2]["x"], x[2:3])


def test_fixed_shape_input_is_reused_and_extra_axis_is_cut():
    specs = [("a", np.dtype(np.float32), [2, 3]), ("flag", np.dtype(bool), [])]
    a = np.ones((5, 2, 3), np.float32)
    feeds = _samples_from({"a": a, "flag": np.array(True)}, specs)
    assert len(feeds) == 5 and feeds[0]["a"].shape == (2, 3) and feeds[4]["flag"]


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({}, "no array 'x'"),
        ({"x": np.ones((2, 4), np.int64)}, "the model wants"),
        ({"x": np.ones((2, 4, 4, 1), np.float32)}, "shape"),
    ],
)
def test_bad_inputs_are_usage_errors(arrays, match):
    with pytest.raises(UsageError, match=match):
        _samples_from(arrays, [("x", np.dtype(np.float32), [None, 4])])


def test_samples_of_different_counts_are_refused():
    specs = [("a", np.dtype(np.float32), [None, 2]), ("b", np.dtype(np.float32), [None, 2])]
    with pytest.raises(UsageError, match="samples"):
        _samples_from({"a": np.ones((2, 2), np.float32), "b": np.ones((3, 2), np.float32)}, specs)


# -- comparison -----------------------------------------------------------------------


def test_comparison_is_relative_to_the_output_scale():
    ref = np.array([1000.0, 1e-9], np.float32)
    assert _compare("y", ref + np.float32(0.004), ref, 1e-5, None)[1] is None
    assert _compare("y", ref + np.float32(0.02), ref, 1e-5, None)[1] is not None
    nan = np.array([np.nan, 1.0], np.float32)
    assert _compare("y", nan.copy(), nan, 1e-5, None)[1] is None
    ints = np.array([1, 2, 3])
    assert _compare("i", ints.copy(), ints, 1e-5, None) == (0.0, None)
    assert _compare("i", ints + 1, ints, 1e-5, None)[1] is not None
    assert _compare("y", ref[:1], ref, 1e-5, None)[1] is not None


# -- executor -------------------------------------------------------------------------


def test_executor_counts_every_transfer_on_its_link(split):
    out, plan = split
    ex = Executor(out)
    x = np.load(DIGITS)["x"][:1]
    outputs, stats = ex.run({"input": x})
    assert outputs["probabilities"].shape == (1, 10)
    expected = np.zeros((4, 4), dtype=np.int64)
    for t in ex.manifest["transfers"]:
        expected[t["from"], t["to"]] += t["bytes"]
    np.testing.assert_array_equal(stats.link_bytes, expected)
    assert np.all(np.diag(stats.link_bytes) == 0)
    np.testing.assert_array_equal(stats.link_bytes, np.asarray(plan.scores["traffic_bytes"]))
    assert stats.bytes_total == plan.scores["volume_bytes"]
    # one batch of many samples moves that many times the bytes (all activations scale)
    _, stats8 = ex.run({"input": np.load(DIGITS)["x"][:8]})
    assert stats8.bytes_total == 8 * stats.bytes_total


def test_verify_on_the_digits_test_set(split):
    out, plan = split
    report = verify(out, inputs=DIGITS, model=MLP)  # the file's "x" array feeds the only input
    assert report.ok and report.samples == 360
    assert report.bytes_measured == report.bytes_planned == plan.scores["volume_bytes"]
    assert len(report.compute_s) == 4 and all(t > 0 for t in report.compute_s)


def test_random_inputs_are_seeded(split):
    out, _ = split
    a = verify(out, samples=3, seed=7, model=MLP)
    b = verify(out, samples=3, seed=7, model=MLP)
    c = verify(out, samples=3, seed=8, model=MLP)
    assert a.max_abs_err == b.max_abs_err
    assert a.ok and c.ok


def test_moved_model_is_found_with_model_option(tmp_path, split):
    out, _ = split
    copy = shutil.copytree(out, tmp_path / "copy")
    other = models.save(models.mlp_matmul(), tmp_path, "other.onnx")
    with pytest.raises(UsageError, match="sha256"):
        verify(copy, model=other)
    moved = shutil.copy(MLP, tmp_path / "moved.onnx")
    assert verify(copy, model=moved, samples=1).ok


def test_cli_verify_json_contract(split):
    out, _ = split
    result = CliRunner().invoke(
        main, ["verify", str(out), "--json", "--samples", "2", "--model", str(MLP)]
    )
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["bytes_measured"] == doc["bytes_planned"]
    assert isinstance(doc["max_abs_err"], float)
    text = CliRunner().invoke(main, ["verify", str(out), "--samples", "1", "--model", str(MLP)])
    assert text.exit_code == 0 and "ok" in text.stdout
