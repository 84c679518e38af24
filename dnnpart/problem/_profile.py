"""A layer-level :class:`Problem` seen as a pipeline problem (Tarnawski et al. 2020).

Two sources of layer problems, one cost model (:mod:`dnnpart.problem._pipeline`):

* a graph imported from a profiled JSON file carries a :class:`Profile` (the file's
  per-node times, memory, colour classes and devices); its problem keeps it in
  :attr:`Problem.profile` and the devices are the file's accelerators and CPU cores;
* any other layer graph: compute time is the time model's (:mod:`._time`: ``2 * MACs /
  speed``, or the bytes it moves over the memory bandwidth when longer) per device, a
  layer's output costs ``latency + bytes / bandwidth`` to send, memory is the device's.

In both, a device that holds any layer also pays its ``call_overhead`` once per sample.

The pipeline partitioner minimises :func:`pipeline_problem_of`'s max-load; scoring reports
it for profiled problems (the paper's objective, exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnnpart.devices import DeviceSet
from dnnpart.errors import UsageError
from dnnpart.importers._tarnawski import ProfiledGraph
from dnnpart.problem._pipeline import PipelineProblem, heterogeneous_problem, tarnawski_problem
from dnnpart.problem._time import seconds

__all__ = ["Profile", "pipeline_problem_of", "layer_group"]


@dataclass(frozen=True, eq=False)
class Profile:
    """What a layer problem built from a profiled graph keeps of the file.

    Parameters
    ----------
    graph : ProfiledGraph
        The file's nodes (times per device class, memory, colour classes, support).
    order : ndarray of int64, shape (L,)
        Profiled node of each layer: layer ``i`` is node ``order[i]``.
    """

    graph: ProfiledGraph
    order: np.ndarray

    def pipeline(self, k: int, call_overhead: float | None = None) -> PipelineProblem:
        """The paper's problem on ``k`` devices: the file's CPU cores and ``k - cpus``
        accelerators (:func:`tarnawski_problem`), each used device paying
        ``call_overhead`` (default the file's)."""
        cpus = self.graph.max_cpus
        accelerators = k - cpus
        if accelerators < 1:
            raise UsageError(f"k = {k} leaves no accelerator beside {cpus} CPU cores")
        return tarnawski_problem(self.graph, accelerators, cpus, call_overhead)


def layer_group(problem) -> int:
    """The one balanced group of a layer-granularity problem (its layers)."""
    if problem.granularity != "layer":
        raise UsageError("the pipeline partitioner places whole layers: use --granularity layer")
    balanced = np.flatnonzero(problem.balanced)
    if len(balanced) != 1:
        raise UsageError("expected one group of layers in a layer-granularity problem")
    return int(balanced[0])


def pipeline_problem_of(problem) -> tuple[PipelineProblem, slice, np.ndarray]:
    """The pipeline problem of a layer :class:`Problem`, the slice of layer vertices, and
    ``order``.

    Pipeline node ``order[i]`` is layer vertex ``sl.start + i`` (profiled graphs keep the
    file's node numbering; ONNX layers are numbered in graph order).
    """
    sl = problem.layer_slice(layer_group(problem))
    if problem.profile is not None:
        order = np.asarray(problem.profile.order)
        prof, devices = problem.profile.graph, problem.devices
        if devices is None:
            return problem.profile.pipeline(problem.k), sl, order
        calls = devices.call_overheads
        one_call = bool(np.all(calls == calls[0]))
        if prof.max_cpus or (one_call and np.all(devices.speeds == devices.speeds[0])):
            if not one_call:
                raise UsageError(
                    "the devices of a profiled graph with CPU cores need one call_overhead"
                )
            return problem.profile.pipeline(problem.k, float(calls[0])), sl, order
        # devices of other speeds (a profile made by ``dnnpart profile``): the file's times
        # are those of the fastest device, a device of speed s takes time * max / s
        times = prof.fpga_time[None, :] * (devices.speeds.max() / devices.speeds)[:, None]
        pipeline = heterogeneous_problem(
            times, prof.src, prof.dst, prof.out_cost, memory=devices.memories, size=prof.size,
            group=prof.color_class, names=list(devices.names), overhead=calls,
        )  # fmt: skip
        return pipeline, sl, order
    devices = problem.devices if problem.devices is not None else DeviceSet.identical(problem.k)
    syn = problem.synapses[sl, :][:, sl].tocoo()
    work = problem.vertex_weight[sl]
    traffic = problem.memory_traffic[sl]
    every = np.arange(devices.k)[:, None]
    times = seconds(problem, devices, work[None, :], traffic[None, :], every)
    link = devices.default_link
    out_bytes = problem.activation_bytes[sl].astype(float)
    has_out = np.zeros(len(work), bool)
    has_out[syn.row] = True
    out_cost = np.where(has_out, link.latency + out_bytes / link.bandwidth, 0.0)
    pipeline = heterogeneous_problem(
        times,
        syn.row,
        syn.col,
        out_cost,
        memory=devices.memories,
        size=problem.param_bytes[sl].astype(float),
        names=list(devices.names),
        overhead=devices.call_overheads,
    )
    return pipeline, sl, np.arange(len(work))
