"""Score a partition: cut, volume, balance, memory and latency (one module, used by everything).

Every figure here means the same thing in every report, leaderboard and plan. Given a
:class:`~dnnpart.partitioners.Problem`, one device label per vertex and a
:class:`~dnnpart.devices.DeviceSet` (default: ``k`` identical devices whose speeds follow
``problem.targets``, mean 1e12 FLOP/s and 1e11 B/s of memory bandwidth, default links):

cut
    Total ``problem.synapses`` weight on edges whose two ends are on different devices (the
    figure the GraphDNN thesis reports; synapse count at neuron level, bytes at layer level).
volume, volume_bytes
    What the network carries. Each net (by default: vertex ``u``'s output; see
    :class:`~dnnpart.partitioners.Nets` for problems built from a model, where a net is
    one tensor's slice, as the exporter sends it) goes once to every *other* device
    holding at least one of its consumers (hypergraph connectivity - 1), however many
    consumers live there: ``volume = sum_j elements[j] * (lambda_j - 1)``, ``volume_bytes``
    the same with bytes. The model's inputs are vertices that
    arrive already split as the labels say; vertices without consumers (the model's outputs)
    stay where they are computed and send nothing (their bytes per device are in
    ``output_bytes``, for whoever gathers them). ``traffic_bytes[a, b]`` is the bytes sent
    from device ``a`` to device ``b``; ``messages`` the number of (net, receiver) sends.
imbalance
    For each balanced group ``g`` with total weight ``W_g > 0``:
    ``max_d load[g, d] / (targets[d] * W_g)`` -- 1.0 is perfect, 1.5 means some device got
    50 % more than its speed-weighted share (layer-synchronous: devices compute a layer
    together, then exchange). ``imbalance`` is the worst group (1.0 when no group has
    weight), ``imbalance_per_group`` lists every group (None where skipped) and
    ``imbalance_total`` treats all vertex weight as one group. ``targets`` are the device
    set's (speeds normalised to sum 1). ``neurons[g, d]`` counts vertices per group and
    device (thesis Table 4.6). ``balance_ok``: ``imbalance <= 1 + problem.imbalance``.
memory_bytes
    Per device: ``param_bytes + activation_bytes`` of its vertices (one sample).
    ``memory_ok`` is true when no device exceeds its memory; ``memory_overflow`` lists the
    devices that do.
latency_s (neuron granularity)
    Layer-synchronous: ``sum_g (compute_g + transfer_g)``. ``compute_g`` is the slowest
    device's time on its part of group ``g``. ``transfer_g`` covers the messages whose first
    consuming group on the receiving device is ``g`` (an activation sent once to device
    ``b`` is charged to the first group on ``b`` that needs it); links work in parallel, so
    ``transfer_g = max over links (a, b) with a message of latency + bytes / bandwidth``.
max_load (profiled graphs, layer granularity)
    Exactly the objective of Tarnawski et al. (2020), see the data README: an
    accelerator's load is its nodes' accelerator time plus the transfer cost of each of
    its outputs sent elsewhere and of each output it receives; a CPU core's load is its
    nodes' CPU time. ``None`` for other problems.
latency_s, time_per_sample_s (layer granularity)
    ``latency_s`` is the single-sample makespan of the DAG: vertices (in topological order)
    run on their device one at a time in vertex order; a vertex starts when its device is
    free and all its inputs have arrived; an input from another device arrives at the
    producer's finish plus ``latency + bytes / bandwidth`` of that link (links are not
    modelled as contended). ``time_per_sample_s`` is the pipelined time per sample,
    Tarnawski et al. (2020) max-load style: ``max_d (compute_d + send_d + recv_d)``, where
    ``send_d`` / ``recv_d`` sum the link time of every message leaving / reaching ``d``. Unlike
    the paper, which charges a tensor once to its sender, a tensor sent to two devices costs
    its sender two messages (one per link, as in ``volume``). None at neuron granularity.
    When the devices share a host (:class:`dnnpart.devices.Host`, e.g. a local ``dnnpart
    run``), ``time_per_sample_s`` is at least ``host_time_s``, the time its cores need per
    sample for every layer, device call and byte carried
    (:func:`dnnpart.problem.host_time`).

Compute time of a vertex (at neuron granularity: of a device's part of a group) on device
``d``: the time model of :mod:`dnnpart.problem._time`, ``max(2 * MACs / speed_d,
memory_traffic / memory_bandwidth_d)`` (a MAC is two FLOPs; the bytes it reads and writes
bound memory-bound layers); with ``"seconds"`` (profiled graphs) the weight is the time on
the *fastest* device of the set, so ``weight * max(speed) / speed_d``.

Cost: one pass over the synapses in row blocks (memory bounded), all vectorised with
NumPy; only the layer-granularity makespan, an inherently sequential recurrence, loops in
Python over vertices (layer graphs have hundreds to thousands of vertices).

References: A. Kirilenko (GraphDNN thesis) for cut and per-layer neuron counts;
Ç. Çatalyürek and C. Aykanat (1999) for connectivity-1 volume; J. Tarnawski et al.,
"Efficient Algorithms for Device Placement of DNN Graph Operators", NeurIPS 2020, for the
pipelined max-load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dnnpart.devices import DeviceSet
from dnnpart.errors import UsageError
from dnnpart.problem._objective import LayerCosts, devices_of, makespan
from dnnpart.problem._pipeline import max_load
from dnnpart.problem._problem import Problem
from dnnpart.problem._profile import pipeline_problem_of
from dnnpart.problem._time import seconds

__all__ = ["Scores", "score", "ratios"]

# Row blocks hold at most this many synapses / (rows x k) bitmap cells: bounds the scorer's
# memory to a few hundred MB whatever the model size (tests shrink them to cross blocks).
_CHUNK_NNZ = 1 << 21
_CHUNK_CELLS = 1 << 24
# Per-(group, sender, receiver) byte totals are kept in a dense array up to this many cells;
# beyond (thousands of layers times k^2) they are reduced per block with np.unique.
_DENSE_GROUP_LINKS = 1 << 22


@dataclass
class Scores:
    """Every figure of one partition (definitions in the module docstring)."""

    k: int
    granularity: str
    device_names: list[str]
    cut: float
    volume: int
    volume_bytes: int
    messages: int
    traffic_bytes: np.ndarray  # (k, k)
    output_bytes: np.ndarray  # (k,)
    imbalance: float
    imbalance_per_group: list[float | None]
    imbalance_total: float
    loads: np.ndarray  # (L, k) vertex weight per group and device
    neurons: np.ndarray  # (L, k) vertex count per group and device
    memory_bytes: np.ndarray  # (k,)
    memory_ok: bool
    memory_overflow: list[int]
    latency_s: float
    time_per_sample_s: float | None
    compute_s_per_group: list[float] | None
    transfer_s_per_group: list[float] | None
    max_load: float | None = None  # profiled graphs: the paper's max-load
    balance_ok: bool | None = None  # imbalance within the problem's tolerance
    host_time_s: float | None = None  # devices sharing a host: its time per sample

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (arrays become lists, numpy scalars Python ones)."""
        return {key: _plain(val) for key, val in asdict(self).items()}


