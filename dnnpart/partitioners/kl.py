"""k-way Kernighan-Lin / Fiduccia-Mattheyses refinement under per-layer balance.

Kernighan & Lin (1970) improve a bisection by swapping vertices; Fiduccia & Mattheyses
(1982) made it linear-time with single-vertex moves picked by gain, each vertex moved at
most once per pass, and the pass rolled back to its best prefix. This module runs the
k-way form directly (a move goes to the device with the best gain), on either objective:

- ``"volume"`` — what the network carries: each net of :attr:`Problem.communication`
  (by default a vertex's output and the vertices consuming it) is sent once to every other
  device holding a consumer, i.e. the hypergraph connectivity-1 metric weighted by the
  net's elements (Catalyurek & Aykanat 1999), exactly what scoring counts;
- ``"cut"`` — the weight of the edges of :attr:`Problem.adjacency` whose ends differ
  (the GraphDNN thesis' metric).

Every move keeps each balanced group within its *tight* capacities
(``Problem.capacities(g, tight=True)``: ``(1 + imbalance) * share`` wherever the group's
weights allow it; the loose contract bound lets a 10-neuron output layer reach 1.5 x its
share). When the best target is full, the vertex is *swapped* with the best partner of the
same group on that device (a Kernighan-Lin swap). Gains of all vertices are computed
vectorised (scipy.sparse) at the start of every pass; inside a pass the gain of a popped
vertex is recomputed exactly from its nets (lazy heap), so a pass costs O(pins) numpy work
plus a Python step per move. Vertices whose placement only matters to their own net (the
model's inputs: free, no producer) are left out of their net and put next to its
consumers at the end, so moving the last consumer off a device shows its saving at once.
On small problems the passes are wrapped in an iterated local search (random kicks within
capacity, FM again, keep if no worse) under a fixed work budget.
"""

from __future__ import annotations

import heapq

import numpy as np
import scipy.sparse as sp

from dnnpart.errors import UsageError
from dnnpart.partitioners._base import Boolean, Choice, Integer, Partitioner, with_params_of
from dnnpart.partitioners._kick import ILS_MAX_RESTARTS, ILS_PIN_BUDGET, kick
from dnnpart.partitioners._objective import layer_objective
from dnnpart.problem._helpers import free_sources, is_balanced, place_free_sources
from dnnpart.problem._problem import Problem
from dnnpart.problem._rebalance import rebalance

__all__ = ["kl_refine", "rebalance", "objective_value", "KLPartitioner", "OBJECTIVES"]

OBJECTIVES = ("volume", "cut")
_NEG = -np.inf


# -- objectives -------------------------------------------------------------------------
class _Cut:
    """Edge cut of the symmetric adjacency; gains from per-device neighbour weight."""

    def __init__(self, problem: Problem, labels: np.ndarray, adj: sp.csr_array) -> None:
        self.k = problem.k
        self.adj = adj
        self.incidence = adj
        self.labels = labels

    def all_gains(self) -> np.ndarray:
        n = len(self.labels)
        conn = self.adj @ np.eye(self.k)[self.labels]
        gains = conn - conn[np.arange(n), self.labels][:, None]
        gains[np.arange(n), self.labels] = _NEG
        return gains

    def gain_one(self, v: int) -> np.ndarray:
        lo, hi = self.adj.indptr[v], self.adj.indptr[v + 1]
        conn = np.bincount(
            self.labels[self.adj.indices[lo:hi]], weights=self.adj.data[lo:hi], minlength=self.k
        ).astype(np.float64, copy=False)  # an isolated vertex gives an int array
        gains = conn - conn[self.labels[v]]
        gains[self.labels[v]] = _NEG
        return gains

    def move(self, v: int, a: int, b: int) -> None:
        self.labels[v] = b

    def value(self) -> float:
        a = self.adj.tocoo()
        return float(a.data[self.labels[a.row] != self.labels[a.col]].sum() / 2.0)


