"""The pipeline cost model of Tarnawski et al. (NeurIPS 2020): devices, loads, max-load.

Tarnawski, Phanishayee, Devanur, Mahajan, Nina Paravecino, "Efficient Algorithms for Device
Placement of DNN Graph Operators", NeurIPS 2020, Section 4 ("throughput maximisation").

Objective (*max-load*, time per sample of a pipeline): a device's load is the compute time
of its nodes plus, when the device pays for communication, ``out_cost[u]`` once for every
node ``u`` on it whose output goes to another device and once for every node ``u``
elsewhere whose output it receives; plus, once, its class's ``overhead`` when it holds any
node (a fixed cost per sample of using a device, e.g. the round trip of one actor call in
``dnnpart run``; 0 in the paper). The answer is the largest load; memory per device,
colocation groups (the paper's colour classes) and per-node support must hold.

Two settings share the model: classes of identical devices in any order (the paper's
accelerators plus CPU cores, :func:`tarnawski_problem`; the devices of an ONNX model's
device file, grouped by speed and memory, :func:`heterogeneous_problem`), and a fixed
sequence of possibly heterogeneous devices (``ordered=True``). The dynamic program that
minimises max-load over contiguous splits is :mod:`dnnpart.partitioners._pipeline_dp`;
scoring uses :func:`max_load` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dnnpart.errors import UsageError
from dnnpart.importers._tarnawski import ProfiledGraph

__all__ = [
    "DeviceClass",
    "PipelineProblem",
    "LoadBreakdown",
    "MEM_RTOL",
    "as_pipeline_problem",
    "check_assignment",
    "tarnawski_problem",
    "heterogeneous_problem",
    "device_loads",
    "max_load",
    "check_feasibility",
]

MEM_RTOL = 1e-9  # sizes are float sums; do not reject a stage over rounding


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
    ids : tuple of int, optional
        The numbers of this class's devices in assignments (default: classes numbered one
        after another, see :class:`PipelineProblem`).
    overhead : float
        Time a device of this class adds to its load once when it holds any node (>= 0).
    """

    name: str
    count: int
    time: np.ndarray
    memory: float = np.inf
    pays_communication: bool = True
    supported: np.ndarray | None = None
    ids: tuple[int, ...] | None = None
    overhead: float = 0.0


