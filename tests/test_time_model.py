"""The time model (dnnpart.problem._time): a layer takes the longer of its compute time and
its memory time, so memory-bound layers (0 MACs) cost their bytes. Known answers on tiny
graphs, the same rule in scoring and in the pipeline cost model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dnnpart
from dnnpart.devices import DEFAULT_MEMORY_BANDWIDTH, Device, DeviceSet
from dnnpart.errors import UsageError
from dnnpart.problem import build_problem
from dnnpart.problem._profile import pipeline_problem_of
from dnnpart.problem._time import seconds
from dnnpart.scoring import score

_F = TensorProto.FLOAT


def _vi(name, shape):
    return helper.make_tensor_value_info(name, _F, shape)


def _model(tmp_path):
    """x[1, 4] -> MatMul W[4, 3] (12 MACs) -> Relu -> y[1, 3]."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
            helper.make_node("Relu", ["h"], ["y"], name="relu"),
        ],
        "g",
        [_vi("x", [1, 4])],
        [_vi("y", [1, 3])],
        [numpy_helper.from_array(np.arange(1, 13, dtype=np.float32).reshape(4, 3), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return dnnpart.load(path)


def _one(memory_bandwidth=DEFAULT_MEMORY_BANDWIDTH, speed=1e12):
    return DeviceSet((Device("d", speed, memory_bandwidth=memory_bandwidth),))


def test_the_longer_of_compute_and_memory():
    devices = DeviceSet(
        (Device("a", 1e12, memory_bandwidth=1e11), Device("b", 2e12, memory_bandwidth=1e12))
    )

    class Macs:
        weight_unit = "macs"

    # 1e6 MACs and 4e5 bytes: a is memory-bound (4e-6 > 2e-6), b compute-bound (1e-6 > 4e-7)
    got = seconds(Macs, devices, 1e6, 4e5, np.arange(2))
    assert got.tolist() == pytest.approx([4e-6, 1e-6])


def test_bytes_read_and_written_by_each_layer(tmp_path):
    g = _model(tmp_path)
    # dense: x (16 B) + W (48 B) + h (12 B); relu: h (12 B) + y (12 B)
    assert g.layer("dense").memory_traffic == 76
    assert g.layer("relu").memory_traffic == 24


def test_layer_time_is_compute_or_bytes_whichever_is_longer(tmp_path):
    g = _model(tmp_path)
    p = build_problem(g, "layer", k=1)
    s = score(p, np.zeros(p.num_vertices, int), _one())
    # dense: max(2 * 12 / 1e12, 76 / 1e11); relu (0 MACs): 24 / 1e11
    assert s.latency_s == pytest.approx(76e-11 + 24e-11)
    s = score(p, np.zeros(p.num_vertices, int), _one(memory_bandwidth=np.inf))
    assert s.latency_s == pytest.approx(24e-12)  # compute only: the MACs
    s = score(p, np.zeros(p.num_vertices, int), _one(memory_bandwidth=1e12, speed=1e9))
    assert s.latency_s == pytest.approx(24e-9 + 24e-12)  # dense compute-bound now


def test_neuron_split_charges_each_device_its_share_of_the_bytes(tmp_path):
    g = _model(tmp_path)
    p = build_problem(g, "neuron", k=1)
    # the Relu follows the dense layer's neurons: its 24 bytes go to them
    assert p.memory_traffic.sum() == pytest.approx(76 + 24)
    s = score(p, np.zeros(p.num_vertices, int), _one())
    assert s.latency_s == pytest.approx(100 / 1e11)
    p2 = build_problem(g, "neuron", k=2)
    devices = DeviceSet(tuple(Device(n, 1e12, memory_bandwidth=1e11) for n in "ab"))
    labels = np.zeros(p2.num_vertices, int)
    labels[-1] = 1  # one of 3 neurons on b: a moves 2/3 of the bytes
    s = score(p2, labels, devices)
    assert s.compute_s_per_group[-1] == pytest.approx(100 * 2 / 3 / 1e11)


def test_the_pipeline_cost_model_uses_the_same_rule(tmp_path):
    g = _model(tmp_path)
    devices = DeviceSet((Device("a", 1e12, memory_bandwidth=1e11), Device("b", 1e9)))
    p = build_problem(g, "layer", k=2, devices=devices)
    pipeline, sl, _ = pipeline_problem_of(p)
    times = np.stack([d.time for d in pipeline.devices])
    want = seconds(p, devices, p.vertex_weight[sl], p.memory_traffic[sl], np.arange(2)[:, None])
    assert times == pytest.approx(want)
    assert times[0].tolist() == pytest.approx([76e-11, 24e-11])


def test_memory_bandwidth_in_the_device_file():
    d = DeviceSet.from_dict({"device": [{"name": "a", "memory_bandwidth": "51.2GB/s"}]})
    assert d.memory_bandwidths.tolist() == [51.2e9]
    assert DeviceSet.from_dict(d.to_dict()).memory_bandwidths.tolist() == [51.2e9]
    assert DeviceSet.identical(2).memory_bandwidths.tolist() == [DEFAULT_MEMORY_BANDWIDTH] * 2
    with pytest.raises(UsageError, match=r"device\[0\]\.memory_bandwidth"):
        DeviceSet.from_dict({"device": [{"name": "a", "memory_bandwidth": 0}]})
