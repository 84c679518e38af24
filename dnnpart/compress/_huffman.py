"""Huffman code lengths (Huffman, "A Method for the Construction of Minimum-Redundancy
Codes", Proc. IRE 1952), the last stage of Deep Compression (Han et al., ICLR 2016, §4)."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Hashable, Iterable

__all__ = ["huffman_lengths", "huffman_bits"]


def huffman_lengths(counts: dict[Hashable, int]) -> dict[Hashable, int]:
    """The code length in bits of every symbol of an optimal prefix code.

    Parameters
    ----------
    counts : dict
        Occurrences of each symbol (symbols with a count of 0 get no code).

    Returns
    -------
    dict
        Symbol -> code length. A lone symbol gets a 1-bit code (a stream still needs one
        bit per symbol to be counted); no symbol, an empty dict. Ties are broken by the
        order symbols first appear in ``counts``, so the lengths are deterministic.
    """
    symbols = [s for s, c in counts.items() if c > 0]
    if len(symbols) == 1:
        return {symbols[0]: 1}
    lengths = dict.fromkeys(symbols, 0)
    # heap of (count, tie-break, symbols under this node)
    heap = [(counts[s], i, [s]) for i, s in enumerate(symbols)]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        for s in a + b:  # every symbol under the merged node goes one level deeper
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, a + b))
        tie += 1
    return lengths


def huffman_bits(symbols: Iterable[Hashable]) -> int:
    """Bits of the Huffman-coded stream ``symbols`` (the code table not included)."""
    counts = Counter(symbols)
    lengths = huffman_lengths(counts)
    return sum(counts[s] * n for s, n in lengths.items())
