"""Tests of the RePurpose-style munkres partitioner and its transportation solver."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from dnnpart.errors import UsageError
from dnnpart.partitioners import Problem
from dnnpart.partitioners.munkres import MunkresPartitioner, munkres_partition, transport_assign
from dnnpart.problem._helpers import group_loads, is_balanced
from tests._problems import graph_challenge_problem, layered_problem


def volume(problem: Problem, labels: np.ndarray) -> int:
    """Activations sent: per vertex, the number of other devices holding a consumer."""
    syn = problem.synapses
    rows = np.repeat(np.arange(problem.num_vertices), np.diff(syn.indptr))
    pairs = np.unique(rows * problem.k + labels[syn.indices])
    u, d = pairs // problem.k, pairs % problem.k
    return int(np.sum(problem.activation_elements[u] * (d != labels[u])))


def random_layers(sizes, density, seed, k, **kwargs) -> Problem:
    rng = np.random.default_rng(seed)
    weights = [
        sp.csr_array((rng.random((a, b)) < density).astype(float))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    return layered_problem(weights, k, **kwargs)


def planted_layers(k=4, width=64, layers=4, seed=1) -> tuple[Problem, np.ndarray]:
    """Layers whose neurons belong to k hidden communities (dense inside, sparse across)."""
    rng = np.random.default_rng(seed)
    comm = [rng.permutation(np.repeat(np.arange(k), width // k)) for _ in range(layers + 1)]
    weights = []
    for a, b in itertools.pairwise(comm):
        prob = np.where(a[:, None] == b[None, :], 0.3, 0.01)
        weights.append(sp.csr_array((rng.random(prob.shape) < prob).astype(float)))
    return layered_problem(weights, k), np.concatenate(comm)


def brute_force(cost, weight, capacity):
    """Least cost over every assignment of rows to devices within capacity."""
    n, k = cost.shape
    best = np.inf
    for combo in itertools.product(range(k), repeat=n):
        lab = np.array(combo)
        if np.all(np.bincount(lab, weights=weight, minlength=k) <= capacity + 1e-9):
            best = min(best, cost[np.arange(n), lab].sum())
    return best


def assigned_cost(cost, labels):
    return float(cost[np.arange(len(labels)), labels].sum())


# -- the transportation solver -------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_lp_equals_hungarian_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, k = 9, 3
    cost = rng.integers(0, 5, (n, k)).astype(float)  # small integers: many ties
    weight = np.ones(n)
    capacity = np.array([3.0, 4.0, 3.5])
    lp = transport_assign(cost, weight, capacity)
    hu = transport_assign(cost, weight, capacity, solver="hungarian")
    best = brute_force(cost, weight, capacity)
    assert assigned_cost(cost, lp) == pytest.approx(best)
    assert assigned_cost(cost, hu) == pytest.approx(best)
    for lab in (lp, hu):
        assert np.all(np.bincount(lab, minlength=k) <= capacity)


@pytest.mark.parametrize("seed", range(3))
def test_unequal_weights_stay_within_capacity(seed):
    rng = np.random.default_rng(seed)
    n, k = 10, 3
    cost = rng.random((n, k))
    weight = rng.integers(1, 6, n).astype(float)
    share = weight.sum() / k
    capacity = np.full(k, share + weight.max())  # what Problem.capacities guarantees
    lab = transport_assign(cost, weight, capacity)
    assert np.all(np.bincount(lab, weights=weight, minlength=k) <= capacity + 1e-9)
    # The rounding moves at most k split vertices: never worse than that many worst costs.
    best = brute_force(cost, weight, capacity)
    assert assigned_cost(cost, lab) <= best + k * (cost.max() - cost.min()) + 1e-9


def test_zero_weight_rows_take_their_cheapest_device():
    cost = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [2.0, 0.5]])
    lab = transport_assign(cost, np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0]))
    assert lab[2] == 0 and lab[3] == 1
    assert sorted(lab[:2]) == [0, 1]


def test_solver_errors():
    with pytest.raises(UsageError):
        transport_assign(np.zeros((2, 2)), np.array([1.0, 2.0]), np.ones(2) * 3, solver="hungarian")
    with pytest.raises(UsageError):
        transport_assign(np.zeros((2, 2)), np.ones(2), np.ones(2), solver="simplex")
    with pytest.raises(UsageError):
        transport_assign(np.zeros((3, 2)), np.ones(2), np.ones(2))


# -- the partitioner -----------------------------------------------------------------


def test_invariants_and_determinism():
    p = random_layers([20, 24, 24, 18], 0.2, seed=3, k=3)
    lab = MunkresPartitioner().partition(p)
    # One label per vertex, an integer in [0, k): validate raises otherwise.
    assert lab.shape == (p.num_vertices,) and lab.dtype.kind == "i"
    assert np.array_equal(p.validate(lab), lab)
    assert set(np.unique(lab)) == {0, 1, 2}
    assert is_balanced(p, lab)
    again = random_layers([20, 24, 24, 18], 0.2, seed=3, k=3)
    assert np.array_equal(lab, munkres_partition(again))


def test_heterogeneous_targets_1_2_4():
    p = random_layers([28, 112, 112, 56], 0.15, seed=5, k=3, targets=np.array([1.0, 2.0, 4.0]))
    lab = munkres_partition(p)
    assert is_balanced(p, lab)
    for g in np.flatnonzero(p.balanced):
        loads = group_loads(p, lab, g)
        assert loads[0] < loads[1] < loads[2]


def test_unequal_vertex_weights_are_balanced_by_macs():
    # layered_problem weighs each neuron by its fan-in: a random sparse layer has unequal
    # MACs per neuron, so count slots alone would not be balanced.
    p = random_layers([30, 40, 40], 0.15, seed=7, k=4)
    assert len(np.unique(p.vertex_weight[p.layer_slice(1)])) > 1
    for sweeps in (0, 4):
        assert is_balanced(p, munkres_partition(p, sweeps=sweeps))


@pytest.mark.parametrize("seed", range(3))
def test_forward_pass_layer_is_the_brute_force_optimum(seed):
    # Second balanced layer (<= 10 neurons): given the first, the pass must pick the best
    # balanced assignment for "distinct input activations from other devices".
    p = random_layers([6, 9, 9], 0.35, seed=seed, k=3)
    p.vertex_weight[:] = np.where(p.balanced[p.layer_of], 1.0, 0.0)
    lab = munkres_partition(p, sweeps=0)
    sl = p.layer_slice(2)
    ins = p.synapses[:, sl].T.tocsr()
    cost = np.zeros((sl.stop - sl.start, p.k))
    for j in range(cost.shape[0]):
        for i in ins.indices[ins.indptr[j] : ins.indptr[j + 1]]:
            cost[j] += p.activation_elements[i] * (np.arange(p.k) != lab[i])
    best = brute_force(cost, p.vertex_weight[sl], p.capacities(2))
    assert assigned_cost(cost, lab[sl]) == pytest.approx(best)


def test_lp_and_hungarian_partitions_cost_the_same():
    p = random_layers([12, 16, 16, 12], 0.25, seed=11, k=3)
    p.vertex_weight[:] = np.where(p.balanced[p.layer_of], 1.0, 0.0)
    a = munkres_partition(p, solver="lp")
    b = munkres_partition(p, solver="hungarian")
    assert is_balanced(p, a) and is_balanced(p, b)
    assert volume(p, a) == volume(p, b)


def test_ties_follow_the_same_index_neuron():
    # A chain of identity layers plus neurons with no input at all: every neuron of a
    # later layer ties on cost for those, and must stay with its same-index predecessor.
    n, k = 12, 3
    eye = sp.eye_array(n, format="csr")
    half = sp.csr_array(eye.multiply(np.arange(n)[:, None] % 2 == 0))  # odd neurons: no input
    p = layered_problem([eye, half, eye], k)
    p.vertex_weight[:] = np.where(p.balanced[p.layer_of], 1.0, 0.0)
    lab = munkres_partition(p, sweeps=0)
    layers = [lab[p.layer_slice(g)] for g in range(1, 4)]
    assert np.array_equal(layers[0], layers[1]) and np.array_equal(layers[1], layers[2])
    assert volume(p, lab) == 0


def test_refinement_never_worsens_and_finds_planted_split():
    p, planted = planted_layers()
    forward = munkres_partition(p, sweeps=0)
    refined = munkres_partition(p, sweeps=4)
    assert is_balanced(p, refined)
    assert volume(p, refined) <= volume(p, forward)
    assert volume(p, refined) <= 1.1 * volume(p, planted)


def test_bad_parameters_raise_usage_errors():
    p = random_layers([6, 6], 0.5, seed=0, k=2)
    for kw in (dict(sweeps=-1), dict(sweeps=1.5), dict(cost="bytes"), dict(start="random")):
        with pytest.raises(UsageError):
            munkres_partition(p, **kw)
    layer = Problem(sp.csr_array((3, 3)), np.ones(3), [0, 3], k=2, granularity="layer")
    with pytest.raises(UsageError):
        MunkresPartitioner().partition(layer)


def test_k1_puts_everything_on_one_device():
    p = random_layers([5, 5], 0.5, seed=0, k=1)
    assert not munkres_partition(p).any()


# -- the Graph Challenge ------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 4, 16])
def test_graph_challenge_volume_below_strided(k):
    p = graph_challenge_problem(k)
    strided = np.arange(p.num_vertices) % 1024 % k
    vertical = np.concatenate([np.arange(1024) * k // 1024] * (p.num_layers))
    assert volume(p, strided) == {2: 1024, 4: 2048, 16: 4096}[k]  # the data README's fact
    lab = munkres_partition(p)
    assert is_balanced(p, lab)
    got = volume(p, lab)
    # Measured 480 / 960 / 2816 (strided 1024 / 2048 / 4096, vertical 4096 / 12288 / 61440).
    assert got < 0.75 * volume(p, strided)
    assert got < volume(p, vertical)
