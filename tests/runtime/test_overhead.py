"""The fixed cost of one device call of ``dnnpart run`` (dnnpart.runtime.runtime_overhead)
and ``dnnpart profile --runtime-overhead``, which writes it into the profile."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import dnnpart
from dnnpart.cli import main
from dnnpart.devices import Device, DeviceSet
from dnnpart.errors import UsageError
from dnnpart.importers._ort_profile import profile_layers, profiled_json
from dnnpart.problem import max_load
from dnnpart.runtime import runtime_overhead
from tests import models


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return str(models.save(models.mlp_gemm((6, 5, 3)), tmp_path_factory.mktemp("oh")))


def test_bad_counts_are_usage_errors_before_ray_starts():
    with pytest.raises(UsageError, match="calls"):
        runtime_overhead(calls=0)
    with pytest.raises(UsageError, match="warmup"):
        runtime_overhead(warmup=-1)


def test_the_profile_carries_the_call_overhead_to_the_plan(mlp, tmp_path):
    times = profile_layers(mlp, runs=2, warmup=0)
    doc = profiled_json(times, call_overhead=2.5e-3)
    assert doc["dnnpart"]["call_overhead_s"] == 2.5e-3
    assert "call_overhead_s" not in profiled_json(times)["dnnpart"]
    with pytest.raises(UsageError, match="call_overhead"):
        profiled_json(times, call_overhead=-1.0)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    graph = dnnpart.load(path)
    assert graph.profile.call_overhead == 2.5e-3
    # the paper's max-load of one device: all the layers plus one call
    one = np.zeros(len(graph.layers), np.int64)
    want = times.seconds.sum() + 2.5e-3
    assert max_load(graph.profile, one, num_accelerators=1) == pytest.approx(want)


@pytest.mark.slow
def test_cli_profile_measures_a_ray_call(mlp, tmp_path):
    pytest.importorskip("ray", reason="the call overhead is measured on Ray")
    out = tmp_path / "p.json"
    args = ["profile", mlp, "--runs", "2", "--runtime-overhead", "-o", str(out), "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    call = doc["call_overhead_s"]
    # a round trip through Ray's scheduler: more than a function call, far less than 0.1 s
    assert 1e-5 < doc["call_round_trip_s"] < 0.1
    if sys.platform.startswith("linux"):  # CPU of the driver and its Ray, from /proc
        assert 0 < doc["call_host_cpu_s"] < 0.1
        assert 0 <= doc["call_host_cpu_per_byte_s"] < 1e-6
        # a device pays its actor's own CPU per call, a part of the machine's
        assert call == doc["call_actor_cpu_s"]
        assert 0 <= doc["call_actor_cpu_s"] <= doc["call_host_cpu_s"]
    else:
        assert call == doc["call_round_trip_s"]
    written = json.loads(out.read_text())["dnnpart"]
    assert written["call_overhead_s"] == call
    if sys.platform.startswith("linux"):  # this machine as devices sharing it see it
        host = {"cores": doc["host"]["cores"], "call_cpu": doc["call_host_cpu_s"]}
        assert host["cores"] >= 1 and written["host"] == {**host, "byte_cpu": host_byte(doc)}


def host_byte(doc):
    return doc["call_host_cpu_per_byte_s"] or 0.0


def test_partition_charges_the_profile_call_to_devices_without_their_own(mlp, tmp_path):
    times = profile_layers(mlp, runs=2, warmup=0)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profiled_json(times, call_overhead=2.5e-3)))
    total = times.seconds.sum()
    graph = dnnpart.load(path)
    one = dnnpart.partition(graph, k=1, method="pipeline")
    assert one.scores["max_load"] == pytest.approx(total + 2.5e-3)
    assert one.devices["device"][0]["call_overhead"] == 2.5e-3  # the plan says so
    # device b's own figure wins: 1 s per sample keeps everything on a
    own = DeviceSet((Device("a"), Device("b", call_overhead=1.0)))
    plan = dnnpart.partition(graph, devices=own, method="pipeline")
    assert [d["call_overhead"] for d in plan.devices["device"]] == [2.5e-3, 1.0]
    assert set(plan.labels.tolist()) == {0}
    assert plan.scores["max_load"] == pytest.approx(total + 2.5e-3)
    # an ONNX model planned on the profile (--profile) and the command line alike
    res = CliRunner().invoke(
        main, ["partition", mlp, "--profile", str(path), "-k", "1", "-p", "pipeline", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["scores"]["max_load"] == pytest.approx(total + 2.5e-3)
    toml = tmp_path / "d.toml"
    toml.write_text('[[device]]\nname = "a"\ncall_overhead = "1s"\n')
    args = ["partition", str(path), "--devices", str(toml), "-p", "pipeline", "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["scores"]["max_load"] == pytest.approx(total + 1.0)