class _Nets:
    """The hypergraph of :class:`_Volume`: each net of :attr:`Problem.communication`, its
    source vertex first, then the vertices that consume it.

    Built straight from the CSR arrays (scipy's ``setdiag`` and ``+`` on 10^7 entries cost
    seconds) and shared by every labelling of one problem.
    """

    def __init__(self, problem: Problem, skip_free_sources: bool = False) -> None:
        n = problem.num_vertices
        comm = problem.communication
        pins = comm.pins
        if not pins.has_canonical_format:  # duplicates would count a pin twice
            pins = sp.csr_array(pins, copy=True)
            pins.sum_duplicates()
        itype = np.int32 if n < 2**31 - 1 else np.int64
        m = pins.shape[0]
        counts = np.diff(pins.indptr)
        consumers = pins.indices
        source = comm.source
        # A vertex never sends to itself: drop a net's pin on its own source.
        if problem.nets is None:
            self_pins = pins.diagonal().any()  # the synapses: net u is vertex u's output
        else:
            self_pins = np.any(np.asarray(pins[np.arange(m), source]).ravel() != 0)
        if self_pins or not pins.data.all():
            rows = np.repeat(np.arange(m, dtype=itype), counts)
            keep = (pins.indices != source[rows]) & (pins.data != 0)
            consumers = pins.indices[keep]
            counts = np.bincount(rows[keep], minlength=m)
        nets = np.flatnonzero(counts > 0)
        producer = source[nets]
        # own[e]: whether net e lists its source. A free source (a model input: no
        # producer, no balance) with a single net, placed next to one of its consumers,
        # costs exactly lambda(consumers) - 1 whatever else moves; leaving its pin out lets
        # a move see that at once (else the input holds the net on its device until it
        # moves itself). place_free_sources puts it there at the end.
        own = np.ones(len(nets), dtype=bool)
        if skip_free_sources:
            single = np.bincount(producer, minlength=n) == 1
            own = ~(free_sources(problem) & single)[producer]
        sizes = counts[nets] + own
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        # Each net lists its source first (if kept), then its consumers.
        entry_net = np.repeat(np.arange(len(nets), dtype=itype), counts[nets])
        indices = np.empty(indptr[-1], dtype=itype)
        indices[indptr[:-1][own]] = producer[own]
        shift = np.cumsum(own, dtype=np.int64)  # source pins up to and including net e
        indices[np.arange(len(consumers)) + shift[entry_net]] = consumers
        self.weight = comm.elements[nets].astype(np.float64)
        self.pin_vertex = indices
        self.pin_net = np.repeat(np.arange(len(nets), dtype=itype), sizes)
        incidence = sp.csr_array((np.ones(len(indices)), indices, indptr), shape=(len(nets), n))
        self.nets_of = sp.csr_array(incidence.T)  # vertex x net
        self.nets_of_row = np.repeat(np.arange(n, dtype=itype), np.diff(self.nets_of.indptr))


