"""Pipeline DP of Tarnawski et al. (NeurIPS 2020) against brute force and the paper's optima."""

from __future__ import annotations

import itertools
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from dnnpart._notes import DnnpartNote
from dnnpart.errors import ResourceLimitError, UsageError
from dnnpart.importers._tarnawski import parse_profiled_graph, read_profiled_graph
from dnnpart.partitioners._pipeline_dp import pipeline_dp
from dnnpart.partitioners._pipeline_refine import refine
from dnnpart.problem import (
    DeviceClass,
    PipelineProblem,
    check_feasibility,
    device_loads,
    heterogeneous_problem,
    max_load,
)

# ---------------------------------------------------------------------------------------
# an independent scorer and brute force (plain Python, straight from the data README)


def score(n, edges, cost, dev_time, pays, assignment, overhead=None):
    """Max-load: device d pays time of its nodes, plus cost[u] once per u on d sending
    elsewhere and once per u elsewhere sending to d (when it pays communication), plus
    ``overhead[d]`` when it holds any node."""
    K = len(dev_time)
    load = [0.0] * K
    for d in set(assignment):
        load[d] += overhead[d] if overhead else 0.0
    for u in range(n):
        load[assignment[u]] += dev_time[assignment[u]][u]
    receivers = {}
    for u, w in edges:
        if assignment[u] != assignment[w]:
            receivers.setdefault(u, set()).add(assignment[w])
    for u, devs in receivers.items():
        if pays[assignment[u]]:
            load[assignment[u]] += cost[u]
        for d in devs:
            if pays[d]:
                load[d] += cost[u]
    return max(load)


def allowed(n, edges, assignment, K, *, ordered, groups, ok, size, mem):
    if any(not ok[assignment[u]][u] for u in range(n)):
        return False
    for d in range(K):
        if sum(size[u] for u in range(n) if assignment[u] == d) > mem[d]:
            return False
    for g in set(groups) - {-1}:
        if len({assignment[u] for u in range(n) if groups[u] == g}) > 1:
            return False
    arcs = {(assignment[u], assignment[w]) for u, w in edges if assignment[u] != assignment[w]}
    if ordered:  # a fixed device sequence: data only flows to later devices
        return all(a < b for a, b in arcs)
    # free order: the devices must be orderable, i.e. the quotient graph is acyclic
    left = set(range(K))
    while left:
        src = [d for d in left if not any(b == d and a in left for a, b in arcs)]
        if not src:
            return False
        left -= set(src)
    return True


def brute_force(prob: PipelineProblem):
    n, K = prob.num_nodes, prob.num_devices
    cls = prob.device_class.tolist()
    dev_time = [prob.devices[c].time.tolist() for c in cls]
    ok = [prob.devices[c].supported.tolist() for c in cls]
    pays = [prob.devices[c].pays_communication for c in cls]
    mem = [prob.devices[c].memory for c in cls]
    overhead = [prob.devices[c].overhead for c in cls]
    edges = list(zip(prob.src.tolist(), prob.dst.tolist(), strict=True))
    cost, size, groups = prob.out_cost.tolist(), prob.size.tolist(), prob.group.tolist()
    best = np.inf
    for a in itertools.product(range(K), repeat=n):
        if allowed(n, edges, a, K, ordered=prob.ordered, groups=groups, ok=ok, size=size, mem=mem):
            best = min(best, score(n, edges, cost, dev_time, pays, a, overhead))
    return best


def tarnawski_like(
    src, dst, fpga, cpu, cost, *, acc=2, cpus=1, size=None, mem=np.inf, group=None, supported=None
):
    devs = (
        DeviceClass("acc", acc, np.asarray(fpga, float), mem, True, supported),
        DeviceClass("cpu", cpus, np.asarray(cpu, float), np.inf, False, None),
    )
    return PipelineProblem(
        np.array(src),
        np.array(dst),
        np.asarray(cost, float),
        devs,
        size=size,
        group=None if group is None else np.array(group),
    )


def assert_dp_matches_brute_force(prob):
    res = pipeline_dp(prob)
    want = brute_force(prob)
    assert res.max_load == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert res.dp_value == pytest.approx(res.max_load, rel=1e-9, abs=1e-12)
    assert check_feasibility(prob, res.assignment) == []
    return res


# ---------------------------------------------------------------------------------------
# named small graphs

