"""Kicks for the iterated local search around Kernighan-Lin / FM (:mod:`.kl`).

Iterated local search (H. R. Lourenco, O. C. Martin and T. Stutzle, "Iterated local
search", Handbook of Metaheuristics, 2003) alternates a local search with a *kick*: a
random change large enough to leave the local optimum's basin, small enough to keep most
of its structure. FM passes fall into basins where every single move or swap costs
volume (a net leaves a device only when its last pin does); moving a few percent of each
layer at random and descending again finds better ones.
"""

from __future__ import annotations

import numpy as np

from dnnpart.problem._helpers import free_sources
from dnnpart.problem._problem import Problem

__all__ = ["kick", "ILS_PIN_BUDGET", "ILS_MAX_RESTARTS", "ILS_STRENGTH"]

# Iterated local search budget: restarts while restarts x pins stays within this many. On
# the example MLP (5 400 pins) 24 restarts take ~1 s and lower the volume by ~3-4 %; the
# Graph Challenge network (136 000 pins) gets one, the 20 M-synapse benchmark none.
ILS_PIN_BUDGET = 200_000
ILS_MAX_RESTARTS = 24
# Fraction of each group's vertices a perturbation moves.
ILS_STRENGTH = 0.1


def kick(problem: Problem, labels: np.ndarray, caps: np.ndarray, rng) -> np.ndarray:
    """Move or swap a random ``ILS_STRENGTH`` of each group's vertices, within ``caps``.

    A vertex goes to a random other device if it fits there, else it swaps with a random
    vertex of its group on that device when both fit. Free sources are left alone (they
    follow their consumers at the end).
    """
    out = labels.copy()
    k, w = problem.k, problem.vertex_weight
    free = free_sources(problem)
    for g in range(problem.num_layers):
        sl = problem.layer_slice(g)
        members = np.arange(sl.start, sl.stop)
        members = members[~free[members]]
        if len(members) == 0:
            continue
        picks = rng.choice(members, size=max(1, round(ILS_STRENGTH * len(members))), replace=False)
        targets = (out[picks] + rng.integers(1, k, len(picks))) % k
        if not problem.balanced[g]:
            out[picks] = targets
            continue
        loads = np.bincount(out[members], weights=w[members], minlength=k)
        cap = caps[g]
        for v, b in zip(picks.tolist(), targets.tolist(), strict=True):
            a = int(out[v])
            if loads[b] + w[v] <= cap[b]:
                out[v] = b
                loads[a] -= w[v]
                loads[b] += w[v]
                continue
            on_b = members[out[members] == b]
            ok = on_b[(loads[a] - w[v] + w[on_b] <= cap[a]) & (loads[b] + w[v] - w[on_b] <= cap[b])]
            if len(ok):
                u = int(rng.choice(ok))
                out[v], out[u] = b, a
                loads[a] += w[u] - w[v]
                loads[b] += w[v] - w[u]
    return out
