"""Pipeline placement by dynamic programming over ideals (Tarnawski et al., NeurIPS 2020).

Tarnawski, Phanishayee, Devanur, Mahajan, Nina Paravecino, "Efficient Algorithms for Device
Placement of DNN Graph Operators", NeurIPS 2020, Section 4 ("throughput maximisation").

Objective (*max-load*, time per sample of a pipeline): a device's load is the compute time
of its nodes plus, when the device pays for communication, ``out_cost[u]`` once for every
node ``u`` on it whose output goes to another device and once for every node ``u``
elsewhere whose output it receives. The answer is the largest load; memory per device,
colocation groups (the paper's colour classes) and per-node support must hold.

An *ideal* is a downward-closed node set (it holds every predecessor of its members). For
ideals ``J ⊆ I`` the difference ``I \\ J`` is contiguous (no path leaves it and comes back),
and a chain of ideals ``∅ = I_0 ⊆ … ⊆ I_k = V`` is a pipeline whose stages only send data
forward. The DP fills ``dp[s][I]`` = best max-load for placing ``I`` on the devices of
*device state* ``s`` by extending one state short of ``s`` with one more device holding
``I \\ J``. It is optimal over all splits whose devices can be ordered so that every edge
goes forward (an acyclic quotient graph; each device's set is then contiguous).

Both settings run through the same DP; only the device states differ:

* identical devices in classes, any order (``ordered=False``; the paper's accelerators plus
  CPU cores): a state counts the devices used per class;
* a fixed sequence of possibly heterogeneous devices (``ordered=True``; layer graphs of ONNX
  models on a device file): a state is the number of devices of the sequence used.

Colocation groups are contracted first and groups on a common cycle fused (a contiguous
split cannot separate them). Training graphs follow the paper: ideals are taken in the
forward graph, backward nodes go with their colour class; a backward-only class is ordered
by its mirrored backward edges. When the ideals exceed ``max_ideals``, the DP falls back to
the prefixes of one topological order (PipeDream's linearisation) and says so (a note).

The cost model (devices, loads, max-load) is :mod:`dnnpart.problem._pipeline`; the ideals
:mod:`._pipeline_ideals`; the non-contiguous local search :mod:`._pipeline_refine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from dnnpart._notes import note
from dnnpart.errors import ResourceLimitError, UsageError
from dnnpart.graph._toposort import stable_topological_order
from dnnpart.partitioners._pipeline_ideals import Ideals, enumerate_ideals
from dnnpart.problem._pipeline import (
    MEM_RTOL,
    PipelineProblem,
    as_pipeline_problem,
    device_loads,
)

__all__ = ["PipelineResult", "pipeline_dp", "MAX_IDEALS", "MAX_PAIRS", "MAX_DEVICE_STATES"]

MAX_IDEALS = 20_000
MAX_PAIRS = 10_000_000
MAX_DEVICE_STATES = 4096


@dataclass(frozen=True, eq=False)
class PipelineResult:
    """Answer of :func:`pipeline_dp`.

    ``assignment[u]`` is node ``u``'s device; ``stages`` lists the devices holding nodes in
    pipeline order; ``max_load`` and ``loads`` are re-scored by :func:`device_loads`
    (``dp_value`` is the DP's own figure). ``linearized`` says the ideal cap was hit and only
    prefixes of one topological order were searched (``message`` explains).
    """

    assignment: np.ndarray
    max_load: float
    loads: np.ndarray
    stages: tuple[int, ...]
    dp_value: float
    num_units: int
    num_ideals: int
    num_pairs: int
    linearized: bool
    message: str = ""


# ----------------------------------------------------------------------------------------
# units: colocation groups contracted, cycles fused, numbered in topological order


@dataclass(frozen=True, eq=False)
class _Units:
    unit: np.ndarray  # (n,) unit of each node, units numbered in a topological order
    count: int
    preds: list  # preds[v]: bitmask (int) of units with an order edge into v
    succs: list  # succs[v]: units with an order edge from v


def _build_units(prob: PipelineProblem) -> _Units:
    n, g = prob.num_nodes, prob.group
    key = np.where(g >= 0, g, g.max(initial=-1) + 1 + np.arange(n))
    cls = np.unique(key, return_inverse=True)[1].ravel()
    nc = int(cls.max()) + 1 if n else 0
    s, d, bwd = prob.src, prob.dst, prob.is_backward
    bwd_only = np.ones(nc, bool)
    bwd_only[cls[~bwd]] = False
    fwd = ~bwd[d]
    # the paper's order: forward edges; backward-only classes get mirrored backward edges
    mirror = bwd[d] & bwd[s] & (bwd_only[cls[s]] | bwd_only[cls[d]])
    os_ = np.concatenate([cls[s[fwd]], cls[d[mirror]]])
    od = np.concatenate([cls[d[fwd]], cls[s[mirror]]])
    adj = sp.csr_array((np.ones(os_.size), (os_, od)), shape=(nc, nc))
    _, scc = connected_components(adj, directed=True, connection="strong")
    nu = int(scc.max()) + 1 if nc else 0
    keep = scc[os_] != scc[od]
    es = np.unique(np.stack([scc[os_][keep], scc[od][keep]]), axis=1)
    # smallest label first: deterministic, no recursion (the condensation is acyclic)
    order, _ = stable_topological_order(nu, es.T.tolist())
    rank = np.empty(nu, np.int64)
    rank[order] = np.arange(nu)
    preds = [0] * nu
    succs = [[] for _ in range(nu)]
    for a, b in es.T.tolist():
        preds[rank[b]] |= 1 << int(rank[a])
        succs[rank[a]].append(int(rank[b]))
    return _Units(rank[scc[cls]], nu, preds, succs)


# ----------------------------------------------------------------------------------------
# the dynamic program


def _device_states(prob: PipelineProblem):
    """States (in an order where predecessors come first) and their transitions."""
    if prob.ordered:
        cls = prob.device_class
        preds = [[]] + [[(s - 1, int(cls[s - 1]))] for s in range(1, prob.num_devices + 1)]
        return preds, None
    counts = [dc.count for dc in prob.devices]
    nstates = int(np.prod([c + 1 for c in counts]))
    if nstates > MAX_DEVICE_STATES:
        raise ResourceLimitError(
            f"{nstates} device-count states exceed {MAX_DEVICE_STATES}; group identical "
            "devices into classes or use ordered=True"
        )
    states = sorted(product(*[range(c + 1) for c in counts]), key=lambda t: (sum(t), t))
    index = {s: i for i, s in enumerate(states)}
    preds = []
    for s in states:
        preds.append(
            [(index[s[:c] + (s[c] - 1,) + s[c + 1 :]], c) for c in range(len(counts)) if s[c] > 0]
        )
    return preds, states


def pipeline_dp(
    problem,
    num_accelerators=None,
    num_cpus=None,
    *,
    max_ideals=MAX_IDEALS,
    max_pairs=MAX_PAIRS,
    linearize=False,
) -> PipelineResult:
    """Optimal contiguous pipeline split (Tarnawski et al. 2020, Section 4).

    Parameters
    ----------
    problem : ProfiledGraph or PipelineProblem
        A ProfiledGraph is placed on ``num_accelerators`` accelerators and ``num_cpus`` CPU
        cores (defaults from the file), as in :func:`tarnawski_problem`.
    max_ideals : int
        Past this many ideals, search only prefixes of one topological order (a note says
        so, :func:`dnnpart._notes.note`, and ``result.linearized`` is set).
    max_pairs : int
        Budget of (ideal, sub-ideal) pairs; exceeding it also linearises, and a linear
        problem past it raises :class:`ResourceLimitError`.
    linearize : bool
        Search prefixes of a topological order from the start.

    Returns
    -------
    PipelineResult
    """
    prob = as_pipeline_problem(problem, num_accelerators, num_cpus)
    units = _build_units(prob)
    message, ideals, pairs = "", None, None
    if not linearize:
        found = enumerate_ideals(units, max_ideals)
        if found is None:
            message = f"more than {max_ideals} ideals"
        else:
            ideals = Ideals(units.count, *found)
            pairs = ideals.count_pairs()
            if pairs > max_pairs:
                message = f"{ideals.count} ideals with {pairs} nested pairs (limit {max_pairs})"
                pairs = None
    if pairs is None:
        ideals = Ideals(units.count, None)
        pairs = ideals.count_pairs()
        if pairs > max_pairs:
            raise ResourceLimitError(
                f"{units.count} units need {pairs} ideal pairs even when linearised "
                f"(limit {max_pairs}); coarsen the graph"
            )
        if message:
            message += (
                "; searched only prefixes of one topological order (PipeDream's "
                "linearisation): the result is optimal over those splits only"
            )
            note(message)
    value, assignment, stages = _run_dp(prob, units, ideals)
    loads = device_loads(prob, assignment).total
    return PipelineResult(
        assignment,
        float(loads.max()),
        loads,
        stages,
        value,
        units.count,
        ideals.count,
        pairs,
        ideals.linear,
        message,
    )


def _run_dp(prob: PipelineProblem, units: _Units, ideals: Ideals):
    """``dp[s][I]`` over device states ``s`` and ideals ``I``; the best split's value,
    assignment and stage devices."""
    time_i, unsup_i, size_i = _ideal_sums(prob, units, ideals)
    comm = _StageComm(prob, units, ideals)
    preds, _ = _device_states(prob)
    S, m = len(preds), ideals.count
    mem_cap = np.array([dc.memory for dc in prob.devices]) * (1 + MEM_RTOL)
    pays = [dc.pays_communication for dc in prob.devices]
    dp = np.full((S, m), np.inf)
    dp[:, 0] = 0.0
    back_t = np.zeros((S, m), np.int32)
    back_j = np.zeros((S, m), np.int64)
    for i in range(1, m):
        J = ideals.subideals(i)
        c_ij = comm.of(i, J)
        cost = []  # per device class: the load of a device holding I \ J, for every J
        for c in range(len(prob.devices)):
            t = time_i[i, c] - time_i[J, c]
            if pays[c]:
                t = t + c_ij
            bad = (unsup_i[i, c] - unsup_i[J, c] > 0.5) | (size_i[i] - size_i[J] > mem_cap[c])
            t = np.where(bad, np.inf, np.maximum(t, 0.0))
            t[-1] = 0.0  # J == I: the device stays empty
            cost.append(t)
        for s in range(1, S if i == m - 1 else S - 1):  # the last state only needs all
            best, bt, bj = np.inf, 0, i
            for t_idx, (p, c) in enumerate(preds[s]):
                cand = np.maximum(dp[p, J], cost[c])
                k = int(np.argmin(cand))
                if cand[k] < best:
                    best, bt, bj = float(cand[k]), t_idx, int(J[k])
            dp[s, i], back_t[s, i], back_j[s, i] = best, bt, bj
    value = float(dp[S - 1, m - 1])
    if not np.isfinite(value):
        raise UsageError(
            "no feasible contiguous split: some colocation group or unsupported node fits "
            "no device (check memory, supported nodes and the number of devices)"
        )
    assignment, stages = _walk_back(prob, units, ideals, preds, back_t, back_j)
    return value, assignment, stages


def _ideal_sums(prob: PipelineProblem, units: _Units, ideals: Ideals):
    """Per ideal: compute time and unsupported nodes per device class, and memory."""
    ncls = len(prob.devices)
    vals = np.zeros((units.count, 2 * ncls + 1))
    for c, dc in enumerate(prob.devices):
        np.add.at(vals[:, c], units.unit, np.where(dc.supported, dc.time, 0.0))
        np.add.at(vals[:, ncls + c], units.unit, (~dc.supported).astype(np.float64))
    np.add.at(vals[:, 2 * ncls], units.unit, prob.size)
    agg = ideals.sums(vals)
    return agg[:, :ncls], agg[:, ncls : 2 * ncls], agg[:, 2 * ncls]


class _StageComm:
    """Communication a device pays for holding ``I \\ J``, for one ideal ``I`` and all ``J``.

    The hyperedge of node ``u`` is its unit plus its consumers' units, of cost
    ``out_cost[u]``; a device set pays the cost iff the hyperedge is cut by it (meets the
    set and leaves it). Per ideal, the hyperedges crossing it are precomputed.
    """

    def __init__(self, prob: PipelineProblem, units: _Units, ideals: Ideals) -> None:
        m = ideals.count
        hyper: dict[tuple, float] = {}
        uu = units.unit
        members: dict[int, set] = {}
        for a, b in zip(prob.src.tolist(), prob.dst.tolist(), strict=True):
            members.setdefault(a, {int(uu[a])}).add(int(uu[b]))
        for a, mem in members.items():
            if len(mem) > 1 and prob.out_cost[a] > 0:
                key = tuple(sorted(mem))
                hyper[key] = hyper.get(key, 0.0) + float(prob.out_cost[a])
        edges = list(hyper.items())
        self.emem = [np.array(mem, np.int64) for mem, _ in edges]
        rows_all = np.arange(m)
        cross_rows, cross_e = [], []
        for e, mem in enumerate(self.emem):
            cols = ideals.member(rows_all, mem)
            r = np.flatnonzero(cols.any(axis=1) & ~cols.all(axis=1))
            cross_rows.append(r)
            cross_e.append(np.full(r.size, e))
        self.ecost = np.array([c for _, c in edges]) if edges else np.zeros(0)
        if edges:
            cr, ce = np.concatenate(cross_rows), np.concatenate(cross_e)
            order = np.argsort(cr, kind="stable")
            cr, ce = cr[order], ce[order]
        else:
            cr = ce = np.zeros(0, np.int64)
        self.ce = ce
        self.cptr = np.searchsorted(cr, np.arange(m + 1))
        ecost = self.ecost
        self.out_i = np.bincount(cr, weights=ecost[ce], minlength=m) if cr.size else np.zeros(m)
        self.ideals = ideals

    def of(self, i: int, J: np.ndarray) -> np.ndarray:
        """Out(J) + sum over hyperedges e crossing I of c_e * ([e ∩ I ⊄ J] - [e ∩ J ≠ ∅]);
        exact for any J ⊆ I."""
        comm = self.out_i[J].copy()
        crossing = self.ce[self.cptr[i] : self.cptr[i + 1]]
        if crossing.size:
            # membership of the crossing hyperedges' units in I and in every J, at once
            U = np.unique(np.concatenate([self.emem[e] for e in crossing]))
            in_i = self.ideals.member(np.array([i]), U)[0]
            in_j = self.ideals.member(J, U)
            for e in crossing.tolist():
                pos = np.searchsorted(U, self.emem[e])
                leaves = ~in_j[:, pos[in_i[pos]]].all(axis=1)
                meets = in_j[:, pos].any(axis=1)
                comm += self.ecost[e] * (leaves.astype(np.float64) - meets)
            comm = np.maximum(comm, 0.0)
        return comm


def _walk_back(prob, units: _Units, ideals: Ideals, preds, back_t, back_j):
    """Walk back from (all devices, all nodes) to the empty ideal: assignment, stages."""
    stages_rev = []
    s, i = len(preds) - 1, ideals.count - 1
    while i != 0:
        p, c = preds[s][back_t[s, i]]
        j = int(back_j[s, i])
        if j != i:
            stages_rev.append((s, c, i, j))
        s, i = p, j
    assignment = np.empty(prob.num_nodes, np.int64)
    first = np.concatenate([[0], np.cumsum([dc.count for dc in prob.devices])])
    used = [0] * len(prob.devices)
    stages = []
    for s, c, i, j in reversed(stages_rev):
        if prob.ordered:
            dev = s - 1
        else:
            dev = int(first[c]) + used[c]
            used[c] += 1
        mask = np.isin(units.unit, ideals.units_of(i, j))
        assignment[mask] = dev
        stages.append(dev)
    return assignment, tuple(stages)