class _Volume:
    """Connectivity-1 of the nets (source + consumers), weighted by their elements.

    ``phi[e, d]`` counts the pins of net ``e`` on device ``d``; moving ``v`` from ``a`` to
    ``b`` saves ``w_e`` on every net of ``v`` where it is the last pin on ``a`` and costs
    ``w_e`` on every net with no pin on ``b`` yet.
    """

    def __init__(self, problem: Problem, labels: np.ndarray, nets: _Nets | None = None) -> None:
        self.k = k = problem.k
        self.labels = labels
        self.nets = nets = _Nets(problem) if nets is None else nets
        self.weight = nets.weight
        self.nets_of = self.incidence = nets.nets_of
        num = len(nets.weight)
        key = nets.pin_net.astype(np.int64) * k + labels[nets.pin_vertex]
        self.phi = np.bincount(key, minlength=num * k).reshape(num, k).astype(np.int32)

    def all_gains(self) -> np.ndarray:
        n = len(self.labels)
        nt = self.nets_of
        vrow = self.nets.nets_of_row
        last = self.phi[nt.indices, self.labels[vrow]] == 1
        save = np.bincount(vrow, weights=self.weight[nt.indices] * last, minlength=n)
        cost = nt @ (self.weight[:, None] * (self.phi == 0))
        gains = save[:, None] - cost
        gains[np.arange(n), self.labels] = _NEG
        return gains

    def gain_one(self, v: int) -> np.ndarray:
        es = self.nets_of.indices[self.nets_of.indptr[v] : self.nets_of.indptr[v + 1]]
        ph = self.phi[es]
        w = self.weight[es]
        a = self.labels[v]
        gains = w @ (ph[:, a] == 1) - w @ (ph == 0)
        gains[a] = _NEG
        return gains

    def move(self, v: int, a: int, b: int) -> None:
        es = self.nets_of.indices[self.nets_of.indptr[v] : self.nets_of.indptr[v + 1]]
        self.phi[es, a] -= 1
        self.phi[es, b] += 1
        self.labels[v] = b

    def value(self) -> float:
        return float(self.weight @ (np.count_nonzero(self.phi, axis=1) - 1))


def _make_objective(problem: Problem, labels: np.ndarray, objective: str, adj=None):
    if objective == "volume":
        return _Volume(problem, labels)
    if objective == "cut":
        return _Cut(problem, labels, _float_adjacency(problem) if adj is None else adj)
    raise UsageError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def _float_adjacency(problem: Problem) -> sp.csr_array:
    return sp.csr_array(problem.adjacency, dtype=np.float64)


def objective_value(problem: Problem, labels, objective: str = "volume") -> float:
    """The quantity :func:`kl_refine` minimises (``"volume"`` or ``"cut"``) for ``labels``."""
    labels = problem.validate(labels, "labels")
    return _make_objective(problem, labels.copy(), objective).value()


# -- the FM pass ------------------------------------------------------------------------
class _Balance:
    """Per-group loads and capacities; unbalanced groups have infinite capacity."""

    def __init__(self, problem: Problem, labels: np.ndarray, tight: bool = True) -> None:
        self.group = problem.layer_of
        self.weight = problem.vertex_weight
        k = problem.k
        self.caps = np.full((problem.num_layers, k), np.inf)
        for g in np.flatnonzero(problem.balanced):
            self.caps[g] = problem.capacities(g, tight=tight) + 1e-9
        self.loads = np.zeros((problem.num_layers, k))
        np.add.at(self.loads, (self.group, labels), self.weight)

    def fits(self, v: int) -> np.ndarray:
        g = self.group[v]
        return self.loads[g] + self.weight[v] <= self.caps[g]

    def move(self, v: int, a: int, b: int) -> None:
        g = self.group[v]
        self.loads[g, a] -= self.weight[v]
        self.loads[g, b] += self.weight[v]


