"""Mt-KaHyPar on a dnnpart Problem, with per-layer balance.

Mt-KaHyPar (Gottesbüren, Heuer, Maas, Sanders, Schlag; "Scalable High-Quality Hypergraph
Partitioning", ACM TOPC 2024) minimises the connectivity-minus-one of a hypergraph, which
on dnnpart's communication hypergraph (:mod:`dnnpart_mtkahypar._nets`) is the ``volume``.
It balances *one* weight per vertex (with individual maximum block weights, used for the
device shares) but has no multi-constraint mode, while dnnpart asks for balance within
every layer. Two ways round that:

``mode="sweep"`` (default)
    Layers one at a time, in order: each balanced group is partitioned on its own, as the
    free vertices of the hypergraph of the nets that touch it, with the neighbours already
    placed as *fixed vertices* of weight zero (so the block weights are the group's own
    load and the balance constraint is exactly the group's). Then ``passes`` sweeps
    (backward, forward, ...) re-optimise each group with every other group fixed, starting
    from the current answer (Mt-KaHyPar's V-cycles, ``improve_partition``); a group keeps
    its new assignment only when the volume of its nets does not grow. Layers placed whole
    and the model's inputs are free vertices of weight zero in the groups they touch.
``mode="whole"``
    The whole hypergraph at once with the summed compute as the single weight, then a
    repair step moves vertices out of any device over :meth:`Problem.capacities` in each
    group (cheapest cut first). Closer to what a plain hypergraph partitioner gives.

Both end with the same repair, so every balanced group is within its capacities.
Deterministic for a seed with the ``deterministic`` presets (the default; Mt-KaHyPar's
deterministic mode gives the same answer for any thread count).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dnnpart.errors import UsageError
from dnnpart_mtkahypar._nets import SubHypergraph, sub_hypergraph, volume

__all__ = ["PRESETS", "MODES", "mtkahypar_partition"]

PRESETS = ("deterministic", "deterministic_quality", "default", "quality", "highest_quality")
MODES = ("sweep", "whole")
# Mt-KaHyPar weights are 32-bit integers: scale so the heaviest vertex is resolved to 1e-4
# and a group's total stays far below 2**31.
_RESOLUTION = 10_000
_MAX_TOTAL = 2**30

_initialized: dict[int, object] = {}


def _initializer(threads: int):
    """Mt-KaHyPar's global initializer (thread pool), made once per thread count."""
    import mtkahypar

    if threads not in _initialized:
        _initialized.clear()
        _initialized[threads] = mtkahypar.initialize(threads, False)
    return _initialized[threads]


def _int_weights(w: np.ndarray) -> np.ndarray:
    """Positive integer weights in proportion to ``w``.

    Every weight is at least 1: KaHyPar assumes it (kahypar/kahypar#84, #202), and
    Mt-KaHyPar 1.7 hangs in initial partitioning when fixed vertices weigh 0. One unit is
    at most 1e-4 of the heaviest vertex, far below any balance tolerance; the final repair
    works on the true weights anyway.
    """
    top, total = float(w.max(initial=0.0)), float(w.sum())
    if top <= 0:
        return np.ones(len(w), dtype=np.int64)
    scale = min(_RESOLUTION / top, _MAX_TOTAL / max(total, 1.0))
    return np.maximum(np.rint(w * scale), 1).astype(np.int64)


def _int_capacities(w_int: np.ndarray, targets: np.ndarray, imbalance: float) -> list[int]:
    """:meth:`Problem.capacities` in Mt-KaHyPar's integer weights (sum >= total, always)."""
    total = int(w_int.sum())
    share = targets * total
    top = int(w_int.max(initial=0))
    caps = np.maximum(np.floor((1.0 + imbalance) * share), np.ceil(share) + top)
    return [int(c) for c in caps]


