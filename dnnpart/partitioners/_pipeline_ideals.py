"""Ideals of a DAG for the pipeline DP (Tarnawski et al., NeurIPS 2020, Section 4).

An *ideal* is a downward-closed set of units (it holds every predecessor of its members).
:func:`enumerate_ideals` lists them level by level with the covering links of their
lattice; :class:`Ideals` stores them as rows of a bit matrix (or, linearised, as the
prefixes of one topological order) and answers the DP's questions: which units an ideal
holds, which ideals lie below another, and sums of unit values over each ideal.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Ideals", "enumerate_ideals"]


class Ideals:
    """Ideals as rows of a bit matrix, sorted by size; or prefixes of the unit order.

    ``links`` (child row, parent row) are the lattice's covering pairs: the child is the
    parent plus one unit. Sub-ideal sets are propagated along them as bitsets over rows.
    """

    def __init__(self, nu: int, ints: list | None, links=None):
        self.nu = nu
        self.linear = ints is None
        self.count = nu + 1 if self.linear else len(ints)
        self.reach = None
        if not self.linear:
            w = max(1, (nu + 63) // 64)
            raw = b"".join(x.to_bytes(8 * w, "little") for x in ints)
            self.bits = np.frombuffer(raw, dtype="<u8").reshape(-1, w)
            self.links = links

    def member(self, rows: np.ndarray, units: np.ndarray) -> np.ndarray:
        """Boolean matrix (len(rows), len(units)): is unit u in ideal row r?"""
        rows, units = np.asarray(rows), np.asarray(units)
        if self.linear:  # prefix j holds units 0..j-1
            return rows[:, None] > units[None, :]
        words = self.bits[rows[:, None], units[None, :] >> 6]
        return ((words >> (units & 63).astype(np.uint64)) & np.uint64(1)).astype(bool)

    def count_pairs(self) -> int:
        """Pairs J ⊆ I (J == I included); builds the sub-ideal bitsets on the way."""
        m = self.count
        if self.linear:
            return m * (m + 1) // 2
        child, parent = self.links
        mw = (m + 63) // 64
        reach = np.zeros((m, mw), np.uint64)
        rows = np.arange(m)
        reach[rows, rows >> 6] = np.left_shift(np.uint64(1), (rows & 63).astype(np.uint64))
        # links are sorted by child and a parent row is always smaller than its child's;
        # a chunk ends before its first parent that could be a child of the same chunk, so
        # every parent is final when read. Splitting one child's links is harmless (|=).
        step = max(1, 4_000_000 // mw)
        lo = 0
        while lo < child.size:
            hi = min(child.size, lo + step)
            late = np.flatnonzero(parent[lo:hi] >= child[lo])
            if late.size:
                hi = lo + int(late[0])
            c, p = child[lo:hi], parent[lo:hi]
            starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
            reach[c[starts]] |= np.bitwise_or.reduceat(reach[p], starts, axis=0)
            lo = hi
        self.reach = reach
        if hasattr(np, "bitwise_count"):
            return int(np.bitwise_count(reach).sum(dtype=np.int64))
        return int(
            sum(
                np.unpackbits(reach[i : i + 4096].view(np.uint8)).sum(dtype=np.int64)
                for i in range(0, m, 4096)
            )
        )

    def subideals(self, i: int) -> np.ndarray:
        """Rows J ⊆ I, ascending (I itself last: no other subset is as large)."""
        if self.linear:
            return np.arange(i + 1)
        bits = np.unpackbits(self.reach[i].view(np.uint8), bitorder="little")
        return np.flatnonzero(bits)

    def sums(self, vals: np.ndarray) -> np.ndarray:
        """``vals`` (nu, q) summed over each ideal -> (count, q)."""
        if self.linear:
            return np.vstack([np.zeros((1, vals.shape[1])), np.cumsum(vals, axis=0)])
        out = np.empty((self.count, vals.shape[1]))
        for lo in range(0, self.count, 4096):
            chunk = np.unpackbits(
                self.bits[lo : lo + 4096].view(np.uint8), axis=1, bitorder="little"
            )[:, : self.nu]
            out[lo : lo + 4096] = chunk @ vals
        return out

    def units_of(self, i: int, j: int) -> np.ndarray:
        if self.linear:
            return np.arange(j, i)
        diff = self.bits[i] & ~self.bits[j]
        bits = np.unpackbits(diff.view(np.uint8), bitorder="little")[: self.nu]
        return np.flatnonzero(bits)


def enumerate_ideals(units, cap: int):
    """All ideals sorted by size and the covering links between them, level by level (no
    recursion); None past ``cap`` ideals."""
    preds, succs = units.preds, units.succs
    start = 0
    for v in range(units.count):
        if preds[v] == 0:
            start |= 1 << v
    level = {0: start}  # ideal -> units that can be added to it
    row_of = {0: 0}
    ints, child, parent = [0], [], []
    for _ in range(units.count):
        nxt: dict[int, int] = {}
        nxt_row: dict[int, int] = {}
        base = len(ints)
        for ideal, addable in level.items():
            prow = row_of[ideal]
            rest = addable
            while rest:
                low = rest & -rest
                rest ^= low
                grown = ideal | low
                row = nxt_row.get(grown)
                if row is None:
                    row = nxt_row[grown] = base + len(nxt_row)
                    more = addable & ~low
                    for w in succs[low.bit_length() - 1]:
                        if preds[w] & ~grown == 0:
                            more |= 1 << w
                    nxt[grown] = more
                child.append(row)
                parent.append(prow)
        ints.extend(nxt)  # same order as the rows handed out in nxt_row
        if len(ints) > cap:
            return None
        level, row_of = nxt, nxt_row
    c, p = np.array(child, np.int64), np.array(parent, np.int64)
    order = np.argsort(c, kind="stable")
    return ints, (c[order], p[order])
