"""Compression before partitioning."""

from dnnpart.compress._dead import DeadNeurons, remove_dead_neurons
from dnnpart.compress._prune import magnitude_prune

__all__ = ["DeadNeurons", "magnitude_prune", "remove_dead_neurons"]
