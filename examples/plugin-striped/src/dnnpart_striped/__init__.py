"""The ``striped`` partitioner: within each layer, vertex ``i`` goes to device ``i mod k``.

An example dnnpart plugin (see ``docs/writing-a-plugin.md`` in dnnpart). Striping is the
"strided split" of the HPEC Sparse DNN Graph Challenge notes: on its 1024-neuron layers it
sends 1 024 activations at k = 2, a quarter of what contiguous slices send.

Per-layer balance is kept by striping *by weight*: each vertex of a balanced layer goes,
in order, to the device whose load is furthest below its share (ties to the lowest index).
With equal neurons and equal devices that is exactly ``i mod k``; with unequal neurons or
devices no device ever exceeds its share by more than one vertex, which is within
``problem.capacities(g)``.

It shows the helpers dnnpart offers partitioner authors (:mod:`dnnpart.problem`): with
``inputs="follow"`` the model's inputs and layers placed whole go next to their
neighbours (:func:`~dnnpart.problem.place_unbalanced`), and ``tight=True`` repairs every
layer to its tight capacities (:func:`~dnnpart.problem.rebalance`), saying so in a note
(:func:`dnnpart._notes.note`) when that moved anything.
"""

from __future__ import annotations

import numpy as np

from dnnpart._notes import note
from dnnpart.partitioners import Boolean, Choice, Partitioner, Problem
from dnnpart.plugins import hookimpl
from dnnpart.problem import is_balanced, place_unbalanced, rebalance

__all__ = ["StripedPartitioner", "stripe", "register_partitioners"]
__version__ = "0.1.0"


def stripe(weights: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Deal weighted items to devices in order, each to the device most below its share.

    Parameters
    ----------
    weights : ndarray, shape (m,)
        Non-negative weight of each item, in order.
    targets : ndarray, shape (k,)
        Positive shares summing to 1.

    Returns
    -------
    ndarray of int64, shape (m,)
        Device of each item. Before each item, the chosen device ``d`` has
        ``load[d] / targets[d]`` minimal, hence ``load[d] <= targets[d] * total`` (the
        minimum of ratios is at most their weighted mean), so after it
        ``load[d] <= share[d] + max(weights)``. Zero-weight items are dealt by count, so
        an all-zero layer is still striped.
    """
    w = np.asarray(weights, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    load = np.zeros(len(t))
    count = np.zeros(len(t))
    out = np.empty(len(w), dtype=np.int64)
    for i, wi in enumerate(w):
        # lexsort: primary key last. Relative load first, then relative count (so that
        # zero-weight items still rotate), then the device index.
        d = int(np.lexsort((np.arange(len(t)), count / t, load / t))[0])
        out[i] = d
        load[d] += wi
        count[d] += 1
    return out


class StripedPartitioner(Partitioner):
    """Stripe every layer over the devices: vertex ``i`` of a layer to device ``i mod k``.

    Balanced layers are striped by weight (see :func:`stripe`). Deterministic: no
    randomness at all.

    Parameters
    ----------
    inputs : {"stripe", "follow"}
        The model's inputs and layers placed whole: striped by position, or each next to
        most of its neighbours (:func:`dnnpart.problem.place_unbalanced`).
    tight : bool
        Repair every balanced layer to ``problem.capacities(g, tight=True)``
        (:func:`dnnpart.problem.rebalance`); striping keeps the loose ones.
    """

    name = "striped"
    granularities = ("neuron", "layer")
    constraints = {"inputs": Choice("stripe", "follow"), "tight": Boolean}

    def __init__(self, inputs: str = "stripe", tight: bool = False) -> None:
        self.inputs = inputs
        self.tight = tight

    def partition(self, problem: Problem) -> np.ndarray:
        params = self.checked_params()  # UsageError for a bad value
        labels = np.empty(problem.num_vertices, dtype=np.int64)
        equal = np.full(problem.k, 1.0 / problem.k)
        for g in range(problem.num_layers):
            sl = problem.layer_slice(g)
            if problem.balanced[g]:
                labels[sl] = stripe(problem.vertex_weight[sl], problem.targets)
            else:
                labels[sl] = stripe(np.zeros(sl.stop - sl.start), equal)
        if params["inputs"] == "follow":
            labels = place_unbalanced(problem, labels)
        if params["tight"] and not is_balanced(problem, labels, tight=True):
            labels = rebalance(problem, labels, tight=True)
            note("striped: some layers were repaired to their tight capacities")
        return labels


@hookimpl
def register_partitioners(register):
    """dnnpart calls this once when it loads the plugin."""
    register(StripedPartitioner)
