"""Cross-device pruning after partitioning (``partition --cross-prune``): the nets a split
lets drop and the methods' choices on tiny named layers with known answers; on real
models, the budget holds on held-out data and a dropped net disappears from the export."""

from __future__ import annotations

import numpy as np
import pytest

import dnnpart
from dnnpart.compress._cross import CrossLayer, _Candidates, cross_prune
from dnnpart.errors import InvalidModelError, UsageError
from tests.models import mlp_matmul, save

pytest.importorskip("onnxruntime")

# a 4-input, 3-neuron dense layer; inputs 0, 1 on device 0, inputs 2, 3 on device 1;
# neuron 0 on device 0, neurons 1 and 2 on device 1
W = np.array(
    [
        [1.0, 0.3, 0.0],  # input 0 -> device 1 through neuron 1 only (|w| 0.3)
        [2.0, 0.0, 0.0],  # input 1 never reaches device 1: no net
        [0.1, 5.0, 1.0],  # input 2 -> device 0 through neuron 0 (|w| 0.1)
        [0.2, 1.0, 1.0],  # input 3 -> device 0 through neuron 0 (|w| 0.2)
    ],
    dtype=np.float32,
)
ENTRY = CrossLayer(
    layer=0,
    tensor="input",
    source=np.arange(4),
    source_devices=np.array([0, 0, 1, 1]),
    neuron_devices=np.array([0, 1, 1]),
)


class _Layer:
    """Just enough of a dense layer for the candidates (a MatMul weight)."""

    name = "fc"
    op_type = "MatMul"
    attributes: dict = {}

    def __init__(self, w):
        class _W:
            name = "fc.weight"
            shape = w.shape

            def numpy(self, w=w):
                return w

        self.weights = {"weight": _W()}

    def _weight_in_out(self):
        return W.shape[0], W.shape[1], False


class _Graph:
    def __init__(self, w):
        self.layers = [_Layer(w)]


class _Runner:
    """The layer's input is the model's input: no model to run."""

    def __init__(self, x):
        self.x = x

    def run(self, weights, feeds):
        return {"input": self.x}


def test_candidates_are_the_cross_device_nets_with_a_synapse():
    c = _Candidates(_Graph(W), [ENTRY], 2)
    assert sorted(zip(c.source.tolist(), c.device.tolist(), strict=True)) == [
        (0, 1),
        (2, 0),
        (3, 0),
    ]
    nets = list(zip(c.source.tolist(), c.device.tolist(), strict=True))
    by_net = dict(zip(nets, c.max_abs([ENTRY]), strict=True))
    assert by_net == pytest.approx({(0, 1): 0.3, (2, 0): 0.1, (3, 0): 0.2})
    # thesis Eq. 5-1: output-major position n * inputs + m of the net's first synapse
    pos = dict(zip(nets, c.distance([ENTRY]), strict=True))
    assert pos == {(0, 1): 1 * 4 + 0, (2, 0): 0 * 4 + 2, (3, 0): 0 * 4 + 3}


def _score(weights):
    """Accuracy falls by 0.01 per unit of |w| dropped: a known cost per net."""
    if not weights:
        return 1.0
    return 1.0 - 0.01 * float(np.abs(W).sum() - np.abs(weights["fc.weight"]).sum())


def test_dynamic_drops_the_smallest_nets_within_the_budget():
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    # nets cost 0.001 (input 2), 0.002 (input 3), 0.003 (input 0): the first two fit 0.0035
    result = cross_prune(
        _Graph(W), [ENTRY], 2, method="dynamic", budget=0.0035, runner=_Runner(x),
        calibration=[{}], score=_score, reference=1.0,
    )  # fmt: skip
    new = result.weights["fc.weight"]
    assert result.nets == 2 and result.candidates == 3
    assert new[2, 0] == 0 and new[3, 0] == 0 and new[0, 1] == pytest.approx(0.3)
    np.testing.assert_array_equal(np.delete(new.ravel(), [6, 9]), np.delete(W.ravel(), [6, 9]))
    assert 1.0 - result.accuracy <= 0.0035
    # a budget of 0 drops nothing, a large one every net
    none = cross_prune(
        _Graph(W), [ENTRY], 2, method="dynamic", budget=0.0, runner=_Runner(x),
        calibration=[{}], score=_score, reference=1.0,
    )  # fmt: skip
    assert none.nets == 0 and none.weights == {}
    every = cross_prune(
        _Graph(W), [ENTRY], 2, method="dynamic", budget=1.0, runner=_Runner(x),
        calibration=[{}], score=_score, reference=1.0,
    )  # fmt: skip
    assert every.nets == 3


