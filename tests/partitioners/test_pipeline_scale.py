"""The pipeline DP at the paper's scale, and heterogeneous devices in any order.

Tarnawski et al. (NeurIPS 2020) run their DP on graphs of ~20,000 ideals. Checked here:
the vectorised pair chunks against a plain enumeration of subsets, the DP against an
independent plain-Python DP on a lattice of a few hundred ideals, the optimum on a lattice
of more than 10,000 ideals that is known by construction, and the choice of device order
against every permutation of the devices.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from test_pipeline_dp import assert_dp_matches_brute_force, tarnawski_like

import dnnpart.partitioners._pipeline_dp as pdp
from dnnpart._notes import DnnpartNote
from dnnpart.errors import UsageError
from dnnpart.partitioners._pipeline_dp import _build_units, pipeline_dp
from dnnpart.partitioners._pipeline_ideals import Ideals, enumerate_ideals
from dnnpart.problem import DeviceClass, PipelineProblem, device_loads, heterogeneous_problem


def random_dag(n, p, seed):
    rng = np.random.default_rng(seed)
    pairs = [(u, w) for u in range(n) for w in range(u + 1, n) if rng.random() < p]
    if not pairs:
        return np.zeros(0, int), np.zeros(0, int)
    return tuple(np.array(x) for x in zip(*pairs, strict=True))


def downsets(n, src, dst):
    """Every downward-closed subset of 0..n-1, by trying all 2**n subsets."""
    out = []
    for mask in range(1 << n):
        if all(not (mask >> w) & 1 or (mask >> u) & 1 for u, w in zip(src, dst, strict=True)):
            out.append(mask)
    return out


# ---------------------------------------------------------------------------------------
# the lattice


@pytest.mark.parametrize("seed", range(4))
def test_pair_chunks_list_every_nested_pair_once(seed):
    n = 9
    src, dst = random_dag(n, 0.15, seed)
    prob = tarnawski_like(src, dst, fpga=np.ones(n), cpu=np.ones(n), cost=np.zeros(n))
    units = _build_units(prob)
    ideals = Ideals(units.count, *enumerate_ideals(units, 10**6))
    # the units are the nodes renumbered: compare the sets of (I, J) as unit bitmasks
    as_int = [int.from_bytes(row.tobytes(), "little") for row in ideals.bits]
    got = set()
    for rows, counts, J in ideals.strict_pairs(max_pairs=50):  # many small chunks
        assert counts.sum() == J.size
        for i, j in zip(np.repeat(rows, counts).tolist(), J.tolist(), strict=True):
            assert (as_int[i], as_int[j]) not in got
            got.add((as_int[i], as_int[j]))
    rank = units.unit  # node -> unit
    want = set()
    sets = [sum(1 << int(rank[u]) for u in range(n) if m >> u & 1) for m in downsets(n, src, dst)]
    assert sorted(sets) == sorted(as_int)
    for a in sets:
        for b in sets:
            if a != b and b & ~a == 0:
                want.add((a, b))
    assert got == want
    assert ideals.estimate_pairs() == len(want) + len(sets)  # exact on small lattices
    assert 0.5 < ideals.estimate_pairs(samples=20) / (len(want) + len(sets)) < 2
    for i in range(ideals.count):
        subs = {as_int[j] for j in ideals.subideals_of(i)}
        assert subs == {b for (a, b) in want if a == as_int[i]}


# ---------------------------------------------------------------------------------------
# an independent DP in plain Python (sets, no lattice links, no chunks)


def plain_dp(prob: PipelineProblem) -> float:
    """Optimal contiguous max-load over device-count states, straight from definitions."""
    n = prob.num_nodes
    edges = list(zip(prob.src.tolist(), prob.dst.tolist(), strict=True))
    cons = {u: {w for a, w in edges if a == u} for u in range(n)}
    masks = downsets(n, prob.src.tolist(), prob.dst.tolist())
    ideals = [frozenset(u for u in range(n) if m >> u & 1) for m in masks]

    def load(c, S):
        dc = prob.devices[c]
        if any(not dc.supported[u] for u in S) or sum(prob.size[u] for u in S) > dc.memory:
            return np.inf
        t = sum(dc.time[u] for u in S)
        if dc.pays_communication:
            t += sum(prob.out_cost[u] for u in S if cons[u] - S)
            t += sum(prob.out_cost[u] for u in range(n) if u not in S and cons[u] & S)
        return t

    ncls = len(prob.devices)
    below = {
        big: [(sm, [load(c, big - sm) for c in range(ncls)]) for sm in ideals if sm < big]
        for big in ideals
    }
    counts = [dc.count for dc in prob.devices]
    states = sorted(itertools.product(*[range(k + 1) for k in counts]), key=sum)
    dp = {states[0]: {big: (0.0 if not big else np.inf) for big in ideals}}
    for s in states[1:]:
        dp[s] = {}
        for big in ideals:
            best = np.inf
            for c in range(ncls):
                if s[c] == 0:
                    continue
                prev = dp[s[:c] + (s[c] - 1,) + s[c + 1 :]]
                best = min(best, prev[big], *(max(prev[small], t[c]) for small, t in below[big]))
            dp[s][big] = best
    return dp[states[-1]][frozenset(range(n))]


@pytest.mark.parametrize("seed", range(3))
def test_dp_equals_a_plain_python_dp_on_hundreds_of_ideals(seed, monkeypatch):
    monkeypatch.setattr(pdp, "CHUNK_PAIRS", 500)  # many chunks, rows split across them
    rng = np.random.default_rng(50 + seed)
    n = 10
    src, dst = random_dag(n, 0.12, 50 + seed)
    fpga = rng.integers(1, 9, n).astype(float)
    prob = tarnawski_like(
        src,
        dst,
        fpga=fpga,
        cpu=fpga * 3,
        cost=rng.integers(0, 4, n) / 2,
        size=rng.integers(0, 3, n).astype(float),
        mem=6,
        supported=rng.random(n) < 0.9,
        acc=2,
    )
    res = pipeline_dp(prob)
    assert res.num_ideals >= 100
    assert res.max_load == pytest.approx(plain_dp(prob), rel=1e-9)
    assert res.dp_value == pytest.approx(res.max_load, rel=1e-9)


# ---------------------------------------------------------------------------------------
# more than 10,000 ideals, optimum known by construction

# 14 independent layers between a source and a sink: 2**14 + 2 ideals. Their times split
# into four sets of 27 ({17, 10}, {13, 12, 2}, {11, 9, 7}, {8, 6, 5, 4, 3, 1}); with free
# transfers four accelerators reach the average load 108 / 4 = 27, a lower bound, so 27
# is the optimum. No prefix of the topological order sums to 27, so one order cannot.
WIDE = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17]


def test_optimum_on_more_than_ten_thousand_ideals_without_fallback():
    n = len(WIDE) + 2
    mid = np.arange(1, n - 1)
    src = np.concatenate([np.zeros(len(mid), int), mid])
    dst = np.concatenate([mid, np.full(len(mid), n - 1)])
    fpga = np.array([0.0, *WIDE, 0.0])
    prob = tarnawski_like(src, dst, fpga=fpga, cpu=fpga, cost=np.zeros(n), acc=4, cpus=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback note
        res = pipeline_dp(prob)
    assert not res.linearized and res.num_ideals == 2**14 + 2 > 10_000
    assert res.num_pairs > 4_000_000
    assert res.max_load == 27.0
    lin = pipeline_dp(prob, linearize=True)
    assert lin.max_load > 27.0


def test_fallback_only_past_the_cap_and_with_its_note():
    n = 12  # 11 independent layers into one sink: 2**11 + 1 ideals
    prob = tarnawski_like(
        np.arange(11),
        np.full(11, 11),
        fpga=np.arange(1, n + 1),
        cpu=np.full(n, 100.0),
        cost=np.full(n, 0.1),
    )
    assert pdp.MAX_IDEALS >= 200_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not pipeline_dp(prob).linearized
    with pytest.warns(DnnpartNote, match=r"2049 ideals with about \d+ nested pairs \(limit 100\)"):
        res = pipeline_dp(prob, max_pairs=100)
    assert res.linearized


# ---------------------------------------------------------------------------------------
# heterogeneous devices: the DP chooses the order


def _by_permutation(times, src, dst, cost, memory, size):
    """Best fixed-order DP over every permutation of the devices, and its assignment in
    the original device numbers."""
    best, best_assignment = np.inf, None
    for perm in itertools.permutations(range(len(times))):
        perm = list(perm)
        res = pipeline_dp(
            heterogeneous_problem(
                times[perm], src, dst, cost, memory=memory[perm], size=size, ordered=True
            )
        )
        if res.max_load < best:
            best, best_assignment = res.max_load, np.array(perm)[res.assignment]
    return best, best_assignment


@pytest.mark.parametrize("seed", range(6))
def test_device_order_search_equals_every_permutation(seed):
    rng = np.random.default_rng(200 + seed)
    n = 7
    src, dst = random_dag(n, 0.35, 200 + seed)
    speed = np.array([1.0, 1.0, 2.0, 0.5])  # devices 0 and 1 are interchangeable
    memory = np.array([6.0, 6.0, 4.0, 20.0])
    work = rng.integers(1, 9, n).astype(float)
    times = work[None, :] / speed[:, None]
    cost = rng.integers(0, 4, n) / 2.0
    size = rng.integers(0, 3, n).astype(float)
    prob = heterogeneous_problem(times, src, dst, cost, memory=memory, size=size)
    assert [dc.count for dc in prob.devices] == [2, 1, 1]
    res = pipeline_dp(prob)
    want, _ = _by_permutation(times, src, dst, cost, memory, size)
    assert res.max_load == pytest.approx(want, rel=1e-12)
    # the labels are the file's device numbers: rescore with the devices listed one by one
    fixed = heterogeneous_problem(times, src, dst, cost, memory=memory, size=size, ordered=True)
    assert device_loads(fixed, res.assignment).total.max() == pytest.approx(res.max_load)
    assert max(np.bincount(res.assignment, weights=size, minlength=4) - memory) <= 1e-9


def test_device_order_search_against_brute_force():
    rng = np.random.default_rng(9)
    src, dst = np.array([0, 0, 1, 2, 3]), np.array([1, 2, 3, 3, 4])
    work = rng.integers(1, 8, 5).astype(float)
    speed = np.array([0.5, 2.0, 1.0])  # the fast device is listed in the middle
    prob = heterogeneous_problem(
        work[None, :] / speed[:, None], src, dst, rng.integers(0, 4, 5) / 2.0
    )
    res = assert_dp_matches_brute_force(prob)
    fixed = pipeline_dp(
        heterogeneous_problem(work[None, :] / speed[:, None], src, dst, prob.out_cost, ordered=True)
    )
    assert res.max_load <= fixed.max_load


def test_too_many_device_states_keep_the_given_order(monkeypatch):
    monkeypatch.setattr(pdp, "MAX_DEVICE_STATES", 4)
    src, dst = np.array([0, 1, 2]), np.array([1, 2, 3])
    times = np.array([[1.0, 1, 1, 1], [2.0, 2, 2, 2], [4.0, 4, 4, 4]])
    prob = heterogeneous_problem(times, src, dst, np.zeros(4))
    with pytest.warns(DnnpartNote, match="given order"):
        res = pipeline_dp(prob)
    fixed = pipeline_dp(heterogeneous_problem(times, src, dst, np.zeros(4), ordered=True))
    assert res.max_load == fixed.max_load
    assert list(res.stages) == sorted(res.stages)


def test_class_ids_must_number_every_device():
    t = np.ones(2)
    devs = (DeviceClass("a", 1, t, ids=(0,)), DeviceClass("b", 1, t, ids=(0,)))
    with pytest.raises(UsageError, match="ids"):
        PipelineProblem(np.array([0]), np.array([1]), np.zeros(2), devs)
