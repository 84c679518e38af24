"""What a split costs to run: the executor's prepared selections and the sub-models'
data movement ops (a Gather only where no cheaper op does), checked end to end by verify."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import dnnpart
from dnnpart.exporters import export
from dnnpart.problem._build import build_problem
from dnnpart.runtime import verify
from dnnpart.runtime._routes import _cut, _selection
from dnnpart.scoring import score

pytest.importorskip("onnxruntime")

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx"


def plan_with_labels(path, k: int, labels):
    """A neuron plan of the model at ``path`` with the given labels, scored like any."""
    graph = dnnpart.load(path)
    plan = dnnpart.partition(graph, k=k, method="vertical", granularity="neuron")
    plan.labels = np.asarray(labels, dtype=np.int64)
    plan.scores = score(build_problem(graph, "neuron", k=k), plan.labels).to_dict()
    return plan


def export_and_verify(path, plan, out: Path) -> dict:
    doc = export(path, plan, out)
    report = verify(out, samples=2, model=path)
    assert report.ok, report.problems
    assert report.bytes_measured == report.bytes_planned == plan.scores["volume_bytes"]
    return doc


def ops(out: Path, doc) -> dict[str, list[str]]:
    """Sub-model file -> its op types."""
    return {
        s["file"]: [n.op_type for n in onnx.load(out / s["file"]).graph.node] for s in doc["stages"]
    }


# -- the executor's selections ---------------------------------------------------------


def test_contiguous_positions_are_a_view_and_others_a_copy_of_the_same_elements():
    rng = np.random.default_rng(0)
    for shape, axis in [((1, 9), 1), ((5, 9), 1), ((9, 3), 0), ((2, 9, 4), 1), ((1, 3, 9), 2)]:
        a = rng.standard_normal(shape).astype(np.float32)
        run = _selection([2, 3, 4, 5], axis)
        assert isinstance(run, tuple)
        got = _cut(a, run)
        np.testing.assert_array_equal(got, np.take(a, [2, 3, 4, 5], axis=axis))
        assert np.shares_memory(got, a) and got.nbytes == a.nbytes // shape[axis] * 4
        for positions in ([0, 2, 7], [5, 1], [3]):
            sel = _selection(positions, axis)
            got = _cut(a, sel)
            if len(positions) > 1:
                assert not np.shares_memory(got, a)
            np.testing.assert_array_equal(got, np.take(a, positions, axis=axis))
    assert _selection(None, None) is None


# -- data movement inside the sub-models ------------------------------------------------


def test_pieces_concatenate_in_neuron_order_with_no_permutation(tmp_path):
    # the softmax runs on device 1, which holds logits 1-2 and receives logit 0: taking
    # the pieces in neuron order makes their concatenation the tensor itself
    path = models.save(models.mlp_matmul((4, 6, 4, 3)), tmp_path, "mlp.onnx")
    labels = [0, 0, 1, 1] + [0, 0, 0, 1, 1, 1] + [0, 0, 1, 1] + [0, 1, 1] + [1]
    doc = export_and_verify(path, plan_with_labels(path, 2, labels), tmp_path / "out")
    found = ops(tmp_path / "out", doc)
    assert not [f for f, o in found.items() if "Gather" in o], found
    assert any("Softmax" in o and "Concat" in o for o in found.values())


def test_a_contiguous_part_of_the_own_slice_is_a_slice_not_a_gather(tmp_path):
    # device 0 holds all of conv0's channels and computes conv1's first group, which reads
    # channels 0-1 only: a block of its slice, cut by a Slice (a copy per block)
    path = models.save(models.conv_net((2, 4, 4), groups=2), tmp_path, "conv.onnx")
    labels = [0, 0] + [0, 0, 0, 0] + [0, 0, 1, 1] + [0] + [0, 0, 0]
    doc = export_and_verify(path, plan_with_labels(path, 2, labels), tmp_path / "out")
    found = ops(tmp_path / "out", doc)
    assert not [f for f, o in found.items() if "Gather" in o], found
    assert any("Slice" in o and "Conv" in o for f, o in found.items() if f.startswith("dev0_"))


def test_unwanted_own_neurons_are_cut_out_not_given_zero_weight_rows(tmp_path):
    model = models.mlp_matmul((4, 6, 4, 3))
    # relu0 neuron 4 (device 1's) has no synapse into fc1 neurons 2-3 (device 1's)
    w = {t.name: t for t in model.graph.initializer}["fc1.weight"]
    arr = numpy_helper.to_array(w).copy()
    arr[4, 2:] = 0.0
    w.CopyFrom(numpy_helper.from_array(arr, "fc1.weight"))
    path = models.save(model, tmp_path, "mlp.onnx")
    labels = [0, 0, 1, 1] + [0, 0, 0, 1, 1, 1] + [0, 0, 1, 1] + [0, 0, 0] + [0]
    plan = plan_with_labels(path, 2, labels)
    doc = export_and_verify(path, plan, tmp_path / "out")
    # device 1 receives only what its neurons need: relu0 neurons 0-2 from device 0
    sent = [t for t in doc["transfers"] if t["tensor"] == "h0" and t["to"] == 1]
    assert [t["indices"] for t in sent] == [[0, 1, 2]]
    # and holds fc1's rows of neurons 0-3 and 5 only: no row of zeros for neuron 4 (a
    # sub-model holds no pruned weight and the MACs add up to the model's)
    for s in doc["stages"]:
        if s["device"] == 1 and "fc1" in s["layers"]:
            inits = onnx.load(tmp_path / "out" / s["file"]).graph.initializer
            (w1,) = [numpy_helper.to_array(t) for t in inits if t.name.startswith("fc1.weight")]
    assert w1.shape == (5, 2)
    np.testing.assert_array_equal(np.sort(w1, axis=0), np.sort(arr[[0, 1, 2, 3, 5], 2:], axis=0))


@pytest.mark.parametrize("prune", [None, 0.9])
def test_sub_model_weights_are_copies_of_the_model_weights(tmp_path, prune):
    # the export slices and zeroes weights but computes none: a sub-model cannot hold a
    # value (a subnormal, say) that the (pruned) model does not
    plan = dnnpart.partition(
        dnnpart.load(MLP), k=4, method="metis", granularity="neuron", prune=prune
    )
    doc = export(MLP, plan, tmp_path / "out")
    source = np.concatenate(
        [numpy_helper.to_array(t).ravel() for t in onnx.load(MLP).graph.initializer] + [[0.0]]
    )
    tiny = np.finfo(np.float32).tiny
    for s in doc["stages"]:
        for t in onnx.load(tmp_path / "out" / s["file"]).graph.initializer:
            if t.data_type == onnx.TensorProto.FLOAT:
                a = numpy_helper.to_array(t)
                assert np.isin(a, source).all(), (s["file"], t.name)
                assert not ((a != 0) & (np.abs(a) < tiny)).any(), (s["file"], t.name)