class _Solver:
    """Mt-KaHyPar calls on sub-hypergraphs of one problem."""

    def __init__(self, problem, preset: str, threads: int) -> None:
        import mtkahypar

        self.mt = mtkahypar
        self.problem = problem
        self.init = _initializer(threads)
        self.preset = getattr(mtkahypar.PresetType, preset.upper())

    def _context(self, caps: list[int]):
        ctx = self.init.context_from_preset(self.preset)
        ctx.set_partitioning_parameters(
            self.problem.k, self.problem.imbalance, self.mt.Objective.KM1
        )
        ctx.logging = False
        ctx.set_individual_target_block_weights(caps)
        return ctx

    def _hypergraph(self, sub: SubHypergraph, weights: np.ndarray, ctx):
        hg = self.init.create_hypergraph(
            ctx,
            sub.num_vertices,
            len(sub.nets),
            sub.nets,
            [int(x) for x in weights],
            [int(x) for x in sub.net_weights],
        )
        if sub.num_vertices > sub.num_free:
            hg.add_fixed_vertices([int(b) for b in sub.fixed_blocks], self.problem.k)
        return hg

    def solve(self, sub: SubHypergraph, free_weight: np.ndarray, start=None) -> np.ndarray:
        """Blocks of the free vertices: a fresh partition, or V-cycles from ``start``."""
        k = self.problem.k
        w_int = _int_weights(free_weight)
        caps = _int_capacities(w_int, self.problem.targets, self.problem.imbalance)
        # Fixed pins weigh one unit each (see _int_weights): give their blocks that room.
        fixed = sub.fixed_blocks[sub.num_free :]
        caps = [c + int(f) for c, f in zip(caps, np.bincount(fixed, minlength=k), strict=True)]
        weights = np.concatenate([w_int, np.ones(len(fixed), np.int64)])
        ctx = self._context(caps)
        hg = self._hypergraph(sub, weights, ctx)
        self.mt.set_seed(int(self.problem.seed))
        if start is None:
            phg = hg.partition(ctx)
        else:
            blocks = np.where(sub.fixed_blocks >= 0, sub.fixed_blocks, 0)
            blocks[: sub.num_free] = start
            phg = hg.create_partitioned_hypergraph(ctx, k, [int(b) for b in blocks])
            phg.improve_partition(ctx, 1)
        return np.asarray(phg.get_partition(), dtype=np.int64)[: sub.num_free]


def _sub_volume(sub: SubHypergraph, blocks_free: np.ndarray, k: int) -> int:
    """Weighted connectivity-minus-one of the sub-hypergraph's nets."""
    blocks = sub.fixed_blocks.copy()
    blocks[: sub.num_free] = blocks_free
    total = 0
    for net, w in zip(sub.nets, sub.net_weights, strict=True):
        total += int(w) * (len(set(blocks[net].tolist())) - 1)
    return total


def repair(problem, labels: np.ndarray, adjacency: sp.csr_array, groups) -> np.ndarray:
    """Move vertices out of devices over :meth:`Problem.capacities`, cheapest cut first.

    An overloaded device holds more than ``share + heaviest``, so some device is below its
    share and has room for any vertex of the group: every round moves at least one vertex
    and the loop ends with the group balanced.
    """
    k = problem.k
    w = problem.vertex_weight
    for g in groups:
        sl = problem.layer_slice(g)
        caps = problem.capacities(g)
        tol = 1e-9 * max(1.0, float(w[sl].sum()))
        while True:
            loads = np.bincount(labels[sl], weights=w[sl], minlength=k)
            over = loads > caps + tol
            if not over.any():
                break
            cand = sl.start + np.flatnonzero(over[labels[sl]])
            onehot = sp.csr_array(
                (np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), k)
            )
            affinity = (adjacency[cand] @ onehot).toarray()
            # Cut added by moving each candidate to each device (its own: never chosen).
            cost = affinity[np.arange(len(cand)), labels[cand]][:, None] - affinity
            cost[np.arange(len(cand)), labels[cand]] = np.inf
            room = caps - loads
            moved = False
            for i in np.argsort(cost.min(axis=1), kind="stable"):
                v = cand[i]
                d = labels[v]
                if loads[d] <= caps[d] + tol:
                    continue
                fits = np.flatnonzero(room >= w[v] - tol)
                fits = fits[fits != d]
                if not len(fits):
                    continue
                e = int(fits[np.argmin(cost[i, fits])])
                labels[v] = e
                loads[d] -= w[v]
                loads[e] += w[v]
                room[d] += w[v]
                room[e] -= w[v]
                moved = True
            if not moved:  # pragma: no cover - impossible by the argument above
                break
    return labels


def _place_rest(problem, labels: np.ndarray, adjacency: sp.csr_array) -> np.ndarray:
    """Vertices no sub-problem placed: next to most of their placed neighbours, else 0."""
    for _ in range(2):  # chains of whole layers: a second sweep sees the first's choices
        for v in np.flatnonzero(labels < 0):
            lo, hi = adjacency.indptr[v], adjacency.indptr[v + 1]
            nb, wt = adjacency.indices[lo:hi], adjacency.data[lo:hi]
            placed = labels[nb] >= 0
            if placed.any():
                pull = np.bincount(labels[nb][placed], weights=wt[placed], minlength=problem.k)
                labels[v] = int(np.argmax(pull))
    labels[labels < 0] = 0
    return labels


