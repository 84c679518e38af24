"""Devices sharing one machine (dnnpart.devices.Host): the device file's ``[host]``, the
profile's measured ``dnnpart.host``, and the host's time per sample in the throughput
objective and the scores (dnnpart.problem.host_time)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dnnpart
from dnnpart.devices import Device, DeviceSet, Host
from dnnpart.errors import InvalidModelError, UsageError
from dnnpart.importers._ort_profile import profile_layers, profiled_json, with_profile
from dnnpart.plugins import get_registry
from dnnpart.problem import host_time
from dnnpart.problem._objective import LayerCosts, objective_score
from dnnpart.scoring import score
from tests import models
from tests.partitioners.test_objective import chain

LINK = 50e-6 + 1e9 / 1.25e9  # one 1e9-byte output on the default link


def _pair(host):
    return DeviceSet((Device("a"), Device("b")), host=host)


def test_the_host_file_table_reads_units_and_round_trips():
    spec = {
        "device": [{"name": "a"}, {"name": "b"}],
        "host": {"cores": 2, "call_cpu": "1.25ms", "byte_cpu": "3ns"},
    }
    devices = DeviceSet.from_dict(spec)
    assert devices.host == Host(2, 1.25e-3, 3e-9)
    assert DeviceSet.from_dict(devices.to_dict()) == devices
    assert "host" not in DeviceSet.identical(2).to_dict()
    assert DeviceSet.from_dict({"device": [{"name": "a"}], "host": {"cores": 4}}).host == Host(4)


@pytest.mark.parametrize(
    "host, match",
    [
        ({"cores": 0}, "cores must be a positive integer"),
        ({"cores": 1.5}, "cores must be a positive integer"),
        ({"cores": True}, "cores must be a positive integer"),
        ({"call_cpu": "1ms"}, r"host\.cores: the number of cores is required"),
        ({"cores": 2, "call_cpu": "fast"}, r"host\.call_cpu: cannot read"),
        ({"cores": 2, "byte_cpu": -1e-9}, r"host\.byte_cpu: must be >= 0"),
        ({"cores": 2, "call_cpu": float("nan")}, r"host\.call_cpu"),
        ({"cores": 2, "speed": 1}, r"host\.speed: unknown key"),
        ("2 cores", "host: must be a table"),
    ],
)
def test_bad_host_tables_are_usage_errors_naming_the_field(host, match):
    with pytest.raises(UsageError, match=match):
        DeviceSet.from_dict({"device": [{"name": "a"}], "host": host})


def test_with_host_fills_in_only_unplaced_devices_without_one():
    measured, own = Host(2, 1e-3, 1e-9), Host(8)
    assert _pair(None).with_host(measured).host == measured
    assert _pair(own).with_host(measured).host == own
    assert _pair(None).with_host(None).host is None
    on_a_node = DeviceSet((Device("a"), Device("b", node="10.0.0.7")))
    assert on_a_node.with_host(measured).host is None  # b runs on another machine
    # what keeps the devices keeps their host
    assert _pair(measured).without([1]).host == measured
    assert _pair(measured).with_call_overhead(1e-3).host == measured


def test_host_time_by_hand():
    # (6 s of layers + 2 calls x 0.5 s + (10 + 1e9) bytes x 1e-9 s) / 2 cores
    want = (6 + 1 + (10 + 1e9) * 1e-9) / 2
    assert host_time(Host(2, 0.5, 1e-9), 6.0, 2, 10, 1e9) == pytest.approx(want)


def test_a_shared_host_bounds_the_time_per_sample_of_a_chain():
    # three 2 s layers, 1e9-byte outputs; split [0, 0, 1]: device loads 4 + link, 2 + link
    split, whole = np.array([0, 0, 1]), np.array([0, 0, 0])
    two = chain(devices=_pair(Host(2, 0.5, 1e-9)))
    s = score(two, split)
    assert s.host_time_s == pytest.approx((6 + 2 * 0.5 + 1e9 * 1e-9) / 2)  # 4.0 s
    assert s.time_per_sample_s == pytest.approx(4 + LINK)  # the devices bind
    assert score(chain(devices=_pair(None)), split).host_time_s is None
    one = chain(devices=_pair(Host(1, 0.5, 1e-9)))
    s = score(one, split)
    assert s.host_time_s == s.time_per_sample_s == pytest.approx(8.0)  # the host binds
    assert LayerCosts(one).value(split) == pytest.approx(8.0)
    assert LayerCosts(one).value(whole) == pytest.approx(6.5)  # 6 s + one call
    # on one core, splitting only adds calls and bytes: every layer partitioner keeps the
    # chain whole; on two cores the split is worth it
    for method in ("pipeline", "kl", "metis"):
        labels = get_registry().get(method)().partition(one)
        assert len(set(labels.tolist())) == 1, method
    labels = get_registry().get("pipeline")().partition(two)
    assert LayerCosts(two).value(labels) == pytest.approx(4 + LINK)


def test_a_long_chain_on_one_core_stays_on_one_device():
    # ten 2 s layers: a split is stuck for single-layer moves (moving a boundary layer
    # changes neither calls nor bytes), so each device alone is a start of its own
    one = chain(devices=_pair(Host(1, 0.5, 1e-9)), n=10)
    for method in ("pipeline", "kl", "metis", "spectral"):
        labels = get_registry().get(method)().partition(one)
        assert len(set(labels.tolist())) == 1, method
        assert LayerCosts(one).value(labels) == pytest.approx(20.5), method
    two = chain(devices=_pair(Host(2, 0.5, 1e-9)), n=10)
    assert len(set(get_registry().get("pipeline")().partition(two).tolist())) == 2


def test_the_throughput_figure_of_scores_is_no_less_than_the_host_time():
    assert objective_score({"max_load": 3.0, "host_time_s": 4.0}, "throughput") == 4.0
    assert objective_score({"max_load": 5.0, "host_time_s": 4.0}, "throughput") == 5.0
    assert objective_score({"time_per_sample_s": 2.0, "host_time_s": None}, "throughput") == 2
    assert objective_score({"volume_bytes": 7, "host_time_s": 9.0}, "volume") == 7


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("host")
    model = str(models.save(models.mlp_gemm((6, 5, 3)), tmp))
    times = profile_layers(model, runs=2, warmup=0)
    return model, times, tmp


def test_the_profile_carries_its_host_to_plans_for_devices_that_run_here(profiled):
    model, times, tmp = profiled
    host = Host(2, 1e-3, 1e-9)
    doc = profiled_json(times, call_overhead=1e-3, host=host)
    assert doc["dnnpart"]["host"] == {"cores": 2, "call_cpu": 1e-3, "byte_cpu": 1e-9}
    assert "host" not in profiled_json(times)["dnnpart"]
    path = tmp / "p.json"
    path.write_text(json.dumps(doc))
    graph = dnnpart.load(path)
    assert graph.profile.host == host
    plan = dnnpart.partition(graph, k=2, method="pipeline")
    assert plan.devices["host"] == host.to_dict()  # the plan (and its export) say so
    used = len(set(plan.labels.tolist()))
    onnx = dnnpart.load(model)
    io = sum(t.nbytes for t in onnx.inputs + onnx.outputs)
    assert doc["dnnpart"]["io_bytes"] == io == 36  # 6 floats in, 3 out
    volume = plan.scores["volume_bytes"]
    want = (times.seconds.sum() + used * 1e-3 + (io + volume) * 1e-9) / 2
    assert plan.scores["host_time_s"] == pytest.approx(want, rel=1e-6)
    assert plan.scores["time_per_sample_s"] >= plan.scores["host_time_s"]
    base = plan.baseline["host_time_s"]  # the vertical split's, on the same host
    assert plan.ratios["host_time_s"] == pytest.approx(plan.scores["host_time_s"] / base)
    # an ONNX model planned on the profile takes it the same way
    onnx_plan = dnnpart.partition(with_profile(onnx, doc), k=2, method="pipeline")
    assert onnx_plan.devices["host"] == host.to_dict()
    # a device placed on a Ray node is not on the profiled machine: no host
    placed = DeviceSet((Device("a"), Device("b", node="10.0.0.7")))
    plan = dnnpart.partition(graph, devices=placed, method="pipeline")
    assert "host" not in plan.devices and plan.scores["host_time_s"] is None


def test_a_tampered_profile_host_is_an_invalid_model(profiled):
    _, times, tmp = profiled
    doc = profiled_json(times)
    doc["dnnpart"]["host"] = {"cores": "two"}
    path = tmp / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidModelError, match=r"dnnpart\.host"):
        dnnpart.load(path)


def test_a_device_pays_its_actors_cpu_per_call_where_it_was_measured():
    from dnnpart.runtime import CallOverhead

    measured = CallOverhead(1.2e-3, 6e-4, 200, 1.4e-3, 2e-9, actor_cpu_s=3e-4)
    assert measured.device_call_s() == 3e-4
    assert measured.host() == Host(measured.host().cores, 1.4e-3, 2e-9)
    elsewhere = CallOverhead(1.2e-3, 6e-4, 200)  # no /proc, or a cluster joined
    assert elsewhere.device_call_s() == 1.2e-3 and elsewhere.host() is None
