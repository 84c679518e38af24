"""Tight per-layer capacities, the assignment and repair that meet them, free sources, and
the example MLP's balance and volume under kl and munkres (issue 3)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import dnnpart
from dnnpart.errors import UsageError
from dnnpart.partitioners import Problem
from dnnpart.partitioners.kl import kl_refine, objective_value
from dnnpart.partitioners.metis import metis_partition
from dnnpart.partitioners.munkres import munkres_partition
from dnnpart.partitioners.vertical import vertical_partition
from dnnpart.problem._assign import transport_assign
from dnnpart.problem._capacity import tight_capacities
from dnnpart.problem._helpers import (
    free_sources,
    group_loads,
    is_balanced,
    place_free_sources,
)
from dnnpart.problem._problem import Nets
from dnnpart.problem._rebalance import rebalance
from tests._problems import layered_problem

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx"


# -- independent references ----------------------------------------------------------------
def assignments(n: int, k: int):
    for combo in itertools.product(range(k), repeat=n):
        yield np.array(combo)


def least_ratio(w: np.ndarray, share: np.ndarray) -> float:
    """Brute force: the least worst load / share over every assignment."""
    return min(
        float(np.max(np.bincount(lab, weights=w, minlength=len(share)) / share))
        for lab in assignments(len(w), len(share))
    )


def cheapest(cost: np.ndarray, w: np.ndarray, cap: np.ndarray) -> float:
    best = np.inf
    for lab in assignments(*cost.shape):
        if np.all(np.bincount(lab, weights=w, minlength=cost.shape[1]) <= cap + 1e-9):
            best = min(best, cost[np.arange(len(lab)), lab].sum())
    return best


def volume_ref(problem: Problem, labels: np.ndarray) -> float:
    """Per net of the problem: elements times the other devices holding a pin."""
    comm = problem.communication
    total = 0.0
    for j in range(comm.pins.shape[0]):
        row = comm.pins[[j]]
        devices = set(labels[row.indices].tolist()) - {int(labels[comm.source[j]])}
        total += comm.elements[j] * len(devices)
    return total


def uneven_layers(seed: int, k: int, sizes=(10, 8, 9, 6)) -> Problem:
    """Few neurons per layer, uneven fan-in: one neuron outweighs the 3 % tolerance."""
    rng = np.random.default_rng(seed)
    weights = [
        sp.csr_array((rng.random((a, b)) < rng.uniform(0.2, 0.8, b)).astype(float))
        for a, b in itertools.pairwise(sizes)
    ]
    return layered_problem(weights, k, seed=seed)


# -- tight capacities ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_tight_capacities_are_the_brute_force_least_ratio(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 2
    w = rng.integers(1, 15, rng.integers(4, 8)).astype(float)
    targets = np.array([1.0, 2.0, 3.0][:k]) if seed >= 4 else np.full(k, 1.0 / k)
    targets = targets / targets.sum()
    share = targets * w.sum()
    caps = tight_capacities(w, targets, 0.03)
    loose = np.maximum(1.03 * share, share + w.max())
    expected = np.minimum(np.maximum(1.03, least_ratio(w, share)) * share, loose)
    np.testing.assert_allclose(caps, expected, rtol=1e-9)
    assert np.all(caps >= 1.03 * share - 1e-9) and np.all(caps <= loose + 1e-9)


def test_tight_equals_loose_when_no_vertex_outweighs_the_tolerance():
    w = np.ones(400)  # share 200 at k = 2, heaviest 1 < 3 % of it
    t = np.array([0.5, 0.5])
    np.testing.assert_allclose(tight_capacities(w, t, 0.03), [206.0, 206.0])


def test_problem_capacities_keep_the_loose_contract_by_default():
    # Ten uneven output neurons at k = 4: loose allows share + heaviest, 1.56 x the share;
    # the best split of 9 14 10 10 6 12 4 10 12 13 into four is 26 per device (1.04 x).
    w = np.array([9, 14, 10, 10, 6, 12, 4, 10, 12, 13], dtype=float)
    p = Problem(sp.csr_array((10, 10)), w, [0, 10], k=4)
    np.testing.assert_allclose(p.capacities(0), 25 + 14)
    np.testing.assert_allclose(p.capacities(0, tight=True), 26.0, rtol=1e-9)
    assert least_ratio(w[:8], np.full(4, w[:8].sum() / 4)) > 1.03  # the check is not idle


# -- assignment and repair within tight capacities -------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_assignment_within_tight_capacities_is_the_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    n, k = 7, 3
    cost = rng.random((n, k))
    w = rng.integers(1, 9, n).astype(float)
    cap = tight_capacities(w, np.full(k, 1 / k), 0.03)
    lab = transport_assign(cost, w, cap)
    assert np.all(np.bincount(lab, weights=w, minlength=k) <= cap + 1e-9)
    assert cost[np.arange(n), lab].sum() == pytest.approx(cheapest(cost, w, cap))


def test_assignment_reports_infeasible_capacities():
    with pytest.raises(UsageError):
        transport_assign(np.zeros((3, 2)), np.array([2.0, 2.0, 2.0]), np.array([3.0, 3.0]))


@pytest.mark.parametrize("seed", range(4))
def test_rebalance_reaches_the_tight_capacities(seed):
    p = uneven_layers(seed, k=3)
    everything_on_0 = np.zeros(p.num_vertices, dtype=np.int64)
    fixed = rebalance(p, everything_on_0, tight=True)
    assert is_balanced(p, fixed, tight=True)
    np.testing.assert_array_equal(fixed[p.layer_slice(0)], 0)  # the free inputs stay


# -- partitioners keep 1 + imbalance wherever some assignment does ----------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["kl", "munkres", "metis"])
def test_layers_within_tolerance_wherever_brute_force_finds_it(method, seed):
    k = 2 + seed % 2
    p = uneven_layers(seed, k)
    if method == "kl":
        lab = kl_refine(p, vertical_partition(p))
    else:
        lab = {"munkres": munkres_partition, "metis": metis_partition}[method](p)
    assert is_balanced(p, lab, tight=True)
    within = 0
    for g in np.flatnonzero(p.balanced):
        w = p.vertex_weight[p.layer_slice(g)]
        share = p.targets * w.sum()
        best = least_ratio(w, share)
        within += best <= 1 + p.imbalance
        # Never above the tolerance or, where no assignment meets it, the best one does;
        # the loose bound alone would allow share + heaviest (1.3-2 x here).
        ratio = np.max(group_loads(p, lab, g) / share)
        assert ratio <= max(1 + p.imbalance, best) + 1e-9, (g, ratio, best)
    assert within >= 1  # the instance has layers where 1 + imbalance is reachable


# -- free sources ---------------------------------------------------------------------------
def test_inputs_and_dead_neurons_are_free_sources_placed_with_their_consumers():
    # input 0 -> n2, n3; n1 is a neuron with no input (weight 0) feeding n4.
    syn = sp.csr_array(
        (np.ones(4), ([0, 0, 1, 2], [2, 3, 4, 4])),
        shape=(5, 5),
    )
    p = Problem(syn, [0, 0, 1, 1, 1], [0, 1, 2, 4, 5], k=2, balanced=[False, True, True, True])
    np.testing.assert_array_equal(free_sources(p), [True, True, False, False, False])
    lab = place_free_sources(p, np.array([1, 0, 1, 0, 1]))
    assert lab[0] in (1, 0) and lab[1] == 1  # next to a consumer
    assert volume_ref(p, lab) == 1.0  # input 0 still reaches the other device once


def test_a_free_source_with_several_nets_goes_where_they_cost_least():
    # Vertex 0 sends net A (3 elements) to 1 and 2, net B (1 element) to 3.
    pins = sp.csr_array((np.ones(3), ([0, 0, 1], [1, 2, 3])), shape=(2, 4))
    nets = Nets(pins=pins, source=np.array([0, 0]), elements=np.array([3, 1]), nbytes=[12, 4])
    syn = sp.csr_array((np.ones(3), ([0, 0, 0], [1, 2, 3])), shape=(4, 4))
    p = Problem(syn, [0, 1, 1, 1], [0, 1, 4], k=3, balanced=[False, True], nets=nets)
    rest = np.array([0, 1, 2, 0])
    lab = place_free_sources(p, rest)
    costs = []
    for d in range(3):
        trial = rest.copy()
        trial[0] = d
        costs.append(volume_ref(p, trial))
    assert volume_ref(p, lab) == min(costs)


@pytest.mark.parametrize("seed", range(3))
def test_kl_volume_matches_the_reference_on_the_problem_nets(seed):
    p = uneven_layers(seed, k=3)
    lab = kl_refine(p, vertical_partition(p))
    assert objective_value(p, lab) == pytest.approx(volume_ref(p, lab))
    start = rebalance(p, vertical_partition(p), tight=True)
    assert volume_ref(p, lab) <= volume_ref(p, start)


# -- the example MLP (issue 3) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp_graph():
    return dnnpart.load(str(MLP))


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("method", ["kl", "munkres", "metis"])
def test_example_mlp_pruned_every_layer_within_tolerance(mlp_graph, method, k):
    plan = dnnpart.partition(mlp_graph, k=k, method=method, prune=0.9)
    per_group = [x for x in plan.scores["imbalance_per_group"] if x is not None]
    # The output layer (10 uneven neurons) used to reach 1.3-1.5 x its share.
    assert max(per_group) <= 1.05
    # Measured (after dead-neuron removal; vertical 348 / 882): kl 0.83 / 0.82, munkres
    # 0.89 / 0.89, metis 0.91 / 0.93.
    assert plan.ratios["volume"] <= {"kl": 0.85, "munkres": 0.9, "metis": 0.95}[method]


@pytest.mark.xfail(
    strict=True,
    reason="issue 3 target 0.8 x vertical: kl reaches 0.83; the best split found within "
    "1.05 (kl with 400-1500 restarts) is 282 / 348 = 0.81 at k = 2",
)
def test_example_mlp_pruned_issue_target_k2(mlp_graph):
    plan = dnnpart.partition(mlp_graph, k=2, method="kl", prune=0.9)
    assert plan.ratios["volume"] <= 0.8
