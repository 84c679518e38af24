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
the prefixes of one topological order (PipeDream's linearisation) and says so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from dnnpart.errors import ResourceLimitError, UsageError
from dnnpart.graph._toposort import stable_topological_order
from dnnpart.importers._tarnawski import ProfiledGraph

__all__ = [
    "DeviceClass",
    "PipelineProblem",
    "PipelineResult",
    "RefineResult",
    "LoadBreakdown",
    "tarnawski_problem",
    "heterogeneous_problem",
    "device_loads",
    "max_load",
    "check_feasibility",
    "pipeline_dp",
    "refine",
]

MAX_IDEALS = 20_000
MAX_PAIRS = 10_000_000
MAX_DEVICE_STATES = 4096
_MEM_RTOL = 1e-9  # sizes are float sums; do not reject a stage over rounding


@dataclass(frozen=True, eq=False)
class DeviceClass:
    """``count`` identical devices.

    Parameters
    ----------
    name : str
    count : int
    time : ndarray, shape (n,)
        Compute time of each node on one device of this class.
    memory : float
        Capacity of one device, in the unit of :attr:`PipelineProblem.size`.
    pays_communication : bool
        The paper's CPUs do not pay for communication; accelerators do.
    supported : ndarray of bool, shape (n,), optional
        Nodes this class can run (default: all).
    """

    name: str
    count: int
    time: np.ndarray
    memory: float = np.inf
    pays_communication: bool = True
    supported: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class PipelineProblem:
    """Nodes, edges, transfer costs and devices of a pipeline placement.

    Devices are numbered by expanding ``devices`` in order: class 0's devices first.
    Assignments map each node to such a device index.

    Parameters
    ----------
    src, dst : ndarray of int, shape (m,)
        Edges ``src[i] -> dst[i]`` (node indices; the graph must be acyclic).
    out_cost : ndarray, shape (n,)
        Cost of sending node ``u``'s output to another device, paid once per device pair.
    devices : tuple of DeviceClass
    size : ndarray, shape (n,), optional
        Memory each node needs (default 0).
    group : ndarray of int, shape (n,), optional
        Colocation group per node (-1: none); a group must sit on one device.
    is_backward : ndarray of bool, shape (n,), optional
        Backward nodes of a training graph (see the module notes).
    ordered : bool
        Devices form a fixed sequence (heterogeneous pipeline) rather than free classes.
    """

    src: np.ndarray
    dst: np.ndarray
    out_cost: np.ndarray
    devices: tuple[DeviceClass, ...]
    size: np.ndarray | None = None
    group: np.ndarray | None = None
    is_backward: np.ndarray | None = None
    ordered: bool = False
    num_nodes: int = field(init=False)

    def __post_init__(self):
        n = int(np.shape(self.out_cost)[0]) if np.ndim(self.out_cost) == 1 else -1
        if n < 0:
            raise UsageError("out_cost must be a 1-D array")
        object.__setattr__(self, "num_nodes", n)
        src = np.asarray(self.src, dtype=np.int64).ravel()
        dst = np.asarray(self.dst, dtype=np.int64).ravel()
        if src.shape != dst.shape or (
            src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n)
        ):
            raise UsageError("src/dst must be equal-length arrays of node indices < n")
        if np.any(src == dst):
            raise UsageError("self-loop edges are not allowed")
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)
        object.__setattr__(self, "out_cost", _nonneg(self.out_cost, n, "out_cost"))
        object.__setattr__(self, "size", _nonneg(self.size, n, "size", default=0.0))
        grp = np.full(n, -1, np.int64) if self.group is None else np.asarray(self.group)
        if grp.shape != (n,) or not np.issubdtype(grp.dtype, np.integer):
            raise UsageError("group must be an integer array of length n")
        object.__setattr__(self, "group", grp.astype(np.int64))
        bwd = np.zeros(n, bool) if self.is_backward is None else np.asarray(self.is_backward)
        if bwd.shape != (n,):
            raise UsageError("is_backward must have length n")
        object.__setattr__(self, "is_backward", bwd.astype(bool))
        if not self.devices:
            raise UsageError("at least one device class is needed")
        fixed = []
        for dc in self.devices:
            if not isinstance(dc.count, (int, np.integer)) or dc.count < 0:
                raise UsageError(f"device class {dc.name!r}: count must be an integer >= 0")
            sup = np.ones(n, bool) if dc.supported is None else np.asarray(dc.supported, bool)
            if sup.shape != (n,):
                raise UsageError(f"device class {dc.name!r}: supported must have length n")
            if not dc.memory >= 0:
                raise UsageError(f"device class {dc.name!r}: memory must be >= 0")
            t = _nonneg(dc.time, n, f"device class {dc.name!r} time", allow_inf=True)
            # an infinite time is another way of saying "cannot run here"
            sup = sup & np.isfinite(t)
            fixed.append(
                DeviceClass(
                    dc.name,
                    int(dc.count),
                    t,
                    float(dc.memory),
                    bool(dc.pays_communication),
                    sup,
                )
            )
        object.__setattr__(self, "devices", tuple(fixed))
        if self.num_devices == 0:
            raise UsageError("the device classes hold no device")

    @property
    def num_devices(self) -> int:
        return sum(dc.count for dc in self.devices)

    @property
    def device_class(self) -> np.ndarray:
        """Class index of every device, shape (K,)."""
        return np.repeat(np.arange(len(self.devices)), [dc.count for dc in self.devices])


