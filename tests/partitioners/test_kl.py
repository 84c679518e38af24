"""Tests of k-way Kernighan-Lin / Fiduccia-Mattheyses refinement under per-layer balance."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from dnnpart.errors import UsageError
from dnnpart.partitioners import Problem
from dnnpart.partitioners.kl import KLPartitioner, kl_refine, objective_value, rebalance
from dnnpart.partitioners.metis import MetisPartitioner, metis_partition
from dnnpart.partitioners.vertical import (
    VerticalPartitioner,
    contiguous_slices,
    vertical_partition,
)
from dnnpart.problem._helpers import group_loads, is_balanced
from tests._problems import graph_challenge_problem, layered_problem


# -- references, written independently of the module under test --------------------------
def volume_ref(problem: Problem, labels: np.ndarray) -> float:
    """For each vertex, activation elements times the other devices holding a consumer."""
    total = 0.0
    syn = problem.synapses
    for u in range(problem.num_vertices):
        consumers = syn.indices[syn.indptr[u] : syn.indptr[u + 1]]
        consumers = consumers[consumers != u]
        devices = set(labels[consumers].tolist()) - {int(labels[u])}
        total += problem.activation_elements[u] * len(devices)
    return total


def cut_ref(problem: Problem, labels: np.ndarray) -> float:
    a = problem.adjacency.tocoo()
    return float(a.data[labels[a.row] != labels[a.col]].sum() / 2)


REF = {"volume": volume_ref, "cut": cut_ref}


def random_layers(seed: int, sizes=(6, 8, 8, 5), density=0.35) -> list[sp.csr_array]:
    rng = np.random.default_rng(seed)
    return [
        sp.csr_array(sp.random(a, b, density=density, random_state=rng, format="csr"))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def random_balanced_start(problem: Problem, seed: int) -> np.ndarray:
    """Contiguous slices of a random permutation of every balanced group."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, problem.k, problem.num_vertices)
    for g in np.flatnonzero(problem.balanced):
        sl = problem.layer_slice(g)
        perm = sl.start + rng.permutation(sl.stop - sl.start)
        labels[perm] = contiguous_slices(problem.vertex_weight[perm], problem.targets)
    return labels


def two_cliques(m: int = 6) -> tuple[Problem, np.ndarray]:
    """Two m-cliques joined by one edge, interleaved (a0 b0 a1 b1 ...), one layer group."""
    clique = np.arange(2 * m) % 2
    rows, cols = [], []
    for c in (0, 1):
        members = np.flatnonzero(clique == c)
        for i in range(m):
            for j in range(i + 1, m):
                rows.append(members[i])
                cols.append(members[j])
    rows.append(2 * (m - 1))
    cols.append(2 * (m - 1) + 1)
    n = 2 * m
    syn = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return Problem(syn, np.ones(n), [0, n], k=2, granularity="layer"), clique


def feasible(problem: Problem, labels: np.ndarray, v: int, b: int) -> bool:
    g = int(problem.layer_of[v])
    if not problem.balanced[g]:
        return True
    loads = group_loads(problem, labels, g)
    return loads[b] + problem.vertex_weight[v] <= problem.capacities(g, tight=True)[b] + 1e-9


# -- tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["volume", "cut"])
def test_two_cliques_found_from_the_vertical_start(objective):
    p, clique = two_cliques()
    start = vertical_partition(p)  # interleaved order: half of each clique on each side
    assert cut_ref(p, start) > 1
    lab = kl_refine(p, start, objective=objective)
    assert np.array_equal(lab, clique) or np.array_equal(lab, 1 - clique)
    assert cut_ref(p, lab) == 1.0 and volume_ref(p, lab) == 1.0


@pytest.mark.parametrize("objective", ["volume", "cut"])
def test_objective_value_matches_reference(objective):
    for seed in range(5):
        rng = np.random.default_rng(seed)
        layers = random_layers(seed)
        n = layers[0].shape[0] + sum(w.shape[1] for w in layers)
        p = layered_problem(layers, 3, activation_elements=rng.integers(1, 5, n))
        lab = rng.integers(0, 3, p.num_vertices)
        assert objective_value(p, lab, objective) == pytest.approx(REF[objective](p, lab))


@pytest.mark.parametrize("objective", ["volume", "cut"])
@pytest.mark.parametrize("k", [2, 3])
def test_converged_answer_is_a_local_optimum_by_brute_force(objective, k):
    for seed in range(4):
        p = layered_problem(random_layers(seed), k, seed=seed)
        lab = kl_refine(p, random_balanced_start(p, seed), objective=objective, max_passes=200)
        value = REF[objective](p, lab)
        for v in range(p.num_vertices):
            for b in range(k):
                if b == lab[v] or not feasible(p, lab, v, b):
                    continue
                moved = lab.copy()
                moved[v] = b
                assert REF[objective](p, moved) >= value - 1e-9, (seed, v, b)


