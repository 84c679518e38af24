"""Zero skipping (GraphDNN thesis §5.1.3, "Explorations on ReLU activation"): what the
split sends when messages leave their zeros out.

A *message* is what one device sends another of one tensor for one sample: the
activations of the neurons the receiver needs. Dense, it costs ``n * b`` bytes (``n``
elements of ``b`` bytes). Two sparse formats, the smaller taken per message and sample:

- bitmap: ``ceil(n / 8)`` bytes of presence bits, then the ``z`` non-zero values,
  ``ceil(n / 8) + z * b``;
- index + value: each non-zero value with its position in the message (1 byte up to 256
  elements, 2 up to 65,536, else 4), ``z * (i + b)``.

:func:`sparse_volume` measures it on the user's samples: ``volume_bytes_sparse`` is the
mean over samples of the bytes of every message, and ``zero_fraction`` the share of sent
elements that are zero.
"""

from __future__ import annotations

import numpy as np

__all__ = ["index_bytes", "message_bytes", "sparse_volume"]


def index_bytes(n: int) -> int:
    """Bytes of a position in a message of ``n`` elements."""
    return 1 if n <= 1 << 8 else 2 if n <= 1 << 16 else 4


def message_bytes(n: int, nonzero: np.ndarray, itemsize: int) -> np.ndarray:
    """Bytes of a sparse message of ``n`` elements with ``nonzero`` values (per sample):
    the smaller of bitmap and index + value."""
    z = np.asarray(nonzero, dtype=np.int64)
    bitmap = -(-n // 8) + z * itemsize
    indexed = z * (index_bytes(n) + itemsize)
    return np.minimum(bitmap, indexed)


def sparse_volume(problem, labels: np.ndarray, values: dict[str, np.ndarray]):
    """``(volume_bytes_sparse, zero_fraction)`` of the split ``labels`` of ``problem`` on
    the samples of ``values`` (each sent tensor's value, samples along axis 0).

    Returns ``(None, None)`` when the problem's nets do not name their tensors or a sent
    tensor has no value.
    """
    from dnnpart.problem._layout import neuron_layout

    nets = problem.nets
    if nets is None or nets.tensors is None or problem.granularity != "neuron":
        return None, None
    spaces = neuron_layout(problem.graph).spaces
    labels = np.asarray(labels)
    pins = nets.pins.tocsr()
    total = sent = zeros = 0.0
    for name, first in nets.tensors.items():
        space = spaces.get(name)
        per_sample = None if space is None else _nonzero_per_neuron(values.get(name), space)
        if per_sample is None:
            return None, None
        count = per_sample.shape[1]
        src = labels[nets.source[first : first + count]]
        block = pins[first : first + count]
        for dst in range(problem.k):
            reads = np.asarray(block @ (labels == dst).astype(np.float64)).reshape(-1) > 0
            for a in np.unique(src[reads & (src != dst)]):
                need = np.flatnonzero(reads & (src == a))
                n = int(nets.elements[first + need].sum())
                j = first + need[0]
                itemsize = max(1, int(nets.nbytes[j] // max(1, nets.elements[j])))
                nz = per_sample[:, need].sum(axis=1)
                total += float(message_bytes(n, nz, itemsize).mean())
                sent += n * len(nz)
                zeros += n * len(nz) - float(nz.sum())
    return total, (zeros / sent if sent else 0.0)


def _nonzero_per_neuron(value, space) -> np.ndarray | None:
    """Non-zero elements per (sample, neuron) of a tensor's value (samples on axis 0); a
    whole tensor is one neuron. None when the value does not fit the space."""
    if value is None:
        return None
    v = np.asarray(value)
    if space.whole or space.axis is None:
        return np.count_nonzero(v.reshape(v.shape[0], -1), axis=1).reshape(-1, 1)
    if space.axis == 0 or v.ndim <= space.axis or v.shape[space.axis] != space.count:
        return None
    moved = np.moveaxis(v, space.axis, 1)
    return np.count_nonzero(moved.reshape(moved.shape[0], space.count, -1), axis=2)
