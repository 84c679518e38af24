"""Vertical partitioning: the GraphDNN thesis baseline.

Each balanced layer's neurons are cut into ``k`` contiguous slices, device ``d`` taking
the slice whose share of the layer's compute is ``targets[d]``. This is the "vertical"
split the thesis compares every other method against (its "overall reduce" figures are
ratios to it). At layer granularity there is a single group holding every layer in
topological order, so the same rule gives contiguous chunks of that order balanced by
compute — a pipeline split.
"""

from __future__ import annotations

import numpy as np

from dnnpart.partitioners._base import Partitioner
from dnnpart.problem._helpers import place_unbalanced
from dnnpart.problem._problem import Problem

__all__ = ["vertical_partition", "VerticalPartitioner", "contiguous_slices"]


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


def vertical_partition(problem: Problem) -> np.ndarray:
    """The thesis' vertical baseline: contiguous slices of every balanced group.

    Parameters
    ----------
    problem : Problem

    Returns
    -------
    ndarray of int64, shape (n,)
        Device of every vertex. Balanced groups are sliced by cumulative vertex weight in
        proportion to ``problem.targets`` (so heterogeneous devices get slices in proportion
        to their speed); unbalanced groups (model inputs, layers placed whole) then go to
        the device of most of their neighbours (:func:`place_unbalanced`). Deterministic;
        no randomness is involved.

    References
    ----------
    The GraphDNN thesis, section on the vertical baseline ("each layer's neurons split in
    k equal contiguous parts").
    """
    labels = np.zeros(problem.num_vertices, dtype=np.int64)
    for g in np.flatnonzero(problem.balanced):
        sl = problem.layer_slice(g)
        labels[sl] = contiguous_slices(problem.vertex_weight[sl], problem.targets)
    if not np.all(problem.balanced):
        labels = place_unbalanced(problem, labels)
    return labels


class VerticalPartitioner(Partitioner):
    """Contiguous slices of each layer by capacity share (see :func:`vertical_partition`)."""

    name = "vertical"
    granularities = ("neuron", "layer")

    def partition(self, problem: Problem) -> np.ndarray:
        return vertical_partition(problem)