@pytest.mark.parametrize("objective", ["volume", "cut"])
def test_never_increases_its_objective_and_keeps_balance(objective):
    for seed in range(6):
        p = layered_problem(random_layers(seed, sizes=(10, 16, 16, 8)), 3, seed=seed)
        start = random_balanced_start(p, seed)
        assert is_balanced(p, start)
        lab = kl_refine(p, start, objective=objective)
        assert is_balanced(p, lab)
        assert REF[objective](p, lab) <= REF[objective](p, start) + 1e-9


def test_same_seed_same_answer_and_invariants():
    p = layered_problem(random_layers(3, sizes=(10, 16, 16, 8)), 3, seed=11)
    a = KLPartitioner().partition(p)
    b = KLPartitioner().partition(p)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (p.num_vertices,) and a.min() >= 0 and a.max() < 3
    assert is_balanced(p, a)


def test_heterogeneous_targets_give_loads_in_proportion():
    p = graph_challenge_problem(3, targets=[1, 2, 4])
    lab = kl_refine(p, vertical_partition(p))
    assert is_balanced(p, lab)
    for g in np.flatnonzero(p.balanced):
        loads = group_loads(p, lab, g)
        assert loads[0] < loads[1] < loads[2]
        np.testing.assert_allclose(loads / loads.sum(), p.targets, atol=0.04)


def test_unbalanced_start_is_repaired_first():
    p = layered_problem(random_layers(4, sizes=(10, 16, 16, 8)), 3)
    everything_on_0 = np.zeros(p.num_vertices, dtype=np.int64)
    assert not is_balanced(p, everything_on_0)
    assert is_balanced(p, kl_refine(p, everything_on_0))
    repaired = rebalance(p, everything_on_0)
    assert is_balanced(p, repaired)
    # Only vertices of balanced groups move; the input layer is free and stays.
    np.testing.assert_array_equal(repaired[p.layer_slice(0)], 0)


def test_starts_and_parameters():
    p = layered_problem(random_layers(5, sizes=(10, 16, 16, 8)), 2)
    for start in ("vertical", "metis", VerticalPartitioner(), MetisPartitioner()):
        assert is_balanced(p, KLPartitioner(start=start).partition(p))
    # No pass: the start comes back, repaired to the tight capacities if it exceeds them.
    start = vertical_partition(p)
    none = kl_refine(p, start, max_passes=0)
    np.testing.assert_array_equal(none, rebalance(p, start, tight=True))
    assert is_balanced(p, none, tight=True)
    np.testing.assert_array_equal(kl_refine(p, none, max_passes=0), none)
    for bad in (
        KLPartitioner(start="spectral-ish"),
        KLPartitioner(objective="bytes"),
        KLPartitioner(max_passes=-1),
        KLPartitioner(patience=1.5),
    ):
        with pytest.raises(UsageError):
            bad.partition(p)


@pytest.mark.slow
def test_graph_challenge_volumes_against_strided_vertical_metis(capsys):
    rows = []
    for k in (2, 4, 16):
        p = graph_challenge_problem(k)
        found, seconds = {}, {}
        found["strided"] = np.arange(p.num_vertices) % k
        for name, fn in (
            ("vertical", vertical_partition),
            ("metis", metis_partition),
            ("kl", lambda p: kl_refine(p, vertical_partition(p))),
        ):
            t = time.perf_counter()
            found[name] = fn(p)
            seconds[name] = time.perf_counter() - t
        t = time.perf_counter()
        found["kl∘metis"] = kl_refine(p, found["metis"])
        seconds["kl∘metis"] = time.perf_counter() - t
        vol = {name: objective_value(p, lab) for name, lab in found.items()}
        rows.append((k, vol, seconds))
        for name in ("vertical", "metis", "kl", "kl∘metis"):
            assert is_balanced(p, found[name]), (k, name)
        # Data README: strided sends 1 024 activations at k = 2 and 4 096 at k = 16; checks
        # that the metric is the one the README counts.
        if k in (2, 16):
            assert vol["strided"] == {2: 1024, 16: 4096}[k]
        assert vol["kl"] < vol["vertical"] / 3
        assert vol["kl∘metis"] <= vol["metis"] < vol["vertical"]
    with capsys.disabled():
        print("\nGraph Challenge volume (activations), input + 4 layers of 1024:")
        for k, vol, seconds in rows:
            text = "  ".join(
                f"{n}={v:.0f}" + (f" ({seconds[n]:.2f}s)" if n in seconds else "")
                for n, v in vol.items()
            )
            print(f"  k={k:2d}  {text}")
