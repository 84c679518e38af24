"""Tests of the vertical baseline (GraphDNN thesis): contiguous slices by capacity share."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dnnpart.partitioners import Problem
from dnnpart.partitioners.vertical import (
    VerticalPartitioner,
    contiguous_slices,
    vertical_partition,
)
from dnnpart.problem._helpers import group_loads, is_balanced, place_unbalanced
from tests._problems import graph_challenge_problem, layered_problem


def volume(problem: Problem, labels: np.ndarray) -> int:
    """For each vertex, the number of other devices holding one of its consumers."""
    s = problem.synapses.tocoo()
    pairs = np.unique(np.stack([s.row, labels[s.col]], axis=1), axis=0)
    return int(np.sum(pairs[:, 1] != labels[pairs[:, 0]]))


def random_layers(seed: int, sizes=(12, 20, 16, 8), density=0.3) -> list[sp.csr_array]:
    rng = np.random.default_rng(seed)
    return [
        sp.csr_array(sp.random(a, b, density=density, random_state=rng, format="csr"))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


@pytest.mark.parametrize(
    ("weights", "targets", "expected"),
    [
        ([1] * 8, [0.25] * 4, [0, 0, 1, 1, 2, 2, 3, 3]),
        ([4, 1, 1, 1, 1], [0.5, 0.5], [0, 1, 1, 1, 1]),
        ([0, 0, 0, 0], [0.5, 0.5], [0, 0, 1, 1]),  # no weight at all: cut by count
        ([1] * 7, [1 / 7, 2 / 7, 4 / 7], [0, 1, 1, 2, 2, 2, 2]),
    ],
)
def test_contiguous_slices_known_answers(weights, targets, expected):
    got = contiguous_slices(np.array(weights, dtype=float), np.array(targets))
    assert got.tolist() == expected


def test_contiguous_slices_stay_within_share_plus_heaviest():
    rng = np.random.default_rng(3)
    for _ in range(200):
        m, k = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        w = rng.integers(0, 10, size=m).astype(float)
        t = rng.uniform(0.1, 1.0, size=k)
        t /= t.sum()
        lab = contiguous_slices(w, t)
        assert np.all(np.diff(lab) >= 0) and lab.min() >= 0 and lab.max() < k
        if w.sum() > 0:
            loads = np.bincount(lab, weights=w, minlength=k)
            assert np.all(loads <= t * w.sum() + w.max() + 1e-9)


def test_invariants_on_layered_problem():
    p = layered_problem(random_layers(0), 3)
    lab = VerticalPartitioner().partition(p)
    assert lab.shape == (p.num_vertices,) and lab.dtype == np.int64
    assert lab.min() >= 0 and lab.max() < p.k
    assert is_balanced(p, lab)
    np.testing.assert_array_equal(lab, vertical_partition(p))  # deterministic
    for g in np.flatnonzero(p.balanced):  # each balanced layer: contiguous slices
        assert np.all(np.diff(lab[p.layer_slice(g)]) >= 0)


def test_unbalanced_groups_follow_their_consumers():
    p = layered_problem(random_layers(1), 2)
    lab = vertical_partition(p)
    assert not p.balanced[0]
    np.testing.assert_array_equal(lab, place_unbalanced(p, lab))


def test_heterogeneous_targets_give_loads_in_proportion():
    p = layered_problem(random_layers(2, sizes=(30, 70, 70)), 3, targets=[1, 2, 4])
    lab = vertical_partition(p)
    assert is_balanced(p, lab)
    for g in np.flatnonzero(p.balanced):
        w = p.vertex_weight[p.layer_slice(g)]
        loads = group_loads(p, lab, g)
        np.testing.assert_allclose(loads, p.targets * w.sum(), atol=w.max())
        assert loads[0] < loads[1] < loads[2]


def test_layer_granularity_is_contiguous_chunks_of_topological_order():
    # A chain of 10 layers with uneven times: chunks must follow the order, balanced by time.
    n = 10
    chain = sp.csr_array((np.ones(n - 1), (np.arange(n - 1), np.arange(1, n))), shape=(n, n))
    times = np.array([5, 1, 1, 1, 2, 2, 3, 1, 3, 1], dtype=float)
    p = Problem(chain, times, [0, n], k=3, granularity="layer")
    lab = vertical_partition(p)
    assert np.all(np.diff(lab) >= 0) and set(lab.tolist()) == {0, 1, 2}
    assert is_balanced(p, lab)
    # Midpoints 2.5 5.5 6.5 | 7.5 9 11 | 13.5 15.5 17.5 19.5 against bounds 6.67 and 13.33.
    assert lab.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]


def test_graph_challenge_block_split_facts():
    # Data README: at k = 2 a contiguous block split cuts 65 536 synapses over the four
    # layers but sends only 4 096 activations.
    p = graph_challenge_problem(2)
    lab = vertical_partition(p)
    s = p.synapses.tocoo()
    assert int(np.sum(lab[s.row] != lab[s.col])) == 65536
    assert volume(p, lab) == 4096
    assert is_balanced(p, lab)
