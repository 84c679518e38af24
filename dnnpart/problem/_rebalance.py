"""Balance repair: move vertices out of overloaded devices, cheapest cut first."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dnnpart.problem._assign import assign_or_none
from dnnpart.problem._helpers import group_loads
from dnnpart.problem._problem import Problem

__all__ = ["rebalance"]

_NEG = -np.inf


def _greedy(problem: Problem, labels: np.ndarray, g: int, caps: np.ndarray, adj) -> bool:
    """Greedy moves in group ``g`` (in place); True when the group fits ``caps``."""
    k = problem.k
    sl = problem.layer_slice(g)
    w = problem.vertex_weight
    while True:
        loads = group_loads(problem, labels, g)
        over = loads > caps + 1e-9
        if not over.any():
            return True
        idx = sl.start + np.flatnonzero(over[labels[sl]])
        conn = adj[idx] @ np.eye(k)[labels]
        gains = conn - conn[np.arange(len(idx)), labels[idx]][:, None]
        room = caps - loads
        fits = (w[idx][:, None] <= room[None, :] + 1e-9) & ~over[None, :]
        gains[~fits] = _NEG
        best = np.argmax(gains, axis=1)
        best_gain = gains[np.arange(len(idx)), best]
        moved = False
        for i in np.argsort(-best_gain, kind="stable"):
            v, b = idx[i], best[i]
            a = labels[v]
            if best_gain[i] == _NEG or loads[a] <= caps[a] + 1e-9:
                continue
            if loads[b] + w[v] > caps[b] + 1e-9:
                continue
            labels[v] = b
            loads[a] -= w[v]
            loads[b] += w[v]
            moved = True
        if not moved:
            return False


def _reassign(problem: Problem, labels: np.ndarray, g: int, caps: np.ndarray, adj) -> bool:
    """Fewest-moves reassignment of group ``g`` within ``caps`` (ties: least cut), in place.

    The cost of putting a vertex on another device is one move (a large unit) minus its
    synapse weight to that device, scaled below one unit in total, so the number of moved
    vertices comes first and the cut second.
    """
    k = problem.k
    sl = problem.layer_slice(g)
    cur = labels[sl]
    conn = np.asarray(adj[sl] @ np.eye(k)[labels])
    scale = 0.5 / max(float(np.abs(conn).sum()), 1.0)
    cost = np.ones((len(cur), k)) - scale * conn
    cost[np.arange(len(cur)), cur] -= 1.0
    new = assign_or_none(cost, problem.vertex_weight[sl], caps)
    if new is None:
        return False
    labels[sl] = new
    return True


def rebalance(
    problem: Problem,
    labels,
    adjacency: sp.csr_array | None = None,
    *,
    tight: bool = False,
    groups=None,
) -> np.ndarray:
    """Move vertices out of overloaded devices until every balanced group fits.

    A cheap repair for partitioners (METIS) whose answer may exceed
    :meth:`Problem.capacities`: in each overloaded group, the vertices on overloaded
    devices are ranked by the cut gain of their best move to a device with room, and moved
    in that order (least cut increase first) while their device is still over capacity.
    With the loose capacities a move always exists: an overloaded device holds more than
    ``share + heaviest``, so another device is below its share and has room for any vertex
    of the group. With ``tight=True`` (``Problem.capacities(g, tight=True)``) single moves
    can get stuck on uneven vertices; the group is then reassigned by the fewest moves
    that fit (a generalised assignment, :func:`dnnpart.problem._assign.assign_or_none`)
    and, failing that, repaired to the loose capacities.

    ``adjacency`` may pass :attr:`Problem.adjacency` if the caller already built it;
    ``groups`` limits the repair to those balanced groups (default: all). Returns a new
    label array; groups already within capacities are left untouched.
    """
    labels = np.array(problem.validate(labels, "labels"), copy=True)
    adj = adjacency
    for g in np.flatnonzero(problem.balanced) if groups is None else groups:
        caps = problem.capacities(g, tight=tight)
        if np.all(group_loads(problem, labels, g) <= caps + 1e-9):
            continue
        if adj is None:
            adj = problem.adjacency
        if _greedy(problem, labels, g, caps, adj):
            continue
        if tight and _reassign(problem, labels, g, caps, adj):
            continue
        _greedy(problem, labels, g, problem.capacities(g), adj)
    return labels
