"""Pipeline placement: optimal contiguous stages on (heterogeneous) devices.

Tarnawski, Phanishayee, Devanur, Mahajan, Mohan, "Efficient Algorithms for Device
Placement of DNN Graph Operators", NeurIPS 2020. Each device runs a stage; samples stream
through; the slowest device -- its compute plus the transfers it sends and receives --
sets the time per sample. The dynamic program over the graph's ideals
(:mod:`dnnpart.partitioners._pipeline_dp`) is optimal over contiguous splits; ``refine``
adds a non-contiguous local search (:mod:`dnnpart.partitioners._pipeline_refine`) that
only accepts strict improvements.

The cost model is :func:`dnnpart.problem.pipeline_problem_of`: on a profiled graph
(:attr:`Problem.profile`) the devices are the file's accelerators and CPU cores (or ``-k``
accelerators) and the objective is exactly the paper's max-load; on an ONNX model,
compute time is the time model's (:mod:`dnnpart.problem._time`: ``2 * MACs / speed``, or
the layer's bytes over the memory bandwidth when longer) per device, a layer's output costs
``latency + bytes / bandwidth`` to send, and memory is the device's; devices of equal
speed and memory are interchangeable, and the DP chooses which device takes which stage.
"""

from __future__ import annotations

import numpy as np

from dnnpart.partitioners._base import Boolean, Integer, Partitioner, with_params_of
from dnnpart.partitioners._objective import on_objective
from dnnpart.partitioners._pipeline_dp import MAX_IDEALS, pipeline_dp
from dnnpart.partitioners._pipeline_refine import refine
from dnnpart.problem._helpers import place_unbalanced
from dnnpart.problem._problem import Problem
from dnnpart.problem._profile import pipeline_problem_of

__all__ = ["PipelinePartitioner", "pipeline_partition", "pipeline_problem_of"]


class PipelinePartitioner(Partitioner):
    """Optimal contiguous pipeline stages (Tarnawski et al. 2020), optionally refined.

    Parameters
    ----------
    refine : bool
        Run the non-contiguous local search after the DP (never worse).
    max_ideals : int
        Past this many ideals the DP searches prefixes of one topological order (and a
        note says so).
    """

    name = "pipeline"
    granularities = ("layer",)
    refines_itself = True
    balances = False  # it minimises the time per sample, not per-layer imbalance
    constraints = {"refine": Boolean, "max_ideals": Integer(1)}

    def __init__(self, refine: bool = False, max_ideals: int = MAX_IDEALS):
        self.refine = refine
        self.max_ideals = max_ideals

    def partition(self, problem: Problem) -> np.ndarray:
        p = self.checked_params()
        pp, sl, order = pipeline_problem_of(problem)
        assignment = np.asarray(pipeline_dp(pp, max_ideals=p["max_ideals"]).assignment)
        if p["refine"]:
            assignment = np.asarray(refine(pp, assignment, seed=problem.seed).assignment)
        labels = np.zeros(problem.num_vertices, dtype=np.int64)
        labels[sl] = assignment[order]
        labels = place_unbalanced(problem, labels)
        if problem.objective is None:
            return labels
        # the DP is optimal over contiguous splits for throughput: non-contiguous moves
        # only when asked (refine), for another objective, or when the devices share a
        # host, whose time per sample (every call and byte on the same cores) the DP's
        # max-load does not see
        shared = problem.devices is not None and problem.devices.host is not None
        return on_objective(
            problem, labels, refine=p["refine"] or problem.objective != "throughput" or shared
        )


@with_params_of(PipelinePartitioner)
def pipeline_partition(problem: Problem, **params) -> np.ndarray:
    """:class:`PipelinePartitioner` ``(**params)`` on ``problem``: one device per vertex."""
    return PipelinePartitioner(**params).partition(problem)
