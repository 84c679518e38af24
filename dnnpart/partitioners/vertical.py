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
from dnnpart.problem._helpers import contiguous_slices, place_unbalanced
from dnnpart.problem._problem import Problem

__all__ = ["vertical_partition", "VerticalPartitioner", "contiguous_slices"]


class VerticalPartitioner(Partitioner):
    """The thesis' vertical baseline: contiguous slices of every balanced group.

    Balanced groups are sliced by cumulative vertex weight in proportion to
    ``problem.targets`` (so heterogeneous devices get slices in proportion to their speed);
    unbalanced groups (model inputs, layers placed whole) then go to the device of most of
    their neighbours (:func:`~dnnpart.problem.place_unbalanced`). Deterministic; no
    randomness is involved. No parameters.

    References
    ----------
    The GraphDNN thesis, section on the vertical baseline ("each layer's neurons split in
    k equal contiguous parts").
    """

    name = "vertical"
    granularities = ("neuron", "layer")

    def partition(self, problem: Problem) -> np.ndarray:
        labels = np.zeros(problem.num_vertices, dtype=np.int64)
        for g in np.flatnonzero(problem.balanced):
            sl = problem.layer_slice(g)
            labels[sl] = contiguous_slices(problem.vertex_weight[sl], problem.targets)
        if not np.all(problem.balanced):
            labels = place_unbalanced(problem, labels)
        return labels


def vertical_partition(problem: Problem) -> np.ndarray:
    """:class:`VerticalPartitioner` on ``problem``: one device per vertex."""
    return VerticalPartitioner().partition(problem)
