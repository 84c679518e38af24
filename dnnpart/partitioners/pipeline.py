"""Pipeline placement: optimal contiguous stages on (heterogeneous) devices.

Tarnawski, Phanishayee, Devanur, Mahajan, Mohan, "Efficient Algorithms for Device
Placement of DNN Graph Operators", NeurIPS 2020. Each device runs a stage; samples stream
through; the slowest device -- its compute plus the transfers it sends and receives --
sets the time per sample. The dynamic program over the graph's ideals
(:mod:`dnnpart.partitioners._pipeline_dp`) is optimal over contiguous splits; ``refine``
adds a non-contiguous local search that only accepts strict improvements.

On a profiled graph (``graph.profile``) the devices are the file's accelerators and CPU
cores (or ``-k`` accelerators) and the objective is exactly the paper's max-load. On an
ONNX model, compute time is ``2 * MACs / speed`` per device, a layer's output costs
``latency + bytes / bandwidth`` to send, and memory is the device's.
"""

from __future__ import annotations

import warnings

import numpy as np

from dnnpart.errors import UsageError
from dnnpart.partitioners._base import Partitioner
from dnnpart.partitioners._pipeline_dp import (
    heterogeneous_problem,
    pipeline_dp,
    refine,
    tarnawski_problem,
)
from dnnpart.problem._helpers import place_unbalanced
from dnnpart.problem._problem import Problem

__all__ = ["PipelinePartitioner", "pipeline_problem_of"]


def _layer_group(problem: Problem) -> int:
    if problem.granularity != "layer":
        raise UsageError("the pipeline partitioner places whole layers: use --granularity layer")
    balanced = np.flatnonzero(problem.balanced)
    if len(balanced) != 1:
        raise UsageError("expected one group of layers in a layer-granularity problem")
    return int(balanced[0])


def pipeline_problem_of(problem: Problem):
    """The DP's problem for ``problem``, the slice of layer vertices, and ``order``.

    DP node ``order[i]`` is layer vertex ``sl.start + i`` (profiled graphs keep the
    file's node numbering; ONNX layers are numbered in graph order).
    """
    sl = problem.layer_slice(_layer_group(problem))
    graph = problem.graph
    profile = getattr(graph, "profile", None)
    if profile is not None:
        cpus = profile.max_cpus
        accelerators = problem.k - cpus
        if accelerators < 1:
            raise UsageError(f"k = {problem.k} leaves no accelerator beside {cpus} CPU cores")
        return tarnawski_problem(profile, accelerators, cpus), sl, np.asarray(graph.profile_order)
    devices = problem.devices
    if devices is None:
        from dnnpart.devices import DeviceSet

        devices = DeviceSet.identical(problem.k)
    syn = problem.synapses[sl, :][:, sl].tocoo()
    work = problem.vertex_weight[sl]
    factor = 2.0 if problem.weight_unit == "macs" else 1.0
    times = factor * work[None, :] / devices.speeds[:, None]
    link = devices.default_link
    out_bytes = problem.activation_bytes[sl].astype(float)
    has_out = np.zeros(len(work), bool)
    has_out[syn.row] = True
    out_cost = np.where(has_out, link.latency + out_bytes / link.bandwidth, 0.0)
    return (
        heterogeneous_problem(
            times,
            syn.row,
            syn.col,
            out_cost,
            memory=devices.memories,
            size=problem.param_bytes[sl].astype(float),
            names=list(devices.names),
        ),
        sl,
        np.arange(len(work)),
    )


class PipelinePartitioner(Partitioner):
    """Optimal contiguous pipeline stages (Tarnawski et al. 2020), optionally refined.

    Parameters
    ----------
    refine : bool
        Run the non-contiguous local search after the DP (never worse).
    max_ideals : int
        Past this many ideals the DP searches prefixes of one topological order (with a
        warning).
    """

    name = "pipeline"
    granularities = ("layer",)
    refines_itself = True
    balances = False  # it minimises the time per sample, not per-layer imbalance

    def __init__(self, refine: bool = False, max_ideals: int = 20_000):
        self.refine = refine
        self.max_ideals = max_ideals

    def partition(self, problem: Problem) -> np.ndarray:
        pp, sl, order = pipeline_problem_of(problem)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = pipeline_dp(pp, max_ideals=self.max_ideals)
        self.messages_ = [str(w.message) for w in caught]
        assignment = np.asarray(result.assignment, dtype=np.int64)
        if self.refine:
            assignment = np.asarray(refine(pp, assignment, seed=problem.seed).assignment)
        labels = np.zeros(problem.num_vertices, dtype=np.int64)
        labels[sl] = assignment[order]
        return place_unbalanced(problem, labels)
