"""Static magnitude pruning (Han et al., "Deep Compression", ICLR 2016; the thesis' static
pruning): zero the fraction ``ratio`` of smallest-magnitude weights of each splittable layer."""

from __future__ import annotations

import dataclasses

import numpy as np

from dnnpart.errors import UsageError
from dnnpart.graph import LayerGraph, Weight

__all__ = ["magnitude_prune", "map_weights", "check_ratio"]


def map_weights(graph: LayerGraph, change) -> LayerGraph:
    """A new graph whose splittable layers' weights are ``change(copy of the weights)``
    (which may edit the copy in place and return it); other layers are kept as they are."""
    layers = []
    for layer in graph.layers:
        if not layer.splittable:
            layers.append(layer)
            continue
        w = layer.weights["weight"]
        values = change(np.array(w.numpy(), copy=True))
        new = Weight(w.name, w.shape, w.dtype, w.bits, values.dtype, compute=lambda v=values: v)
        layers.append(dataclasses.replace(layer, weights={**layer.weights, "weight": new}))
    return graph.with_layers(layers)


def check_ratio(ratio: float) -> None:
    """Raise :class:`~dnnpart.errors.UsageError` unless ``0 <= ratio < 1``."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0.0 <= ratio < 1.0):
        raise UsageError(f"prune ratio must be in [0, 1), got {ratio!r}")


def magnitude_prune(graph: LayerGraph, ratio: float) -> LayerGraph:
    """A new graph whose splittable layers keep only their ``1 - ratio`` largest weights.

    Per layer, exactly ``round(ratio * size)`` weights are zeroed (ties broken by position,
    so the result is deterministic). Other layers and the original graph are unchanged.
    """
    check_ratio(ratio)
    if ratio == 0.0:
        return graph

    def prune(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(-1)
        drop = int(round(ratio * flat.size))
        if drop:
            order = np.argsort(np.abs(flat), kind="stable")
            flat[order[:drop]] = 0
        return values

    return map_weights(graph, prune)