def _nonneg(a, n, what, default=None, allow_inf=False):
    if a is None:
        return np.full(n, default, dtype=np.float64)
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape != (n,):
        raise UsageError(f"{what} must have shape ({n},), got {arr.shape}")
    bad = np.isnan(arr) | (arr < 0) | (~allow_inf & np.isinf(arr))
    if bad.any():
        raise UsageError(f"{what}[{int(np.flatnonzero(bad)[0])}] must be finite and >= 0")
    return arr


@dataclass(frozen=True, eq=False)
class LoadBreakdown:
    """Per-device load: ``total = compute + comm_out + comm_in`` (each shape (K,))."""

    compute: np.ndarray
    comm_out: np.ndarray
    comm_in: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.compute + self.comm_out + self.comm_in


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


@dataclass(frozen=True, eq=False)
class RefineResult:
    """Answer of :func:`refine`: never worse than ``initial_max_load``."""

    assignment: np.ndarray
    max_load: float
    loads: np.ndarray
    initial_max_load: float
    moves: int
    swaps: int


# ----------------------------------------------------------------------------------------
# building problems


def tarnawski_problem(graph: ProfiledGraph, num_accelerators=None, num_cpus=None):
    """The paper's setting: identical accelerators, then CPU cores (no communication cost).

    Devices ``0..num_accelerators-1`` are accelerators, the next ``num_cpus`` CPU cores.
    Defaults come from the file (``maxFPGAs``, ``maxCPUs``).
    """
    a = graph.max_fpgas if num_accelerators is None else num_accelerators
    c = graph.max_cpus if num_cpus is None else num_cpus
    acc = DeviceClass(
        "accelerator", a, graph.fpga_time, graph.max_size_per_fpga, True, graph.supported_on_fpga
    )
    cpu = DeviceClass("cpu", c, graph.cpu_time, np.inf, False, None)
    return PipelineProblem(
        graph.src,
        graph.dst,
        graph.out_cost,
        (acc, cpu),
        size=graph.size,
        group=graph.color_class,
        is_backward=graph.is_backward,
    )


