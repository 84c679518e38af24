"""Tests of dnnpart.scoring: every figure on graphs small enough to count by hand."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import graph_challenge_problem, layered_problem

from dnnpart import scoring
from dnnpart.devices import Device, DeviceSet, Link
from dnnpart.errors import PartitionerAnswerError, UsageError
from dnnpart.partitioners import Nets, Problem
from dnnpart.scoring import ratios, score


# -- a 2-layer toy, every figure counted by hand ---------------------------------------
def _toy() -> tuple[Problem, np.ndarray]:
    """Inputs i0..i3 (vertices 0-3) -> j0..j2 (4-6) -> o0, o1 (7, 8).

    i0 feeds j0, j1, j2; i1 feeds j0; i2 feeds j1, j2; i3 feeds j2;
    j0 feeds o0; j1 feeds o0, o1; j2 feeds o1.
    Labels: i = [0, 0, 1, 1], j = [0, 1, 1], o = [0, 1].
    """
    w1 = np.zeros((4, 3))
    w1[[0, 0, 0, 1, 2, 2, 3], [0, 1, 2, 0, 1, 2, 2]] = 1
    w2 = np.zeros((3, 2))
    w2[[0, 1, 1, 2], [0, 0, 1, 1]] = 1
    problem = layered_problem(
        [sp.csr_array(w1), sp.csr_array(w2)],
        k=2,
        activation_elements=np.arange(1, 10),  # vertex v outputs v + 1 elements
        param_bytes=np.full(9, 10),
    )
    return problem, np.array([0, 0, 1, 1, 0, 1, 1, 0, 1])


def test_toy_cut_volume_traffic():
    problem, labels = _toy()
    s = score(problem, labels)
    # Cross edges: i0->j1, i0->j2 (both to device 1), j1->o0.
    assert s.cut == 3
    # i0 is sent once to device 1 (1 element), j1 once to device 0 (6 elements).
    assert s.messages == 2
    assert s.volume == 1 + 6
    assert s.volume_bytes == 4 * 7
    np.testing.assert_array_equal(s.traffic_bytes, [[0, 4], [24, 0]])
    # Outputs o0 (8 elements) on device 0 and o1 (9) on device 1 are not sent.
    np.testing.assert_array_equal(s.output_bytes, [32, 36])


def test_toy_balance_and_neuron_counts():
    problem, labels = _toy()
    s = score(problem, labels)
    # Layer 1 MACs (fan-in): j0 = 2 on device 0; j1 = 2, j2 = 3 on device 1 -> 5 / 3.5.
    # Layer 2: o0 = 2, o1 = 2 -> perfect. Inputs are not balanced.
    assert s.imbalance_per_group == [None, pytest.approx(5 / 3.5), pytest.approx(1.0)]
    assert s.imbalance == pytest.approx(5 / 3.5)
    # Whole model: device 0 has 4 MACs, device 1 has 7, of 11.
    assert s.imbalance_total == pytest.approx(7 / 5.5)
    np.testing.assert_array_equal(s.neurons, [[2, 2], [1, 2], [1, 1]])
    np.testing.assert_array_equal(s.loads, [[0, 0], [2, 5], [2, 2]])


def test_toy_memory():
    problem, labels = _toy()
    # Device 0: i0, i1, j0, o0 -> 4 * 10 params + 4 * (1 + 2 + 5 + 8) activation bytes.
    # Device 1: i2, i3, j1, j2, o1 -> 5 * 10 + 4 * (3 + 4 + 6 + 7 + 9).
    devices = DeviceSet((Device("a", memory=104), Device("b", memory=165)))
    s = score(problem, labels, devices)
    np.testing.assert_array_equal(s.memory_bytes, [104, 166])
    assert not s.memory_ok and s.memory_overflow == [1]
    s = score(problem, labels, DeviceSet((Device("a", memory=104), Device("b", memory=166))))
    assert s.memory_ok and s.memory_overflow == []


def test_toy_layer_synchronous_latency():
    problem, labels = _toy()
    # 2 FLOP/s: one MAC takes 1 s. Links: 0.5 s + bytes / 4 B/s.
    devices = DeviceSet((Device("a", 2.0), Device("b", 2.0)), Link(4.0, 0.5))
    s = score(problem, labels, devices)
    # Inputs: no compute, nothing first needed there.
    # Layer 1: slowest device 5 s; i0 (4 B) first needed by layer 1 on device 1: 1.5 s.
    # Layer 2: 2 s; j1 (24 B) to device 0: 0.5 + 6 = 6.5 s.
    assert s.compute_s_per_group == pytest.approx([0, 5, 2])
    assert s.transfer_s_per_group == pytest.approx([0, 1.5, 6.5])
    assert s.latency_s == pytest.approx(15.0)
    assert s.time_per_sample_s is None


def test_toy_slow_link_and_slow_device():
    problem, labels = _toy()
    # A slower link from b to a only, and device b at half speed (targets 2:1).
    devices = DeviceSet(
        (Device("a", 2.0), Device("b", 1.0)), Link(4.0, 0.5), {(1, 0): Link(2.0, 0.0)}
    )
    s = score(problem, labels, devices)
    assert s.compute_s_per_group == pytest.approx([0, 10, 4])  # device b: 5 and 2 MACs at 2 s
    assert s.transfer_s_per_group == pytest.approx([0, 1.5, 12])
    # Balance against shares 2/3 and 1/3: layer 1 device b has 5 of 7 where 7/3 is its share.
    assert s.imbalance_per_group[1] == pytest.approx(5 / (7 / 3))


def test_activation_charged_to_first_consuming_group():
    """u (group 0) feeds v1 (group 1) and v2 (group 2): one message, charged to the first
    group on the receiver that needs it."""
    syn = sp.csr_array(([1.0, 1.0], ([0, 0], [1, 2])), shape=(3, 3))
    problem = Problem(
        synapses=syn,
        vertex_weight=np.zeros(3),
        layer_offsets=[0, 1, 2, 3],
        k=2,
        activation_bytes=[40, 0, 0],
    )
    devices = DeviceSet.identical(2, link=Link(10.0, 1.0))
    s = score(problem, [0, 1, 1], devices)
    assert s.messages == 1 and s.volume_bytes == 40
    assert s.transfer_s_per_group == pytest.approx([0, 5, 0])
    s = score(problem, [0, 0, 1], devices)
    assert s.transfer_s_per_group == pytest.approx([0, 0, 5])
    # A message pays the link latency whatever its size.
    problem.activation_bytes[:] = 0
    s = score(problem, [0, 0, 1], devices)
    assert s.transfer_s_per_group == pytest.approx([0, 0, 1])


# -- the Graph Challenge facts of the data README --------------------------------------
def _block(k: int) -> np.ndarray:
    return np.arange(1024) * k // 1024


def _strided(k: int) -> np.ndarray:
    return np.arange(1024) % k


@pytest.mark.parametrize(
    ("k", "split", "cut", "volume"),
    [(2, _block, 65536, 4096), (2, _strided, None, 1024), (16, _strided, None, 4096)],
)
def test_graph_challenge_readme_facts(k, split, cut, volume):
    """Convention: the input features are split exactly like the layer they feed (the same
    block or stride), so the README's "over the four layers" counts the four weight
    matrices inputs->L1 ... L3->L4; L4's outputs have no consumer and send nothing."""
    problem = graph_challenge_problem(k)
    labels = np.tile(split(k), 5)  # inputs + four layers of 1024 neurons
    s = score(problem, labels)
    assert s.volume == volume
    assert s.messages == volume  # one element per dense neuron
    if cut is not None:
        assert s.cut == cut
    # 32 synapses into every neuron, equal neuron counts: both splits are perfectly even.
    assert s.imbalance == pytest.approx(1.0)


