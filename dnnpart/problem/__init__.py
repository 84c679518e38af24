"""The partitioning problem: a LayerGraph seen as vertices, nets and balance groups.

Everything a partitioner (built-in or plugin) needs to read a problem and to build a
valid answer lives here: :class:`Problem` and :class:`Nets`, the builders from a model
(:func:`build_problem`), the capacities a balanced answer must respect, the helpers
partitioner authors share (balancing, contiguous slices, free placements, the
transportation assignment) and the pipeline cost model of Tarnawski et al. (2020)
(:class:`PipelineProblem`, :func:`device_loads`, :func:`max_load`), with the
:class:`Profile` a layer problem built from a profiled graph carries.
"""

from dnnpart.problem._assign import assign_or_none, transport_assign
from dnnpart.problem._build import build_problem, layer_problem, neuron_problem
from dnnpart.problem._capacity import tight_capacities
from dnnpart.problem._helpers import (
    contiguous_slices,
    free_sources,
    group_loads,
    is_balanced,
    net_incidence,
    net_volume,
    place_free_sources,
    place_unbalanced,
)
from dnnpart.problem._layout import (
    FOLLOW,
    SPLIT,
    WHOLE,
    NeuronLayout,
    PlacedLayout,
    Space,
    neuron_layout,
)
from dnnpart.problem._objective import host_time
from dnnpart.problem._pipeline import (
    DeviceClass,
    LoadBreakdown,
    PipelineProblem,
    check_feasibility,
    device_loads,
    heterogeneous_problem,
    max_load,
    tarnawski_problem,
)
from dnnpart.problem._problem import Nets, Problem
from dnnpart.problem._profile import Profile, pipeline_problem_of
from dnnpart.problem._rebalance import rebalance

__all__ = [
    "FOLLOW",
    "SPLIT",
    "WHOLE",
    "NeuronLayout",
    "PlacedLayout",
    "Space",
    "neuron_layout",
    "DeviceClass",
    "LoadBreakdown",
    "Nets",
    "PipelineProblem",
    "Problem",
    "Profile",
    "assign_or_none",
    "build_problem",
    "check_feasibility",
    "contiguous_slices",
    "device_loads",
    "free_sources",
    "group_loads",
    "heterogeneous_problem",
    "host_time",
    "is_balanced",
    "layer_problem",
    "max_load",
    "net_incidence",
    "net_volume",
    "neuron_problem",
    "pipeline_problem_of",
    "place_free_sources",
    "place_unbalanced",
    "rebalance",
    "tarnawski_problem",
    "tight_capacities",
    "transport_assign",
]
