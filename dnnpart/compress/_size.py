"""The stored size of a compressed layer (Han, Mao, Dally, "Deep Compression", ICLR 2016,
§2-4; the GraphDNN thesis §2.2.2 and Tables 4.3-4.4).

A layer's kept (non-zero) weights are stored in flattened order (the weight's own C
order) as pairs: the *relative index* (distance from the previous kept weight) in
``index_bits`` bits, and the value. A distance longer than ``2**index_bits`` is bridged
by filler entries, each advancing ``2**index_bits`` with a zero value (Han et al. §2,
Figure 2). Values are indices into the layer's codebook of shared weights (a codebook
entry costs the weight's own width), or, without sharing, the raw weights. Both streams,
the indices of the shared values and the index distances, are Huffman-coded (§4); the
code tables are not counted, as in the paper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dnnpart.compress._huffman import huffman_lengths
from dnnpart.graph import LayerGraph, LayerKind

__all__ = ["LayerSize", "layer_size", "size_table"]

FILL = "fill"  # the value symbol of a filler entry


@dataclass(frozen=True)
class LayerSize:
    """One row of ``dnnpart compress``'s table: what a layer costs stored compressed."""

    layer: str
    weights: int  # all weights
    kept: int  # non-zero weights
    bits: int  # bits per stored value: the shared-value index, or the raw weight
    index_bits: int
    fillers: int  # filler entries bridging long gaps
    dense_bits: int  # the layer's weights stored dense
    value_bits: int  # the coded values (and the codebook)
    index_coded_bits: int  # the Huffman-coded relative indices

    @property
    def coded_bits(self) -> int:
        return self.value_bits + self.index_coded_bits

    @property
    def coded_bytes(self) -> int:
        return -(-self.coded_bits // 8)

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.weights if self.weights else 0.0

    @property
    def rate(self) -> float:
        """Coded size over the dense size (the thesis' "compress rate")."""
        return self.coded_bits / self.dense_bits if self.dense_bits else 0.0

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "coded_bits": self.coded_bits,
            "coded_bytes": self.coded_bytes,
            "kept_fraction": self.kept_fraction,
            "rate": self.rate,
        }


def _coded(counts: dict) -> int:
    lengths = huffman_lengths(counts)
    return sum(int(counts[s]) * n for s, n in lengths.items())


def layer_size(
    name: str, values: np.ndarray, *, index_bits: int, shared: bool, weight_bits: int = 32
) -> LayerSize:
    """The stored size of one layer's weights ``values``.

    Parameters
    ----------
    values : ndarray
        The layer's weights after pruning (and sharing).
    index_bits : int
        Bits of a relative index before Huffman coding (Han et al.: 8 for convolutions,
        5 for dense layers); sets the longest gap one entry bridges.
    shared : bool
        Values are shared: stored as Huffman-coded indices into a codebook of the
        distinct non-zero values. Otherwise each value is stored raw in ``weight_bits``.
    """
    flat = np.asarray(values).reshape(-1)
    positions = np.flatnonzero(flat)
    span = 1 << index_bits
    gaps = np.diff(positions, prepend=-1)  # >= 1
    fill = (gaps - 1) // span
    last = gaps - fill * span  # 1 .. span, stored as last - 1
    fillers = int(fill.sum())
    steps, step_counts = np.unique(last - 1, return_counts=True)
    index_counts = dict(zip(steps.tolist(), step_counts.tolist(), strict=True))
    if fillers:
        index_counts[span - 1] = index_counts.get(span - 1, 0) + fillers
    book, book_counts = np.unique(flat[positions], return_counts=True)
    if shared:
        value_counts: dict = dict(enumerate(book_counts.tolist()))
        if fillers:
            value_counts[FILL] = fillers
        value_bits = _coded(value_counts) + book.size * weight_bits
        bits = max(1, int(np.ceil(np.log2(max(book.size, 1)))))
    else:
        value_bits = (positions.size + fillers) * weight_bits
        bits = weight_bits
    return LayerSize(
        layer=name,
        weights=int(flat.size),
        kept=int(positions.size),
        bits=bits,
        index_bits=index_bits,
        fillers=fillers,
        dense_bits=int(flat.size) * weight_bits,
        value_bits=int(value_bits),
        index_coded_bits=_coded(index_counts),
    )


def size_table(
    graph: LayerGraph, *, shared: bool, index_bits: int | None = None
) -> list[LayerSize]:
    """:func:`layer_size` of every splittable layer of ``graph``, in layer order
    (``index_bits`` default: 8 for convolutions, 5 for dense layers, as Han et al.)."""
    rows = []
    for layer in graph.layers:
        if not layer.splittable:
            continue
        w = layer.weights["weight"]
        bits = index_bits or (8 if layer.kind == LayerKind.CONV else 5)
        rows.append(
            layer_size(layer.name, w.numpy(), index_bits=bits, shared=shared, weight_bits=w.bits)
        )
    return rows
