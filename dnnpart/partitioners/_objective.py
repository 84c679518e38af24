"""Layer placement on the user's objective: never worse than the vertical baseline.

Every built-in layer partitioner ends with :func:`on_objective` (through the
:func:`layer_objective` decorator on its ``partition``) when the problem names an
objective (:func:`dnnpart.partition` always does): of its own answer and the
vertical baseline it keeps the better one -- feasible first (memory; balance too for the
volume objective, see :mod:`dnnpart.problem._objective`), then the lower
``problem.objective`` -- and refines it by single-layer moves that strictly improve
(violation, objective), as the move-based refinement of Fiduccia and Mattheyses (1982)
does for the cut. So no built-in returns a layer split worse than vertical on the objective
it is asked for, whatever it optimised internally (cut, volume, a per-layer balance).
"""

from __future__ import annotations

import functools

import numpy as np

from dnnpart.problem._objective import LayerCosts
from dnnpart.problem._problem import Problem

__all__ = ["on_objective", "improve_on_objective", "layer_objective", "MAX_EVALUATIONS"]

# objective evaluations one refinement may spend (each is one vectorised pass over the
# layer graph's nets, or one makespan for latency): a bounded, deterministic effort
MAX_EVALUATIONS = 4000
_RTOL = 1e-12  # an improvement smaller than this is rounding


def layer_objective(partition):
    """Decorate a partitioner's ``partition``: at layer granularity pass its answer
    through :func:`on_objective`."""

    @functools.wraps(partition)
    def wrapped(self, problem: Problem) -> np.ndarray:
        labels = partition(self, problem)
        if problem.granularity != "layer" or problem.objective is None:
            return labels
        return on_objective(problem, problem.validate(labels, who=self.name))

    return wrapped


def on_objective(
    problem: Problem, labels, *, refine: bool = True, max_evaluations: int = MAX_EVALUATIONS
) -> np.ndarray:
    """The better of ``labels`` and the vertical split, refined on ``problem.objective``
    (``"throughput"`` when it is None). For throughput when devices pay a fixed cost per
    use (``call_overhead``, a shared :class:`~dnnpart.devices.Host`), each device alone
    is a candidate too.

    Parameters
    ----------
    problem : Problem
        A layer-granularity problem.
    labels : array_like of int, shape (n,)
        A partitioner's answer.
    refine : bool
        Refine by single-layer moves (else only the better of the two).
    max_evaluations : int
        Objective evaluations the refinement may spend.

    Returns
    -------
    ndarray of int64
        Labels no worse than ``labels`` nor the vertical split in (constraint violation,
        objective), lexicographically.

    References
    ----------
    C. M. Fiduccia, R. M. Mattheyses, "A linear-time heuristic for improving network
    partitions", DAC 1982 (single-vertex moves by gain); J. Tarnawski et al., NeurIPS 2020
    (the max-load objective).
    """
    from dnnpart.partitioners.vertical import vertical_partition

    costs = LayerCosts(problem, problem.objective or "throughput")
    base = vertical_partition(problem)
    limit = max(1.0 + problem.imbalance, costs.imbalance(base))  # vertical is admissible

    def key(lab: np.ndarray) -> tuple[float, float]:
        return costs.violation(lab, limit), costs.value(lab)

    own = np.asarray(labels, dtype=np.int64).copy()
    starts = [own, base]
    if costs.objective == "throughput" and (costs.host is not None or np.any(costs.calls > 0)):
        # a fixed cost per device used (its calls, a shared host's CPU) can make fewer
        # devices faster, which single-layer moves from a split rarely reach: every
        # device alone competes too (memory still rules them out where it is short)
        starts += [np.full(problem.num_vertices, d, dtype=np.int64) for d in range(problem.k)]
    best, best_key = min(((s, key(s)) for s in starts), key=lambda c: c[1])
    best = best.copy()
    if not refine:
        return best
    return _refine(problem, costs, best, best_key, key, max_evaluations)


def improve_on_objective(
    problem: Problem, labels, movable=None, *, max_evaluations: int = MAX_EVALUATIONS
) -> np.ndarray:
    """``labels`` refined on ``problem.objective`` by the single-vertex moves of
    :func:`on_objective` that strictly improve (violation, objective), moving only the
    vertices of the mask ``movable`` (default all); no comparison with vertical.

    The balance limit of the volume objective is the problem's tolerance, or the start's
    imbalance when that is larger (the start is admissible)."""
    costs = LayerCosts(problem, problem.objective or "throughput")
    labels = np.asarray(labels, dtype=np.int64).copy()
    limit = max(1.0 + problem.imbalance, costs.imbalance(labels))

    def key(lab: np.ndarray) -> tuple[float, float]:
        return costs.violation(lab, limit), costs.value(lab)

    mask = None if movable is None else np.asarray(movable, dtype=bool).reshape(-1)
    return _refine(problem, costs, labels, key(labels), key, max_evaluations, mask)


def _better(a: tuple[float, float], b: tuple[float, float]) -> bool:
    if a[0] < b[0] * (1 - _RTOL) - 1e-9:
        return True
    return a[0] <= b[0] and a[1] < b[1] * (1 - _RTOL)


def _refine(problem, costs, labels, current, key, budget: int, movable=None) -> np.ndarray:
    """First-improvement single-vertex moves until no move improves or the budget ends.

    Candidates: each vertex to every device holding one of its neighbours, and, for the
    time objectives, the vertices of the most loaded device to every other device; only
    the vertices of the mask ``movable`` when given.
    """
    k = problem.k
    adj = problem.adjacency
    indptr, indices = adj.indptr, adj.indices
    spent = 0
    improved = True
    while improved and spent < budget:
        improved = False
        for v, d in _candidates(problem, costs, labels, indptr, indices, k):
            if spent >= budget:
                break
            if movable is not None and not movable[v]:
                continue
            old = labels[v]
            labels[v] = d
            spent += 1
            trial = key(labels)
            if _better(trial, current):
                current, improved = trial, True
            else:
                labels[v] = old
    return labels


def _candidates(problem, costs, labels, indptr, indices, k):
    """(vertex, device) moves of one pass, in a deterministic order."""
    seen: set[tuple[int, int]] = set()
    if costs.objective != "volume" and k > 1:
        hot = int(np.argmax(costs.device_loads(labels)))
        for v in np.flatnonzero(labels == hot).tolist():
            for d in range(k):
                if d != hot:
                    seen.add((v, d))
                    yield v, d
    for v in range(problem.num_vertices):
        devs = np.unique(labels[indices[indptr[v] : indptr[v + 1]]]).tolist()
        for d in devs:
            if d != labels[v] and (v, d) not in seen:
                yield v, d