def test_lsq_refits_a_dropped_input_that_a_local_one_copies():
    # input 2 (device 1) equals input 0 (device 0): neuron 0 drops it and loses nothing,
    # its weight moves onto input 0 (1 + 0.1); input 3 is independent noise
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 4))
    x[:, 2] = x[:, 0]
    entry = CrossLayer(0, "input", np.arange(4), np.array([0, 0, 1, 1]), np.array([0, 1, 1]))
    w = W.copy()
    w[3, 0] = 0.0  # only input 2 crosses into neuron 0
    w[0, 1] = 0.0  # and nothing crosses into device 1

    def score(weights):
        return 1.0  # every drop is free: the budget never binds

    result = cross_prune(
        _Graph(w), [entry], 2, method="lsq", budget=0.0, runner=_Runner(x),
        calibration=[{}], score=score, reference=1.0,
    )  # fmt: skip
    new = result.weights["fc.weight"]
    assert result.nets == 1
    assert new[2, 0] == 0
    assert new[0, 0] == pytest.approx(1.1, abs=1e-5) and new[1, 0] == pytest.approx(2.0, abs=1e-5)


def test_bad_requests_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown cross-prune method"):
        cross_prune(_Graph(W), [ENTRY], 2, method="nope", budget=0.01, runner=None,
                    calibration=[], score=_score, reference=1.0)  # fmt: skip
    with pytest.raises(UsageError, match="budget"):
        cross_prune(_Graph(W), [ENTRY], 2, method="lsq", budget=2.0, runner=None,
                    calibration=[], score=_score, reference=1.0)  # fmt: skip
    graph = dnnpart.load(save(mlp_matmul(batch="N"), tmp_path))
    with pytest.raises(UsageError, match="needs --data"):
        dnnpart.partition(graph, k=2, cross_prune="lsq")
    with pytest.raises(UsageError, match="neuron granularity"):
        dnnpart.partition(graph, k=2, cross_prune="lsq", data={}, granularity="layer")