CHAIN = ([0, 1, 2, 3], [1, 2, 3, 4])
DIAMOND = ([0, 0, 1, 2], [1, 2, 3, 3])
# x -> conv1 -> conv2 -> add -> out, and the skip x -> add
RESIDUAL = ([0, 1, 2, 0, 3], [1, 2, 3, 3, 4])


def test_chain_balances_and_uses_cpu_when_it_pays():
    prob = tarnawski_like(
        *CHAIN, fpga=[4, 1, 3, 2, 4], cpu=[5, 30, 30, 30, 30], cost=[0.5, 0.1, 0.1, 0.2, 0]
    )
    res = assert_dp_matches_brute_force(prob)
    # node 0 is cheap on the CPU (which pays no communication): it ends up there
    assert res.assignment[0] == 2


def test_diamond():
    assert_dp_matches_brute_force(
        tarnawski_like(*DIAMOND, fpga=[1, 5, 4, 1], cpu=[10, 50, 40, 10], cost=[1, 0.5, 0.25, 0])
    )


def test_residual_block_counts_a_tensor_once_per_receiver():
    prob = tarnawski_like(
        *RESIDUAL, fpga=[1, 4, 4, 1, 1], cpu=[9, 99, 99, 9, 9], cost=[2, 0.5, 0.5, 0.5, 0]
    )
    assert_dp_matches_brute_force(prob)


def test_colour_classes_stay_together():
    # conv1 and add share a class: with the skip this forces conv2 between them too
    prob = tarnawski_like(
        *RESIDUAL,
        fpga=[1, 4, 4, 1, 1],
        cpu=[9, 99, 99, 9, 9],
        cost=[2, 0.5, 0.5, 0.5, 0],
        group=[-1, 3, -1, 3, -1],
    )
    res = assert_dp_matches_brute_force(prob)
    assert len(set(res.assignment[[1, 2, 3]].tolist())) == 1


def test_memory_limit_forces_a_split():
    base = dict(fpga=[1, 1, 1, 1, 1], cpu=[50] * 5, cost=[0.1] * 5, size=np.ones(5))
    loose = pipeline_dp(tarnawski_like(*CHAIN, mem=10, **base))
    tight = tarnawski_like(*CHAIN, mem=2, **base)
    res = assert_dp_matches_brute_force(tight)
    # two accelerators hold 4 nodes at most: one goes to the slow CPU
    assert np.bincount(res.assignment[res.assignment < 2]).max() <= 2
    assert (res.assignment == 2).sum() == 1
    assert res.max_load == 50 > loose.max_load


def test_unsupported_node_goes_to_cpu():
    prob = tarnawski_like(
        *DIAMOND,
        fpga=[1, 2, 2, 1],
        cpu=[3, 20, 20, 3],
        cost=[0.5] * 4,
        supported=np.array([True, True, False, True]),
    )
    res = assert_dp_matches_brute_force(prob)
    assert res.assignment[2] == 2


def test_infeasible_is_a_usage_error():
    prob = tarnawski_like(
        *CHAIN,
        fpga=[1] * 5,
        cpu=[1] * 5,
        cost=[0] * 5,
        cpus=0,
        supported=np.array([True, False, True, True, True]),
    )
    with pytest.raises(UsageError, match="no feasible"):
        pipeline_dp(prob)


@pytest.mark.parametrize("seed", range(12))
def test_random_dags_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 6
    pairs = [(u, w) for u in range(n) for w in range(u + 1, n) if rng.random() < 0.4]
    src, dst = (list(x) for x in zip(*pairs, strict=True)) if pairs else ([], [])
    fpga = rng.integers(0, 6, n).astype(float)
    group = rng.choice([-1, -1, 0, 1], n) if seed % 3 == 0 else None
    prob = tarnawski_like(
        src,
        dst,
        fpga=fpga,
        cpu=fpga * 4 + rng.integers(0, 3, n),
        cost=rng.integers(0, 4, n) / 2,
        group=group,
        size=rng.integers(0, 3, n).astype(float),
        mem=5 if seed % 2 else 99,
    )
    assert_dp_matches_brute_force(prob)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ordered", [True, False])
