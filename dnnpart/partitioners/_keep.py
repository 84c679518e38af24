"""Repair a partition after devices are lost: survivors keep their vertices, the lost
devices' vertices are placed, then only they are refined.

A re-plan from scratch moves vertices between devices that are still running (each
move is a sub-model rebuilt and weights shipped); this one moves only what it must. The
vertices to place (``lost``) go, group by group in vertex order, to the device holding
most of their synapse weight that still has room in the group's tight capacity
(``Problem.capacities(g, tight=True)``; the device with most room when none has), or
take the labels of another partition (``fresh``); at layer granularity the best on the
problem's objective of that placement, ``fresh``'s and every split of the lost vertices
(in vertex order) into a prefix on one device and the rest on another is kept, as a
pipeline re-placement would cut them. Refinement moves only them: FM/KL
on the communication volume with the other vertices frozen at neuron granularity
(:func:`dnnpart.partitioners.kl.kl_refine`), single-vertex moves on the problem's
objective at layer granularity (:func:`dnnpart.partitioners._objective.improve_on_objective`).
"""

from __future__ import annotations

import numpy as np

from dnnpart.errors import UsageError
from dnnpart.problem._problem import Problem

__all__ = ["keep_parts", "refine_all", "match_devices", "restore_kept", "ASSIGN"]

ASSIGN = ("greedy", "fresh")