def _plain(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _row_blocks(indptr: np.ndarray, k: int):
    """Yield ``(r0, r1)`` row ranges of at most ~_CHUNK_NNZ synapses and _CHUNK_CELLS cells."""
    n = len(indptr) - 1
    max_rows = max(1, _CHUNK_CELLS // k)
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(indptr, indptr[r0] + _CHUNK_NNZ, side="right")) - 1
        r1 = max(r0 + 1, min(r1, r0 + max_rows, n))
        yield r0, r1
        r0 = r1


def _cut(S, lab32: np.ndarray, k: int) -> float:
    """Synapse weight between devices, in row blocks."""
    cut = 0.0
    for r0, r1 in _row_blocks(S.indptr, k):
        lo, hi = int(S.indptr[r0]), int(S.indptr[r1])
        rows = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(S.indptr[r0 : r1 + 1]))
        cut += float(S.data[lo:hi][lab32[rows] != lab32[S.indices[lo:hi]]].sum())
    return cut


def score(problem: Problem, labels: Any, devices: DeviceSet | None = None) -> Scores:
    """Score one partition of ``problem`` on ``devices``.

    Parameters
    ----------
    problem : Problem
    labels : array_like of int, shape (n,)
        Device of every vertex; checked with :meth:`Problem.validate`.
    devices : DeviceSet, optional
        Must have ``problem.k`` devices. Default: identical devices with the problem's
        target shares (mean speed 1e12 FLOP/s, memory bandwidth 1e11 B/s, default links).

    Returns
    -------
    Scores
    """
    labels = problem.validate(labels, who="labels")
    devices = devices_of(problem) if devices is None else devices
    if not isinstance(devices, DeviceSet):
        raise UsageError(f"devices must be a DeviceSet, got {type(devices).__name__}")
    k = problem.k
    if devices.k != k:
        raise UsageError(f"the device set has {devices.k} devices but the problem k = {k}")
    bw, lat = devices.link_arrays()
    comm = _Traffic(problem, labels, bw, lat)
    act_b = problem.activation_bytes
    has_consumer = np.diff(problem.synapses.indptr) > 0
    output_bytes = np.bincount(
        labels[~has_consumer], weights=act_b[~has_consumer], minlength=k
    ).astype(np.int64)
    balance = _Balance(problem, labels, devices.targets)
    memory = np.bincount(labels, weights=problem.param_bytes + act_b, minlength=k)
    memory = memory.astype(np.int64)
    overflow = [int(d) for d in np.flatnonzero(memory > devices.memories)]
    latency, time_per_sample, compute_s, transfer_s, host = _latency(
        problem, labels, devices, comm, balance.loads
    )
    return Scores(
        k=k,
        granularity=problem.granularity,
        device_names=list(devices.names),
        cut=comm.cut,
        volume=comm.volume,
        volume_bytes=comm.volume_bytes,
        messages=comm.messages,
        traffic_bytes=np.rint(comm.traffic).astype(np.int64).reshape(k, k),
        output_bytes=output_bytes,
        imbalance=balance.worst,
        imbalance_per_group=balance.per_group,
        imbalance_total=balance.total,
        loads=balance.loads,
        neurons=balance.neurons,
        memory_bytes=memory,
        memory_ok=not overflow,
        memory_overflow=overflow,
        latency_s=latency,
        time_per_sample_s=time_per_sample,
        compute_s_per_group=compute_s,
        transfer_s_per_group=transfer_s,
        max_load=_max_load(problem, labels),
        balance_ok=bool(balance.worst <= 1 + problem.imbalance + 1e-9),
        host_time_s=host,
    )


