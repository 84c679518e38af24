"""The communication hypergraph of a dnnpart Problem, and the pieces Mt-KaHyPar is given.

One net per vertex ``u`` that has consumers: its pins are ``u`` and every vertex that
consumes ``u``'s output (row ``u`` of ``problem.synapses``), its weight is
``problem.activation_elements[u]``. The connectivity-minus-one of that net,
``lambda_u - 1``, is the number of devices other than ``u``'s own that hold a consumer of
``u`` — exactly how often dnnpart's ``volume`` counts ``u``'s activation (Catalyurek and
Aykanat, 1999). Minimising the weighted connectivity-minus-one (Mt-KaHyPar's ``KM1``) is
therefore minimising dnnpart's volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["SubHypergraph", "sub_hypergraph", "volume"]


@dataclass
class SubHypergraph:
    """The nets touching a set of free vertices, on local vertex ids.

    ``vertices[i]`` is the global id of local vertex ``i``; the first ``num_free`` are the
    free vertices, the rest are fixed pins (already placed, on ``fixed_blocks``).
    """

    vertices: np.ndarray
    num_free: int
    nets: list[list[int]]
    net_weights: np.ndarray
    fixed_blocks: np.ndarray  # block per local vertex, -1 for free ones

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)


def sub_hypergraph(
    synapses: sp.csr_array,
    producers: sp.csr_array,
    net_weight: np.ndarray,
    free: np.ndarray,
    labels: np.ndarray,
) -> SubHypergraph:
    """The nets with a pin in ``free``, restricted to free and already placed pins.

    Parameters
    ----------
    synapses : csr_array, shape (n, n)
        ``synapses[u, v] != 0`` when ``v`` consumes ``u``.
    producers : csr_array, shape (n, n)
        Its transpose in CSR (row ``v`` lists the producers of ``v``).
    net_weight : ndarray, shape (n,)
        Weight of the net of each vertex (its activation elements).
    free : ndarray of int
        Global ids of the vertices to place (sorted).
    labels : ndarray, shape (n,)
        Current block of every vertex; -1 for vertices not placed yet, whose pins are left
        out (their cost is decided when they are placed).

    Returns
    -------
    SubHypergraph
        Nets with at least two kept pins, at least one of them free, with their weights.
    """
    n = synapses.shape[0]
    is_free = np.zeros(n, dtype=bool)
    is_free[free] = True
    # Nets touching a free vertex: its own, and those of its producers.
    prod = producers[free]
    sources = np.union1d(free, prod.indices)
    rows = synapses[sources]
    counts = np.diff(rows.indptr)
    sources = sources[counts > 0]
    rows = synapses[sources]
    counts = np.diff(rows.indptr)
    net_of_pin = np.concatenate(
        [np.arange(len(sources)), np.repeat(np.arange(len(sources)), counts)]
    )
    pins = np.concatenate([sources, rows.indices])
    keep = is_free[pins] | (labels[pins] >= 0)
    net_of_pin, pins = net_of_pin[keep], pins[keep]
    size = np.bincount(net_of_pin, minlength=len(sources))
    free_pins = np.bincount(net_of_pin, weights=is_free[pins], minlength=len(sources))
    useful = (size >= 2) & (free_pins >= 1) & (net_weight[sources] > 0)
    keep = useful[net_of_pin]
    net_of_pin, pins = net_of_pin[keep], pins[keep]
    order = np.argsort(net_of_pin, kind="stable")
    net_of_pin, pins = net_of_pin[order], pins[order]
    fixed = np.setdiff1d(np.unique(pins), free)
    vertices = np.concatenate([free, fixed])
    local = np.full(n, -1, dtype=np.int64)
    local[vertices] = np.arange(len(vertices))
    kept = np.flatnonzero(useful)
    bounds = np.cumsum(size[kept])[:-1]
    nets = [a.tolist() for a in np.split(local[pins], bounds)] if len(kept) else []
    blocks = np.concatenate([np.full(len(free), -1, dtype=np.int64), labels[fixed]])
    return SubHypergraph(vertices, len(free), nets, net_weight[sources[kept]], blocks)


def volume(synapses: sp.csr_array, net_weight: np.ndarray, labels: np.ndarray, k: int) -> int:
    """Weighted connectivity-minus-one of ``labels`` (dnnpart's ``volume``)."""
    counts = np.diff(synapses.indptr)
    rows = np.repeat(np.arange(synapses.shape[0]), counts)
    own = sp.csr_array(
        (np.ones(synapses.shape[0]), (np.arange(synapses.shape[0]), labels)),
        shape=(synapses.shape[0], k),
    )
    hit = sp.csr_array(
        (np.ones(len(rows)), (rows, labels[synapses.indices])), shape=(synapses.shape[0], k)
    )
    reached = ((hit + own) > 0).sum(axis=1) - 1
    return int(np.dot(np.asarray(reached).ravel(), net_weight))