def test_graph_challenge_ratios_block_vs_strided():
    problem = graph_challenge_problem(2)
    block = score(problem, np.tile(_block(2), 5))
    strided = score(problem, np.tile(_strided(2), 5))
    r = ratios(strided, block)
    assert r["volume"] == pytest.approx(1024 / 4096)
    assert r["volume_bytes"] == pytest.approx(1024 / 4096)
    assert r["cut"] == pytest.approx(strided.cut / 65536)
    assert r["imbalance"] == pytest.approx(1.0)
    assert r["time_per_sample_s"] is None


# -- volume against a message-by-message simulation ------------------------------------
def _random_problem(seed: int, k: int) -> tuple[Problem, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 60
    # Any forward edge u < v, so consumers of one vertex span several groups.
    dense = np.triu(rng.random((n, n)) < 0.12, k=1) * rng.integers(1, 4, (n, n))
    offsets = np.array([0, 8, 20, 35, 50, 60])
    problem = Problem(
        synapses=sp.csr_array(dense.astype(float)),
        vertex_weight=rng.integers(0, 5, n).astype(float),
        layer_offsets=offsets,
        k=k,
        activation_elements=rng.integers(1, 9, n),
        activation_bytes=rng.integers(1, 50, n),
    )
    return problem, rng.integers(0, k, n)


def _random_nets(problem: Problem, seed: int) -> Nets:
    """One to three nets per vertex with a synapse out, pins among its consumers, sizes of
    their own (a vertex sending differently sized tensors to different consumers)."""
    rng = np.random.default_rng(seed)
    rows, cols, source, elements = [], [], [], []
    for u in range(problem.num_vertices):
        consumers = problem.synapses.indices[
            problem.synapses.indptr[u] : problem.synapses.indptr[u + 1]
        ]
        for _ in range(rng.integers(1, 4) if consumers.size else 0):
            picked = rng.choice(consumers, size=rng.integers(1, consumers.size + 1), replace=False)
            rows += [len(source)] * len(picked)
            cols += picked.tolist()
            source.append(u)
            elements.append(int(rng.integers(1, 9)))
    pins = sp.csr_array((np.ones(len(rows)), (rows, cols)), (len(source), problem.num_vertices))
    return Nets(pins, np.array(source), np.array(elements), 4 * np.array(elements))


def _simulate(problem: Problem, labels: np.ndarray, devices: DeviceSet) -> dict:
    """Send every needed activation one by one (loops over edges, as a person would)."""
    coo = sp.coo_array(problem.synapses)
    layer = problem.layer_of
    cut = 0.0
    for u, v, w in zip(coo.row, coo.col, coo.data, strict=True):
        cut += w if labels[u] != labels[v] else 0
    if problem.nets is None:  # one message per vertex: its output, to its consumers
        nets = [
            (u, coo.col[coo.row == u], problem.activation_elements[u], problem.activation_bytes[u])
            for u in range(problem.num_vertices)
        ]
    else:
        pins = problem.nets.pins.tocoo()
        nets = [
            (problem.nets.source[j], pins.col[pins.row == j], *size)
            for j, size in enumerate(zip(problem.nets.elements, problem.nets.nbytes, strict=True))
        ]
    first: dict[tuple[int, int], int] = {}  # (net, receiver) -> first consuming group
    for j, (u, consumers, _, _) in enumerate(nets):
        for v in consumers:
            a, b = int(labels[u]), int(labels[v])
            if a != b:
                first[j, b] = min(first.get((j, b), 10**9), int(layer[v]))
    traffic = np.zeros((problem.k, problem.k))
    link_bytes = defaultdict(float)
    for (j, b), g in first.items():
        u, _, _, nbytes = nets[j]
        traffic[labels[u], b] += nbytes
        link_bytes[g, int(labels[u]), b] += nbytes
    transfer = np.zeros(problem.num_layers)
    for (g, a, b), nbytes in link_bytes.items():
        transfer[g] = max(transfer[g], devices.link(a, b).time(nbytes))
    return {
        "cut": cut,
        "messages": len(first),
        "volume": sum(int(nets[j][2]) for j, _ in first),
        "volume_bytes": sum(int(nets[j][3]) for j, _ in first),
        "traffic": traffic,
        "transfer": transfer,
    }


@pytest.mark.parametrize(("seed", "k"), [(0, 2), (1, 3), (2, 5), (3, 4)])
@pytest.mark.parametrize("small_blocks", [False, True])
@pytest.mark.parametrize("with_nets", [False, True])
def test_volume_matches_simulation(seed, k, small_blocks, with_nets, monkeypatch):
    if small_blocks:  # row blocks of a few synapses: results must not depend on blocking
        monkeypatch.setattr(scoring, "_CHUNK_NNZ", 7)
        monkeypatch.setattr(scoring, "_CHUNK_CELLS", 3 * k)
        monkeypatch.setattr(scoring, "_DENSE_GROUP_LINKS", 0)  # the path for huge L * k^2
    problem, labels = _random_problem(seed, k)
    if with_nets:
        problem = dataclasses.replace(problem, nets=_random_nets(problem, seed))
    links = {(0, 1): Link(3.0, 0.25), (1, 0): Link(50.0, 2.0)}
    devices = DeviceSet(tuple(Device(f"d{i}", 1.0 + i) for i in range(k)), Link(7.0, 0.5), links)
    s = score(problem, labels, devices)
    sim = _simulate(problem, labels, devices)
    assert s.messages > 0
    assert s.cut == pytest.approx(sim["cut"])
    assert (s.messages, s.volume, s.volume_bytes) == (
        sim["messages"],
        sim["volume"],
        sim["volume_bytes"],
    )
    np.testing.assert_allclose(s.traffic_bytes, sim["traffic"])
    np.testing.assert_allclose(s.transfer_s_per_group, sim["transfer"])


def test_nets_count_each_tensor_of_a_vertex():
    # Vertex 0 (device 0) sends a 16-element tensor to vertex 1 and a 1-element pooled
    # tensor to vertices 1 and 2 (all on device 1): two messages, 17 elements, whereas
    # one activation per vertex would say 1 message of activation_elements[0] = 16.
    synapses = sp.csr_array(np.array([[0, 1, 1], [0, 0, 0], [0, 0, 0]], dtype=float))
    nets = Nets(sp.csr_array(np.array([[0, 1, 0], [0, 1, 1]])), [0, 0], [16, 1], [64, 4])
    problem = Problem(synapses, np.ones(3), [0, 1, 3], 2, activation_elements=[16, 1, 1])
    labels = np.array([0, 1, 1])
    assert (score(problem, labels).volume, score(problem, labels).messages) == (16, 1)
    s = score(dataclasses.replace(problem, nets=nets), labels)
    assert (s.volume, s.volume_bytes, s.messages, s.cut) == (17, 68, 2, 2)
    np.testing.assert_array_equal(s.traffic_bytes, [[0, 68], [0, 0]])


def test_bad_nets_are_refused():
    synapses = sp.csr_array((3, 3))
    with pytest.raises(UsageError, match="columns"):
        Problem(synapses, np.ones(3), [0, 3], 1, nets=Nets(sp.csr_array((1, 2)), [0], [1], [4]))
    with pytest.raises(UsageError, match="source"):
        Problem(synapses, np.ones(3), [0, 3], 1, nets=Nets(sp.csr_array((1, 3)), [5], [1], [4]))
    with pytest.raises(UsageError, match="one value per net"):
        Problem(synapses, np.ones(3), [0, 3], 1, nets=Nets(sp.csr_array((2, 3)), [0], [1], [4]))


def test_one_device_sends_nothing():
    problem, labels = _random_problem(5, 1)
    s = score(problem, np.zeros_like(labels))
    assert (s.cut, s.volume, s.messages) == (0, 0, 0)
    assert s.imbalance == s.imbalance_total == 1.0


# -- layer placement: makespan and pipelined time per sample ---------------------------
def _diamond(speeds=(1.0, 1.0)) -> tuple[Problem, DeviceSet]:
    """0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3; run times 1, 2, 3, 1 s (profiled, fastest device);
    vertices 0-2 output 100 B; links 0.5 s + 100 B / 100 B/s = 1.5 s per tensor."""
    syn = sp.csr_array(([100.0] * 4, ([0, 0, 1, 2], [1, 2, 3, 3])), shape=(4, 4))
    problem = Problem(
        synapses=syn,
        vertex_weight=[1.0, 2.0, 3.0, 1.0],
        layer_offsets=[0, 4],
        k=2,
        granularity="layer",
        weight_unit="seconds",
        activation_bytes=[100, 100, 100, 0],
    )
    devices = DeviceSet(tuple(Device(f"d{i}", s) for i, s in enumerate(speeds)), Link(100.0, 0.5))
    return problem, devices


def test_makespan_diamond_by_hand():
    problem, devices = _diamond()
    s = score(problem, [0, 0, 1, 0], devices)
    # v0 on d0: 0-1. v1 on d0: 1-3. v2 on d1 waits for v0's tensor: 2.5-5.5.
    # v3 on d0 waits for v2's tensor: 7-8.
    assert s.latency_s == pytest.approx(8.0)
    # d0: compute 4 + send v0 (1.5) + receive v2 (1.5) = 7; d1: 3 + 1.5 + 1.5 = 6.
    assert s.time_per_sample_s == pytest.approx(7.0)
    assert s.compute_s_per_group is None


def test_makespan_serialises_a_device_and_sends_a_tensor_once():
    problem, devices = _diamond()
    s = score(problem, [0, 1, 1, 0], devices)
    # v0 d0: 0-1. v1 d1: 2.5-4.5. v2 d1 waits for its device: 4.5-7.5. v3 d0: 9-10.
    assert s.latency_s == pytest.approx(10.0)
    # v0 goes to d1 once for its two consumers there.
    assert s.messages == 3 and s.volume_bytes == 300
    # d0: 2 + send 1.5 + receive 3; d1: 5 + send 3 + receive 1.5.
    assert s.time_per_sample_s == pytest.approx(9.5)
    all_on_one = score(problem, [0, 0, 0, 0], devices)
    assert all_on_one.latency_s == all_on_one.time_per_sample_s == pytest.approx(7.0)


def test_profiled_seconds_are_times_on_the_fastest_device():
    problem, devices = _diamond(speeds=(2.0, 1.0))
    s = score(problem, [0, 0, 1, 0], devices)
    # v2 on the half-speed device takes 6 s: 2.5-8.5, then v3: 10-11.
    assert s.latency_s == pytest.approx(11.0)


def test_layer_problem_must_be_topologically_ordered():
    syn = sp.csr_array(([1.0], ([1], [0])), shape=(2, 2))
    problem = Problem(
        synapses=syn, vertex_weight=[1.0, 1.0], layer_offsets=[0, 2], k=1, granularity="layer"
    )
    with pytest.raises(UsageError, match="topological order"):
        score(problem, [0, 0])


# -- heterogeneous devices --------------------------------------------------------------
def _seven(k: int = 3, **kwargs) -> Problem:
    return Problem(
        synapses=sp.csr_array((7, 7)),
        vertex_weight=np.ones(7),
        layer_offsets=[0, 7],
        k=k,
        **kwargs,
    )


def test_speeds_1_2_4_balance():
    devices = DeviceSet(tuple(Device(n, s) for n, s in zip("abc", (1.0, 2.0, 4.0), strict=True)))
    problem = _seven()
    s = score(problem, [0, 1, 1, 2, 2, 2, 2], devices)
    assert s.imbalance == pytest.approx(1.0) and s.imbalance_total == pytest.approx(1.0)
    # One unit moved from c to a: a holds 2 where its share is 1.
    s = score(problem, [0, 0, 1, 1, 2, 2, 2], devices)
    assert s.imbalance == pytest.approx(2.0)
    # Without a device set the problem's targets give the same shares.
    s = score(_seven(targets=[1, 2, 4]), [0, 1, 1, 2, 2, 2, 2])
    assert s.imbalance == pytest.approx(1.0)
    s = score(_seven(), [0, 1, 1, 2, 2, 2, 2])  # equal shares: c holds 4 of 7/3
    assert s.imbalance == pytest.approx(4 / (7 / 3))


# -- input checks and output shape ------------------------------------------------------
def test_rejects_bad_labels_and_devices():
    problem, labels = _toy()
    with pytest.raises(PartitionerAnswerError):
        score(problem, labels[:-1])
    with pytest.raises(PartitionerAnswerError):
        score(problem, np.where(labels == 1, 2, 0))
    with pytest.raises(UsageError, match="3 devices but the problem k = 2"):
        score(problem, labels, DeviceSet.identical(3))


def test_to_dict_is_json_and_has_the_contract_keys():
    problem, labels = _toy()
    d = score(problem, labels).to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    for key in ("cut", "volume", "volume_bytes", "imbalance", "memory_bytes", "latency_s"):
        assert key in back
    assert "time_per_sample_s" in back
    assert back["traffic_bytes"] == [[0, 4], [24, 0]]


def test_ratios_edge_cases():
    problem, labels = _toy()
    s = score(problem, labels)
    r = ratios(s, s)
    # neuron granularity: no time per sample, no max-load, no host (their ratios are None)
    none = ("time_per_sample_s", "max_load", "host_time_s")
    assert all(r[key] is None for key in none)
    assert all(v == 1.0 for key, v in r.items() if key not in none)
    zero = dataclasses.replace(s, cut=0.0, volume=0)
    assert ratios(zero, zero)["cut"] == 1.0
    assert ratios(s, zero)["volume"] is None
    assert ratios(zero, s)["volume"] == 0.0
