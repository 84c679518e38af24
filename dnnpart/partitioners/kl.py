"""k-way Kernighan-Lin / Fiduccia-Mattheyses refinement under per-layer balance.

Kernighan & Lin (1970) improve a bisection by swapping vertices; Fiduccia & Mattheyses
(1982) made it linear-time with single-vertex moves picked by gain, each vertex moved at
most once per pass, and the pass rolled back to its best prefix. This module runs the
k-way form directly (a move goes to the device with the best gain), on either objective:

- ``"volume"`` — what the network carries: each vertex's output is sent once to every
  other device holding one of its consumers, i.e. the hypergraph connectivity-1 metric
  with one net per producing vertex (the vertex and its consumers), weighted by the
  activation's elements (Catalyurek & Aykanat 1999);
- ``"cut"`` — the weight of the edges of :attr:`Problem.adjacency` whose ends differ
  (the GraphDNN thesis' metric).

Every move keeps each balanced group within :meth:`Problem.capacities`. When the best
target is full, the vertex is *swapped* with the best partner of the same group on that
device (a Kernighan-Lin swap), which keeps the balance of equal-weight vertices exactly.
Gains of all vertices are computed vectorised (scipy.sparse) at the start of every pass;
inside a pass the gain of a popped vertex is recomputed exactly from its nets (lazy heap),
so a pass costs O(pins) numpy work plus a Python step per move.
"""

from __future__ import annotations

import heapq
from numbers import Integral

import numpy as np
import scipy.sparse as sp

from dnnpart.errors import UsageError
from dnnpart.partitioners._base import Partitioner
from dnnpart.partitioners._common import group_loads, is_balanced
from dnnpart.partitioners._problem import Problem

__all__ = ["kl_refine", "rebalance", "objective_value", "KLPartitioner", "OBJECTIVES"]

OBJECTIVES = ("volume", "cut")
_NEG = -np.inf


# -- objectives -------------------------------------------------------------------------
class _Cut:
    """Edge cut of the symmetric adjacency; gains from per-device neighbour weight."""

    def __init__(self, problem: Problem, labels: np.ndarray, adj: sp.csr_array) -> None:
        self.k = problem.k
        self.adj = adj
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
    """The hypergraph of :class:`_Volume`: net ``e`` = producer ``nets[e]`` + its consumers.

    Built straight from the CSR arrays (scipy's ``setdiag`` and ``+`` on 10^7 entries cost
    seconds) and shared by every labelling of one problem.
    """

    def __init__(self, problem: Problem) -> None:
        n = problem.num_vertices
        syn = problem.synapses
        if not syn.has_canonical_format:  # duplicates would count a pin twice
            syn = sp.csr_array(syn, copy=True)
            syn.sum_duplicates()
        itype = np.int32 if n < 2**31 - 1 else np.int64
        counts = np.diff(syn.indptr)
        consumers = syn.indices
        if syn.diagonal().any() or not syn.data.all():  # a vertex never sends to itself
            rows = np.repeat(np.arange(n, dtype=itype), counts)
            keep = (syn.indices != rows) & (syn.data != 0)
            consumers = syn.indices[keep]
            counts = np.bincount(rows[keep], minlength=n)
        nets = np.flatnonzero(counts > 0)
        sizes = counts[nets] + 1
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        # Each net lists its producer first, then its consumers (rows ascend with nets).
        entry_net = np.repeat(np.arange(len(nets), dtype=itype), counts[nets])
        indices = np.empty(indptr[-1], dtype=itype)
        indices[indptr[:-1]] = nets
        indices[np.arange(len(consumers)) + entry_net + 1] = consumers
        self.weight = problem.activation_elements[nets].astype(np.float64)
        self.pin_vertex = indices
        self.pin_net = np.repeat(np.arange(len(nets), dtype=itype), sizes)
        pins = sp.csr_array((np.ones(len(indices)), indices, indptr), shape=(len(nets), n))
        self.nets_of = sp.csr_array(pins.T)  # vertex x net
        self.nets_of_row = np.repeat(np.arange(n, dtype=itype), np.diff(self.nets_of.indptr))


