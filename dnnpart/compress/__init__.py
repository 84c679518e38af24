"""Compression before partitioning, and the record of the passes a plan applies."""

from dnnpart.compress._dead import DeadNeurons, remove_dead_neurons
from dnnpart.compress._huffman import huffman_bits, huffman_lengths
from dnnpart.compress._passes import (
    apply_passes,
    passes_from_parameters,
    prune_passes,
    share_passes,
)
from dnnpart.compress._prune import magnitude_prune
from dnnpart.compress._refit import cross_device_keep, cross_prune_lsq, lsq_refit
from dnnpart.compress._share import share_weights, weights_digest
from dnnpart.compress._size import LayerSize, layer_size, size_table

__all__ = [
    "DeadNeurons",
    "LayerSize",
    "apply_passes",
    "cross_device_keep",
    "cross_prune_lsq",
    "huffman_bits",
    "huffman_lengths",
    "layer_size",
    "lsq_refit",
    "magnitude_prune",
    "passes_from_parameters",
    "prune_passes",
    "remove_dead_neurons",
    "share_passes",
    "share_weights",
    "size_table",
    "weights_digest",
]
