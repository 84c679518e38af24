"""Loads of pipeline stages ``I \\ J`` for chunks of ideal pairs, vectorised.

Tarnawski, Phanishayee, Devanur, Mahajan, Nina Paravecino, "Efficient Algorithms for Device
Placement of DNN Graph Operators", NeurIPS 2020, Section 4: the DP over ideals needs, for
every pair of ideals ``J ⊂ I``, the load of one device of each class holding ``I \\ J``.

Compute time, unsupported nodes and memory are differences of per-ideal sums (prefix sums
over the lattice); a stage is never empty, so its device's class overhead is added to all.
Communication is a hypergraph cut: node ``u``'s hyperedge is its unit plus its consumers'
units, of cost ``out_cost[u]``, and a device set pays it iff the hyperedge meets the set
and leaves it. With ``n_K(e) = |e ∩ K|`` and ``X(I)`` the
hyperedges crossing ``I`` (``0 < n_I(e) < |e|``), for ``J ⊆ I``::

    comm(I \\ J) = out(J) + sum over e in X(I) of c_e * ([n_J(e) != n_I(e)] - [n_J(e) > 0])

(a hyperedge that crosses neither ``I`` nor ``J`` is paid by neither side; one inside ``I``
is paid iff it crosses ``J``; for one crossing ``I`` the bracket corrects ``out(J)``). So
the work per pair is ``|X(I)|`` table look-ups, independent of the graph's size.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dnnpart.problem._pipeline import MEM_RTOL, PipelineProblem

__all__ = ["StageCosts"]


class StageCosts:
    """Per device class, the load of one device holding ``I \\ J``, for pairs of ideals.

    Parameters
    ----------
    prob : PipelineProblem
    unit : ndarray of int, shape (n,)
        Unit of every node (contracted groups, numbered in a topological order).
    ideals : Ideals
    """

    def __init__(self, prob: PipelineProblem, unit: np.ndarray, ideals) -> None:
        nu, ncls = ideals.nu, len(prob.devices)
        vals = np.zeros((nu, 2 * ncls + 1))
        for c, dc in enumerate(prob.devices):
            np.add.at(vals[:, c], unit, np.where(dc.supported, dc.time, 0.0))
            np.add.at(vals[:, ncls + c], unit, (~dc.supported).astype(np.float64))
        np.add.at(vals[:, 2 * ncls], unit, prob.size)
        agg = ideals.sums(vals)
        self.time = np.ascontiguousarray(agg[:, :ncls].T)
        self.unsup = np.ascontiguousarray(agg[:, ncls : 2 * ncls].T)
        self.size = agg[:, 2 * ncls]
        self.check_sup = [not dc.supported.all() for dc in prob.devices]
        self.cap = np.array([dc.memory for dc in prob.devices]) * (1 + MEM_RTOL)
        self.pays = [dc.pays_communication for dc in prob.devices]
        self.overhead = [dc.overhead for dc in prob.devices]
        self._hyperedges(prob, unit, ideals)

    def _hyperedges(self, prob, unit, ideals) -> None:
        hyper: dict[tuple, float] = {}
        members: dict[int, set] = {}
        for a, b in zip(prob.src.tolist(), prob.dst.tolist(), strict=True):
            members.setdefault(a, {int(unit[a])}).add(int(unit[b]))
        for a, mem in members.items():
            if len(mem) > 1 and prob.out_cost[a] > 0:
                key = tuple(sorted(mem))
                hyper[key] = hyper.get(key, 0.0) + float(prob.out_cost[a])
        H = len(hyper)
        ecost = np.array(list(hyper.values())) if H else np.zeros(0)
        esize = np.array([len(k) for k in hyper], np.int64)
        rows = np.concatenate([np.array(k, np.int64) for k in hyper]) if H else np.zeros(0, int)
        cols = np.repeat(np.arange(H), esize)
        inc = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(ideals.nu, H))
        m = self.m = ideals.count
        self.H, self.top = H, int(esize.max(initial=0))  # n_K(e) <= top
        count = np.empty((H, m), np.uint8 if self.top < 256 else np.int32)
        self.out = np.zeros(m)
        xr, xe = [], []
        step = max(1, (64 << 20) // (8 * max(1, H)))  # rows of float sums at once
        for lo in range(0, m, step):
            block = np.rint(ideals.sums(inc, lo, min(m, lo + step)))
            count[:, lo : lo + step] = block.T
            cross = (block > 0) & (block < esize)
            self.out[lo : lo + step] = cross @ ecost
            r, e = np.nonzero(cross)  # row-major: grouped by ideal
            xr.append(r + lo)
            xe.append(e)
        r, e = np.concatenate(xr), np.concatenate(xe).astype(np.int64)
        self.count = count.ravel()  # n_K(e) at e * m + K
        self.xptr = np.searchsorted(r, np.arange(m + 1))
        self.xe = e
        self.xn = count[e, r]
        self.xc = ecost[e]

    def of(self, rows: np.ndarray, counts: np.ndarray, J: np.ndarray, bound=np.inf):
        """Loads for the pairs ``(rows[r], J[k])`` (``counts[r]`` consecutive ``J`` per row).

        Returns ``rows, counts, J`` and ``cost`` of shape (classes, pairs), ``inf`` where
        the class cannot hold the stage (memory, support). Pairs whose compute time alone
        exceeds ``bound`` on every class are dropped (a split no worse than ``bound`` never
        uses them) and rows are reordered, more crossing hyperedges first."""
        ncls = len(self.pays)
        cost = np.empty((ncls, J.size))
        for c in range(ncls):  # a stage is never empty: its device pays the overhead
            np.subtract(np.repeat(self.time[c][rows], counts), self.time[c][J], out=cost[c])
            cost[c] += self.overhead[c]
        if np.isfinite(bound):
            keep = (cost.min(axis=0) if ncls > 1 else cost[0]) <= bound
            kept = np.concatenate([[0], np.cumsum(keep)])
            counts = kept[np.cumsum(counts)] - kept[np.cumsum(counts) - counts]
            J, cost = J[keep], cost[:, keep]
        for c in range(ncls):  # feasibility, on the pairs kept only
            if self.check_sup[c]:
                cost[c][np.repeat(self.unsup[c][rows], counts) - self.unsup[c][J] > 0.5] = np.inf
            if np.isfinite(self.cap[c]):
                cost[c][np.repeat(self.size[rows], counts) - self.size[J] > self.cap[c]] = np.inf
        x = self.xptr[rows + 1] - self.xptr[rows]
        perm = np.argsort(-x, kind="stable")
        offs = np.concatenate([[0], np.cumsum(counts)])
        if (perm != np.arange(perm.size)).any():
            rows, counts, x = rows[perm], counts[perm], x[perm]
            new = np.concatenate([[0], np.cumsum(counts)])
            pick = np.repeat(offs[:-1][perm] - new[:-1], counts) + np.arange(J.size)
            J, cost, offs = J[pick], cost[:, pick], new
        comm = self._comm(rows, counts, offs, x, J)
        for c in range(ncls):
            if self.pays[c]:
                cost[c] += comm
            np.maximum(cost[c], 0.0, out=cost[c])
        return rows, counts, J, cost

    def _comm(self, rows, counts, offs, x, J) -> np.ndarray:
        """Communication paid by a device holding ``I \\ J`` (module formula); ``x``, the
        crossing hyperedges per row, descends, so slot ``k`` is a prefix of the pairs."""
        comm = self.out[J]
        if not self.H or not x.size or x[0] == 0:
            return comm
        pos = self.xptr[rows]
        width = self.top + 1
        n = np.arange(width)
        for k in range(int(x[0])):
            r = int(np.count_nonzero(x > k))
            q = int(offs[r])
            sel = pos[:r] + k
            # per row, the correction for every possible n_J(e): +c at 0, -c at n_I(e)
            n_i = self.xn[sel].astype(np.int64)[:, None]
            table = self.xc[sel][:, None] * ((n != n_i).astype(np.int8) - (n > 0))
            n_j = self.count[np.repeat(self.xe[sel] * self.m, counts[:r]) + J[:q]]
            comm[:q] += table.ravel()[np.repeat(np.arange(0, r * width, width), counts[:r]) + n_j]
        return np.maximum(comm, 0.0, out=comm)
