"""What a layer placement is judged by: the user's objective and the constraints.

Three objectives (``--objective``), each the figure of :mod:`dnnpart.scoring` of the same
name, computed here so that partitioners (which may not import scoring) optimise exactly
what the leaderboard ranks by:

throughput
    Pipelined time per sample, Tarnawski et al. (2020) max-load style: the largest device
    load ``compute_d + send_d + recv_d + call_d`` (scores ``time_per_sample_s``), where
    ``call_d`` is the device's ``call_overhead`` when it holds any vertex (a fixed cost
    per sample of using it, such as one actor call in ``dnnpart run``); on a graph profiled
    in the paper's format with CPU cores, the paper's own max-load
    (:func:`dnnpart.problem.max_load`, scores ``max_load``). When the devices share a
    host (:class:`dnnpart.devices.Host`), at least the host's time per sample
    (:func:`host_time`, scores ``host_time_s``): one machine's cores run every layer and
    move every sample.
latency
    Single-sample makespan of the layer DAG (scores ``latency_s``).
volume
    Bytes sent between devices (scores ``volume_bytes``).

Constraints: no device holds more than its memory (parameters plus activations of one
sample) and, for the ``volume`` objective only, every balanced group stays within the
problem's imbalance tolerance. The time objectives already charge every device's compute
(an overloaded device *is* a slower pipeline), so they need no balance constraint; volume
alone would put everything on one device.

:class:`LayerCosts` precomputes what a labelling needs, so that local search can evaluate
many labellings quickly.
"""

from __future__ import annotations

import numpy as np

from dnnpart.devices import DEFAULT_MEMORY_BANDWIDTH, DEFAULT_SPEED, Device, DeviceSet
from dnnpart.errors import UsageError
from dnnpart.problem._time import seconds

__all__ = [
    "OBJECTIVES",
    "OBJECTIVE_SCORES",
    "check_objective",
    "objective_score",
    "devices_of",
    "makespan",
    "host_time",
    "LayerCosts",
]

OBJECTIVES = ("throughput", "latency", "volume")
# the score each objective is read from (throughput: max_load first where a score has it)
OBJECTIVE_SCORES = {
    "throughput": ("max_load", "time_per_sample_s", "latency_s"),
    "latency": ("latency_s",),
    "volume": ("volume_bytes",),
}


def objective_score(scores, objective: str):
    """The figure of ``objective`` in a scores dict (:meth:`dnnpart.scoring.Scores.to_dict`
    or ratios): the first of :data:`OBJECTIVE_SCORES` ``[objective]`` it holds, else None;
    for ``throughput``, no less than the host's time per sample (``host_time_s``) where
    the scores have one."""
    for key in OBJECTIVE_SCORES[check_objective(objective)]:
        if scores.get(key) is not None:
            value = scores[key]
            if objective == "throughput" and scores.get("host_time_s") is not None:
                value = max(value, scores["host_time_s"])
            return value
    return None


def check_objective(objective: str) -> str:
    """``objective`` if it is one of :data:`OBJECTIVES`, else a :class:`UsageError`."""
    if objective not in OBJECTIVES:
        raise UsageError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return objective


def devices_of(problem) -> DeviceSet:
    """The problem's devices; by default ``k`` identical links and devices whose speeds
    and memory bandwidths follow ``problem.targets`` (mean 1e12 FLOP/s and 1e11 B/s), so
    balance means what the partitioner aimed at."""
    if problem.devices is not None:
        return problem.devices
    scale = problem.k * np.asarray(problem.targets)
    return DeviceSet(
        tuple(
            Device(f"dev{i}", DEFAULT_SPEED * s, memory_bandwidth=DEFAULT_MEMORY_BANDWIDTH * s)
            for i, s in enumerate(scale.tolist())
        )
    )