class _Volume:
    """Connectivity-1 of the nets {u} + consumers(u), weighted by u's activation elements.

    ``phi[e, d]`` counts the pins of net ``e`` on device ``d``; moving ``v`` from ``a`` to
    ``b`` saves ``w_e`` on every net of ``v`` where it is the last pin on ``a`` and costs
    ``w_e`` on every net with no pin on ``b`` yet.
    """

    def __init__(self, problem: Problem, labels: np.ndarray, nets: _Nets | None = None) -> None:
        self.k = k = problem.k
        self.labels = labels
        self.nets = nets = _Nets(problem) if nets is None else nets
        self.weight = nets.weight
        self.nets_of = nets.nets_of
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


# -- balance repair ---------------------------------------------------------------------
def rebalance(problem: Problem, labels, adjacency: sp.csr_array | None = None) -> np.ndarray:
    """Move vertices out of overloaded devices until every balanced group fits.

    A cheap repair for partitioners (METIS) whose answer may exceed
    :meth:`Problem.capacities`: in each overloaded group, the vertices on overloaded
    devices are ranked by the cut gain of their best move to a device with room, and moved
    in that order (least cut increase first) while their device is still over capacity.
    A move always exists: an overloaded device holds more than ``share + heaviest``, so
    another device is below its share and has room for any vertex of the group.

    ``adjacency`` may pass :attr:`Problem.adjacency` if the caller already built it.
    Returns a new label array; groups already within capacities are left untouched.
    """
    labels = np.array(problem.validate(labels, "labels"), copy=True)
    adj = adjacency
    k = problem.k
    for g in np.flatnonzero(problem.balanced):
        sl = problem.layer_slice(g)
        caps = problem.capacities(g)
        w = problem.vertex_weight
        while True:
            loads = group_loads(problem, labels, g)
            over = loads > caps + 1e-9
            if not over.any():
                break
            if adj is None:
                adj = problem.adjacency
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
            if not moved:  # pragma: no cover - impossible by the argument above
                break
    return labels


# -- the FM pass ------------------------------------------------------------------------
class _Balance:
    """Per-group loads and capacities; unbalanced groups have infinite capacity."""

    def __init__(self, problem: Problem, labels: np.ndarray) -> None:
        self.group = problem.layer_of
        self.weight = problem.vertex_weight
        k = problem.k
        self.caps = np.full((problem.num_layers, k), np.inf)
        for g in np.flatnonzero(problem.balanced):
            self.caps[g] = problem.capacities(g) + 1e-9
        self.loads = np.zeros((problem.num_layers, k))
        np.add.at(self.loads, (self.group, labels), self.weight)

    def fits(self, v: int) -> np.ndarray:
        g = self.group[v]
        return self.loads[g] + self.weight[v] <= self.caps[g]

    def move(self, v: int, a: int, b: int) -> None:
        g = self.group[v]
        self.loads[g, a] -= self.weight[v]
        self.loads[g, b] += self.weight[v]


def _fm_pass(obj, bal: _Balance, problem: Problem, rng, patience: int) -> float:
    """One FM pass; returns the gain kept (>= 0) after rolling back to the best prefix."""
    labels = obj.labels
    n = len(labels)
    start_gains = obj.all_gains()
    # Keys ignore capacity: a vertex whose best target is full may still swap into it.
    key = start_gains.max(axis=1)
    tie = rng.permutation(n)
    heap = [(-key[v], tie[v], v) for v in np.flatnonzero(np.isfinite(key))]
    heapq.heapify(heap)
    locked = np.zeros(n, dtype=bool)
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