def test_heterogeneous_devices_against_brute_force(seed, ordered):
    rng = np.random.default_rng(100 + seed)
    src, dst = RESIDUAL if seed % 2 else ([0, 0, 1, 2, 3], [1, 2, 3, 3, 4])
    n = 5
    speed = np.array([1.0, 2.0, 0.5])
    work = rng.integers(1, 8, n).astype(float)
    prob = heterogeneous_problem(
        work[None, :] / speed[:, None],
        np.array(src),
        np.array(dst),
        rng.integers(0, 4, n) / 2.0,
        memory=[4, 3, 9],
        size=rng.integers(0, 3, n).astype(float),
        ordered=ordered,
    )
    res = assert_dp_matches_brute_force(prob)
    if ordered:  # stages follow the device sequence
        assert list(res.stages) == sorted(res.stages)


def test_heterogeneous_devices_in_any_order_against_brute_force():
    # singleton classes with ordered=False: the DP also chooses the device order
    rng = np.random.default_rng(7)
    src, dst = np.array(RESIDUAL[0]), np.array(RESIDUAL[1])
    work = rng.integers(1, 8, 5).astype(float)
    devs = tuple(
        DeviceClass(f"d{k}", 1, work / sp, mem, pays)
        for k, (sp, mem, pays) in enumerate([(1.0, 9, True), (3.0, 2, True), (0.5, 9, False)])
    )
    prob = PipelineProblem(src, dst, rng.integers(0, 4, 5) / 2.0, devs, size=np.ones(5))
    free = assert_dp_matches_brute_force(prob)
    fixed = pipeline_dp(
        PipelineProblem(src, dst, prob.out_cost, devs, size=np.ones(5), ordered=True)
    )
    assert free.max_load <= fixed.max_load


# ---------------------------------------------------------------------------------------
# a fixed cost per used device (call_overhead)


def test_overhead_large_enough_keeps_everything_on_one_device():
    # two equal nodes, free transfers: split, 1 per device; a device of overhead 5 loses
    times = np.ones((2, 2))
    src, dst, cost = np.array([0]), np.array([1]), np.zeros(2)
    split = pipeline_dp(heterogeneous_problem(times, src, dst, cost))
    assert split.max_load == 1.0 and sorted(split.assignment.tolist()) == [0, 1]
    prob = heterogeneous_problem(times, src, dst, cost, overhead=[0.0, 5.0])
    res = assert_dp_matches_brute_force(prob)
    assert res.max_load == 2.0 and res.assignment.tolist() == [0, 0]
    loads = device_loads(prob, [0, 1])
    assert loads.calls.tolist() == [0.0, 5.0] and loads.total.tolist() == [1.0, 6.0]
    assert device_loads(prob, [0, 0]).calls.tolist() == [0.0, 0.0]  # device 1 unused
    # a small overhead on both adds to the split's max-load, which still wins
    both = pipeline_dp(heterogeneous_problem(times, src, dst, cost, overhead=[0.25, 0.25]))
    assert both.max_load == 1.25 and both.dp_value == 1.25


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ordered", [True, False])
def test_overheads_against_brute_force(seed, ordered):
    rng = np.random.default_rng(300 + seed)
    src, dst = RESIDUAL if seed % 2 else DIAMOND
    n = 5 if seed % 2 else 4
    work = rng.integers(1, 8, n).astype(float)
    prob = heterogeneous_problem(
        work[None, :] / np.array([1.0, 2.0, 0.5])[:, None],
        np.array(src),
        np.array(dst),
        rng.integers(0, 4, n) / 2.0,
        memory=[6, 4, 9],
        size=rng.integers(0, 3, n).astype(float),
        overhead=rng.integers(0, 6, 3) / 2.0,
        ordered=ordered,
    )
    assert_dp_matches_brute_force(prob)


def test_overhead_is_validated():
    with pytest.raises(UsageError, match="overhead must be finite and >= 0"):
        dc = DeviceClass("d", 1, np.ones(2), overhead=-1)
        PipelineProblem(np.array([0]), np.array([1]), np.zeros(2), (dc,))
    with pytest.raises(UsageError, match="one entry per device"):
        heterogeneous_problem(np.ones((2, 2)), [0], [1], np.zeros(2), overhead=[1.0])


