"""Partitioners and the problem type they solve."""

from dnnpart.partitioners._base import Partitioner
from dnnpart.problem._problem import Nets, Problem

__all__ = ["Nets", "Partitioner", "Problem"]
