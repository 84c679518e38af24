"""The layer-placement objectives and the shared step that keeps every layer partitioner
no worse than vertical on them (dnnpart.problem._objective, dnnpart.partitioners._objective)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import dnnpart
from dnnpart.devices import Device, DeviceSet
from dnnpart.errors import UsageError
from dnnpart.partitioners import on_objective
from dnnpart.partitioners.vertical import vertical_partition
from dnnpart.plugins import get_registry
from dnnpart.problem import Problem
from dnnpart.problem._objective import LayerCosts, objective_score
from dnnpart.scoring import score
from tests import models

MLP = "examples/mlp/mlp.onnx"


def chain(objective="throughput", devices=None, k=2, n=3, nbytes=1e9) -> Problem:
    """Layers 0 -> 1 -> ... -> n-1, 1e12 MACs each (2 s on a 1 TFLOPS device), outputs of
    ``nbytes`` (0.8 s + 50 us on the default 10 Gbit/s link)."""
    rows = np.arange(n - 1)
    syn = sp.csr_array((np.ones(n - 1), (rows, rows + 1)), shape=(n, n))
    return Problem(
        synapses=syn,
        vertex_weight=np.full(n, 1e12),
        layer_offsets=np.array([0, n]),
        k=k,
        granularity="layer",
        activation_bytes=np.full(n, nbytes, dtype=np.int64),
        param_bytes=np.full(n, 10, dtype=np.int64),
        devices=devices,
        objective=objective,
    )


def test_objectives_of_a_chain_by_hand():
    labels = np.array([0, 0, 1])
    p = chain()
    link = 50e-6 + 1e9 / 1.25e9
    assert LayerCosts(p, "throughput").value(labels) == pytest.approx(4 + link)  # device 0
    assert LayerCosts(p, "latency").value(labels) == pytest.approx(6 + link)
    assert LayerCosts(p, "volume").value(labels) == 1e9
    s = score(p, labels)
    assert s.time_per_sample_s == pytest.approx(4 + link)
    assert s.latency_s == pytest.approx(6 + link)


def test_unknown_objective_is_a_usage_error():
    with pytest.raises(UsageError, match="objective must be one of"):
        chain(objective="speed")
    with pytest.raises(UsageError, match="objective"):
        dnnpart.partition(dnnpart.load(MLP), k=2, objective="fast")


def test_a_bad_answer_becomes_at_least_vertical():
    p = chain(n=6)
    bad = np.array([0, 1, 0, 1, 0, 1])  # five transfers
    for objective in ("throughput", "latency", "volume"):
        q = chain(objective, n=6)
        costs = LayerCosts(q, objective)
        out = on_objective(q, bad)
        assert costs.value(out) <= costs.value(vertical_partition(p)) * (1 + 1e-12)
        assert costs.value(out) < costs.value(bad)


def test_memory_limits_hold():
    # device 1 holds two layers at most (10 B params + 1e9 B activation each)
    devices = DeviceSet((Device("a", 1e12, 1e12), Device("b", 1e12, 2.5e9)))
    p = chain(devices=devices, n=6, nbytes=10**9)
    out = on_objective(p, np.array([1, 1, 1, 1, 1, 1]))
    used = np.bincount(out, weights=p.param_bytes + p.activation_bytes, minlength=2)
    assert np.all(used <= devices.memories)


def test_volume_keeps_balance():
    # the volume objective alone would put everything on one device
    p = chain("volume", n=6)
    out = on_objective(p, np.zeros(6, dtype=np.int64))
    assert sorted(np.bincount(out, minlength=2)) == [3, 3]


def _layer_partitioners() -> list[str]:
    reg = get_registry()
    return sorted(
        name
        for name, cls in reg.partitioners.items()
        if "layer" in getattr(cls, "granularities", ()) and name != "vertical"
    )


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("objective")
    return {
        "mlp": dnnpart.load(MLP),
        "resnet": dnnpart.load(str(models.save(models.residual_net(), tmp, "res.onnx"))),
        "transformer": dnnpart.load(str(models.save(models.transformer_block(), tmp, "tb.onnx"))),
    }


@pytest.mark.parametrize("model", ["mlp", "resnet", "transformer"])
@pytest.mark.parametrize("objective", ["throughput", "latency", "volume"])
def test_every_layer_partitioner_no_worse_than_vertical(graphs, model, objective):
    for k in (2, 3):
        for method in _layer_partitioners():
            plan = dnnpart.partition(
                graphs[model], k=k, method=method, granularity="layer", objective=objective
            )
            assert plan.parameters["objective"] == objective
            value = objective_score(plan.scores, objective)
            assert value <= objective_score(plan.baseline, objective) * (1 + 1e-9), (method, k)
            assert plan.scores["memory_ok"]


def test_cli_partition_takes_the_objective():
    import json

    from click.testing import CliRunner

    from dnnpart.cli import main

    args = ["partition", MLP, "-k", "2", "-p", "kl", "--granularity", "layer", "--json"]
    res = CliRunner().invoke(main, [*args, "--objective", "latency"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["plan"]["parameters"]["objective"] == "latency"
    assert doc["ratios"]["latency_s"] <= 1.0
    res = CliRunner().invoke(main, [*args, "--objective", "speed"])
    assert res.exit_code == 2


def test_call_overhead_of_a_used_device_by_hand():
    # b pays 10 s per sample once it holds a layer: everything stays on a (3 x 2 s)
    devices = DeviceSet((Device("a", 1e12), Device("b", 1e12, call_overhead=10.0)))
    p = chain(devices=devices)
    costs = LayerCosts(p, "throughput")
    link = 50e-6 + 1e9 / 1.25e9
    np.testing.assert_allclose(costs.device_loads(np.array([0, 0, 1])), [4 + link, 12 + link])
    np.testing.assert_allclose(costs.device_loads(np.array([0, 0, 0])), [6, 0])
    assert score(p, np.array([0, 0, 1])).time_per_sample_s == pytest.approx(12 + link)
    for method in ("pipeline", "kl", "metis", "spectral"):
        labels = get_registry().get(method)().partition(p)
        assert costs.value(labels) == pytest.approx(6.0), method
        assert labels.tolist() == [0, 0, 0], method
    # the same overhead on both devices adds to the split's load and does not change it
    even = DeviceSet((Device("a", 1e12, call_overhead=1.0), Device("b", 1e12, call_overhead=1.0)))
    labels = get_registry().get("pipeline")().partition(chain(devices=even))
    assert sorted(np.bincount(labels, minlength=2).tolist()) == [1, 2]
    assert LayerCosts(chain(devices=even)).value(labels) == pytest.approx(5 + link)
