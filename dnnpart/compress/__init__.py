"""Compression before partitioning, and the record of the passes a plan applies."""

from dnnpart.compress._dead import DeadNeurons, remove_dead_neurons
from dnnpart.compress._passes import apply_passes, passes_from_parameters, prune_passes
from dnnpart.compress._prune import magnitude_prune

__all__ = [
    "DeadNeurons",
    "apply_passes",
    "magnitude_prune",
    "passes_from_parameters",
    "prune_passes",
    "remove_dead_neurons",
]
