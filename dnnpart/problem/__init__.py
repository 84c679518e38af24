"""The partitioning problem: a LayerGraph seen as vertices, nets and balance groups.

Everything a partitioner (built-in or plugin) needs to read a problem and to build a
valid answer lives here: :class:`Problem` and :class:`Nets`, the builders from a model
(:func:`build_problem`), the capacities a balanced answer must respect, and the helpers
partitioner authors share (balancing, free placements, the transportation assignment).
"""

from dnnpart.problem._assign import assign_or_none, transport_assign
from dnnpart.problem._build import build_problem, layer_problem, neuron_problem
from dnnpart.problem._capacity import tight_capacities
from dnnpart.problem._helpers import (
    free_sources,
    group_loads,
    is_balanced,
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
from dnnpart.problem._problem import Nets, Problem
from dnnpart.problem._rebalance import rebalance

__all__ = [
    "FOLLOW",
    "SPLIT",
    "WHOLE",
    "NeuronLayout",
    "PlacedLayout",
    "Space",
    "neuron_layout",
    "Nets",
    "Problem",
    "assign_or_none",
    "build_problem",
    "free_sources",
    "group_loads",
    "is_balanced",
    "layer_problem",
    "neuron_problem",
    "place_free_sources",
    "place_unbalanced",
    "rebalance",
    "tight_capacities",
    "transport_assign",
]
