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
``I \\ J`` (paying its class's ``overhead``; a device left empty pays nothing). It is
optimal over all splits whose devices can be ordered so that every edge
goes forward (an acyclic quotient graph; each device's set is then contiguous).

Both settings run through the same DP; only the device states differ:

* classes of identical devices, any order (``ordered=False``; the paper's accelerators plus
  CPU cores, or an ONNX model's device file grouped by speed and memory): a state counts
  the devices used per class, so the DP also chooses which device takes which stage;
* a fixed sequence of possibly heterogeneous devices (``ordered=True``): a state is the
  number of devices of the sequence used. Classes whose states times pairs exceed the
  budget fall back to it, in device-number order, with a note.

At scale (the paper's profiled GNMT graph has about 18,000 ideals): the sub-ideal relation
is produced in chunks of pairs (:mod:`._pipeline_ideals`), the load of every stage
``I \\ J`` of a chunk is computed at once from per-ideal sums and the hyperedges crossing
``I`` (:mod:`._pipeline_costs`), and each device state is one vectorised pass over the
chunk.
The DP over one topological order's prefixes runs first; its value bounds the optimum, so
stages whose compute time alone exceeds it are dropped before any communication is
computed (exact: the optimum never uses them).

Colocation groups are contracted first and groups on a common cycle fused (a contiguous
split cannot separate them). Training graphs follow the paper: ideals are taken in the
forward graph, backward nodes go with their colour class; a backward-only class is ordered
by its mirrored backward edges. When the ideals exceed ``max_ideals``, the DP falls back to
the prefixes of one topological order (PipeDream's linearisation) and says so (a note).

The cost model (devices, loads, max-load) is :mod:`dnnpart.problem._pipeline`; the ideals
:mod:`._pipeline_ideals`; the stage loads :mod:`._pipeline_costs`; the non-contiguous local
search :mod:`._pipeline_refine`.
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
from dnnpart.partitioners._pipeline_costs import StageCosts
from dnnpart.partitioners._pipeline_ideals import Ideals, enumerate_ideals
from dnnpart.problem._pipeline import (
    DeviceClass,
    PipelineProblem,
    as_pipeline_problem,
    device_loads,
)

__all__ = [
    "PipelineResult",
    "pipeline_dp",
    "MAX_IDEALS",
    "MAX_PAIRS",
    "MAX_DEVICE_STATES",
    "MAX_STATE_PAIRS",
    "CHUNK_PAIRS",
]

MAX_IDEALS = 200_000  # past this, one topological order's prefixes only
MAX_PAIRS = 100_000_000  # (ideal, sub-ideal) pairs searched at most
MAX_DEVICE_STATES = 4096  # device-count states of classes in any order
MAX_STATE_PAIRS = 500_000_000  # device states times pairs, in any order of the devices
CHUNK_PAIRS = 1 << 20  # pairs per vectorised chunk (memory ~ 100 bytes per pair)


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
# device states


def _device_states(prob: PipelineProblem):
    """Per state, its ``(predecessor state, device class)`` transitions; predecessors first.

    A fixed sequence: state ``s`` has used the first ``s`` devices. Classes in any order:
    a state counts the devices used per class (the last state uses them all)."""
    if prob.ordered:
        cls = prob.device_class
        return [[]] + [[(s - 1, int(cls[s - 1]))] for s in range(1, prob.num_devices + 1)]
    counts = [dc.count for dc in prob.devices]
    states = sorted(product(*[range(c + 1) for c in counts]), key=lambda t: (sum(t), t))
    index = {s: i for i, s in enumerate(states)}
    return [
        [(index[s[:c] + (s[c] - 1,) + s[c + 1 :]], c) for c in range(len(counts)) if s[c] > 0]
        for s in states
    ]


def _searchable(prob: PipelineProblem, pairs: int) -> PipelineProblem:
    """``prob``, or the same devices as a fixed sequence (in device-number order, with a
    note) when the device-count states times the ideal pairs exceed the budget."""
    if prob.ordered:
        return prob
    states = int(np.prod([dc.count + 1 for dc in prob.devices], dtype=np.float64))
    if states <= MAX_DEVICE_STATES and states * pairs <= MAX_STATE_PAIRS:
        return prob
    note(
        f"{states} device states over {pairs} ideal pairs are too many to search every "
        "order of the devices; the pipeline takes them in their given order"
    )
    cls = prob.device_class
    devs = []
    for d in range(prob.num_devices):
        dc = prob.devices[cls[d]]
        devs.append(
            DeviceClass(
                dc.name,
                1,
                dc.time,
                dc.memory,
                dc.pays_communication,
                dc.supported,
                overhead=dc.overhead,
            )  # fmt: skip
        )
    return PipelineProblem(
        prob.src,
        prob.dst,
        prob.out_cost,
        tuple(devs),
        size=prob.size,
        group=prob.group,
        is_backward=prob.is_backward,
        ordered=True,
    )


# ----------------------------------------------------------------------------------------
# the dynamic program


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
        Budget of (ideal, sub-ideal) pairs, estimated before the search (exact up to a
        few thousand ideals); exceeding it also linearises, and a linear problem past it
        raises :class:`ResourceLimitError`. ``result.num_pairs`` is the exact count.
    linearize : bool
        Search prefixes of a topological order from the start.

    Returns
    -------
    PipelineResult

    Notes
    -----
    The pairs are visited in chunks; per chunk every device state is one vectorised pass
    (no Python loop per ideal or pair), so time grows with pairs times device states and
    memory with the chunk (:data:`CHUNK_PAIRS`). Device classes in any order
    (``ordered=False``) past :data:`MAX_DEVICE_STATES` states, or :data:`MAX_STATE_PAIRS`
    states times pairs, are searched in their given order instead (a note says so).
    """
    prob = as_pipeline_problem(problem, num_accelerators, num_cpus)
    units = _build_units(prob)
    message, ideals = "", None
    if not linearize:
        found = enumerate_ideals(units, max_ideals)
        if found is None:
            message = f"more than {max_ideals} ideals"
        else:
            chain = len(found[0]) == units.count + 1  # one order: its prefixes, simpler
            ideals = Ideals(units.count, *(None, None) if chain else found)
            pairs = ideals.estimate_pairs()
            if pairs > max_pairs:
                message = (
                    f"{ideals.count} ideals with about {pairs} nested pairs (limit {max_pairs})"
                )
                ideals = None
    if ideals is None:
        ideals = Ideals(units.count, None)
        pairs = ideals.estimate_pairs()
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
    prob = _searchable(prob, pairs)
    value, assignment, stages, pairs = _run_dp(prob, units, ideals)
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
        ideals.linear and (linearize or bool(message)),
        message,
    )


def _run_dp(prob: PipelineProblem, units: _Units, ideals: Ideals):
    """The best split's value, assignment, stage devices and the number of pairs.

    On a lattice larger than one order's prefixes, the DP over those prefixes runs first:
    its value bounds the optimum, so stages slower than it are never considered."""
    preds = _device_states(prob)
    bound = np.inf
    if not ideals.linear and ideals.count > units.count + 1:
        prefixes = Ideals(units.count, None)
        dp, _ = _fill(prob, preds, prefixes, StageCosts(prob, units.unit, prefixes), np.inf)
        bound = dp[-1, -1] * (1 + 1e-9)  # sums over other ideals may round differently
    costs = StageCosts(prob, units.unit, ideals)
    dp, pairs = _fill(prob, preds, ideals, costs, bound)
    value = float(dp[-1, -1])
    if not np.isfinite(value):
        raise UsageError(
            "no feasible contiguous split: some colocation group or unsupported node fits "
            "no device (check memory, supported nodes and the number of devices)"
        )
    assignment, stages = _walk_back(prob, units, ideals, preds, dp, costs, bound)
    return value, assignment, stages, pairs


def _fill(prob, preds, ideals: Ideals, costs: StageCosts, bound: float):
    """``dp[s][I]`` over device states ``s`` and ideals ``I``, and the pairs ``J ⊆ I``.

    ``dp[s][I] = min over transitions (p, c) of s: min(dp[p][I], min over J ⊂ I of
    max(dp[p][J], load of a class-c device holding I \\ J))``: the device is left empty
    or takes ``I \\ J``. ``dp[s]`` needs only states before ``s``, so a chunk of ideals
    is done state by state, each state one pass over the chunk's pairs. Pairs slower than
    ``bound`` are skipped: the values above ``bound`` may then be too high, never those
    at or below it."""
    S, m = len(preds), ideals.count
    dp = np.full((S, m), np.inf)
    dp[:, 0] = 0.0
    pairs = m  # J == I
    for rows, counts, J in ideals.strict_pairs(CHUNK_PAIRS):
        pairs += J.size
        rows, counts, J, cost = costs.of(rows, counts, J, bound)
        some = counts > 0
        starts = np.concatenate([[0], np.cumsum(counts[:-1])])[some]
        top = S if rows.max() == m - 1 else S - 1  # the last state only needs all nodes
        below: dict[int, np.ndarray] = {}  # dp[p][J], gathered once per chunk
        buf = np.empty(J.size)
        for s in range(1, top):
            best = np.full(rows.size, np.inf)
            for p, c in preds[s]:
                if J.size:
                    if p not in below:
                        below[p] = dp[p][J]
                    np.maximum(below[p], cost[c], out=buf)
                    best[some] = np.minimum(best[some], np.minimum.reduceat(buf, starts))
                np.minimum(best, dp[p][rows], out=best)
            dp[s][rows] = best
    return dp, pairs


def _walk_back(prob, units: _Units, ideals: Ideals, preds, dp, costs: StageCosts, bound):
    """Walk back from (all devices, all nodes) to the empty ideal, re-deriving each step's
    choice from ``dp``: assignment and stage devices."""
    stages_rev = []
    s, i = len(preds) - 1, ideals.count - 1
    while i != 0:
        J = ideals.subideals_of(i)
        _, _, J, cost = costs.of(np.array([i]), np.array([J.size]), J, bound)
        best, step = np.inf, None
        for p, c in preds[s] if J.size else ():
            cand = np.maximum(dp[p][J], cost[c])
            k = int(np.argmin(cand))
            if cand[k] < best:
                best, step = cand[k], (p, c, int(J[k]))
        for p, c in preds[s]:
            if dp[p][i] < best:  # leaving this device empty is strictly better
                best, step = dp[p][i], (p, c, i)
        p, c, j = step
        if j != i:
            stages_rev.append((s, c, i, j))
        s, i = p, j
    assignment = np.empty(prob.num_nodes, np.int64)
    members = prob.class_devices
    used = [0] * len(prob.devices)
    stages = []
    for s, c, i, j in reversed(stages_rev):
        if prob.ordered:
            dev = s - 1
        else:
            dev = int(members[c][used[c]])
            used[c] += 1
        assignment[np.isin(units.unit, ideals.units_of(i, j))] = dev
        stages.append(dev)
    return assignment, tuple(stages)