def mtkahypar_partition(
    problem,
    *,
    mode: str = "sweep",
    preset: str = "deterministic",
    passes: int = 1,
    threads: int = 1,
) -> np.ndarray:
    """Partition ``problem`` with Mt-KaHyPar, minimising volume under per-layer balance.

    Parameters
    ----------
    problem : dnnpart.partitioners.Problem
    mode : {"sweep", "whole"}
        Per-group sweeps with fixed neighbours, or one whole-graph call plus repair (see
        the module docstring).
    preset : str
        Mt-KaHyPar preset, one of :data:`PRESETS`. Only the ``deterministic`` ones are
        reproducible for a seed.
    passes : int
        Refinement sweeps after the first (``mode="sweep"`` only).
    threads : int
        Mt-KaHyPar's threads (the deterministic presets give the same answer for any).

    Returns
    -------
    ndarray of int64, shape (n,)
        Device of every vertex; every balanced group within ``problem.capacities(g)``.
    """
    if mode not in MODES:
        raise UsageError(f"mode must be one of {MODES}, got {mode!r}")
    if preset not in PRESETS:
        raise UsageError(f"preset must be one of {PRESETS}, got {preset!r}")
    for name, value, low in (("passes", passes, 0), ("threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    n, k = problem.num_vertices, problem.k
    groups = np.flatnonzero(problem.balanced)
    if k == 1 or n == 0 or not len(groups):
        return np.zeros(n, dtype=np.int64)
    synapses = sp.csr_array(problem.synapses)
    synapses.sort_indices()
    producers = sp.csr_array(synapses.T)
    adjacency = problem.adjacency
    net_weight = np.asarray(problem.activation_elements, dtype=np.int64)
    solver = _Solver(problem, preset, int(threads))
    balanced_vertex = np.repeat(problem.balanced, np.diff(problem.layer_offsets))
    labels = np.full(n, -1, dtype=np.int64)

    if mode == "whole":
        everything = np.arange(n)
        sub = sub_hypergraph(synapses, producers, net_weight, everything, labels)
        weight = np.where(balanced_vertex, problem.vertex_weight, 0.0)
        labels = solver.solve(sub, weight) if sub.nets else labels.clip(0)
        return repair(problem, labels, adjacency, groups)

    # The free set of each group: its vertices, and the unbalanced vertices next to it.
    free_sets = []
    for g in groups:
        sl = problem.layer_slice(g)
        near = np.unique(adjacency[np.arange(sl.start, sl.stop)].indices)
        near = near[~balanced_vertex[near]]
        free_sets.append(np.union1d(np.arange(sl.start, sl.stop), near))

    def step(i: int, improve: bool) -> None:
        g, free = groups[i], free_sets[i]
        sub = sub_hypergraph(synapses, producers, net_weight, free, labels)
        weight = np.where(balanced_vertex[free], problem.vertex_weight[free], 0.0)
        if not sub.nets:  # nothing to gain or lose: deal by weight, as `vertical` would
            if not improve:
                labels[free] = _deal(weight, problem.targets)
            return
        current = labels[free].copy()
        new = solver.solve(sub, weight, start=current if improve else None)
        labels[free] = new
        repair(problem, labels, adjacency, [g])
        if improve and _sub_volume(sub, labels[free], k) > _sub_volume(sub, current, k):
            labels[free] = current  # V-cycles plus repair made it worse: keep the old one

    for i in range(len(groups)):
        step(i, improve=False)
    for p in range(passes):
        order = range(len(groups) - 1, -1, -1) if p % 2 == 0 else range(len(groups))
        for i in order:
            step(i, improve=True)
    labels = _place_rest(problem, labels, adjacency)
    return repair(problem, labels, adjacency, groups)


def _deal(weight: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Contiguous slices by cumulative weight (each within one vertex of its share)."""
    ends = np.cumsum(weight)
    if not ends[-1] > 0:
        return (np.arange(len(weight)) * len(targets) // max(len(weight), 1)).astype(np.int64)
    mid = (ends - weight / 2.0) / ends[-1]
    return np.searchsorted(np.cumsum(targets)[:-1], mid, side="right").astype(np.int64)


def _volume_of(problem, labels: np.ndarray) -> int:
    """dnnpart's volume of ``labels`` (for tests and benchmarks)."""
    synapses = sp.csr_array(problem.synapses)
    weight = np.asarray(problem.activation_elements, dtype=np.int64)
    return volume(synapses, weight, labels, problem.k)