def heterogeneous_problem(
    times,
    src,
    dst,
    out_cost,
    *,
    memory=None,
    size=None,
    group=None,
    pays_communication=None,
    names=None,
) -> PipelineProblem:
    """A fixed sequence of ``k`` possibly different devices (``ordered=True``).

    Parameters
    ----------
    times : array, shape (k, n)
        Compute time of node ``u`` on device ``d`` (``np.inf``: cannot run there). From
        work and speeds: ``times = work[None, :] / speed[:, None]``.
    src, dst, out_cost : see :class:`PipelineProblem`
    memory : array, shape (k,), optional
    size, group : see :class:`PipelineProblem`
    pays_communication : array of bool, shape (k,), optional (default all true)
    names : sequence of str, optional
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 2:
        raise UsageError("times must be a (k, n) matrix")
    k = times.shape[0]
    memory = np.full(k, np.inf) if memory is None else np.asarray(memory, np.float64)
    pays = np.ones(k, bool) if pays_communication is None else np.asarray(pays_communication)
    names = [f"device{d}" for d in range(k)] if names is None else list(names)
    if memory.shape != (k,) or pays.shape != (k,) or len(names) != k:
        raise UsageError("memory, pays_communication and names need one entry per device")
    devs = tuple(
        DeviceClass(names[d], 1, times[d], float(memory[d]), bool(pays[d])) for d in range(k)
    )
    return PipelineProblem(src, dst, out_cost, devs, size=size, group=group, ordered=True)


def _as_problem(p, num_accelerators=None, num_cpus=None) -> PipelineProblem:
    if isinstance(p, ProfiledGraph):
        return tarnawski_problem(p, num_accelerators, num_cpus)
    if isinstance(p, PipelineProblem):
        if num_accelerators is not None or num_cpus is not None:
            raise UsageError("num_accelerators/num_cpus apply to a ProfiledGraph only")
        return p
    raise UsageError(f"expected a ProfiledGraph or PipelineProblem, got {type(p).__name__}")


# ----------------------------------------------------------------------------------------
# scoring


def _check_assignment(prob: PipelineProblem, assignment) -> np.ndarray:
    a = np.asarray(assignment)
    if a.shape != (prob.num_nodes,) or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise UsageError(f"assignment must be {prob.num_nodes} integer device indices")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= prob.num_devices):
        raise UsageError(f"assignment uses devices outside 0..{prob.num_devices - 1}")
    return a


def device_loads(problem, assignment, num_accelerators=None, num_cpus=None) -> LoadBreakdown:
    """Per-device load of an assignment, straight from the definition (no DP involved)."""
    prob = _as_problem(problem, num_accelerators, num_cpus)
    a = _check_assignment(prob, assignment)
    K, cls = prob.num_devices, prob.device_class
    times = np.stack([dc.time for dc in prob.devices])  # (classes, n)
    pays = np.array([dc.pays_communication for dc in prob.devices])[cls]
    compute = np.bincount(a, weights=times[cls[a], np.arange(prob.num_nodes)], minlength=K)
    cross = a[prob.src] != a[prob.dst]
    # each (producer, receiving device) pair once, however many consumers live there
    recv = np.unique(np.stack([prob.src[cross], a[prob.dst[cross]]]), axis=1)
    senders = np.unique(prob.src[cross])
    comm_in = np.bincount(recv[1], weights=prob.out_cost[recv[0]], minlength=K) * pays
    comm_out = np.bincount(a[senders], weights=prob.out_cost[senders], minlength=K) * pays
    return LoadBreakdown(
        compute.astype(np.float64), comm_out.astype(np.float64), comm_in.astype(np.float64)
    )


def max_load(problem, assignment, num_accelerators=None, num_cpus=None) -> float:
    """The paper's max-load of an assignment (feasibility is :func:`check_feasibility`)."""
    return float(device_loads(problem, assignment, num_accelerators, num_cpus).total.max())


def check_feasibility(problem, assignment, num_accelerators=None, num_cpus=None) -> list[str]:
    """Violated constraints (memory, colocation groups, support); empty when feasible."""
    prob = _as_problem(problem, num_accelerators, num_cpus)
    a = _check_assignment(prob, assignment)
    cls = prob.device_class
    out = []
    used = np.bincount(a, weights=prob.size, minlength=prob.num_devices)
    for d in range(prob.num_devices):
        dc = prob.devices[cls[d]]
        if used[d] > dc.memory * (1 + _MEM_RTOL):
            out.append(f"device {d} ({dc.name}) needs {used[d]:.6g} > memory {dc.memory:.6g}")
        bad = np.flatnonzero((a == d) & ~dc.supported)
        if bad.size:
            out.append(f"device {d} ({dc.name}) cannot run node(s) {bad[:5].tolist()}")
    g = prob.group
    for cc in np.unique(g[g >= 0]):
        devs = np.unique(a[g == cc])
        if devs.size > 1:
            out.append(f"colocation group {cc} is split over devices {devs.tolist()}")
    return out


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
# ideals


