"""Weight sharing by k-means, per layer (Han, Mao, Dally, "Deep Compression", ICLR 2016,
§3; the GraphDNN thesis §2.2.2, "Quantization"): the non-zero weights of each splittable
layer are clustered into ``2**bits`` values and each weight is replaced by its cluster's
centroid, so a weight is stored as a ``bits``-bit index into a small codebook."""

from __future__ import annotations

import hashlib

import numpy as np

from dnnpart.compress._prune import map_weights
from dnnpart.errors import UsageError
from dnnpart.graph import LayerGraph

__all__ = ["share_weights", "weights_digest"]


def _cluster(values: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``values`` (1-D, non-zero) replaced by their k-means centroids."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    if np.unique(values).size <= k:  # already at most k values: nothing to share
        return values
    # Han et al. §3.2: linear initialisation over [min, max] keeps the rare large weights
    init = np.linspace(values.min(), values.max(), k, dtype=np.float64).reshape(-1, 1)
    # one thread: OpenMP reductions summed in another order could move a centroid by an
    # ulp, and a replay must reproduce the very same weights
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=k, init=init, n_init=1, random_state=seed)
        km.fit(values.astype(np.float64).reshape(-1, 1))
    # the shared value of a cluster is the mean of its weights (KMeans stops at a
    # tolerance, its last centres can lag its last labels by one step)
    labels = km.labels_
    sums = np.bincount(labels, weights=values.astype(np.float64), minlength=k)
    counts = np.bincount(labels, minlength=k)
    centroids = (sums / np.maximum(counts, 1)).astype(values.dtype)
    return centroids[labels]


def share_weights(graph: LayerGraph, bits: int, *, seed: int = 0) -> LayerGraph:
    """A new graph whose splittable layers hold at most ``2**bits`` distinct non-zero weights.

    Parameters
    ----------
    graph : LayerGraph
    bits : int
        Bits per shared-weight index, 1 to 16 (Han et al. use 8 for convolutions and 5
        for dense layers; the thesis 8 and 6).
    seed : int
        ``random_state`` of scikit-learn's ``KMeans`` (the linear initialisation makes
        the result independent of it; kept so that every randomised step takes a seed).

    Zeros (pruned weights) stay zero and are not clustered. Other layers and the original
    graph are unchanged.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise UsageError(f"--share-bits must be an integer from 1 to 16, got {bits!r}")

    def share(values: np.ndarray) -> np.ndarray:
        keep = values != 0
        if keep.any():
            values[keep] = _cluster(values[keep], 1 << bits, seed)
        return values

    return map_weights(graph, share)


def weights_digest(graph: LayerGraph) -> str:
    """sha256 of every splittable layer's name and weight bytes, in layer order: the
    content hash a plan records of the weights a pass computed."""
    h = hashlib.sha256()
    for layer in graph.layers:
        if layer.splittable:
            values = np.ascontiguousarray(layer.weights["weight"].numpy())
            h.update(layer.name.encode() + b"\0" + str(values.dtype).encode() + b"\0")
            h.update(values.tobytes())
    return h.hexdigest()
