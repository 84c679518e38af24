"""Least-cost assignment of weighted vertices to devices under per-device capacities.

With ``k`` devices and ``n`` vertices of equal weight, the slot-expanded ``n x n``
Hungarian matrix (H. W. Kuhn, 1955; J. Munkres, 1957) is the textbook form; the same
optimum is the ``n x k`` transportation problem ``min sum c[j, d] x[j, d]`` subject to
``sum_d x[j, d] = 1`` and ``sum_j x[j, d] <= slots[d]``, whose constraint matrix is
totally unimodular, so a simplex vertex is integral (F. L. Hitchcock, 1941). It is solved
with HiGHS through :func:`scipy.optimize.linprog`.

With unequal weights it is the generalised assignment problem (NP-hard; D. W. Pentico,
"Assignment problems: a golden anniversary survey", EJOR 176, 2007). When every device
has room for one more vertex than its share (``capacity >= share + heaviest``, the loose
:meth:`Problem.capacities`), the LP in weight units with ``capacity - heaviest`` has a
basic solution that splits at most ``k`` vertices, and those fit whole afterwards. Tighter
capacities (``Problem.capacities(g, tight=True)``) are solved as the MILP itself, by
HiGHS (:func:`scipy.optimize.milp`) under a node limit.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, linprog, milp

from dnnpart.errors import ResourceLimitError, UsageError

__all__ = ["transport_assign", "assign_or_none", "SOLVERS"]

SOLVERS = ("lp", "hungarian")
# The slot-expanded reference builds an n x (sum of slots) dense matrix.
_HUNGARIAN_MAX_CELLS = 50_000_000
# The MILP for tight capacities: a deterministic node limit (the time limit is only a
# safety net) and a size beyond which it is not tried.
_MILP_NODES = 500
_MILP_SECONDS = 5.0
_MILP_MAX_CELLS = 400_000


def _uniform(w: np.ndarray) -> bool:
    return bool(len(w) == 0 or np.all(w == w[0]))


def _hungarian(cost: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Slot-expanded Munkres: device ``d`` repeated ``slots[d]`` times as columns."""
    n = cost.shape[0]
    cols = np.repeat(np.arange(cost.shape[1]), slots)
    if n * len(cols) > _HUNGARIAN_MAX_CELLS:
        raise ResourceLimitError(
            f"slot-expanded Hungarian matrix of {n} x {len(cols)} is too large; use solver='lp'"
        )
    rows, picked = linear_sum_assignment(cost[:, cols])
    labels = np.empty(n, dtype=np.int64)
    labels[rows] = cols[picked]
    return labels


def _constraints(m: int, k: int, w: np.ndarray):
    idx = np.arange(m * k)
    a_eq = sp.csr_array((np.ones(m * k), (np.repeat(np.arange(m), k), idx)), shape=(m, m * k))
    a_ub = sp.csr_array((np.repeat(w, k), (np.tile(np.arange(k), m), idx)), shape=(k, m * k))
    return a_eq, a_ub