class _Ideals:
    """Ideals as rows of a bit matrix, sorted by size; or prefixes of the unit order.

    ``links`` (child row, parent row) are the lattice's covering pairs: the child is the
    parent plus one unit. Sub-ideal sets are propagated along them as bitsets over rows.
    """

    def __init__(self, nu: int, ints: list | None, links=None):
        self.nu = nu
        self.linear = ints is None
        self.count = nu + 1 if self.linear else len(ints)
        self.reach = None
        if not self.linear:
            w = max(1, (nu + 63) // 64)
            raw = b"".join(x.to_bytes(8 * w, "little") for x in ints)
            self.bits = np.frombuffer(raw, dtype="<u8").reshape(-1, w)
            self.links = links

    def member(self, rows: np.ndarray, units: np.ndarray) -> np.ndarray:
        """Boolean matrix (len(rows), len(units)): is unit u in ideal row r?"""
        rows, units = np.asarray(rows), np.asarray(units)
        if self.linear:  # prefix j holds units 0..j-1
            return rows[:, None] > units[None, :]
        words = self.bits[rows[:, None], units[None, :] >> 6]
        return ((words >> (units & 63).astype(np.uint64)) & np.uint64(1)).astype(bool)

    def count_pairs(self) -> int:
        """Pairs J ⊆ I (J == I included); builds the sub-ideal bitsets on the way."""
        m = self.count
        if self.linear:
            return m * (m + 1) // 2
        child, parent = self.links
        mw = (m + 63) // 64
        reach = np.zeros((m, mw), np.uint64)
        rows = np.arange(m)
        reach[rows, rows >> 6] = np.left_shift(np.uint64(1), (rows & 63).astype(np.uint64))
        # links are sorted by child and a parent row is always smaller than its child's;
        # a chunk ends before its first parent that could be a child of the same chunk, so
        # every parent is final when read. Splitting one child's links is harmless (|=).
        step = max(1, 4_000_000 // mw)
        lo = 0
        while lo < child.size:
            hi = min(child.size, lo + step)
            late = np.flatnonzero(parent[lo:hi] >= child[lo])
            if late.size:
                hi = lo + int(late[0])
            c, p = child[lo:hi], parent[lo:hi]
            starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
            reach[c[starts]] |= np.bitwise_or.reduceat(reach[p], starts, axis=0)
            lo = hi
        self.reach = reach
        if hasattr(np, "bitwise_count"):
            return int(np.bitwise_count(reach).sum(dtype=np.int64))
        return int(
            sum(
                np.unpackbits(reach[i : i + 4096].view(np.uint8)).sum(dtype=np.int64)
                for i in range(0, m, 4096)
            )
        )

    def subideals(self, i: int) -> np.ndarray:
        """Rows J ⊆ I, ascending (I itself last: no other subset is as large)."""
        if self.linear:
            return np.arange(i + 1)
        bits = np.unpackbits(self.reach[i].view(np.uint8), bitorder="little")
        return np.flatnonzero(bits)

    def sums(self, vals: np.ndarray) -> np.ndarray:
        """``vals`` (nu, q) summed over each ideal -> (count, q)."""
        if self.linear:
            return np.vstack([np.zeros((1, vals.shape[1])), np.cumsum(vals, axis=0)])
        out = np.empty((self.count, vals.shape[1]))
        for lo in range(0, self.count, 4096):
            chunk = np.unpackbits(
                self.bits[lo : lo + 4096].view(np.uint8), axis=1, bitorder="little"
            )[:, : self.nu]
            out[lo : lo + 4096] = chunk @ vals
        return out

    def units_of(self, i: int, j: int) -> np.ndarray:
        if self.linear:
            return np.arange(j, i)
        diff = self.bits[i] & ~self.bits[j]
        bits = np.unpackbits(diff.view(np.uint8), bitorder="little")[: self.nu]
        return np.flatnonzero(bits)


def _enumerate_ideals(units: _Units, cap: int):
    """All ideals sorted by size and the covering links between them, level by level (no
    recursion); None past ``cap`` ideals."""
    preds, succs = units.preds, units.succs
    start = 0
    for v in range(units.count):
        if preds[v] == 0:
            start |= 1 << v
    level = {0: start}  # ideal -> units that can be added to it
    row_of = {0: 0}
    ints, child, parent = [0], [], []
    for _ in range(units.count):
        nxt: dict[int, int] = {}
        nxt_row: dict[int, int] = {}
        base = len(ints)
        for ideal, addable in level.items():
            prow = row_of[ideal]
            rest = addable
            while rest:
                low = rest & -rest
                rest ^= low
                grown = ideal | low
                row = nxt_row.get(grown)
                if row is None:
                    row = nxt_row[grown] = base + len(nxt_row)
                    more = addable & ~low
                    for w in succs[low.bit_length() - 1]:
                        if preds[w] & ~grown == 0:
                            more |= 1 << w
                    nxt[grown] = more
                child.append(row)
                parent.append(prow)
        ints.extend(nxt)  # same order as the rows handed out in nxt_row
        if len(ints) > cap:
            return None
        level, row_of = nxt, nxt_row
    c, p = np.array(child, np.int64), np.array(parent, np.int64)
    order = np.argsort(c, kind="stable")
    return ints, (c[order], p[order])


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
        Past this many ideals, search only prefixes of one topological order (a warning is
        issued and ``result.linearized`` is set).
    max_pairs : int
        Budget of (ideal, sub-ideal) pairs; exceeding it also linearises, and a linear
        problem past it raises :class:`ResourceLimitError`.
    linearize : bool
        Search prefixes of a topological order from the start.

    Returns
    -------
    PipelineResult
    """
    prob = _as_problem(problem, num_accelerators, num_cpus)
    units = _build_units(prob)
    message, ideals, pairs = "", None, None
    if not linearize:
        found = _enumerate_ideals(units, max_ideals)
        if found is None:
            message = f"more than {max_ideals} ideals"
        else:
            ideals = _Ideals(units.count, *found)
            pairs = ideals.count_pairs()
            if pairs > max_pairs:
                message = f"{ideals.count} ideals with {pairs} nested pairs (limit {max_pairs})"
                pairs = None
    if pairs is None:
        ideals = _Ideals(units.count, None)
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
            warnings.warn(message, RuntimeWarning, stacklevel=2)
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


def _run_dp(prob: PipelineProblem, units: _Units, ideals: _Ideals):
    nu, m = units.count, ideals.count
    ncls = len(prob.devices)
    # per-unit sums: time and unsupported count per class, then size
    vals = np.zeros((nu, 2 * ncls + 1))
    for c, dc in enumerate(prob.devices):
        np.add.at(vals[:, c], units.unit, np.where(dc.supported, dc.time, 0.0))
        np.add.at(vals[:, ncls + c], units.unit, (~dc.supported).astype(np.float64))
    np.add.at(vals[:, 2 * ncls], units.unit, prob.size)
    agg = ideals.sums(vals)
    time_i, unsup_i, size_i = agg[:, :ncls], agg[:, ncls : 2 * ncls], agg[:, 2 * ncls]

    # hyperedge of node u: its unit plus its consumers' units, cost out_cost[u]; a device
    # set S pays the cost iff the hyperedge is cut by S (meets S and leaves it)
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
    emem = [np.array(mem, np.int64) for mem, _ in edges]
    rows_all = np.arange(m)
    cross_rows, cross_e = [], []
    for e, mem in enumerate(emem):
        cols = ideals.member(rows_all, mem)
        r = np.flatnonzero(cols.any(axis=1) & ~cols.all(axis=1))
        cross_rows.append(r)
        cross_e.append(np.full(r.size, e))
    ecost = np.array([c for _, c in edges]) if edges else np.zeros(0)
    if edges:
        cr, ce = np.concatenate(cross_rows), np.concatenate(cross_e)
        order = np.argsort(cr, kind="stable")
        cr, ce = cr[order], ce[order]
    else:
        cr = ce = np.zeros(0, np.int64)
    cptr = np.searchsorted(cr, np.arange(m + 1))
    out_i = np.bincount(cr, weights=ecost[ce], minlength=m) if cr.size else np.zeros(m)

    preds, _ = _device_states(prob)
    S = len(preds)
    mem_cap = np.array([dc.memory for dc in prob.devices]) * (1 + _MEM_RTOL)
    pays = [dc.pays_communication for dc in prob.devices]
    dp = np.full((S, m), np.inf)
    dp[:, 0] = 0.0
    back_t = np.zeros((S, m), np.int32)
    back_j = np.zeros((S, m), np.int64)
    for i in range(1, m):
        J = ideals.subideals(i)
        # communication of I \ J for all J: Out(J) + sum over hyperedges e crossing I of
        # c_e * ([e ∩ I ⊄ J] - [e ∩ J ≠ ∅]); exact for any J ⊆ I
        comm = out_i[J].copy()
        crossing = ce[cptr[i] : cptr[i + 1]]
        if crossing.size:
            # membership of the crossing hyperedges' units in I and in every J, at once
            U = np.unique(np.concatenate([emem[e] for e in crossing]))
            in_i = ideals.member(np.array([i]), U)[0]
            in_j = ideals.member(J, U)
            for e in crossing.tolist():
                pos = np.searchsorted(U, emem[e])
                leaves = ~in_j[:, pos[in_i[pos]]].all(axis=1)
                meets = in_j[:, pos].any(axis=1)
                comm += ecost[e] * (leaves.astype(np.float64) - meets)
            comm = np.maximum(comm, 0.0)
        cost = []
        for c in range(ncls):
            t = time_i[i, c] - time_i[J, c]
            if pays[c]:
                t = t + comm
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

    full = m - 1
    value = float(dp[S - 1, full])
    if not np.isfinite(value):
        raise UsageError(
            "no feasible contiguous split: some colocation group or unsupported node fits "
            "no device (check memory, supported nodes and the number of devices)"
        )
    # walk back from (all devices, all nodes) to the empty ideal
    stages_rev = []
    s, i = S - 1, full
    while i != 0:
        p, c = preds[s][back_t[s, i]]
        j = int(back_j[s, i])
        if j != i:
            stages_rev.append((s, c, i, j))
        s, i = p, j
    assignment = np.empty(prob.num_nodes, np.int64)
    first = np.concatenate([[0], np.cumsum([dc.count for dc in prob.devices])])
    used = [0] * ncls
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
    return value, assignment, tuple(stages)


# ----------------------------------------------------------------------------------------
# non-contiguous local search


def refine(
    problem,
    assignment,
    num_accelerators=None,
    num_cpus=None,
    *,
    seed=0,
    max_passes=1000,
    max_swap_evals=20_000,
    lexicographic=False,
) -> RefineResult:
    """Improve an assignment by moving or swapping colocation groups between devices.

    The paper notes that non-contiguous splits can beat the contiguous optimum; this local
    search explores them. Each pass tries every move of a group off a bottleneck device
    (and of a neighbouring group onto it) and takes the best; when no move helps, it tries
    swaps of a bottleneck group with a group elsewhere, in a seeded random order, taking the
    first that helps. By default only strict decreases of max-load are accepted; every step
    keeps memory, support and colocation, so the result is never worse than the input.
    With several devices tied at the maximum a single move cannot lower it and the search
    stops; ``lexicographic=True`` then also accepts steps that keep the maximum and strictly
    lower the load vector sorted in decreasing order (fewer devices at the maximum, then a
    lower runner-up...), which still never raises max-load and cannot cycle.

    Parameters
    ----------
    problem : ProfiledGraph or PipelineProblem
    assignment : array of int, shape (n,)
        A feasible assignment (e.g. ``pipeline_dp(...).assignment``).
    seed : int
        Order of the swap candidates; same seed, same answer.
    max_passes : int
        Accepted improvements at most.
    max_swap_evals : int
        Swap candidates tried per pass at most.
    lexicographic : bool
        Accept ties of the maximum that improve the sorted load vector (see above).
    """
    prob = _as_problem(problem, num_accelerators, num_cpus)
    a = _check_assignment(prob, assignment).copy()
    bad = check_feasibility(prob, a)
    if bad:
        raise UsageError("refine needs a feasible assignment: " + "; ".join(bad[:3]))
    search = _LocalSearch(prob, a, lexicographic)
    rng = np.random.default_rng(seed)
    initial = search.current_max()
    moves = swaps = 0
    for _ in range(max_passes):
        best = search.best_move()
        if best is not None:
            search.apply([best])
            moves += 1
            continue
        found = search.first_swap(rng, max_swap_evals)
        if found is None:
            break
        search.apply(found)
        swaps += 1
    out = search.dev_array()
    loads = device_loads(prob, out).total
    if loads.max() > initial:  # only float noise could do this: keep the input then
        out, loads, moves, swaps = a, device_loads(prob, a).total, 0, 0
    return RefineResult(out, float(loads.max()), loads, float(initial), moves, swaps)


class _LocalSearch:
    """Incremental loads under moves of colocation groups (plain lists: small, hot loops)."""

    def __init__(self, prob: PipelineProblem, a: np.ndarray, lexicographic: bool):
        self.prob = prob
        self.lex = lexicographic
        n, K = prob.num_nodes, prob.num_devices
        cls = prob.device_class
        self.K = K
        self.pays = [prob.devices[c].pays_communication for c in cls]
        self.mem = [prob.devices[c].memory * (1 + _MEM_RTOL) for c in cls]
        g = prob.group
        key = np.where(g >= 0, g, g.max(initial=-1) + 1 + np.arange(n))
        gid = np.unique(key, return_inverse=True)[1].ravel()
        self.groups = [[] for _ in range(int(gid.max()) + 1 if n else 0)]
        for u, q in enumerate(gid.tolist()):
            self.groups[q].append(u)
        self.gid = gid.tolist()
        sup = np.stack([dc.supported for dc in prob.devices])[cls]  # (K, n)
        times = np.where(sup, np.stack([dc.time for dc in prob.devices])[cls], 0.0)
        self.gtime = [[float(times[d, grp].sum()) for d in range(K)] for grp in self.groups]
        self.gok = [[bool(sup[d, grp].all()) for d in range(K)] for grp in self.groups]
        self.gsize = [float(prob.size[grp].sum()) for grp in self.groups]
        pairs = (
            np.unique(np.stack([prob.src, prob.dst]), axis=1)
            if prob.src.size
            else np.zeros((2, 0), np.int64)
        )
        self.cons = [[] for _ in range(n)]
        self.prod = [[] for _ in range(n)]
        for u, w in pairs.T.tolist():
            self.cons[u].append(w)
            self.prod[w].append(u)
        self.cost = prob.out_cost.tolist()
        self.dev = a.tolist()
        self.cnt = [[0] * K for _ in range(n)]
        for u in range(n):
            for w in self.cons[u]:
                self.cnt[u][self.dev[w]] += 1
        self.used = np.bincount(a, weights=prob.size, minlength=K).tolist()
        self.load = device_loads(prob, a).total.tolist()
        # neighbours of each group (other groups sharing an edge)
        self.gnbr = [
            sorted({self.gid[x] for u in grp for x in self.cons[u] + self.prod[u]} - {q})
            for q, grp in enumerate(self.groups)
        ]

    def dev_array(self) -> np.ndarray:
        return np.array(self.dev, dtype=np.int64)

    def current_max(self) -> float:
        return max(self.load)

    def _comm(self, u: int, load: list, sign: float) -> None:
        c = self.cost[u]
        if c == 0 or not self.cons[u]:
            return
        row, d, sent = self.cnt[u], self.dev[u], False
        for k in range(self.K):
            if row[k] and k != d:
                sent = True
                if self.pays[k]:
                    load[k] += sign * c
        if sent and self.pays[d]:
            load[d] += sign * c

    def _shift(self, q: int, src: int, dst: int) -> None:
        for v in self.groups[q]:
            self.dev[v] = dst
            for p in self.prod[v]:
                self.cnt[p][src] -= 1
                self.cnt[p][dst] += 1

    def _evaluate(self, steps) -> list:
        """Loads after the (group, target) steps, leaving the state unchanged."""
        load = list(self.load)
        touched = set()
        for q, _ in steps:
            for v in self.groups[q]:
                touched.add(v)
                touched.update(self.prod[v])
        for u in touched:
            self._comm(u, load, -1.0)
        undo = []
        for q, t in steps:
            s = self.dev[self.groups[q][0]]
            load[s] -= self.gtime[q][s]
            load[t] += self.gtime[q][t]
            self._shift(q, s, t)
            undo.append((q, s, t))
        for u in touched:
            self._comm(u, load, 1.0)
        for q, s, t in reversed(undo):
            self._shift(q, t, s)
        return load

    def _fits(self, steps) -> bool:
        used = list(self.used)
        for q, t in steps:
            if not self.gok[q][t]:
                return False
            s = self.dev[self.groups[q][0]]
            used[s] -= self.gsize[q]
            used[t] += self.gsize[q]
        return all(used[d] <= self.mem[d] for d in range(self.K))

    def _key(self, load: list) -> list:
        return sorted(load, reverse=True) if self.lex else [max(load)]

    def _improves(self, load: list) -> bool:
        """Strictly better than the current loads (beyond rounding), never a higher max."""
        cur = self._key(self.load)
        new = self._key(load)
        if new[0] > cur[0]:
            return False
        tol = 1e-9 * max(1.0, abs(cur[0]))
        for x, y in zip(new, cur, strict=True):
            if abs(x - y) > tol:
                return x < y
        return False

    def _hot(self) -> list:
        top = max(self.load)
        tol = 1e-9 * max(1.0, abs(top))
        return [d for d in range(self.K) if self.load[d] >= top - tol]

    def best_move(self):
        hot = self._hot()
        cands = []
        for q, grp in enumerate(self.groups):
            d = self.dev[grp[0]]
            if d in hot:
                cands.extend((q, t) for t in range(self.K) if t != d)
            else:
                # pulling a neighbour onto a bottleneck can save its communication
                near = {self.dev[self.groups[r][0]] for r in self.gnbr[q]}
                cands.extend((q, t) for t in hot if t in near)
        best, best_key = None, None
        for q, t in cands:
            if not self._fits([(q, t)]):
                continue
            load = self._evaluate([(q, t)])
            key = self._key(load)
            if (best_key is None or key < best_key) and self._improves(load):
                best, best_key = (q, t), key
        return best

    def first_swap(self, rng, budget: int):
        hot = set(self._hot())
        mine = [q for q, g in enumerate(self.groups) if self.dev[g[0]] in hot]
        other = [q for q, g in enumerate(self.groups) if self.dev[g[0]] not in hot]
        total = len(mine) * len(other)
        if total == 0:
            return None
        picks = rng.permutation(total)[:budget] if total > budget else rng.permutation(total)
        for x in picks.tolist():
            q, r = mine[x // len(other)], other[x % len(other)]
            dq, dr = self.dev[self.groups[q][0]], self.dev[self.groups[r][0]]
            steps = [(q, dr), (r, dq)]
            if self._fits(steps) and self._improves(self._evaluate(steps)):
                return steps
        return None

    def apply(self, steps) -> None:
        for q, t in steps:
            s = self.dev[self.groups[q][0]]
            self.used[s] -= self.gsize[q]
            self.used[t] += self.gsize[q]
            self._shift(q, s, t)
        # recompute from scratch so that rounding never accumulates
        self.load = device_loads(self.prob, self.dev_array()).total.tolist()
