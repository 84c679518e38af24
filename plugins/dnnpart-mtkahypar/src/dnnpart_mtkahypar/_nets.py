"""The pieces of dnnpart's communication hypergraph that Mt-KaHyPar is given.

The hypergraph is :func:`dnnpart.problem.net_incidence`: one net per net of
``problem.communication`` (a tensor, or one neuron's slice of it), its pins the vertex that
produces it and the vertices that consume it, its weight the elements it carries. Its
weighted connectivity-minus-one is exactly dnnpart's ``volume`` (Catalyurek and Aykanat,
1999), so minimising Mt-KaHyPar's ``KM1`` objective minimises the volume scoring reports --
on problems built from models too, where pooling, residuals and concatenations make a
vertex send different data to different consumers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["SubHypergraph", "sub_hypergraph"]


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

    def km1(self, blocks_free: np.ndarray) -> int:
        """Weighted connectivity-minus-one of these nets with the free vertices on
        ``blocks_free``."""
        blocks = self.fixed_blocks.copy()
        blocks[: self.num_free] = blocks_free
        return sum(
            int(w) * (len(set(blocks[net].tolist())) - 1)
            for net, w in zip(self.nets, self.net_weights, strict=True)
        )


def sub_hypergraph(
    incidence: sp.csr_array,
    incidence_t: sp.csr_array,
    net_weight: np.ndarray,
    free: np.ndarray,
    labels: np.ndarray,
) -> SubHypergraph:
    """The nets with a pin in ``free``, restricted to free and already placed pins.

    Parameters
    ----------
    incidence : csr_array, shape (m, n)
        Net x vertex (:func:`dnnpart.problem.net_incidence`).
    incidence_t : csr_array, shape (n, m)
        Its transpose in CSR (row ``v`` lists the nets ``v`` is a pin of).
    net_weight : ndarray, shape (m,)
        Weight of each net (the elements it carries).
    free : ndarray of int
        Global ids of the vertices to place (sorted).
    labels : ndarray, shape (n,)
        Current block of every vertex; -1 for vertices not placed yet, whose pins are left
        out (their cost is decided when they are placed).

    Returns
    -------
    SubHypergraph
        Nets with at least two kept pins, at least one of them free, and a positive weight.
    """
    n = incidence.shape[1]
    is_free = np.zeros(n, dtype=bool)
    is_free[free] = True
    nets = np.unique(incidence_t[free].indices)
    rows = incidence[nets]
    net_of_pin = np.repeat(np.arange(len(nets)), np.diff(rows.indptr))
    pins = rows.indices
    keep = is_free[pins] | (labels[pins] >= 0)
    net_of_pin, pins = net_of_pin[keep], pins[keep]
    size = np.bincount(net_of_pin, minlength=len(nets))
    free_pins = np.bincount(net_of_pin, weights=is_free[pins], minlength=len(nets))
    useful = (size >= 2) & (free_pins >= 1) & (net_weight[nets] > 0)
    keep = useful[net_of_pin]
    net_of_pin, pins = net_of_pin[keep], pins[keep]
    fixed = np.setdiff1d(np.unique(pins), free)
    vertices = np.concatenate([free, fixed])
    local = np.full(n, -1, dtype=np.int64)
    local[vertices] = np.arange(len(vertices))
    kept = np.flatnonzero(useful)
    bounds = np.cumsum(size[kept])[:-1]
    groups = [a.tolist() for a in np.split(local[pins], bounds)] if len(kept) else []
    blocks = np.concatenate([np.full(len(free), -1, dtype=np.int64), labels[fixed]])
    return SubHypergraph(vertices, len(free), groups, net_weight[nets[kept]], blocks)