def _fm_pass(obj, bal: _Balance, problem: Problem, rng, patience: int, frozen=None) -> float:
    """One FM pass; returns the gain kept (>= 0) after rolling back to the best prefix.
    Vertices of the mask ``frozen`` never move (nor are swap partners)."""
    labels = obj.labels
    n = len(labels)
    start_gains = obj.all_gains()
    # Keys ignore capacity: a vertex whose best target is full may still swap into it.
    key = start_gains.max(axis=1)
    tie = rng.permutation(n)
    # Vertices on no net (model inputs left out of the volume's nets) have nothing to gain.
    movable = np.isfinite(key) & (np.diff(obj.incidence.indptr) > 0)
    if frozen is not None:
        movable &= ~frozen
    heap = [(-key[v], tie[v], v) for v in np.flatnonzero(movable)]
    heapq.heapify(heap)
    locked = np.zeros(n, dtype=bool) if frozen is None else frozen.copy()
    pushes = np.zeros(n, dtype=np.int32)
    no_swap = np.zeros(n, dtype=bool)  # a swap failed for this vertex in this pass
    offsets = problem.layer_offsets
    moves: list[tuple[int, int, int]] = []
    total, best, best_len = 0.0, 0.0, 0

    def do(v: int, a: int, b: int) -> None:
        obj.move(v, a, b)
        bal.move(v, a, b)
        moves.append((v, a, b))

    def undo(v: int, a: int, b: int) -> None:
        moves.pop()
        obj.move(v, b, a)
        bal.move(v, b, a)

    def stale(v: int, gain: float, undo_move=None) -> bool:
        """Lazy FM: re-queue ``v`` if its exact gain fell below the next key."""
        if heap and gain < -heap[0][0] - 1e-9 and pushes[v] < 8:
            pushes[v] += 1
            heapq.heappush(heap, (-gain, tie[v], v))
            if undo_move is not None:
                undo(*undo_move)
            return True
        return False

    while heap and len(moves) - best_len <= patience:
        _, _, v = heapq.heappop(heap)
        if locked[v]:
            continue
        a = int(labels[v])
        gains = obj.gain_one(v)
        single = np.where(bal.fits(v), gains, _NEG)
        bs = int(np.argmax(single))
        bb = int(np.argmax(gains))
        swap = gains[bb] > single[bs] and not no_swap[v]
        want = gains[bb] if swap else single[bs]
        if want == _NEG:
            locked[v] = True
            continue
        if stale(v, want):
            continue
        if swap:
            # Best target is full: Kernighan-Lin swap with the best partner there.
            g = bal.group[v]
            lo, hi = offsets[g], offsets[g + 1]
            cand = lo + np.flatnonzero((labels[lo:hi] == bb) & ~locked[lo:hi])
            if len(cand):
                u = int(cand[np.argmax(start_gains[cand, a])])
                do(v, a, bb)
                joint = gains[bb] + obj.gain_one(u)[a]
                fits_u = bal.fits(u)[a] and bal.loads[g, bb] - bal.weight[u] <= bal.caps[g, bb]
                if fits_u and joint >= single[bs]:
                    if stale(v, joint, undo_move=(v, a, bb)):
                        continue
                    do(u, bb, a)
                    locked[u] = locked[v] = True
                    total += joint
                    if total > best + 1e-9:
                        best, best_len = total, len(moves)
                    continue
                undo(v, a, bb)
            no_swap[v] = True
            if single[bs] == _NEG:
                locked[v] = True
                continue
            if stale(v, single[bs]):
                continue
        locked[v] = True
        do(v, a, bs)
        total += single[bs]
        if total > best + 1e-9:
            best, best_len = total, len(moves)
    for v, a, b in reversed(moves[best_len:]):
        obj.move(v, b, a)
        bal.move(v, b, a)
    return best


class _Descent:
    """One local search: (cut passes, then) objective passes from a start; reusable."""

    def __init__(
        self, problem, objective, adj, tight, max_passes, patience, cut_first, frozen=None
    ):
        self.problem = problem
        self.frozen = frozen
        self.objective = objective
        self.adj = adj
        self.tight = tight
        self.max_passes = max_passes
        self.patience = patience
        self.cut_first = cut_first and objective == "volume"
        self.nets = _Nets(problem, skip_free_sources=True) if objective == "volume" else None
        self.caps = _Balance(problem, np.zeros(problem.num_vertices, np.int64), tight).caps
        if self.nets is not None:
            self.pins = len(self.nets.pin_vertex)
        else:
            self.pins = adj.nnz

    def _objective(self, labels):
        if self.objective == "volume":
            return _Volume(self.problem, labels, self.nets)
        return _Cut(self.problem, labels, self.adj)

    def __call__(self, labels: np.ndarray, rng) -> tuple[np.ndarray, float]:
        problem = self.problem
        labels = labels.copy()
        bal = _Balance(problem, labels, self.tight)
        if self.cut_first:
            # Volume gains are zero on plateaus where every net already spans every device
            # (the vertical start on a butterfly network); the cut still has a slope there.
            start_value = self._objective(labels).value()
            before = labels.copy()
            _passes(
                _Cut(problem, labels, self.adj),
                bal,
                problem,
                rng,
                self.max_passes,
                self.patience,
                self.frozen,
            )
            if self._objective(labels).value() > start_value:  # never worse than the start
                labels[:] = before
                bal = _Balance(problem, labels, self.tight)
        obj = self._objective(labels)
        _passes(obj, bal, problem, rng, self.max_passes, self.patience, self.frozen)
        return obj.labels, obj.value()