@pytest.mark.parametrize("group", [None, [0, 0, -1, -1, 1, 1]])
def test_refine_bookkeeping_when_a_device_is_emptied_or_filled(group):
    from dnnpart.partitioners._pipeline_refine import _LocalSearch

    rng = np.random.default_rng(11)
    n = 6
    src, dst = np.array([0, 1, 2, 3, 4, 0]), np.array([1, 2, 3, 4, 5, 3])
    prob = heterogeneous_problem(
        rng.integers(1, 5, (3, n)).astype(float), src, dst, rng.integers(0, 3, n) / 2.0,
        overhead=[0.5, 2.0, 7.0], group=None if group is None else np.array(group),
    )  # fmt: skip
    starts = [[0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 2, 2], [2, 2, 2, 2, 2, 2]]
    if group is None:  # node 5 alone on device 1: moving it empties the device
        starts += [[0, 1, 0, 1, 0, 1], [0, 0, 0, 0, 0, 1]]
    for start in starts:
        search = _LocalSearch(prob, np.array(start), lexicographic=False)
        last = len(search.groups) - 1
        for steps in (
            [(last, 0)], [(last, 2)], [(0, 1)],  # moves that empty or fill a device
            [(0, 2), (last, 0)], [(1, 1), (last, 0)], [(last, 0), (0, 1)],  # swaps, pairs
        ):  # fmt: skip
            after = search.dev_array()
            for q, t in steps:
                after[search.groups[q]] = t
            want = device_loads(prob, after).total
            np.testing.assert_allclose(search._evaluate(steps), want, rtol=1e-12)
        search.apply([(last, 2)])
        np.testing.assert_allclose(search.load, device_loads(prob, search.dev_array()).total)
        assert search.nodes == np.bincount(search.dev_array(), minlength=3).tolist()


def test_refine_moves_off_a_device_whose_overhead_is_the_bottleneck():
    prob = heterogeneous_problem(np.ones((2, 2)), [0], [1], np.zeros(2), overhead=[0.0, 5.0])
    out = refine(prob, [0, 1])
    assert out.initial_max_load == 6.0 and out.max_load == 2.0
    assert out.assignment.tolist() == [0, 0]


def _tiny_profiled_graph():
    # a -> b -> c, a -> c ; c cannot run on an accelerator; accelerators hold 10 bytes
    nodes = [
        {
            "id": 10,
            "name": "a",
            "supportedOnFpga": 1,
            "cpuLatency": 8,
            "fpgaLatency": 1,
            "isBackwardNode": 0,
            "size": 6,
        },
        {
            "id": 20,
            "name": "b",
            "supportedOnFpga": 1,
            "cpuLatency": 9,
            "fpgaLatency": 2,
            "isBackwardNode": 0,
            "size": 6,
        },
        {
            "id": 30,
            "name": "c",
            "supportedOnFpga": 0,
            "cpuLatency": 3,
            "fpgaLatency": 1,
            "isBackwardNode": 0,
            "size": 1,
        },
    ]
    edges = [
        {"sourceId": 10, "destId": 20, "cost": 0.5},
        {"sourceId": 20, "destId": 30, "cost": 0.25},
        {"sourceId": 10, "destId": 30, "cost": 0.5},
    ]
    doc = {"maxSizePerFPGA": 10, "maxFPGAs": 2, "maxCPUs": 1, "nodes": nodes, "edges": edges}
    return parse_profiled_graph(json.dumps(doc))


def test_profiled_graph_maps_to_accelerators_then_cpus():
    g = _tiny_profiled_graph()
    lb = device_loads(g, [0, 1, 2])  # a on acc0, b on acc1, c on the CPU
    np.testing.assert_allclose(lb.compute, [1, 2, 3])
    np.testing.assert_allclose(lb.comm_out, [0.5, 0.25, 0])
    np.testing.assert_allclose(lb.comm_in, [0, 0.5, 0])  # the CPU receives for free
    assert check_feasibility(g, [0, 1, 2]) == []
    assert any("cannot run node(s) [2]" in b for b in check_feasibility(g, [0, 1, 1]))
    assert any("memory" in b for b in check_feasibility(g, [0, 0, 2]))
    res = pipeline_dp(g)
    assert res.assignment.tolist() == [0, 1, 2] and res.max_load == 3.0
    # one accelerator: a and b do not fit on it together, and b alone there would make the
    # CPU's set {a, c} non-contiguous (a -> b -> c); so a on the accelerator, b, c on the CPU
    one = pipeline_dp(g, num_accelerators=1)
    assert one.assignment.tolist() == [0, 1, 1]
    assert one.loads.tolist() == [1 + 0.5, 9 + 3]
    with pytest.raises(UsageError, match="no feasible"):
        pipeline_dp(g, num_cpus=0)


