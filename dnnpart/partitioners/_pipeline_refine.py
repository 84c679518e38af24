"""Non-contiguous local search after the pipeline DP (Tarnawski et al., NeurIPS 2020).

The paper notes that non-contiguous splits can beat the contiguous optimum of its dynamic
program; :func:`refine` explores them by moving and swapping colocation groups between
devices, accepting only steps that lower max-load (:func:`dnnpart.problem.max_load`,
including the overhead a device pays while it holds any node).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnnpart.errors import UsageError
from dnnpart.problem._pipeline import (
    MEM_RTOL,
    PipelineProblem,
    as_pipeline_problem,
    check_assignment,
    check_feasibility,
    device_loads,
)

__all__ = ["RefineResult", "refine"]


@dataclass(frozen=True, eq=False)
class RefineResult:
    """Answer of :func:`refine`: never worse than ``initial_max_load``."""

    assignment: np.ndarray
    max_load: float
    loads: np.ndarray
    initial_max_load: float
    moves: int
    swaps: int


def refine(
    problem,
    assignment,
    num_accelerators=None,
    num_cpus=None,
    *,
    seed=0,
    max_passes=1000,
    max_swap_evals=20_000,
    lexicographic=False,
) -> RefineResult:
    """Improve an assignment by moving or swapping colocation groups between devices.

    The paper notes that non-contiguous splits can beat the contiguous optimum; this local
    search explores them. Each pass tries every move of a group off a bottleneck device
    (and of a neighbouring group onto it) and takes the best; when no move helps, it tries
    swaps of a bottleneck group with a group elsewhere, in a seeded random order, taking the
    first that helps. By default only strict decreases of max-load are accepted; every step
    keeps memory, support and colocation, so the result is never worse than the input.
    With several devices tied at the maximum a single move cannot lower it and the search
    stops; ``lexicographic=True`` then also accepts steps that keep the maximum and strictly
    lower the load vector sorted in decreasing order (fewer devices at the maximum, then a
    lower runner-up...), which still never raises max-load and cannot cycle.

    Parameters
    ----------
    problem : ProfiledGraph or PipelineProblem
    assignment : array of int, shape (n,)
        A feasible assignment (e.g. ``pipeline_dp(...).assignment``).
    seed : int
        Order of the swap candidates; same seed, same answer.
    max_passes : int
        Accepted improvements at most.
    max_swap_evals : int
        Swap candidates tried per pass at most.
    lexicographic : bool
        Accept ties of the maximum that improve the sorted load vector (see above).
    """
    prob = as_pipeline_problem(problem, num_accelerators, num_cpus)
    a = check_assignment(prob, assignment).copy()
    bad = check_feasibility(prob, a)
    if bad:
        raise UsageError("refine needs a feasible assignment: " + "; ".join(bad[:3]))
    search = _LocalSearch(prob, a, lexicographic)
    rng = np.random.default_rng(seed)
    initial = search.current_max()
    moves = swaps = 0
    for _ in range(max_passes):
        best = search.best_move()
        if best is not None:
            search.apply([best])
            moves += 1
            continue
        found = search.first_swap(rng, max_swap_evals)
        if found is None:
            break
        search.apply(found)
        swaps += 1
    out = search.dev_array()
    loads = device_loads(prob, out).total
    if loads.max() > initial:  # only float noise could do this: keep the input then
        out, loads, moves, swaps = a, device_loads(prob, a).total, 0, 0
    return RefineResult(out, float(loads.max()), loads, float(initial), moves, swaps)


class _LocalSearch:
    """Incremental loads under moves of colocation groups (plain lists: small, hot loops)."""

    def __init__(self, prob: PipelineProblem, a: np.ndarray, lexicographic: bool):
        self.prob = prob
        self.lex = lexicographic
        n, K = prob.num_nodes, prob.num_devices
        cls = prob.device_class
        self.K = K
        self.pays = [prob.devices[c].pays_communication for c in cls]
        self.mem = [prob.devices[c].memory * (1 + MEM_RTOL) for c in cls]
        g = prob.group
        key = np.where(g >= 0, g, g.max(initial=-1) + 1 + np.arange(n))
        gid = np.unique(key, return_inverse=True)[1].ravel()
        self.groups = [[] for _ in range(int(gid.max()) + 1 if n else 0)]
        for u, q in enumerate(gid.tolist()):
            self.groups[q].append(u)
        self.gid = gid.tolist()
        sup = np.stack([dc.supported for dc in prob.devices])[cls]  # (K, n)
        times = np.where(sup, np.stack([dc.time for dc in prob.devices])[cls], 0.0)
        self.gtime = [[float(times[d, grp].sum()) for d in range(K)] for grp in self.groups]
        self.gok = [[bool(sup[d, grp].all()) for d in range(K)] for grp in self.groups]
        self.gsize = [float(prob.size[grp].sum()) for grp in self.groups]
        pairs = (
            np.unique(np.stack([prob.src, prob.dst]), axis=1)
            if prob.src.size
            else np.zeros((2, 0), np.int64)
        )
        self.cons = [[] for _ in range(n)]
        self.prod = [[] for _ in range(n)]
        for u, w in pairs.T.tolist():
            self.cons[u].append(w)
            self.prod[w].append(u)
        self.cost = prob.out_cost.tolist()
        self.dev = a.tolist()
        self.cnt = [[0] * K for _ in range(n)]
        for u in range(n):
            for w in self.cons[u]:
                self.cnt[u][self.dev[w]] += 1
        self.used = np.bincount(a, weights=prob.size, minlength=K).tolist()
        # nodes per device: a device pays its class overhead while it holds any
        self.nodes = np.bincount(a, minlength=K).tolist()
        self.overhead = [prob.devices[c].overhead for c in cls]
        self.load = device_loads(prob, a).total.tolist()
        # neighbours of each group (other groups sharing an edge)
        self.gnbr = [
            sorted({self.gid[x] for u in grp for x in self.cons[u] + self.prod[u]} - {q})
            for q, grp in enumerate(self.groups)
        ]

    def dev_array(self) -> np.ndarray:
        return np.array(self.dev, dtype=np.int64)

    def current_max(self) -> float:
        return max(self.load)

    def _comm(self, u: int, load: list, sign: float) -> None:
        c = self.cost[u]
        if c == 0 or not self.cons[u]:
            return
        row, d, sent = self.cnt[u], self.dev[u], False
        for k in range(self.K):
            if row[k] and k != d:
                sent = True
                if self.pays[k]:
                    load[k] += sign * c
        if sent and self.pays[d]:
            load[d] += sign * c

    def _shift(self, q: int, src: int, dst: int) -> None:
        for v in self.groups[q]:
            self.dev[v] = dst
            for p in self.prod[v]:
                self.cnt[p][src] -= 1
                self.cnt[p][dst] += 1

    def _evaluate(self, steps) -> list:
        """Loads after the (group, target) steps, leaving the state unchanged."""
        load = list(self.load)
        touched = set()
        for q, _ in steps:
            for v in self.groups[q]:
                touched.add(v)
                touched.update(self.prod[v])
        for u in touched:
            self._comm(u, load, -1.0)
        undo = []
        nodes = list(self.nodes)
        for q, t in steps:
            s = self.dev[self.groups[q][0]]
            load[s] -= self.gtime[q][s]
            load[t] += self.gtime[q][t]
            nodes[s] -= len(self.groups[q])
            nodes[t] += len(self.groups[q])
            self._shift(q, s, t)
            undo.append((q, s, t))
        for u in touched:
            self._comm(u, load, 1.0)
        for q, s, t in reversed(undo):
            self._shift(q, t, s)
        # a device emptied stops paying its overhead, one newly used starts (compared
        # after all steps: a swap may empty a device and fill it again)
        for d in {d for _, s, t in undo for d in (s, t)}:
            load[d] += self.overhead[d] * ((nodes[d] > 0) - (self.nodes[d] > 0))
        return load

    def _fits(self, steps) -> bool:
        used = list(self.used)
        for q, t in steps:
            if not self.gok[q][t]:
                return False
            s = self.dev[self.groups[q][0]]
            used[s] -= self.gsize[q]
            used[t] += self.gsize[q]
        return all(used[d] <= self.mem[d] for d in range(self.K))

    def _key(self, load: list) -> list:
        return sorted(load, reverse=True) if self.lex else [max(load)]

    def _improves(self, load: list) -> bool:
        """Strictly better than the current loads (beyond rounding), never a higher max."""
        cur = self._key(self.load)
        new = self._key(load)
        if new[0] > cur[0]:
            return False
        tol = 1e-9 * max(1.0, abs(cur[0]))
        for x, y in zip(new, cur, strict=True):
            if abs(x - y) > tol:
                return x < y
        return False

    def _hot(self) -> list:
        top = max(self.load)
        tol = 1e-9 * max(1.0, abs(top))
        return [d for d in range(self.K) if self.load[d] >= top - tol]

    def best_move(self):
        hot = self._hot()
        cands = []
        for q, grp in enumerate(self.groups):
            d = self.dev[grp[0]]
            if d in hot:
                cands.extend((q, t) for t in range(self.K) if t != d)
            else:
                # pulling a neighbour onto a bottleneck can save its communication
                near = {self.dev[self.groups[r][0]] for r in self.gnbr[q]}
                cands.extend((q, t) for t in hot if t in near)
        best, best_key = None, None
        for q, t in cands:
            if not self._fits([(q, t)]):
                continue
            load = self._evaluate([(q, t)])
            key = self._key(load)
            if (best_key is None or key < best_key) and self._improves(load):
                best, best_key = (q, t), key
        return best

    def first_swap(self, rng, budget: int):
        hot = set(self._hot())
        mine = [q for q, g in enumerate(self.groups) if self.dev[g[0]] in hot]
        other = [q for q, g in enumerate(self.groups) if self.dev[g[0]] not in hot]
        total = len(mine) * len(other)
        if total == 0:
            return None
        picks = rng.permutation(total)[:budget] if total > budget else rng.permutation(total)
        for x in picks.tolist():
            q, r = mine[x // len(other)], other[x % len(other)]
            dq, dr = self.dev[self.groups[q][0]], self.dev[self.groups[r][0]]
            steps = [(q, dr), (r, dq)]
            if self._fits(steps) and self._improves(self._evaluate(steps)):
                return steps
        return None

    def apply(self, steps) -> None:
        for q, t in steps:
            s = self.dev[self.groups[q][0]]
            self.used[s] -= self.gsize[q]
            self.used[t] += self.gsize[q]
            self.nodes[s] -= len(self.groups[q])
            self.nodes[t] += len(self.groups[q])
            self._shift(q, s, t)
        # recompute from scratch so that rounding never accumulates
        self.load = device_loads(self.prob, self.dev_array()).total.tolist()