def _transport_lp(cost: np.ndarray, w: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Optimal ``x`` (m, k) of the transportation / assignment LP, by HiGHS dual simplex."""
    m, k = cost.shape
    a_eq, a_ub = _constraints(m, k, w)
    # Dual simplex returns a basic solution: integral for the transportation problem, and
    # with at most k split rows when weights differ (generalised assignment LP).
    res = linprog(
        cost.ravel(),
        A_ub=a_ub,
        b_ub=cap,
        A_eq=a_eq,
        b_eq=np.ones(m),
        bounds=(0, None),
        method="highs-ds",
    )
    if res.status != 0:
        raise RuntimeError(f"transportation LP failed: {res.message}")
    return res.x.reshape(m, k)


def _gap_milp(cost: np.ndarray, w: np.ndarray, cap: np.ndarray) -> np.ndarray | None:
    """The generalised assignment problem by HiGHS branch and bound; None if none found."""
    m, k = cost.shape
    if m * k > _MILP_MAX_CELLS:
        return None
    a_eq, a_ub = _constraints(m, k, w)
    res = milp(
        cost.ravel(),
        constraints=[
            LinearConstraint(a_eq, np.ones(m), np.ones(m)),
            LinearConstraint(a_ub, -np.inf, cap),
        ],
        integrality=np.ones(m * k),
        bounds=Bounds(0, 1),
        options={"node_limit": _MILP_NODES, "time_limit": _MILP_SECONDS},
    )
    if res.x is None:
        return None
    labels = np.argmax(res.x.reshape(m, k), axis=1).astype(np.int64)
    if np.any(np.bincount(labels, weights=w, minlength=k) > cap + 1e-9 * max(1.0, cap.max())):
        return None  # pragma: no cover - HiGHS returns feasible incumbents only
    return labels


def _check(cost, weight, capacity, solver):
    if solver not in SOLVERS:
        raise UsageError(f"solver must be one of {SOLVERS}, got {solver!r}")
    cost = np.asarray(cost, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.float64)
    if cost.ndim != 2 or weight.shape != cost.shape[:1] or capacity.shape != cost.shape[1:]:
        raise UsageError(
            f"shapes disagree: cost {cost.shape}, weight {weight.shape}, capacity {capacity.shape}"
        )
    if np.any(weight < 0) or not np.all(np.isfinite(cost)):
        raise UsageError("weights must be non-negative and costs finite")
    return cost, weight, capacity


def assign_or_none(
    cost: np.ndarray, weight: np.ndarray, capacity: np.ndarray, *, solver: str = "lp"
) -> np.ndarray | None:
    """:func:`transport_assign`, or None when no assignment within ``capacity`` was found.

    None means: equal weights with fewer slots than vertices, total weight above the total
    capacity, or (tight capacities, unequal weights) HiGHS found no feasible assignment
    within its node limit.
    """
    cost, weight, capacity = _check(cost, weight, capacity, solver)
    n, k = cost.shape
    labels = np.argmin(cost, axis=1).astype(np.int64)  # zero-weight vertices: free
    pos = np.flatnonzero(weight > 0)
    if len(pos) == 0:
        return labels
    w = weight[pos]
    c = cost[pos]
    if _uniform(w):
        # Equal weights: capacity in whole slots; every vertex is one unit.
        slots = np.floor(capacity / w[0] + 1e-9).astype(np.int64)
        if slots.sum() < len(pos):
            return None
        if solver == "hungarian":
            labels[pos] = _hungarian(c, slots)
        else:
            labels[pos] = np.argmax(_transport_lp(c, np.ones(len(pos)), slots.astype(float)), 1)
        return labels
    if solver == "hungarian":
        raise UsageError("the slot-expanded Hungarian reference needs equal vertex weights")
    if w.sum() > capacity.sum() * (1 + 1e-12):
        return None
    cap_lp = np.maximum(capacity - w.max(), 0.0)
    if cap_lp.sum() < w.sum() - 1e-9 * w.sum():
        # Tight capacities: no rounding guarantee for the LP; solve the MILP itself.
        sub = _gap_milp(c, w, capacity)
        if sub is None:
            return None
        labels[pos] = sub
        return labels
    x = _transport_lp(c, w, cap_lp)
    whole = x.max(axis=1) >= 1 - 1e-6
    sub = np.argmax(x, axis=1)
    split = np.flatnonzero(~whole)
    if len(split):
        # Place the few split vertices into what room is left, one cheap assignment.
        load = np.bincount(sub[whole], weights=w[whole], minlength=k)
        room = capacity - load
        heaviest = w[split].max()
        dev_slots = np.floor(np.maximum(room, 0) / heaviest + 1e-9).astype(np.int64)
        if dev_slots.sum() < len(split):  # pragma: no cover - excluded by cap_lp
            raise RuntimeError("rounding the transportation LP ran out of room")
        sub[split] = _hungarian(c[split], dev_slots)
    labels[pos] = sub
    return labels


def transport_assign(
    cost: np.ndarray, weight: np.ndarray, capacity: np.ndarray, *, solver: str = "lp"
) -> np.ndarray:
    """Assign each row to a device at least total cost, device loads within ``capacity``.

    Parameters
    ----------
    cost : ndarray, shape (n, k)
        Cost of putting vertex ``j`` on device ``d``.
    weight : ndarray, shape (n,)
        Load each vertex brings (non-negative). Zero-weight vertices take their cheapest
        device.
    capacity : ndarray, shape (k,)
        Largest load allowed per device, e.g. :meth:`Problem.capacities`.
    solver : {"lp", "hungarian"}
        ``"lp"``: the ``n x k`` transportation LP (HiGHS). With equal weights capacities
        become integer slot counts and the answer is optimal. With unequal weights (pruned
        layers: MACs differ per neuron) and room for one more vertex than the share on
        every device (``capacity >= share + heaviest``, the loose capacities) the LP runs
        in weight units with capacity ``capacity - max(weight)``; its basic solution splits
        at most ``k`` vertices, which are then placed one per device by a small assignment,
        so every device stays within ``capacity`` and the cost is at most the LP bound plus
        those few vertices. With tighter capacities the generalised assignment MILP is
        solved by HiGHS under a node limit (optimal on small groups, else its best
        incumbent). ``"hungarian"``: slot-expanded
        :func:`scipy.optimize.linear_sum_assignment`, the reference; equal weights only.

    Returns
    -------
    ndarray of int64, shape (n,)

    Raises
    ------
    UsageError
        If no assignment within ``capacity`` exists or none was found.
    """
    labels = assign_or_none(cost, weight, capacity, solver=solver)
    if labels is None:
        raise UsageError("no assignment of the vertices fits the capacities")
    return labels