def _tiny(tmp_path):
    """A 6-5-4-3 MLP with a batch axis and 64 random labelled samples."""
    path = save(mlp_matmul(batch="N", seed=3), tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    data = {"input": x, "y": rng.integers(0, 3, 64)}
    return path, data


def test_dropped_nets_disappear_from_the_export(tmp_path):
    from dnnpart.exporters import export
    from dnnpart.runtime import verify

    path, data = _tiny(tmp_path)
    graph = dnnpart.load(path)
    plain = dnnpart.partition(graph, k=2, method="vertical")
    pruned = dnnpart.partition(
        graph, k=2, method="vertical", cross_prune="lsq", accuracy_budget=1.0, data=data,
        holdout=data,
    )  # fmt: skip
    record = pruned.passes[-1]
    assert record["name"] == "cross_prune" and record["nets"] == record["candidates"] > 0
    assert pruned.scores["volume_bytes"] < plain.scores["volume_bytes"]
    pruned.save(tmp_path / "plan.json")
    measured = {}
    for name, plan in (("plain", plain), ("pruned", tmp_path / "plan.json")):
        export(path, plan, tmp_path / name)
        measured[name] = verify(tmp_path / name, inputs=data)
        assert measured[name].ok
    assert measured["pruned"].bytes_measured == pruned.scores["volume_bytes"]
    assert measured["pruned"].bytes_measured < measured["plain"].bytes_measured
    assert measured["pruned"].accuracy == pytest.approx(pruned.scores["accuracy"])
    # the weights travel with the split by content hash; other weights are refused
    stored = tmp_path / "pruned" / f"{record['sha256']}.npz"
    arrays = dict(np.load(stored))
    name = sorted(arrays)[0]
    arrays[name] = arrays[name] + 1
    np.savez(stored, **arrays)
    with pytest.raises(InvalidModelError, match="not the weights the plan was made with"):
        verify(tmp_path / "pruned", inputs=data)


def test_without_holdout_a_seeded_part_is_held_out_and_said(tmp_path):
    path, data = _tiny(tmp_path)
    plan = dnnpart.partition(
        dnnpart.load(path), k=2, method="vertical", cross_prune="dynamic",
        accuracy_budget=0.05, data=data,
    )  # fmt: skip
    assert any("no --holdout: 16 of the 64 samples" in m for m in plan.messages)
    assert plan.scores["accuracy_drop"] <= 0.05 + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lsq", "dynamic", "greedy"])
def test_the_budget_holds_on_held_out_data(method, tmp_path):
    """The example MLP, k = 2: the split's held-out accuracy, measured again by verify on
    the exported split, is within one point of the original model's."""
    from pathlib import Path

    from dnnpart.exporters import export
    from dnnpart.runtime import verify

    mlp = Path(__file__).resolve().parents[2] / "examples" / "mlp"
    plan = dnnpart.partition(
        dnnpart.load(mlp / "mlp.onnx"), k=2, method="metis", prune=0.5, cross_prune=method,
        accuracy_budget=0.01, data=mlp / "digits_calib.npz", holdout=mlp / "digits_test.npz",
    )  # fmt: skip
    assert plan.scores["accuracy_drop"] <= 0.01
    assert plan.scores["volume"] < plan.baseline["volume"]
    plan.save(tmp_path / "plan.json")
    export(mlp / "mlp.onnx", tmp_path / "plan.json", tmp_path / "split")
    report = verify(
        tmp_path / "split", model=mlp / "mlp.onnx", inputs=mlp / "digits_test.npz", labels="y"
    )
    assert report.ok and report.bytes_measured == plan.scores["volume_bytes"]
    assert report.accuracy == pytest.approx(plan.scores["accuracy"])
    assert report.reference_accuracy - report.accuracy <= 0.01


def test_conv_rows_times_the_kernel_matrix_is_the_convolution():
    """im2col of a 2-D convolution (pads 1, stride 2, dilation 1) against a direct sum."""
    from dnnpart.compress._cross import _as_rows

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    entry = CrossLayer(0, "x", np.arange(18) // 6, np.zeros(3, int), np.zeros(4, int),
                       conv=((3, 2), (1, 0, 1, 0), (2, 1), (1, 1)))  # fmt: skip
    rows = _as_rows(x, entry)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    ho, wo = (5 + 2 - 3) // 2 + 1, 6 - 2 + 1
    want = np.zeros((2, 4, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, 2 * i : 2 * i + 3, j : j + 2]
            want[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    got = (rows @ w.reshape(4, -1).T).reshape(2, ho, wo, 4).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.slow
def test_the_cnn_example_sends_less_within_budget(tmp_path):
    """Convolutions (a channel is a neuron): the exported split sends what the plan says,
    less than vertical, within one point of the original model on held-out digits."""
    from pathlib import Path

    from dnnpart.exporters import export
    from dnnpart.runtime import verify

    cnn = Path(__file__).resolve().parents[2] / "examples" / "cnn_digits"
    plan = dnnpart.partition(
        dnnpart.load(cnn / "cnn.onnx"), k=2, method="metis", cross_prune="lsq",
        accuracy_budget=0.01, data=cnn / "digits_calib.npz", holdout=cnn / "digits_test.npz",
    )  # fmt: skip
    assert plan.scores["accuracy_drop"] <= 0.01
    assert plan.scores["volume"] < plan.baseline["volume"]
    export(cnn / "cnn.onnx", plan, tmp_path / "split")
    report = verify(tmp_path / "split", model=cnn / "cnn.onnx", inputs=cnn / "digits_test.npz")
    assert report.ok and report.bytes_measured == plan.scores["volume_bytes"]
    assert report.accuracy == pytest.approx(plan.scores["accuracy"])