class _Traffic:
    """Cut, volume, messages and per-link bytes: one pass over row blocks of the nets.

    At neuron level it also keeps the bytes per (first consuming group, sender, receiver)
    for the latency (:meth:`group_links`); the layer-level loads come from
    :class:`~dnnpart.problem._objective.LayerCosts`.
    """

    def __init__(self, problem: Problem, labels: np.ndarray, bw: np.ndarray, lat: np.ndarray):
        k, L = problem.k, problem.num_layers
        layer = problem.layer_of
        S = problem.synapses
        nets = problem.communication
        P = nets.pins
        indptr, indices = P.indptr, P.indices
        net_el, net_b, net_src = nets.elements, nets.nbytes, nets.source
        lab32 = labels.astype(np.int32)
        neuron = problem.granularity == "neuron"
        # Without explicit nets the pins are the synapses: the cut comes from the same pass.
        cut_here = P is S
        self.k, self.L = k, L
        cut = 0.0
        volume = volume_bytes = messages = 0
        traffic = np.zeros(k * k)
        # Bytes per (first consuming group, sender, receiver), for the neuron-level latency.
        self.dense_links = dense_links = L * k * k <= _DENSE_GROUP_LINKS
        g_bytes = np.zeros(L * k * k if dense_links else 0)
        g_count = np.zeros_like(g_bytes)
        g_parts: list[tuple[np.ndarray, np.ndarray]] = []
        for r0, r1 in _row_blocks(indptr, k):
            lo, hi = int(indptr[r0]), int(indptr[r1])
            if hi == lo:
                continue
            cols = indices[lo:hi]
            rows = np.repeat(np.arange(r1 - r0, dtype=np.int64), np.diff(indptr[r0 : r1 + 1]))
            lv = lab32[cols]
            cross = lab32[net_src[r0:r1]][rows] != lv
            if cut_here:
                cut += float(S.data[lo:hi][cross].sum())
            # One cell per (net, receiving device); its value is the first consuming group
            # there (L = no consumer), so duplicates of a message collapse to one.
            cell = rows[cross] * k + lv[cross]
            first = np.full((r1 - r0) * k, L, dtype=np.int64)
            if neuron:
                np.minimum.at(first, cell, layer[cols[cross]])
            else:
                first[cell] = 0
            idx = np.flatnonzero(first < L)
            if idx.size == 0:
                continue
            u = r0 + idx // k
            b = idx % k
            a = labels[net_src[u]]
            nbytes = net_b[u]
            volume += int(net_el[u].sum())
            volume_bytes += int(nbytes.sum())
            messages += int(idx.size)
            traffic += np.bincount(a * k + b, weights=nbytes, minlength=k * k)
            if neuron:
                key = (first[idx] * k + a) * k + b
                if dense_links:
                    g_bytes += np.bincount(key, weights=nbytes, minlength=L * k * k)
                    g_count += np.bincount(key, minlength=L * k * k)
                else:
                    ukey, inv = np.unique(key, return_inverse=True)
                    g_parts.append((ukey, np.bincount(inv, weights=nbytes)))
        self.cut = cut if cut_here else _cut(S, lab32, k)
        self.volume, self.volume_bytes, self.messages = volume, volume_bytes, messages
        self.traffic = traffic
        self._g_bytes, self._g_count, self._g_parts = g_bytes, g_count, g_parts

    def group_links(self) -> tuple[np.ndarray, np.ndarray]:
        """Cells ``(group * k + sender) * k + receiver`` with a message, and their bytes."""
        if self.dense_links:
            used = np.flatnonzero(self._g_count)  # a message pays the latency even if empty
            return used, self._g_bytes[used]
        if self._g_parts:
            parts = self._g_parts
            used, inv = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
            return used, np.bincount(inv, weights=np.concatenate([p[1] for p in parts]))
        return np.zeros(0, dtype=np.int64), np.zeros(0)


