"""Ideals of a DAG for the pipeline DP (Tarnawski et al., NeurIPS 2020, Section 4).

An *ideal* is a downward-closed set of units (it holds every predecessor of its members).
:func:`enumerate_ideals` lists them level by level (a level: the ideals of one size) with
the covering links of their lattice; :class:`Ideals` stores them as rows of a bit matrix
(or, linearised, as the prefixes of one topological order) and answers the DP's questions:
which ideals lie strictly below each ideal (in chunks of pairs, vectorised), sums of unit
values over each ideal, and which units a difference of two ideals holds.

The sub-ideal relation is never stored whole: it is propagated one level at a time along
the covering links as bitsets over rows (``J ⊂ I`` iff ``J`` is ``I`` or lies below a
parent of ``I``), so memory stays at two levels of bitsets plus one chunk of pairs.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["Ideals", "enumerate_ideals"]

_TEMP_BYTES = 64 << 20  # largest temporary bitset block built at once


def _popcount(a: np.ndarray) -> np.ndarray:
    """Set bits per row of a uint64 matrix."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(a).sum(axis=1, dtype=np.int64)
    return np.unpackbits(a.view(np.uint8), axis=1).sum(axis=1, dtype=np.int64)


class Ideals:
    """Ideals as rows of a bit matrix, sorted by size; or prefixes of the unit order.

    ``links`` (child row, parent row), sorted by child, are the lattice's covering pairs:
    the child is the parent plus one unit.
    """

    def __init__(self, nu: int, ints: list | None, links=None):
        self.nu = nu
        self.linear = ints is None
        self.words = max(1, (nu + 63) // 64)
        if self.linear:  # prefix j holds units 0..j-1
            ints = [(1 << j) - 1 for j in range(nu + 1)]
            rows = np.arange(1, nu + 1)
            links = (rows, rows - 1)
        self.count = len(ints)
        raw = b"".join(x.to_bytes(8 * self.words, "little") for x in ints)
        self.bits = np.frombuffer(raw, dtype="<u8").reshape(-1, self.words)
        self.links = links
        # ideals are sorted by size: level L is rows level[L]..level[L+1]-1
        size = _popcount(self.bits)
        self.level = np.searchsorted(size, np.arange(nu + 2))

    # -- strict sub-ideals -----------------------------------------------------------------

    def _reach_levels(self):
        """Per level ``L >= 1``: ``(lo, hi, R)`` with ``R[r]`` the bitset (over rows below
        ``lo``) of the strict sub-ideals of row ``lo + r``."""
        child, parent = self.links
        prev = np.zeros((1, 0), np.uint64)  # level 0: the empty ideal, nothing below it
        for L in range(1, self.nu + 1):
            plo, lo, hi = (int(x) for x in self.level[L - 1 : L + 2])
            words = (lo + 63) // 64
            # a parent contributes its own sub-ideals and itself
            full = np.zeros((lo - plo, words), np.uint64)
            full[:, : prev.shape[1]] = prev
            rows = np.arange(plo, lo)
            bit = np.left_shift(np.uint64(1), (rows & 63).astype(np.uint64))
            full[rows - plo, rows >> 6] |= bit
            a, b = np.searchsorted(child, [lo, hi])
            c, p = child[a:b] - lo, parent[a:b] - plo
            # the j-th parent of every child at once (children are distinct within a slot)
            first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
            slot = np.arange(c.size) - np.repeat(first, np.diff(np.r_[first, c.size]))
            order = np.argsort(slot, kind="stable")
            bounds = np.searchsorted(slot[order], np.arange(int(slot.max(initial=-1)) + 2))
            R = np.zeros((hi - lo, words), np.uint64)
            step = max(1, _TEMP_BYTES // (8 * words))
            for j in range(bounds.size - 1):
                for s0 in range(int(bounds[j]), int(bounds[j + 1]), step):
                    pick = order[s0 : min(s0 + step, int(bounds[j + 1]))]
                    R[c[pick]] |= full[p[pick]]
            yield lo, hi, R
            prev = R

    def estimate_pairs(self, samples: int = 2048) -> int:
        """Pairs ``J ⊆ I`` (``J == I`` included): exact up to ``samples`` ideals, else
        ``count`` times the mean over ``samples`` evenly spaced rows (the rows are sorted
        by size, so every level is sampled in proportion); no sub-ideal bitsets built."""
        m = self.count
        if self.linear:
            return m * (m + 1) // 2
        picked = (np.arange(min(m, samples)) * m) // min(m, samples)
        level_start = self.level[np.searchsorted(self.level, picked, side="right") - 1]
        subs = [
            1 + int(((self.bits[:lo] & ~self.bits[i]) == 0).all(axis=1).sum())
            for i, lo in zip(picked.tolist(), level_start.tolist(), strict=True)
        ]
        return int(round(m * float(np.mean(subs))))

    def strict_pairs(self, max_pairs: int):
        """Chunks ``(rows, counts, J)`` covering every pair ``J ⊂ I`` of rows ``I >= 1``:
        row ``rows[r]`` has the ``counts[r]`` sub-ideals next in ``J`` (ascending). A chunk
        holds about ``max_pairs`` pairs (more only when one ideal has more)."""
        if self.linear:
            lo = 1
            while lo < self.count:
                # rows lo..hi-1 hold (lo + hi - 1) * (hi - lo) / 2 pairs
                hi = lo + 1
                while hi < self.count and (lo + hi) * (hi + 1 - lo) // 2 <= max_pairs:
                    hi += 1
                rows = np.arange(lo, hi)
                J = np.concatenate([np.arange(r) for r in rows])
                yield rows, rows.copy(), J
                lo = hi
            return
        buf_rows, buf_counts, buf_j, held = [], [], [], 0
        for lo, hi, R in self._reach_levels():
            step = max(1, min(hi - lo, _TEMP_BYTES // max(1, lo)))
            for r0 in range(0, hi - lo, step):
                block = R[r0 : r0 + step]
                bits = np.unpackbits(block.view(np.uint8), axis=1, bitorder="little", count=lo)
                counts = _popcount(block)
                # flat positions minus each row's start: no division per pair
                J = np.flatnonzero(bits.view(bool)) - np.repeat(
                    np.arange(0, lo * len(block), lo), counts
                )
                buf_rows.append(np.arange(lo + r0, lo + r0 + len(block)))
                buf_counts.append(counts)
                buf_j.append(J)
                held += J.size
                if held >= max_pairs:
                    yield _joined(buf_rows, buf_counts, buf_j)
                    buf_rows, buf_counts, buf_j, held = [], [], [], 0
        if buf_rows:
            yield _joined(buf_rows, buf_counts, buf_j)

    def subideals_of(self, i: int) -> np.ndarray:
        """Rows ``J ⊂ I`` (strict), ascending."""
        if self.linear:
            return np.arange(i)
        below = self.bits[: self.level[np.searchsorted(self.level, i, side="right") - 1]]
        return np.flatnonzero(((below & ~self.bits[i]) == 0).all(axis=1))

    # -- values over ideals ----------------------------------------------------------------

    def sums(self, vals, start: int = 0, stop: int | None = None) -> np.ndarray:
        """``vals`` (nu, q), dense or sparse, summed over ideals ``start..stop-1`` (all by
        default) -> (rows, q)."""
        stop = self.count if stop is None else stop
        out = np.empty((stop - start, vals.shape[1]))
        step = max(1, _TEMP_BYTES // (8 * max(1, self.nu)))
        for lo in range(start, stop, step):
            hi = min(stop, lo + step)
            chunk = np.unpackbits(
                self.bits[lo:hi].view(np.uint8), axis=1, bitorder="little", count=self.nu
            )
            if sp.issparse(vals):
                out[lo - start : hi - start] = (vals.T @ chunk.T.astype(np.float64)).T
            else:
                out[lo - start : hi - start] = chunk @ vals
        return out

    def units_of(self, i: int, j: int) -> np.ndarray:
        """Units of ``I \\ J``."""
        diff = self.bits[i] & ~self.bits[j]
        return np.flatnonzero(np.unpackbits(diff.view(np.uint8), bitorder="little")[: self.nu])


def _joined(rows, counts, js):
    return np.concatenate(rows), np.concatenate(counts), np.concatenate(js)


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
