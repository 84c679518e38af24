"""Tight per-layer capacities: the least load bound a balanced assignment is known to meet.

:meth:`Problem.capacities` allows every device ``max((1 + imbalance) * share, share +
heaviest)`` of a group: with indivisible vertices of unequal weight the exact share may be
out of reach, and ``share + heaviest`` is what any slicing of the group meets. On a small
layer of uneven neurons that bound is loose: ten output neurons of 4 to 14 MACs at k = 4
allow 1.56 x the share, while a split within 1.04 x exists. The *tight* capacities are
``max(1 + imbalance, r) * share``, where ``r`` is the worst load ratio of an assignment
actually found for the group's weights alone (a witness, so the bound is always feasible):

1. if ``share + heaviest <= (1 + imbalance) * share`` the two bounds agree (large layers);
2. else longest-processing-time-first greedy packing (R. L. Graham, "Bounds on
   multiprocessing timing anomalies", SIAM J. Appl. Math. 17(2), 1969): each vertex,
   heaviest first, to the device with the lowest load relative to its share;
3. if that misses ``1 + imbalance`` and the group is small, the exact least-makespan
   assignment on uniform machines, a MILP solved by HiGHS (:func:`scipy.optimize.milp`)
   under a node limit.

The answer never exceeds the loose bound, so a partitioner that meets it meets the
contract too.
"""

from __future__ import annotations

import hashlib
import heapq
import weakref

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

__all__ = ["tight_capacities", "least_ratio_assignment", "group_tight_capacities"]