def test_max_load_hand_computed():
    # a -> b, a -> c, b -> d ; devices: acc0, acc1, cpu2
    prob = tarnawski_like(
        [0, 0, 1], [1, 2, 3], fpga=[1, 2, 3, 4], cpu=[10, 20, 30, 40], cost=[0.5, 0.25, 7, 0]
    )
    # a, c on acc0; b on acc1; d on cpu
    lb = device_loads(prob, [0, 1, 0, 2])
    # acc0: 1 + 3 compute, sends a (0.5) once; acc1: 2 compute, receives a, sends b
    np.testing.assert_allclose(lb.compute, [4, 2, 40])
    np.testing.assert_allclose(lb.comm_out, [0.5, 0.25, 0])
    np.testing.assert_allclose(lb.comm_in, [0, 0.5, 0])  # the CPU pays nothing
    assert max_load(prob, [0, 1, 0, 2]) == 40.0
    # b and c both on acc1: a's output reaches acc1 once
    assert device_loads(prob, [0, 1, 1, 1]).total.tolist() == [1.5, 2 + 3 + 4 + 0.5, 0]
    # b on acc1, c on cpu: a is sent once by acc0 but received by two devices
    np.testing.assert_allclose(device_loads(prob, [0, 1, 2, 1]).total, [1.5, 6.5, 30])
    with pytest.raises(UsageError):
        max_load(prob, [0, 1, 3, 1])


def test_feasibility_messages():
    prob = tarnawski_like(
        *CHAIN,
        fpga=[1] * 5,
        cpu=[1] * 5,
        cost=[0] * 5,
        size=np.ones(5),
        mem=2,
        group=[0, 0, -1, -1, -1],
        supported=np.array([True, True, True, True, False]),
    )
    bad = check_feasibility(prob, [0, 1, 0, 0, 0])
    assert any("memory" in b for b in bad)
    assert any("split" in b for b in bad)
    assert any("cannot run node(s) [4]" in b for b in bad)
    assert check_feasibility(prob, [0, 0, 1, 1, 2]) == []


# ---------------------------------------------------------------------------------------
# graphs with many ideals, deep graphs, training graphs


def test_many_ideals_fall_back_to_linearisation_with_a_warning():
    # 11 independent nodes feeding one sink: 2**11 + 1 ideals
    n = 12
    src, dst = np.arange(11), np.full(11, 11)
    prob = tarnawski_like(
        src, dst, fpga=np.arange(1, n + 1), cpu=np.full(n, 100.0), cost=np.full(n, 0.1)
    )
    with pytest.warns(DnnpartNote, match="ideals"):
        res = pipeline_dp(prob, max_ideals=500)
    assert res.linearized and "prefixes" in res.message
    assert res.num_ideals == n + 1
    lin = pipeline_dp(prob, linearize=True)
    assert res.max_load == lin.max_load
    full = pipeline_dp(prob)
    assert not full.linearized and full.num_ideals == 2**11 + 1
    assert full.max_load <= res.max_load
    with pytest.raises(ResourceLimitError):
        pipeline_dp(prob, linearize=True, max_pairs=50)


def test_deep_chain_without_recursion():
    n = 3000
    t = np.ones(n)
    prob = tarnawski_like(
        np.arange(n - 1), np.arange(1, n), fpga=t, cpu=t * 100, cost=np.zeros(n), acc=3, cpus=0
    )
    res = pipeline_dp(prob)
    assert res.max_load == 1000.0  # three equal stages


def test_training_graph_orders_by_forward_edges():
    # forward a -> b -> c, loss c -> c', backward c' -> b' -> a'; x' pairs with x
    src, dst = [0, 1, 2, 3, 4, 1, 0], [1, 2, 3, 4, 5, 4, 5]
    n = 6
    prob = PipelineProblem(
        np.array(src),
        np.array(dst),
        np.array([1.0, 1, 1, 1, 1, 0]),
        (DeviceClass("acc", 3, np.array([2.0, 3, 1, 1, 4, 2])),),
        group=np.array([0, 1, 2, 2, 1, 0]),
        is_backward=np.array([False, False, False, True, True, True]),
    )
    res = pipeline_dp(prob)
    assert res.num_units == 3  # contracting the classes alone would fuse all into one
    assert check_feasibility(prob, res.assignment) == []
    assert res.max_load == pytest.approx(res.dp_value)
    assert res.max_load < max_load(prob, np.zeros(n, int))


