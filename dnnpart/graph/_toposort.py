"""Stable topological order (Kahn's algorithm), shared by the importers and the DP."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

__all__ = ["stable_topological_order"]


def stable_topological_order(
    num_nodes: int, edges: Iterable[tuple[int, int]]
) -> tuple[list[int], list[int]]:
    """Order nodes so that every edge ``(a, b)`` has ``a`` before ``b``.

    Among nodes ready at the same time the smallest index goes first, so an already sorted
    graph keeps its order and the result is deterministic; no recursion. Returns
    ``(order, stuck)``: ``stuck`` lists the nodes left on or behind a cycle (empty for a
    DAG, in which case ``order`` holds every node).
    """
    succ: list[list[int]] = [[] for _ in range(num_nodes)]
    indegree = [0] * num_nodes
    for a, b in edges:
        succ[a].append(b)
        indegree[b] += 1
    ready = [v for v in range(num_nodes) if indegree[v] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        v = heapq.heappop(ready)
        order.append(v)
        for w in succ[v]:
            indegree[w] -= 1
            if indegree[w] == 0:
                heapq.heappush(ready, w)
    stuck = [v for v in range(num_nodes) if indegree[v] > 0]
    return order, stuck
