"""Partitioners, the problem type they solve, and the checks of their parameters."""

from dnnpart.partitioners._base import Boolean, Choice, Integer, Interval, Partitioner
from dnnpart.partitioners._objective import layer_objective, on_objective
from dnnpart.problem._problem import Nets, Problem

__all__ = [
    "Boolean",
    "Choice",
    "Integer",
    "Interval",
    "Nets",
    "Partitioner",
    "Problem",
    "layer_objective",
    "on_objective",
]