def _passes(obj, bal, problem, rng, max_passes, patience, frozen=None) -> None:
    for _ in range(int(max_passes)):
        if _fm_pass(obj, bal, problem, rng, int(patience), frozen) <= 1e-9:
            break


def _check_start(name: str, value) -> None:
    if not (isinstance(value, Partitioner) or value in ("vertical", "metis")):
        raise UsageError(f"{name} must be 'vertical', 'metis' or a Partitioner, got {value!r}")


class KLPartitioner(Partitioner):
    """k-way FM/KL from a starting partition, keeping every balanced group in capacity.

    :meth:`partition` refines the ``start`` partitioner's answer; :meth:`refine` (and
    :func:`kl_refine`) refine the labels they are given.

    Parameters
    ----------
    start : {"vertical", "metis"} or Partitioner
        Where :meth:`partition` starts (the labels to refine). A start that exceeds the
        capacities of a balanced group is repaired first by :func:`rebalance`.
    objective : {"volume", "cut"}
        What to minimise: communication volume (connectivity-1, what the network
        carries) or edge cut.
    max_passes : int
        Upper bound on passes; passes also stop as soon as one brings no improvement.
    patience : int, optional
        A pass stops after this many moves without a new best prefix (FM's hill-climbing
        budget). Default ``max(300, n // 100)``; on the Graph Challenge network larger
        budgets cost time without finding better answers.
    cut_first : bool
        With ``objective="volume"``, first run cut passes (a smoother surrogate), then
        volume passes; the cut phase is discarded if it raised the volume.
    seed : int, optional
        Seed of the tie-breaking order and of the perturbations; default ``problem.seed``.
    restarts : int, optional
        Iterated local search (H. R. Lourenco, O. C. Martin, T. Stutzle, "Iterated local
        search", Handbook of Metaheuristics, 2003): this many times, perturb the best
        answer so far (a fraction of each group's vertices moved or swapped at random,
        within capacity) and run the FM passes again, keeping the result if it is no worse.
        Default: as many as a fixed work budget allows (restarts x pins of the volume's
        hypergraph, or of the adjacency for the cut, within ``_kick.ILS_PIN_BUDGET``; at most
        ``ILS_MAX_RESTARTS``), so a small model gets many and one of more than
        ``ILS_PIN_BUDGET`` pins none. Deterministic for a seed.
    tight : bool
        Keep every balanced group within ``Problem.capacities(g, tight=True)`` (per-layer
        imbalance at most ``1 + imbalance`` wherever the group's weights allow it), else
        within the loose contract bound.

    References
    ----------
    B. W. Kernighan, S. Lin, "An efficient heuristic procedure for partitioning graphs",
    Bell System Technical Journal 49 (1970). C. M. Fiduccia, R. M. Mattheyses, "A
    linear-time heuristic for improving network partitions", DAC 1982.
    """

    name = "kl"
    granularities = ("neuron", "layer")
    constraints = {
        "start": _check_start,
        "objective": Choice(*OBJECTIVES),
        "max_passes": Integer(0),
        "patience": Integer(0, optional=True),
        "cut_first": Boolean,
        "seed": Integer(None, optional=True),
        "restarts": Integer(0, optional=True),
        "tight": Boolean,
    }

    def __init__(
        self,
        start="vertical",
        objective: str = "volume",
        max_passes: int = 10,
        patience: int | None = None,
        cut_first: bool = True,
        seed: int | None = None,
        restarts: int | None = None,
        tight: bool = True,
    ) -> None:
        self.start = start
        self.objective = objective
        self.max_passes = max_passes
        self.patience = patience
        self.cut_first = cut_first
        self.seed = seed
        self.restarts = restarts
        self.tight = tight

    def _start(self) -> Partitioner:
        if isinstance(self.start, Partitioner):
            return self.start
        if self.start == "vertical":
            from dnnpart.partitioners.vertical import VerticalPartitioner

            return VerticalPartitioner()
        from dnnpart.partitioners.metis import MetisPartitioner  # start == "metis"

        return MetisPartitioner()

    @layer_objective
    def partition(self, problem: Problem) -> np.ndarray:
        self.checked_params()
        start = self._start()
        return self.refine(
            problem, problem.validate(start.partition(problem), start.name or "start")
        )

    def refine(self, problem: Problem, labels, frozen=None) -> np.ndarray:
        """Refine ``labels`` (any partitioner's answer, shape (n,)).

        ``frozen`` (a boolean mask, shape (n,)) lists vertices that keep their device:
        only the others move (no perturbation restarts unless ``restarts`` asks; a
        balance repair, if the start needs one, may still move them).

        Returns
        -------
        ndarray of int64, shape (n,)
            The refined assignment; its objective is never larger than the start's
            (after the balance repair, if one was needed). With ``objective="volume"``
            the model's inputs (free sources) end on the device of one of their consumers.
        """
        p = self.checked_params()
        objective, max_passes, patience = p["objective"], p["max_passes"], p["patience"]
        cut_first, seed, restarts, tight = p["cut_first"], p["seed"], p["restarts"], p["tight"]
        if patience is None:
            patience = max(300, problem.num_vertices // 100)
        labels = problem.validate(labels, "labels").copy()
        if frozen is not None:
            frozen = np.asarray(frozen, dtype=bool).reshape(-1)
            if frozen.shape != labels.shape:
                raise UsageError(f"frozen must hold one flag per vertex ({labels.size})")
            if restarts is None:
                restarts = 0  # kicks would move frozen vertices
        if problem.k == 1 or max_passes == 0:
            if is_balanced(problem, labels, tight=tight):
                return labels
            return rebalance(problem, labels, tight=tight)
        rng = np.random.default_rng(problem.seed if seed is None else seed)
        adj = None
        if objective == "cut" or cut_first:
            adj = _float_adjacency(problem)
        if not is_balanced(problem, labels, tight=tight):
            labels = rebalance(problem, labels, adj, tight=tight)
        run = _Descent(
            problem, objective, adj, tight, int(max_passes), int(patience), cut_first, frozen
        )
        best, best_value = run(labels, rng)
        if restarts is None:
            restarts = min(ILS_MAX_RESTARTS, ILS_PIN_BUDGET // max(run.pins, 1))
        run.cut_first = False  # restarts start near a volume optimum: no cut smoothing
        for _ in range(int(restarts)):
            cand, value = run(kick(problem, best, run.caps, rng), rng)
            if value <= best_value + 1e-9:  # equal: move on along the plateau
                best, best_value = cand, value
        if objective == "volume":
            placed = place_free_sources(problem, best)
            if frozen is not None:  # free sources keep their device when frozen
                placed[frozen] = best[frozen]
            best = placed
        if not is_balanced(problem, best, tight=tight):  # pragma: no cover - float drift
            best = rebalance(problem, best, adj, tight=tight)
        return best


@with_params_of(KLPartitioner, exclude=("start",))
def kl_refine(problem: Problem, labels, frozen=None, **params) -> np.ndarray:
    """:meth:`KLPartitioner.refine` of ``labels``: one device per vertex, never a larger
    objective than the start's (after a balance repair, if one was needed); vertices of
    the mask ``frozen`` stay where they are."""
    if "start" in params:
        raise UsageError("kl_refine refines the labels it is given: it takes no start")
    return KLPartitioner(**params).refine(problem, labels, frozen)