def makespan(problem, labels: np.ndarray, vtime: np.ndarray, bw: np.ndarray, lat: np.ndarray):
    """Single-sample makespan of a layer problem's DAG.

    Vertices (in topological order) run on their device one at a time in vertex order; a
    vertex starts when its device is free and all its inputs have arrived; an input from
    another device arrives at the producer's finish plus ``latency + bytes / bandwidth`` of
    that link (links are not modelled as contended).
    """
    n = problem.num_vertices
    if n == 0:
        return 0.0
    S = problem.synapses
    nonempty = np.flatnonzero(np.diff(S.indptr))
    if nonempty.size:
        first_consumer = np.minimum.reduceat(S.indices, S.indptr[nonempty])
        if np.any(first_consumer <= nonempty):
            raise UsageError(
                "layer-level problem: vertices must be in topological order (u < v for "
                "every edge u -> v)"
            )
    # arrive[d, u]: delay between u finishing and its output being usable on device d
    # (a k x n table, so the sequential loop below only gathers and takes maxima).
    arrive = lat[labels, :].T + problem.activation_bytes / bw[labels, :].T
    arrive[labels, np.arange(n)] = 0.0
    T = S.tocsc()  # predecessor lists
    pred, ptr = T.indices, T.indptr.tolist()
    finish = np.zeros(n)
    free = [0.0] * problem.k
    lab = labels.tolist()
    vt = vtime.tolist()
    for v in range(n):
        d = lab[v]
        start = free[d]
        lo, hi = ptr[v], ptr[v + 1]
        if hi > lo:
            p = pred[lo:hi]
            start = max(start, float((finish[p] + arrive[d, p]).max()))
        finish[v] = start + vt[v]
        free[d] = finish[v]
    return float(finish.max())


def io_bytes(problem) -> int:
    """Bytes of the model's inputs and outputs per sample: what a driver feeds in and
    reads back whatever the split. From the problem's graph, else its profile's
    ``dnnpart.io_bytes``, else 0."""
    graph = problem.graph
    tensors = [*(getattr(graph, "inputs", None) or []), *(getattr(graph, "outputs", None) or [])]
    total = int(sum(int(getattr(t, "nbytes", 0) or 0) for t in tensors))
    if total == 0 and problem.profile is not None:
        total = int(problem.profile.graph.io_bytes)
    return total


def host_time(host, compute_s: float, calls: int, io: float, volume: float) -> float:
    """Seconds per sample that one machine's cores need, at least, when every device is a
    process on it (:class:`dnnpart.devices.Host`).

    ``(compute_s + calls * host.call_cpu + (io + volume) * host.byte_cpu) /
    host.cores``: the layers' time on their devices, the CPU of each device call, and of
    each byte carried -- the model's inputs and outputs (``io``) and each transfer
    (``volume``), which ``dnnpart run`` copies once into shared memory on one machine
    (:mod:`dnnpart.runtime._shared`). The pipelined time per sample is the larger of this
    and the largest device load: the devices cannot together run faster than the cores
    they share.
    """
    cpu = compute_s + calls * host.call_cpu + (io + volume) * host.byte_cpu
    return float(cpu / host.cores)