def keep_parts(
    problem: Problem,
    labels,
    lost,
    *,
    assign: str = "greedy",
    fresh=None,
    refine: bool = True,
) -> np.ndarray:
    """Labels that keep every vertex not in ``lost`` where ``labels`` put it.

    Parameters
    ----------
    problem : Problem
        The problem over the surviving devices.
    labels : array_like of int, shape (n,)
        The survivors' vertices' devices (indices of ``problem``'s devices); the entries
        of ``lost`` vertices are ignored.
    lost : array_like of bool, shape (n,)
        The vertices whose device is gone.
    assign : {"greedy", "fresh"}
        How lost vertices are placed: by synapse weight within capacity, or as
        ``fresh`` (another partition of ``problem``, e.g. the partitioner's) puts them.
    refine : bool
        Then refine the placement of the lost vertices (only theirs).

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    lost = np.asarray(lost, dtype=bool).reshape(-1)
    out = np.asarray(labels, dtype=np.int64).reshape(-1).copy()
    if out.shape != lost.shape or out.size != problem.num_vertices:
        raise UsageError(f"labels and lost must hold one entry per vertex ({problem.num_vertices})")
    if assign not in ASSIGN:
        raise UsageError(f"assign must be one of {', '.join(ASSIGN)}, got {assign!r}")
    out[lost] = 0
    out[~lost] = problem.validate(out, "kept labels")[~lost]
    if not lost.any():
        return out
    if assign == "fresh":
        if fresh is None:
            raise UsageError("assign='fresh' needs the fresh labels")
        out[lost] = problem.validate(fresh, "fresh labels")[lost]
    else:
        _greedy(problem, out, lost)
        if problem.granularity == "layer":
            out = _best_layer_start(problem, out, lost, fresh)
    out = problem.validate(out, "kept labels")
    if refine and problem.k > 1:
        out = _refine(problem, out, movable=lost)
    return out


def refine_all(problem: Problem, labels) -> np.ndarray:
    """Refine ``labels`` with every vertex free to move (the fallback when keeping the
    survivors' parts costs too much)."""
    return _refine(problem, problem.validate(labels, "labels"), movable=None)


def _refine(problem: Problem, labels: np.ndarray, movable) -> np.ndarray:
    if problem.granularity == "layer":
        from dnnpart.partitioners._objective import improve_on_objective

        return improve_on_objective(problem, labels, movable)
    from dnnpart.partitioners.kl import kl_refine

    return kl_refine(problem, labels, None if movable is None else ~movable)


def _greedy(problem: Problem, labels: np.ndarray, lost: np.ndarray) -> None:
    """Place the ``lost`` vertices in place: in vertex order, each on the device with most
    synapse weight to vertices already placed, among those with room in its group."""
    k = problem.k
    adj = problem.adjacency
    placed = ~lost
    w = problem.vertex_weight
    onehot = np.zeros((problem.num_vertices, k))  # rows of placed vertices only
    onehot[np.flatnonzero(placed), labels[placed]] = 1.0
    for g in range(problem.num_layers):
        sl = problem.layer_slice(g)
        idx = sl.start + np.flatnonzero(lost[sl])
        if not len(idx):
            continue
        conn = np.asarray(adj[idx] @ onehot)
        if problem.balanced[g]:
            caps = problem.capacities(g, tight=True) + 1e-9
            members = np.arange(sl.start, sl.stop)
            members = members[placed[members]]
            loads = np.bincount(labels[members], weights=w[members], minlength=k).astype(float)
        else:
            caps = np.full(k, np.inf)
            loads = np.zeros(k)
        # strongest ties first: they have the most to lose from a full device
        for i in np.argsort(-conn.max(axis=1), kind="stable"):
            v = idx[i]
            room = caps - loads
            fits = room >= w[v]
            if fits.any():  # most weight, then most room
                best = np.where(fits, conn[i], -np.inf)
                top = best >= best.max() - 1e-12 * abs(best.max())
                d = int(np.argmax(np.where(top, room, -np.inf)))
            else:
                d = int(np.argmax(room / np.maximum(caps, 1e-300)))
            labels[v] = d
            loads[d] += w[v]
        placed[idx] = True
        onehot[idx, labels[idx]] = 1.0


def _best_layer_start(problem: Problem, labels: np.ndarray, lost: np.ndarray, fresh) -> np.ndarray:
    """Of ``labels``, ``fresh`` on the lost vertices, and every prefix/suffix split of the
    lost vertices over two devices, the best in (constraint violation, objective)."""
    from dnnpart.partitioners._objective import MAX_EVALUATIONS
    from dnnpart.problem._objective import LayerCosts

    costs = LayerCosts(problem, problem.objective or "throughput")
    limit = 1.0 + problem.imbalance

    def key(lab: np.ndarray) -> tuple[float, float]:
        return costs.violation(lab, limit), costs.value(lab)

    best, best_key = labels, key(labels)
    trial = labels.copy()
    idx = np.flatnonzero(lost)
    k = problem.k
    cuts = np.arange(len(idx) + 1)
    step = max(1, -(-len(cuts) * k * k // MAX_EVALUATIONS))  # a bounded effort
    starts = [] if fresh is None else [(None, None, None)]
    starts += [(a, b, t) for a in range(k) for b in range(k) for t in cuts[::step]]
    for a, b, t in starts:
        if a is None:
            trial[idx] = np.asarray(fresh)[idx]
        else:
            trial[idx[:t]] = a
            trial[idx[t:]] = b
        c = key(trial)
        if c < best_key:
            best, best_key = trial.copy(), c
    return best


def match_devices(labels, start, kept, classes) -> np.ndarray:
    """``labels`` with devices renumbered within each class of interchangeable devices
    (``classes``: lists of device indices; same specs, uniform links) so that most
    ``kept`` vertices are on their ``start`` device (an assignment on the overlap counts:
    the split and its scores stay the same)."""
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels, dtype=np.int64)
    start = np.asarray(start, dtype=np.int64)
    kept = np.asarray(kept, dtype=bool)
    perm = np.arange(
        max(int(labels.max(initial=0)) + 1, max((max(c) for c in classes), default=0) + 1)
    )
    for cls in classes:
        cls = list(cls)
        if len(cls) < 2:
            continue
        overlap = np.zeros((len(cls), len(cls)))
        for i, a in enumerate(cls):
            on_a = kept & (labels == a)
            for j, b in enumerate(cls):
                overlap[i, j] = np.count_nonzero(on_a & (start == b))
        rows, cols = linear_sum_assignment(-overlap)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            perm[cls[i]] = cls[j]
    return perm[labels]


def restore_kept(problem: Problem, labels, start, kept, tolerance: float) -> np.ndarray:
    """At layer granularity, move vertices of ``kept`` back to their ``start`` device, in
    vertex order, while the objective stays within ``1 + tolerance`` of ``labels``' and no
    constraint is broken more (a bounded number of evaluations); other granularities:
    ``labels`` unchanged."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    if problem.granularity != "layer":
        return labels
    from dnnpart.partitioners._objective import MAX_EVALUATIONS
    from dnnpart.problem._objective import LayerCosts

    costs = LayerCosts(problem, problem.objective or "throughput")
    limit = max(1.0 + problem.imbalance, costs.imbalance(labels))
    violation, value = costs.violation(labels, limit), costs.value(labels)
    bound = value * (1 + tolerance) if value >= 0 else value * (1 - tolerance)
    start = np.asarray(start, dtype=np.int64)
    back = np.flatnonzero(np.asarray(kept, dtype=bool) & (labels != start))
    for v in back[:MAX_EVALUATIONS].tolist():
        old = labels[v]
        labels[v] = start[v]
        if costs.violation(labels, limit) > violation or costs.value(labels) > bound:
            labels[v] = old
    return labels
