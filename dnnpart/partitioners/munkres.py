"""RePurpose-style partitioning: layers in order, each by an optimal balanced assignment.

A. Abdi, S. Rashidi, F. Fekri and T. Krishna, "Restructuring, Pruning, and Adjustment of
Deep Models for Parallel Distributed Inference", arXiv:2008.08289 (2020); AAAI 2023 as
"Efficient Distributed Inference of Deep Neural Networks via Restructuring and Pruning"
(RePurpose). RePurpose assigns the neurons of one layer at a time to workers with the
Munkres (Hungarian) algorithm, H. W. Kuhn (1955), J. Munkres (1957), the cost of a neuron
on a worker being the traffic it causes with the neurons already placed.

The assignment is solved by :func:`transport_assign` (:mod:`._assign`): the ``n x k``
transportation LP (HiGHS) for equal weights, the generalised assignment for unequal ones
(pruned layers), with :func:`scipy.optimize.linear_sum_assignment` on the slot-expanded
matrix kept as the reference. Every layer is assigned within its tight capacities
(``Problem.capacities(g, tight=True)``), so a small layer of uneven neurons stays within
``1 + imbalance`` of its share wherever an assignment that does exists.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from dnnpart._notes import note
from dnnpart.errors import UsageError
from dnnpart.partitioners._base import Choice, Integer, Partitioner, with_params_of
from dnnpart.problem._assign import SOLVERS, assign_or_none, transport_assign
from dnnpart.problem._helpers import contiguous_slices, loose_note, place_unbalanced
from dnnpart.problem._problem import Problem

__all__ = ["MunkresPartitioner", "munkres_partition", "transport_assign"]

COSTS = ("activations", "synapses")
STARTS = ("grow", "rcm", "vertical")


def _assign(problem: Problem, g: int, cost: np.ndarray, solver: str) -> np.ndarray:
    """Least-cost assignment of group ``g`` within its tight capacities.

    Falls back to the loose :meth:`Problem.capacities` only if no assignment within the
    tight ones was found (HiGHS' node limit on a large uneven group).
    """
    w = problem.vertex_weight[problem.layer_slice(g)]
    labels = assign_or_none(cost, w, problem.capacities(g, tight=True), solver=solver)
    if labels is None:
        note(loose_note("munkres", problem, g))
        labels = transport_assign(cost, w, problem.capacities(g), solver=solver)
    return labels


def _first_layout(problem: Problem, gr: _Graph, g: int, start: str) -> np.ndarray:
    """Layout of a group with no placed neighbour: contiguous slices of an ordering.

    ``"vertical"`` keeps the index order (the thesis' split). ``"rcm"`` orders the group by
    reverse Cuthill-McKee (E. Cuthill and J. McKee, 1969) on the group and its direct
    neighbours. ``"grow"`` grows one device region at a time, greedy graph growing as in
    G. Karypis and V. Kumar, SIAM J. Sci. Comput. 20(1), 1998, on the hypergraph whose nets
    are the group's producers: the next vertex is the one whose inputs the region already
    receives most, and the next region starts where the last one left off, next to it.
    The index order of a trained layer is arbitrary; both orderings keep neurons that share
    inputs together.
    """
    sl = problem.layer_slice(g)
    w = problem.vertex_weight[sl]
    if start == "vertical":
        return _fit(problem, g, contiguous_slices(w, problem.targets), "lp")
    if start == "rcm":
        adj = problem.adjacency
        members = np.arange(sl.start, sl.stop)
        keep = np.union1d(members, adj[members].indices)
        sub = sp.csr_matrix(adj[keep][:, keep])
        order = keep[reverse_cuthill_mckee(sub, symmetric_mode=True)]
        order = order[(order >= sl.start) & (order < sl.stop)] - sl.start
    else:
        order = _grow_order(gr.pattern_t[sl], gr.elems, w, problem.targets)
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = contiguous_slices(w[order], problem.targets)
    return _fit(problem, g, labels, "lp")


def _fit(problem: Problem, g: int, labels: np.ndarray, solver: str) -> np.ndarray:
    """``labels`` of group ``g``, or the fewest changes that bring it within tight capacity.

    Contiguous slices hold their share within one vertex on each side, which can exceed
    the tight capacities of a small uneven group.
    """
    loads = np.bincount(
        labels, weights=problem.vertex_weight[problem.layer_slice(g)], minlength=problem.k
    )
    if np.all(loads <= problem.capacities(g, tight=True) + 1e-9):
        return labels
    cost = np.ones((len(labels), problem.k))
    cost[np.arange(len(labels)), labels] = 0.0
    return _assign(problem, g, cost, solver)


def _grow_order(inpat: sp.csr_array, elems: np.ndarray, w: np.ndarray, targets: np.ndarray):
    """Order of greedy region growing (see :func:`_first_layout`); O(k * nnz + n^2)."""
    n = inpat.shape[0]
    consumers = sp.csr_array(inpat.T.tocsr())  # producer -> members of the group
    total = float(w.sum()) if w.sum() > 0 else float(n)
    wt = w if w.sum() > 0 else np.ones(n)
    bounds = list(np.cumsum(targets)[:-1] * total)
    gain = np.zeros(n)
    touched = np.zeros(inpat.shape[1], dtype=bool)
    free = np.ones(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    cum = 0.0
    for step in range(n):
        v = int(np.argmax(np.where(free, gain, -np.inf)))
        order[step] = v
        free[v] = False
        cum += wt[v]
        ins = inpat.indices[inpat.indptr[v] : inpat.indptr[v + 1]]
        new = ins[~touched[ins]]
        if len(new):
            touched[new] = True
            rows = consumers[new]
            gain += np.bincount(
                rows.indices, weights=np.repeat(elems[new], np.diff(rows.indptr)), minlength=n
            )
        if bounds and cum >= bounds[0]:
            # Region full: the next starts at the free vertex sharing most with this one.
            bounds.pop(0)
            seed = int(np.argmax(np.where(free, gain, -np.inf)))
            gain[:] = 0.0
            gain[seed] = 1.0
            touched[:] = False
    return order


def _onehot(labels: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indicator of placed vertices (label >= 0); unplaced rows are zero."""
    out = np.zeros((len(labels), k))
    placed = labels >= 0
    out[np.flatnonzero(placed), labels[placed]] = 1.0
    return out


def _sends(pattern_rows: sp.csr_array, own: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """Number of other devices holding a consumer, per row (the volume's lambda - 1)."""
    present = np.asarray(pattern_rows @ onehot) > 0
    return present.sum(axis=1) - present[np.arange(len(own)), own]


def _marginal_in(gr: _Graph, labels: np.ndarray, onehot: np.ndarray, sl: slice) -> np.ndarray:
    """Extra sends a neuron causes its producers on each device, the others staying put.

    Producer ``i`` sends to ``d`` already if another consumer of ``i`` is there; moving
    ``j`` to ``d`` costs ``elems[i]`` only when ``d`` holds no consumer of ``i`` (and is not
    ``i``'s own device); staying costs it when ``j`` is the only consumer there.
    """
    k = onehot.shape[1]
    inpat = gr.pattern_t[sl]
    prod = np.unique(inpat.indices)
    cnt = np.asarray(gr.pattern[prod] @ onehot)
    away = onehot[prod] == 0
    el = gr.elems[prod, None]
    z0 = np.zeros((gr.pattern.shape[0], k))
    z1 = np.zeros((gr.pattern.shape[0], k))
    z0[prod] = el * (away & (cnt == 0))
    z1[prod] = el * (away & (cnt == 1))
    c = np.asarray(inpat @ z0)
    stay = np.asarray(inpat @ z1)
    own = labels[sl]
    rows = np.arange(len(own))
    c[rows, own] = stay[rows, own]
    return c


class _Graph:
    """Views of the synapses the passes need, built once."""

    def __init__(self, problem: Problem, cost: str) -> None:
        syn = problem.synapses
        elems = problem.activation_elements.astype(np.float64)
        self.pattern = sp.csr_array((np.ones(syn.nnz), syn.indices, syn.indptr), shape=syn.shape)
        # Weight of the edge u -> v in the cost: the activation elements u sends (counted
        # once per consumer, the linear proxy of the volume) or the synapse value (cut).
        data = elems[np.repeat(np.arange(syn.shape[0]), np.diff(syn.indptr))]
        if cost == "synapses":
            self.out = syn
        else:
            self.out = sp.csr_array((data, syn.indices, syn.indptr), shape=syn.shape)
        self.inw = sp.csr_array(self.out.T.tocsr())
        self.pattern_t = sp.csr_array(self.pattern.T.tocsr())
        self.elems = elems
        self.cost = cost


def _refine_group(problem: Problem, gr: _Graph, labels: np.ndarray, g: int, solver: str) -> bool:
    """Re-assign group ``g`` with every other vertex fixed; keep it if traffic does not grow."""
    k = problem.k
    sl = problem.layer_slice(g)
    size = sl.stop - sl.start
    onehot = _onehot(labels, k)
    if gr.cost == "synapses":
        gain_in = np.asarray(gr.inw[sl] @ onehot)
        c = gain_in.sum(axis=1, keepdims=True) - gain_in
    else:
        c = _marginal_in(gr, labels, onehot, sl)
    if gr.cost == "synapses":
        gain_out = np.asarray(gr.out[sl] @ onehot)
        c += gain_out.sum(axis=1, keepdims=True) - gain_out
    else:
        # A neuron's own sends are exact: one per other device holding a consumer.
        present = np.asarray(gr.pattern[sl] @ onehot) > 0
        c += gr.elems[sl, None] * (present.sum(axis=1, keepdims=True) - present)
    old = labels[sl].copy()
    c[np.arange(size), old] -= 0.5 / size
    new = _assign(problem, g, c, solver)
    if np.array_equal(new, old):
        return False
    if gr.cost == "activations":
        # The in-cost counts a producer once per consumer; check the true traffic.
        rows = np.union1d(gr.inw[sl].indices, np.arange(sl.start, sl.stop))
        before = gr.elems[rows] @ _sends(gr.pattern[rows], labels[rows], onehot)
        labels[sl] = new
        after = gr.elems[rows] @ _sends(gr.pattern[rows], labels[rows], _onehot(labels, k))
        if after > before:
            labels[sl] = old
            return False
        return after < before
    labels[sl] = new
    return True


class MunkresPartitioner(Partitioner):
    """RePurpose-style layer-by-layer optimal assignment (see the module docstring).

    Parameters
    ----------
    sweeps : int
        Refinement passes after the forward pass, alternately backward and forward: each
        balanced group is re-assigned with its producers *and* consumers fixed. Stops early
        when a pass changes nothing. 0 gives the plain forward pass of RePurpose.
    cost : {"activations", "synapses"}
        ``"activations"``: in the forward pass a neuron on device ``d`` pays the activation
        elements of each distinct input held on another device (RePurpose's cross-worker
        traffic); in refinement passes the extra sends it causes its producers given where
        their other consumers are, plus its own sends exactly; a refinement is kept only if
        the traffic (volume) of the layer and its producers does not grow. ``"synapses"``:
        the synapse values to neighbours on other devices (the cut), in both passes.
    start : {"grow", "rcm", "vertical"}
        Layout of a balanced group with no placed neighbour (the first layer: the model's
        inputs are free and are placed afterwards, next to their consumers, by
        :func:`place_unbalanced`). ``"vertical"``: contiguous slices by index, as the
        thesis; ``"grow"`` (greedy region growing) and ``"rcm"`` (reverse Cuthill-McKee):
        contiguous slices of an order that keeps neurons sharing inputs together. See
        :func:`_first_layout`. Every later layer follows from the assignment.
    solver : {"lp", "hungarian"}
        See :func:`transport_assign`.

    Every balanced group ends within ``Problem.capacities(g, tight=True)`` (the loose
    contract bound only where HiGHS found no assignment within the tight one; a note says
    so).

    Notes
    -----
    Ties (equal traffic) go to the neuron's own device: in the forward pass the device of
    the same-index neuron of the previous balanced group when the widths agree (else its
    vertical slice), in refinement passes its current device. The bonus is below one cost
    unit in total, so it never outweighs a real saving; without it the optimum is
    arbitrary among ties and can end worse than where it started.

    References
    ----------
    A. Abdi, S. Rashidi, F. Fekri and T. Krishna, "Restructuring, Pruning, and Adjustment
    of Deep Models for Parallel Distributed Inference", arXiv:2008.08289, 2020.
    """

    name = "munkres"
    granularities = ("neuron",)
    constraints = {
        "sweeps": Integer(0),
        "cost": Choice(*COSTS),
        "start": Choice(*STARTS),
        "solver": Choice(*SOLVERS),
    }

    def __init__(
        self, sweeps: int = 4, cost: str = "activations", start: str = "grow", solver: str = "lp"
    ) -> None:
        self.sweeps = sweeps
        self.cost = cost
        self.start = start
        self.solver = solver

    def partition(self, problem: Problem) -> np.ndarray:
        p = self.checked_params()
        sweeps, cost, start, solver = p["sweeps"], p["cost"], p["start"], p["solver"]
        if problem.granularity != "neuron":
            raise UsageError("munkres partitions neuron-level problems only")
        k = problem.k
        if k == 1:
            return np.zeros(problem.num_vertices, dtype=np.int64)
        gr = _Graph(problem, cost)
        labels = np.full(problem.num_vertices, -1, dtype=np.int64)
        balanced = np.flatnonzero(problem.balanced)
        prev = None
        for g in range(problem.num_layers):
            sl = problem.layer_slice(g)
            gain = np.asarray(gr.inw[sl] @ _onehot(labels, k))
            if not problem.balanced[g]:
                # Provisional, so later groups see it; place_unbalanced settles it at the end.
                has = gain.sum(axis=1) > 0
                labels[sl] = np.where(has, np.argmax(gain, axis=1), -1)
                continue
            if not np.any(gain):
                labels[sl] = _first_layout(problem, gr, g, start)
            else:
                w = problem.vertex_weight[sl]
                if prev is not None and prev.stop - prev.start == sl.stop - sl.start:
                    tie = labels[prev]
                else:
                    tie = contiguous_slices(w, problem.targets)
                c = gain.sum(axis=1, keepdims=True) - gain
                c[np.arange(len(tie)), tie] -= 0.5 / len(tie)
                labels[sl] = _assign(problem, g, c, solver)
            prev = sl
        labels[labels < 0] = 0
        labels = place_unbalanced(problem, labels)
        for s in range(sweeps):
            order = balanced[::-1] if s % 2 == 0 else balanced
            changed = False
            for g in order:
                changed |= _refine_group(problem, gr, labels, int(g), solver)
            if changed:
                labels = place_unbalanced(problem, labels)
            else:
                break
        return labels


@with_params_of(MunkresPartitioner)
def munkres_partition(problem: Problem, **params) -> np.ndarray:
    """:class:`MunkresPartitioner` ``(**params)`` on ``problem``: one device per vertex."""
    return MunkresPartitioner(**params).partition(problem)