class LayerCosts:
    """The objective and constraint violations of layer labellings of one problem.

    Parameters
    ----------
    problem : Problem
        A layer-granularity problem (its ``devices`` or the default ones).
    objective : {"throughput", "latency", "volume"}
    devices : DeviceSet, optional
        Default :func:`devices_of` ``(problem)``.
    """

    def __init__(self, problem, objective: str = "throughput", devices=None) -> None:
        self.problem = problem
        self.objective = check_objective(objective)
        devices = devices_of(problem) if devices is None else devices
        self.k = problem.k
        self.bw, self.lat = devices.link_arrays()
        self.devices = devices
        self.memory = (problem.param_bytes + problem.activation_bytes).astype(np.float64)
        self.capacity = devices.memories
        self.calls = devices.call_overheads
        self.host = devices.host
        self.io_bytes = io_bytes(problem) if self.host is not None else 0
        nets = problem.communication
        pins = nets.pins.tocsr()
        self.net_of_pin = np.repeat(np.arange(pins.shape[0]), np.diff(pins.indptr))
        self.pin_vertex = pins.indices
        self.net_source = nets.source
        self.net_bytes = nets.nbytes.astype(np.float64)
        self.pipeline = None
        if objective == "throughput" and problem.profile is not None:
            from dnnpart.problem._profile import pipeline_problem_of

            self.pipeline = pipeline_problem_of(problem)

    # -- parts ------------------------------------------------------------------------
    def messages(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(net, sender, receiver)`` of every message: a net once per other device
        holding one of its consumers."""
        k = self.k
        src = labels[self.net_source]
        recv = labels[self.pin_vertex]
        cross = src[self.net_of_pin] != recv
        cells = np.unique(self.net_of_pin[cross] * k + recv[cross])
        net = cells // k
        return net, src[net], cells % k

    def vertex_times(self, labels: np.ndarray) -> np.ndarray:
        """Seconds of every vertex on its device (the time model, :mod:`._time`)."""
        p = self.problem
        return seconds(p, self.devices, p.vertex_weight, p.memory_traffic, labels)

    def device_loads(self, labels: np.ndarray, vtime: np.ndarray | None = None) -> np.ndarray:
        """Pipelined load per device: compute plus the link time of every message it sends
        and receives, plus its call overhead if it holds any vertex, shape (k,).
        ``vtime``: :meth:`vertex_times` of ``labels`` when already at hand."""
        k = self.k
        net, a, b = self.messages(labels)
        t = self.lat[a, b] + self.net_bytes[net] / self.bw[a, b]
        vtime = self.vertex_times(labels) if vtime is None else vtime
        compute = np.bincount(labels, weights=vtime, minlength=k)
        calls = np.where(np.bincount(labels, minlength=k) > 0, self.calls, 0.0)
        comm = np.bincount(a, weights=t, minlength=k) + np.bincount(b, t, minlength=k)
        return compute + comm + calls

    def volume_bytes(self, labels: np.ndarray) -> float:
        net, _, _ = self.messages(labels)
        return float(self.net_bytes[net].sum())

    def host_time(self, labels: np.ndarray, vtime: np.ndarray | None = None) -> float | None:
        """The shared host's time per sample (:func:`host_time`; one call per device
        used), None when the devices share no host. ``vtime`` as in :meth:`device_loads`."""
        if self.host is None:
            return None
        used = int(np.count_nonzero(np.bincount(labels, minlength=self.k)))
        vtime = self.vertex_times(labels) if vtime is None else vtime
        compute = float(vtime.sum())
        return host_time(self.host, compute, used, self.io_bytes, self.volume_bytes(labels))

    def time_per_sample(self, labels: np.ndarray, vtime: np.ndarray | None = None) -> float:
        """Pipelined time per sample: the largest device load, or the shared host's time
        when longer. ``vtime`` as in :meth:`device_loads`."""
        vtime = self.vertex_times(labels) if vtime is None else vtime
        loads = float(self.device_loads(labels, vtime).max())
        host = self.host_time(labels, vtime)
        return loads if host is None else max(loads, host)

    # -- what a search compares ----------------------------------------------------------
    def value(self, labels) -> float:
        """The objective of ``labels`` (lower is better)."""
        labels = np.asarray(labels, dtype=np.int64)
        if self.objective == "volume":
            return self.volume_bytes(labels)
        if self.objective == "latency":
            times = self.vertex_times(labels)
            return makespan(self.problem, labels, times, self.bw, self.lat)
        if self.pipeline is not None:
            from dnnpart.problem._pipeline import max_load

            pp, sl, order = self.pipeline
            assignment = np.empty(len(order), dtype=np.int64)
            assignment[order] = labels[sl]
            host = self.host_time(labels)
            value = float(max_load(pp, assignment))
            return value if host is None else max(value, host)
        return self.time_per_sample(labels)

    def violation(self, labels, balance_limit: float | None = None) -> float:
        """How far ``labels`` break the constraints (0 when they hold): bytes over memory,
        plus, for the volume objective, the worst group's imbalance above
        ``balance_limit`` (default ``1 + problem.imbalance``)."""
        labels = np.asarray(labels, dtype=np.int64)
        used = np.bincount(labels, weights=self.memory, minlength=self.k)
        over = float(np.maximum(used - self.capacity, 0).sum())
        if self.objective != "volume":
            return over
        limit = 1 + self.problem.imbalance if balance_limit is None else balance_limit
        return over + max(0.0, self.imbalance(labels) - limit)

    def imbalance(self, labels: np.ndarray) -> float:
        """Worst balanced group's ``max_d load / (target_d * total)``."""
        p = self.problem
        worst = 1.0
        for g in np.flatnonzero(p.balanced):
            sl = p.layer_slice(g)
            w = p.vertex_weight[sl]
            if w.sum() > 0:
                loads = np.bincount(labels[sl], weights=w, minlength=self.k)
                worst = max(worst, float(np.max(loads / (p.targets * w.sum()))))
        return worst
