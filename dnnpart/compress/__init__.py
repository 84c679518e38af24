"""Compression before partitioning."""

from dnnpart.compress._prune import magnitude_prune

__all__ = ["magnitude_prune"]