# The exact step runs for groups of at most this many weighted vertices (x k binaries).
EXACT_CELLS = 4_000
# HiGHS branch-and-bound nodes: a deterministic limit; the time limit is only a safety net.
_NODE_LIMIT = 200
_TIME_LIMIT = 2.0
_TOL = 1e-9

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _lpt(w: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Greedy packing, heaviest first, each to the device least loaded for its share.

    The chosen device is below its share before the vertex arrives (the loads so far sum
    to less than the total), so every load stays below ``share + heaviest``.
    """
    k = len(share)
    heap = [(0.0, d) for d in range(k)]
    loads = [0.0] * k
    labels = np.empty(len(w), dtype=np.int64)
    for j in np.argsort(-w, kind="stable"):
        _, d = heapq.heappop(heap)
        labels[j] = d
        loads[d] += float(w[j])
        heapq.heappush(heap, (loads[d] / share[d], d))
    return labels


def _exact(w: np.ndarray, share: np.ndarray, floor: float) -> np.ndarray | None:
    """Least ``max_d load_d / share_d`` assignment by MILP (None if HiGHS found none).

    ``t >= floor``: the search stops as soon as an assignment within ``floor`` appears.
    """
    n, k = len(w), len(share)
    nx = n * k
    # Variables: x[j, d] (row-major), then t.
    c = np.zeros(nx + 1)
    c[-1] = 1.0
    one = sp.csr_array(
        (np.ones(nx), (np.repeat(np.arange(n), k), np.arange(nx))), shape=(n, nx + 1)
    )
    cols = np.concatenate([np.arange(nx), np.full(k, nx)])
    rows = np.concatenate([np.tile(np.arange(k), n), np.arange(k)])
    vals = np.concatenate([np.repeat(w, k), -share])
    load = sp.csr_array((vals, (rows, cols)), shape=(k, nx + 1))
    constraints = [
        LinearConstraint(one, np.ones(n), np.ones(n)),
        LinearConstraint(load, -np.inf, np.zeros(k)),
    ]
    # Symmetry of identical devices: the heaviest vertex goes to device 0.
    lb = np.zeros(nx + 1)
    ub = np.ones(nx + 1)
    lb[-1], ub[-1] = floor, np.inf
    if np.allclose(share, share[0]):
        lb[int(np.argmax(w)) * k] = 1.0
    res = milp(
        c,
        constraints=constraints,
        integrality=np.concatenate([np.ones(nx), [0]]),
        bounds=Bounds(lb, ub),
        options={"node_limit": _NODE_LIMIT, "time_limit": _TIME_LIMIT},
    )
    if res.x is None:
        return None
    return np.argmax(res.x[:nx].reshape(n, k), axis=1).astype(np.int64)


def least_ratio_assignment(
    weights: np.ndarray, targets: np.ndarray, floor: float = 1.0, *, exact: bool = True
) -> np.ndarray:
    """An assignment of weighted items to devices with a small worst ``load / share``.

    Parameters
    ----------
    weights : ndarray, shape (m,)
        Non-negative item weights.
    targets : ndarray, shape (k,)
        Device shares summing to 1.
    floor : float
        Ratio that is good enough: the search stops when it is met.
    exact : bool
        Run the MILP when the greedy packing misses ``floor`` and ``m * k <= EXACT_CELLS``.

    Returns
    -------
    ndarray of int64, shape (m,)
        Device of every item (zero-weight items on device 0).
    """
    w = np.asarray(weights, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    labels = np.zeros(len(w), dtype=np.int64)
    pos = np.flatnonzero(w > 0)
    if len(pos) == 0:
        return labels
    share = targets * w[pos].sum()
    best = _lpt(w[pos], share)

    def ratio(lab: np.ndarray) -> float:
        return float(np.max(np.bincount(lab, weights=w[pos], minlength=len(share)) / share))

    r = ratio(best)
    if exact and r > floor + _TOL and len(pos) * len(share) <= EXACT_CELLS:
        found = _exact(w[pos], share, floor)
        if found is not None and ratio(found) < r:
            best = found
    labels[pos] = best
    return labels


def tight_capacities(weights: np.ndarray, targets: np.ndarray, imbalance: float) -> np.ndarray:
    """Least per-device bound, at or above ``(1 + imbalance) * share``, a witness meets.

    Parameters
    ----------
    weights : ndarray, shape (m,)
        Vertex weights of one group.
    targets : ndarray, shape (k,)
        Device shares summing to 1.
    imbalance : float
        Tolerance.

    Returns
    -------
    ndarray, shape (k,)
        ``max(1 + imbalance, r) * share``, capped by the loose bound
        ``max((1 + imbalance) * share, share + heaviest)``, where ``r`` is the worst
        load ratio of the assignment :func:`least_ratio_assignment` found.
    """
    w = np.asarray(weights, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    total = float(w.sum())
    share = targets * total
    cap0 = (1.0 + imbalance) * share
    heaviest = float(w.max()) if len(w) else 0.0
    loose = np.maximum(cap0, share + heaviest)
    if total <= 0 or np.all(loose <= cap0):
        return loose
    labels = least_ratio_assignment(w, targets, 1.0 + imbalance)
    loads = np.bincount(labels, weights=w, minlength=len(share))
    r = float(np.max(loads / share))
    # A hair above the witness' worst ratio: loads summed in another order stay within it.
    caps = np.minimum(np.maximum(cap0, r * (1 + 1e-12) * share), loose)
    if np.any(loads > caps * (1 + _TOL)):  # the witness broke the loose bound somewhere
        return loose
    return caps


def group_tight_capacities(problem, g: int) -> np.ndarray:
    """:func:`tight_capacities` of group ``g`` of ``problem``, computed once per problem."""
    w = problem.vertex_weight[problem.layer_slice(g)]
    share = problem.targets * float(w.sum())
    heaviest = float(w.max()) if len(w) else 0.0
    if heaviest <= problem.imbalance * share.min():  # loose == tight: skip the cache key
        return np.maximum((1.0 + problem.imbalance) * share, share + heaviest)
    key = (
        int(g),
        float(problem.imbalance),
        problem.targets.tobytes(),
        hashlib.blake2b(np.ascontiguousarray(w).tobytes(), digest_size=16).digest(),
    )
    per_problem = _cache.setdefault(problem, {})
    if key not in per_problem:
        per_problem[key] = tight_capacities(w, problem.targets, problem.imbalance)
    return per_problem[key].copy()