def kl_refine(
    problem: Problem,
    labels,
    *,
    objective: str = "volume",
    max_passes: int = 10,
    patience: int | None = None,
    cut_first: bool = True,
    seed: int | None = None,
) -> np.ndarray:
    """Improve ``labels`` by k-way FM passes that keep every balanced group in capacity.

    Parameters
    ----------
    problem : Problem
    labels : array_like of int, shape (n,)
        Starting assignment (any partitioner's answer). If it exceeds the capacities of a
        balanced group, :func:`rebalance` repairs it first.
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
        Seed of the tie-breaking order; default ``problem.seed``.

    Returns
    -------
    ndarray of int64, shape (n,)
        The refined assignment; its objective is never larger than the start's (after the
        balance repair, if one was needed).

    References
    ----------
    B. W. Kernighan, S. Lin, "An efficient heuristic procedure for partitioning graphs",
    Bell System Technical Journal 49 (1970). C. M. Fiduccia, R. M. Mattheyses, "A
    linear-time heuristic for improving network partitions", DAC 1982.
    """
    if objective not in OBJECTIVES:
        raise UsageError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if isinstance(max_passes, bool) or not isinstance(max_passes, Integral) or max_passes < 0:
        raise UsageError(f"max_passes must be a non-negative integer, got {max_passes!r}")
    n = problem.num_vertices
    if patience is None:
        patience = max(300, n // 100)
    if isinstance(patience, bool) or not isinstance(patience, Integral) or patience < 0:
        raise UsageError(f"patience must be a non-negative integer, got {patience!r}")
    labels = problem.validate(labels, "labels").copy()
    if problem.k == 1 or max_passes == 0:
        return labels if is_balanced(problem, labels) else rebalance(problem, labels)
    rng = np.random.default_rng(problem.seed if seed is None else seed)
    adj = None
    if objective == "cut" or cut_first:
        adj = _float_adjacency(problem)
    if not is_balanced(problem, labels):
        labels = rebalance(problem, labels, adj)
    bal = _Balance(problem, labels)
    if objective == "volume" and cut_first:
        # Volume gains are zero on plateaus where every net already spans every device
        # (the vertical start on a butterfly network); the cut still has a slope there.
        nets = _Nets(problem)
        start_value = _Volume(problem, labels, nets).value()
        before = labels.copy()
        _passes(_Cut(problem, labels, adj), bal, problem, rng, max_passes, patience)
        obj = _Volume(problem, labels, nets)
        if obj.value() > start_value:  # never worse than the start
            labels[:] = before
            bal = _Balance(problem, labels)
            obj = _Volume(problem, labels, nets)
    else:
        obj = _make_objective(problem, labels, objective, adj)
    _passes(obj, bal, problem, rng, max_passes, patience)
    out = obj.labels
    if not is_balanced(problem, out):  # pragma: no cover - float drift safety net
        out = rebalance(problem, out, adj)
    return out


def _passes(obj, bal, problem, rng, max_passes, patience) -> None:
    for _ in range(int(max_passes)):
        if _fm_pass(obj, bal, problem, rng, int(patience)) <= 1e-9:
            break


class KLPartitioner(Partitioner):
    """FM/KL refinement of a starting partition (default: the vertical baseline).

    Parameters
    ----------
    start : {"vertical", "metis"} or Partitioner
        Where refinement starts.
    objective : {"volume", "cut"}
    max_passes, patience, cut_first :
        See :func:`kl_refine`.
    """

    name = "kl"
    granularities = ("neuron", "layer")

    def __init__(
        self,
        start="vertical",
        objective: str = "volume",
        max_passes: int = 10,
        patience: int | None = None,
        cut_first: bool = True,
    ) -> None:
        self.start = start
        self.objective = objective
        self.max_passes = max_passes
        self.patience = patience
        self.cut_first = cut_first

    def _start(self) -> Partitioner:
        if isinstance(self.start, Partitioner):
            return self.start
        if self.start == "vertical":
            from dnnpart.partitioners.vertical import VerticalPartitioner

            return VerticalPartitioner()
        if self.start == "metis":
            from dnnpart.partitioners.metis import MetisPartitioner

            return MetisPartitioner()
        raise UsageError(f"start must be 'vertical', 'metis' or a Partitioner, got {self.start!r}")

    def partition(self, problem: Problem) -> np.ndarray:
        start = self._start()
        labels = problem.validate(start.partition(problem), start.name or "start")
        return kl_refine(
            problem,
            labels,
            objective=self.objective,
            max_passes=self.max_passes,
            patience=self.patience,
            cut_first=self.cut_first,
        )
