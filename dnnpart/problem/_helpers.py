"""Small steps several partitioners share."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dnnpart.problem._problem import Problem

__all__ = [
    "net_incidence",
    "net_volume",
    "loose_note",
    "contiguous_slices",
    "place_unbalanced",
    "place_free_sources",
    "free_sources",
    "is_balanced",
    "group_loads",
]


def group_loads(problem: Problem, labels: np.ndarray, g: int) -> np.ndarray:
    """Compute weight each device holds in group ``g``, shape (k,)."""
    sl = problem.layer_slice(g)
    return np.bincount(labels[sl], weights=problem.vertex_weight[sl], minlength=problem.k)


def is_balanced(problem: Problem, labels: np.ndarray, *, tight: bool = False) -> bool:
    """True when every balanced group is within :meth:`Problem.capacities`.

    ``tight=True`` checks the tight capacities (``Problem.capacities(g, tight=True)``).
    """
    for g in np.flatnonzero(problem.balanced):
        if np.any(group_loads(problem, labels, g) > problem.capacities(g, tight=tight) + 1e-9):
            return False
    return True


def _self_pins(problem: Problem) -> np.ndarray:
    """Per net of :attr:`Problem.communication`, whether its source is also a pin."""
    comm = problem.communication
    if problem.nets is None:
        return comm.pins.diagonal() != 0  # the synapses: net u is vertex u's output
    m = comm.pins.shape[0]
    return np.asarray(comm.pins[np.arange(m), comm.source]).ravel() != 0


def free_sources(problem: Problem) -> np.ndarray:
    """Mask of the vertices whose placement is free and costs nothing upstream.

    A vertex that consumes no other vertex's output and weighs nothing for balance: the
    model's input features (an unbalanced group; they arrive already split, as the plan
    says) and neurons whose every input synapse was pruned (zero compute; their output is
    a constant). Only the nets they send depend on where they go.
    """
    comm = problem.communication
    pins = comm.pins
    n = problem.num_vertices
    cols = pins.indices if pins.data.all() else pins.indices[pins.data != 0]
    # Nets read per vertex, less the nets it reads from itself.
    reads = np.bincount(cols, minlength=n)
    reads -= np.bincount(comm.source[_self_pins(problem)], minlength=n)
    weightless = ~problem.balanced[problem.layer_of] | (problem.vertex_weight == 0)
    return weightless & (reads <= 0)


def place_free_sources(problem: Problem, labels: np.ndarray) -> np.ndarray:
    """Move every free source (:func:`free_sources`) where its nets cost least.

    A source on device ``d`` sends each of its nets to every other device holding a pin,
    so the best ``d`` is the one holding pins of the largest weight of its nets (elements);
    for a source with one net (a model input) that is any device of its consumers, and its
    volume is the number of other devices holding a consumer. Ties: lowest device index.
    Sources whose nets have no pin elsewhere stay where they are.
    """
    labels = np.array(labels, dtype=np.int64, copy=True)
    free = free_sources(problem)
    if not free.any():
        return labels
    comm = problem.communication
    k = problem.k
    nets = np.flatnonzero(free[comm.source])
    rows = comm.pins[nets]
    owner = np.repeat(np.arange(len(nets)), np.diff(rows.indptr))
    keep = (rows.data != 0) & (rows.indices != comm.source[nets][owner])
    cells = np.unique(owner[keep] * k + labels[rows.indices[keep]])  # (net, device) present
    net_of, dev = cells // k, cells % k
    src, where = np.unique(comm.source[nets][net_of], return_inverse=True)
    pull = np.zeros((len(src), k))
    np.add.at(pull, (where, dev), comm.elements[nets][net_of])
    has = pull.sum(axis=1) > 0
    labels[src[has]] = np.argmax(pull[has], axis=1)
    return labels


def place_unbalanced(problem: Problem, labels: np.ndarray) -> np.ndarray:
    """Move every vertex of an unbalanced group to the device of most of its neighbours.

    Unbalanced groups are the model's input features (they arrive already split, as the
    plan says) and layers placed whole; their placement is free, so each goes where the
    synapse weight to its consumers and producers is largest (ties: lowest device index).
    Groups are visited in order, so a vertex sees its producers' final devices.
    """
    labels = np.array(labels, dtype=np.int64, copy=True)
    adj = problem.adjacency
    for g in np.flatnonzero(~problem.balanced):
        sl = problem.layer_slice(g)
        for v in range(sl.start, sl.stop):
            lo, hi = adj.indptr[v], adj.indptr[v + 1]
            if lo == hi:
                continue
            pull = np.bincount(
                labels[adj.indices[lo:hi]], weights=adj.data[lo:hi], minlength=problem.k
            )
            labels[v] = int(np.argmax(pull))
    return labels


def contiguous_slices(weights: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cut a sequence of weighted items into ``len(targets)`` contiguous slices.

    Item ``i`` goes to the slice whose cumulative-share interval contains the *midpoint* of
    the item's own interval ``[c_i, c_i + w_i)`` on the cumulative-weight axis. Every slice
    then holds its share of the total within one item's weight (at most half an item on
    each side), so it stays within :meth:`Problem.capacities`, which allow share plus the
    heaviest vertex. Zero-weight items follow their neighbours; if every weight is zero
    the items are cut by count instead.

    Parameters
    ----------
    weights : ndarray, shape (m,)
        Non-negative weights in order.
    targets : ndarray, shape (k,)
        Positive shares summing to 1.

    Returns
    -------
    ndarray of int64, shape (m,)
        Slice index of each item, non-decreasing.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not w.sum() > 0:
        w = np.ones_like(w)
    ends = np.cumsum(w)
    mid = (ends - w / 2.0) / ends[-1]
    bounds = np.cumsum(targets)[:-1]
    # side="right": a midpoint exactly on a boundary belongs to the next slice.
    return np.searchsorted(bounds, mid, side="right").astype(np.int64)


def loose_note(who: str, problem: Problem, g: int) -> str:
    """The note of a partitioner that fell back from the tight capacities of group ``g``
    to the loose contract bound (:meth:`Problem.capacities`)."""
    return (
        f"{who}: no assignment of layer {problem.layer_names[g]!r} within its tight "
        "capacities was found; it is balanced to the loose bound (share + heaviest vertex)"
    )


def net_incidence(problem: Problem) -> sp.csr_array:
    """Net x vertex incidence of :attr:`Problem.communication`, each net's source a pin too.

    The hypergraph whose connectivity - 1 (the number of devices a net spans, minus one),
    weighted by ``problem.communication.elements``, is scoring's ``volume``
    (:func:`net_volume`): a net is sent once to every device other than its source's that
    holds one of its consumers. Shape (m, n), values 1.
    """
    comm = problem.communication
    m, n = comm.pins.shape
    pins = sp.coo_array(comm.pins)
    rows = np.concatenate([pins.row, np.arange(m)])
    cols = np.concatenate([pins.col, comm.source])
    inc = sp.csr_array((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(m, n))
    inc.sum_duplicates()
    inc.data[:] = 1
    return inc


def net_volume(problem: Problem, labels: np.ndarray) -> int:
    """Connectivity - 1 of ``labels`` over :func:`net_incidence`, weighted by the nets'
    elements: the ``volume`` :func:`dnnpart.scoring.score` reports."""
    labels = problem.validate(labels, "labels")
    inc = net_incidence(problem)
    rows = np.repeat(np.arange(inc.shape[0], dtype=np.int64), np.diff(inc.indptr))
    spans = np.unique(rows * problem.k + labels[inc.indices])
    lam = np.bincount(spans // problem.k, minlength=inc.shape[0])
    return int(np.dot(np.maximum(lam - 1, 0), problem.communication.elements))