# ---------------------------------------------------------------------------------------
# refine


@pytest.mark.parametrize("seed", range(6))
def test_refine_never_worse_and_deterministic(seed):
    rng = np.random.default_rng(seed)
    n = 12
    pairs = [(u, w) for u in range(n) for w in range(u + 1, min(n, u + 4)) if rng.random() < 0.6]
    src, dst = (np.array(x) for x in zip(*pairs, strict=True))
    prob = tarnawski_like(
        src,
        dst,
        fpga=rng.integers(1, 9, n),
        cpu=rng.integers(5, 60, n),
        cost=rng.integers(0, 5, n) / 4,
        acc=3,
        size=np.ones(n),
        mem=6,
        group=rng.choice([-1, -1, -1, 0, 1], n),
    )
    for start in (pipeline_dp(prob).assignment, rng.integers(0, 4, n)):
        if check_feasibility(prob, start):
            continue
        before = max_load(prob, start)
        for lex in (False, True):
            out = refine(prob, start, seed=seed, lexicographic=lex)
            assert out.max_load <= before
            assert out.initial_max_load == before
            assert check_feasibility(prob, out.assignment) == []
            again = refine(prob, start, seed=seed, lexicographic=lex)
            np.testing.assert_array_equal(out.assignment, again.assignment)


def test_refine_finds_a_strict_improvement():
    prob = tarnawski_like(*CHAIN, fpga=[2, 2, 2, 2, 2], cpu=[99] * 5, cost=[0] * 5)
    out = refine(prob, [0, 0, 0, 0, 0])
    assert out.initial_max_load == 10 and out.max_load == 6 and out.moves >= 1


def test_refine_rejects_infeasible_start():
    prob = tarnawski_like(*CHAIN, fpga=[1] * 5, cpu=[1] * 5, cost=[0] * 5, group=[0, 0, -1, -1, -1])
    with pytest.raises(UsageError, match="feasible"):
        refine(prob, [0, 1, 0, 0, 0])


# ---------------------------------------------------------------------------------------
# the paper's files


def _shared_tarnawski() -> Path:
    env = os.environ.get("DNNPART_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return root / "tarnawski"


def rescore_from_json(raw: dict, assignment, n_acc: int) -> float:
    """Max-load straight from the JSON, by node id (device >= n_acc means a CPU core)."""
    ids = [node["id"] for node in raw["nodes"]]
    dev = dict(zip(ids, assignment.tolist(), strict=True))
    nodes = {node["id"]: node for node in raw["nodes"]}
    load = {}
    for i, node in nodes.items():
        key = "fpgaLatency" if dev[i] < n_acc else "cpuLatency"
        load[dev[i]] = load.get(dev[i], 0.0) + node[key]
    cost, receivers = {}, {}
    for e in raw["edges"]:
        cost[e["sourceId"]] = e["cost"]
        if dev[e["sourceId"]] != dev[e["destId"]]:
            receivers.setdefault(e["sourceId"], set()).add(dev[e["destId"]])
    for u, devs in receivers.items():
        for d in devs | {dev[u]}:
            if d < n_acc:
                load[d] = load.get(d, 0.0) + cost[u]
    return max(load.values())


@pytest.mark.parametrize(
    ("name", "optimum"),
    [("layer_bert24_inference.json", 17.7899), ("operator_resnet50_inference.json", 124.349)],
)
def test_paper_optimum_is_reached(name, optimum):
    path = _shared_tarnawski() / name
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (set DNNPART_SHARED_DATA)")
    g = read_profiled_graph(path)
    raw = json.loads(path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the full ideal lattice, no fallback
        res = pipeline_dp(g)
    assert not res.linearized
    assert res.max_load == pytest.approx(optimum, rel=1e-4)
    assert rescore_from_json(raw, res.assignment, g.max_fpgas) == pytest.approx(res.max_load)
    assert check_feasibility(g, res.assignment) == []
    assert len(set(res.assignment.tolist())) <= g.max_fpgas + g.max_cpus
    ref = refine(g, res.assignment, seed=0)
    assert ref.max_load <= res.max_load
    assert rescore_from_json(raw, ref.assignment, g.max_fpgas) == pytest.approx(ref.max_load)
    assert check_feasibility(g, ref.assignment) == []