@dataclass(frozen=True, eq=False)
class PipelineProblem:
    """Nodes, edges, transfer costs and devices of a pipeline placement.

    Devices are numbered by expanding ``devices`` in order (class 0's devices first), or by
    the classes' ``ids`` when every class gives them. Assignments map each node to such a
    device index.

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
            if not 0 <= dc.overhead < np.inf:
                raise UsageError(f"device class {dc.name!r}: overhead must be finite and >= 0")
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
                    None if dc.ids is None else tuple(int(d) for d in dc.ids),
                    float(dc.overhead),
                )
            )
        object.__setattr__(self, "devices", tuple(fixed))
        if self.num_devices == 0:
            raise UsageError("the device classes hold no device")
        given = [dc.ids for dc in fixed]
        if any(g is not None for g in given) and (
            any(g is None or len(g) != dc.count for g, dc in zip(given, fixed, strict=True))
            or sorted(d for g in given for d in g) != list(range(self.num_devices))
        ):
            raise UsageError("device class ids must number every device 0..K-1 once")

    @property
    def num_devices(self) -> int:
        return sum(dc.count for dc in self.devices)

    @property
    def class_devices(self) -> list[np.ndarray]:
        """The device numbers of every class."""
        first = np.cumsum([0] + [dc.count for dc in self.devices])
        return [
            np.arange(first[c], first[c + 1]) if dc.ids is None else np.array(dc.ids, np.int64)
            for c, dc in enumerate(self.devices)
        ]

    @property
    def device_class(self) -> np.ndarray:
        """Class index of every device, shape (K,)."""
        cls = np.empty(self.num_devices, np.int64)
        for c, ids in enumerate(self.class_devices):
            cls[ids] = c
        return cls


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
    """Per-device load: ``total = compute + comm_out + comm_in + calls`` (each shape (K,));
    ``calls`` is the class overhead of every device that holds a node."""

    compute: np.ndarray
    comm_out: np.ndarray
    comm_in: np.ndarray
    calls: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.compute + self.comm_out + self.comm_in + self.calls


# ----------------------------------------------------------------------------------------
# building problems


def tarnawski_problem(
    graph: ProfiledGraph, num_accelerators=None, num_cpus=None, call_overhead=None
):
    """The paper's setting: identical accelerators, then CPU cores (no communication cost).

    Devices ``0..num_accelerators-1`` are accelerators, the next ``num_cpus`` CPU cores.
    Defaults come from the file (``maxFPGAs``, ``maxCPUs``). Every device used pays
    ``call_overhead`` once (default the file's ``dnnpart.call_overhead_s``, else 0).
    """
    a = graph.max_fpgas if num_accelerators is None else num_accelerators
    c = graph.max_cpus if num_cpus is None else num_cpus
    memory = graph.max_size_per_fpga if graph.max_size_per_fpga > 0 else np.inf  # 0: unlimited
    call = graph.call_overhead if call_overhead is None else float(call_overhead)
    acc = DeviceClass(
        "accelerator", a, graph.fpga_time, memory, True, graph.supported_on_fpga, overhead=call
    )
    cpu = DeviceClass("cpu", c, graph.cpu_time, np.inf, False, None, overhead=call)
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
    ordered=False,
    overhead=None,
) -> PipelineProblem:
    """``k`` possibly different devices; the pipeline chooses which device takes which stage.

    Devices with the same times, memory and communication are interchangeable: they form
    one :class:`DeviceClass` (keeping their numbers as ``ids``), and the DP searches how
    many devices of each class a pipeline prefix uses, so every order of the devices is
    considered. ``ordered=True`` instead fixes the sequence: stage ``i`` runs on a device
    numbered below stage ``i + 1``'s.

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
    ordered : bool
        Keep the devices in their given order.
    overhead : array, shape (k,), optional
        What each device adds once when it holds any node (default 0).
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 2:
        raise UsageError("times must be a (k, n) matrix")
    k = times.shape[0]
    memory = np.full(k, np.inf) if memory is None else np.asarray(memory, np.float64)
    pays = np.ones(k, bool) if pays_communication is None else np.asarray(pays_communication)
    names = [f"device{d}" for d in range(k)] if names is None else list(names)
    overhead = np.zeros(k) if overhead is None else np.asarray(overhead, np.float64)
    if memory.shape != (k,) or pays.shape != (k,) or len(names) != k or overhead.shape != (k,):
        raise UsageError("memory, pays_communication, names and overhead need one entry per device")
    classes: dict[tuple, list[int]] = {}
    for d in range(k):
        same = (times[d].tobytes(), float(memory[d]), bool(pays[d]), float(overhead[d]))
        classes.setdefault((d,) if ordered else same, []).append(d)
    devs = tuple(
        DeviceClass(
            "+".join(names[d] for d in ids),
            len(ids),
            times[ids[0]],
            float(memory[ids[0]]),
            bool(pays[ids[0]]),
            ids=None if ordered else tuple(ids),
            overhead=float(overhead[ids[0]]),
        )
        for ids in classes.values()
    )
    return PipelineProblem(src, dst, out_cost, devs, size=size, group=group, ordered=ordered)


def as_pipeline_problem(p, num_accelerators=None, num_cpus=None) -> PipelineProblem:
    if isinstance(p, ProfiledGraph):
        return tarnawski_problem(p, num_accelerators, num_cpus)
    if isinstance(p, PipelineProblem):
        if num_accelerators is not None or num_cpus is not None:
            raise UsageError("num_accelerators/num_cpus apply to a ProfiledGraph only")
        return p
    raise UsageError(f"expected a ProfiledGraph or PipelineProblem, got {type(p).__name__}")


# ----------------------------------------------------------------------------------------
# scoring


def check_assignment(prob: PipelineProblem, assignment) -> np.ndarray:
    a = np.asarray(assignment)
    if a.shape != (prob.num_nodes,) or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise UsageError(f"assignment must be {prob.num_nodes} integer device indices")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= prob.num_devices):
        raise UsageError(f"assignment uses devices outside 0..{prob.num_devices - 1}")
    return a


def device_loads(problem, assignment, num_accelerators=None, num_cpus=None) -> LoadBreakdown:
    """Per-device load of an assignment, straight from the definition (no DP involved)."""
    prob = as_pipeline_problem(problem, num_accelerators, num_cpus)
    a = check_assignment(prob, assignment)
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
    overhead = np.array([dc.overhead for dc in prob.devices])[cls]
    calls = np.where(np.bincount(a, minlength=K) > 0, overhead, 0.0)
    return LoadBreakdown(
        compute.astype(np.float64),
        comm_out.astype(np.float64),
        comm_in.astype(np.float64),
        calls.astype(np.float64),
    )


def max_load(problem, assignment, num_accelerators=None, num_cpus=None) -> float:
    """The paper's max-load of an assignment (feasibility is :func:`check_feasibility`)."""
    return float(device_loads(problem, assignment, num_accelerators, num_cpus).total.max())


def check_feasibility(problem, assignment, num_accelerators=None, num_cpus=None) -> list[str]:
    """Violated constraints (memory, colocation groups, support); empty when feasible."""
    prob = as_pipeline_problem(problem, num_accelerators, num_cpus)
    a = check_assignment(prob, assignment)
    cls = prob.device_class
    out = []
    used = np.bincount(a, weights=prob.size, minlength=prob.num_devices)
    for d in range(prob.num_devices):
        dc = prob.devices[cls[d]]
        if used[d] > dc.memory * (1 + MEM_RTOL):
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