class _Balance:
    """Loads and vertex counts per group and device, and the imbalance figures."""

    def __init__(self, problem: Problem, labels: np.ndarray, targets: np.ndarray):
        k, L = problem.k, problem.num_layers
        gd = problem.layer_of * k + labels
        loads = np.bincount(gd, weights=problem.vertex_weight, minlength=L * k).reshape(L, k)
        self.loads = loads
        self.neurons = np.bincount(gd, minlength=L * k).reshape(L, k)
        per_group: list[float | None] = [None] * L
        for g in np.flatnonzero(problem.balanced):
            total = loads[g].sum()
            if total > 0:
                per_group[g] = float(np.max(loads[g] / (targets * total)))
        self.per_group = per_group
        worst = [x for x in per_group if x is not None]
        self.worst = max(worst) if worst else 1.0
        all_load = loads.sum(axis=0)
        total = all_load.sum()
        self.total = float(np.max(all_load / (targets * total))) if total > 0 else 1.0


def _latency(problem: Problem, labels, devices: DeviceSet, comm: _Traffic, loads: np.ndarray):
    """``(latency_s, time_per_sample_s, compute_s_per_group, transfer_s_per_group,
    host_time_s)``."""
    bw, lat = devices.link_arrays()
    k = problem.k
    if problem.granularity == "neuron":
        gd = problem.layer_of * k + labels
        traffic = np.bincount(gd, weights=problem.memory_traffic, minlength=loads.size)
        compute = seconds(problem, devices, loads, traffic.reshape(loads.shape), np.arange(k))
        compute = compute.max(axis=1)
        used, used_bytes = comm.group_links()
        link = used % (k * k)
        transfer = np.zeros(problem.num_layers)
        np.maximum.at(transfer, used // (k * k), lat.ravel()[link] + used_bytes / bw.ravel()[link])
        latency = float(compute.sum() + transfer.sum())
        return latency, None, compute.tolist(), transfer.tolist(), None
    costs = LayerCosts(problem, devices=devices)
    vtime = costs.vertex_times(labels)
    latency = makespan(problem, labels, vtime, bw, lat)
    per_sample = costs.time_per_sample(labels, vtime)
    return latency, per_sample, None, None, costs.host_time(labels, vtime)


def _max_load(problem: Problem, labels: np.ndarray) -> float | None:
    """The paper's objective (Tarnawski et al. 2020) for profiled graphs, else None."""
    if problem.profile is None or problem.granularity != "layer":
        return None
    pp, sl, order = pipeline_problem_of(problem)
    assignment = np.empty(len(order), dtype=np.int64)
    assignment[order] = labels[sl]
    return float(max_load(pp, assignment))


_RATIO_KEYS = (
    "cut",
    "volume",
    "volume_bytes",
    "messages",
    "imbalance",
    "imbalance_total",
    "latency_s",
    "time_per_sample_s",
    "host_time_s",
    "max_load",
)


def ratios(scores: Scores, baseline: Scores) -> dict[str, float | None]:
    """Each figure divided by the baseline's on the same model and ``k`` (the thesis'
    "overall reduce" is ``1 - ratio``; below 1 is better for every figure).

    Keys: ``cut``, ``volume``, ``volume_bytes``, ``messages``, ``imbalance``,
    ``imbalance_total``, ``latency_s``, ``time_per_sample_s``, ``host_time_s``,
    ``max_load`` and ``memory_bytes_max`` (largest device memory). A ratio is 1.0 when
    both are 0 and None when only the baseline is 0 or the figure is missing (e.g.
    ``time_per_sample_s`` at neuron level, ``host_time_s`` without a shared host).
    """
    out: dict[str, float | None] = {}
    pairs = [(key, getattr(scores, key), getattr(baseline, key)) for key in _RATIO_KEYS]
    mem = (scores.memory_bytes, baseline.memory_bytes)
    pairs.append(("memory_bytes_max", *(float(m.max()) if m.size else 0.0 for m in mem)))
    for key, x, base in pairs:
        if x is None or base is None:
            out[key] = None
        elif base == 0:
            out[key] = 1.0 if x == 0 else None
        else:
            out[key] = float(x) / float(base)
    return out
