"""Cut each device's work into stages that can each run once their inputs have arrived.

A device's units (layers, or its parts of layers) cannot always form one sub-model: when
data goes from device A to B and back to A, A's work must be split so that the part after
the round trip waits for it (the "device graph has cycles" case of layer placement;
every exchange of a layer-synchronous neuron split). Units are levelled first:
``level(u) = max over predecessors p of level(p) + [device(p) != device(u)]``, so a
stage ``(device, level)`` only feeds stages of the same level on the same device or of a
higher level: the stage graph is acyclic. Then neighbouring stages of a device are merged
greedily whenever the merge keeps the stage graph acyclic (no path between them through
another device), which keeps the number of sub-models (and runtime sessions) small.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

__all__ = ["assign_stages"]


def assign_stages(
    devices: Sequence[int], deps: Sequence[Sequence[int]]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Stage of every unit and the execution order of the stages.

    Parameters
    ----------
    devices : sequence of int
        Device of each unit; units are given in a topological order.
    deps : sequence of sequences of int
        ``deps[u]`` lists the units whose outputs unit ``u`` reads (all ``< u``).

    Returns
    -------
    stage_of : list of (device, stage index)
        Stage indices count from 0 on each device, in execution order.
    order : list of (device, stage index)
        Every stage once, in an order where each stage comes after every stage it reads.
    """
    n = len(devices)
    level = [0] * n
    for u in range(n):
        for p in deps[u]:
            if p >= u:
                raise ValueError(f"unit {u} depends on unit {p}, which is not before it")
            step = 1 if devices[p] != devices[u] else 0
            level[u] = max(level[u], level[p] + step)
    # stage graph on (device, level) keys
    g = nx.DiGraph()
    key = [(devices[u], level[u]) for u in range(n)]
    g.add_nodes_from(sorted(set(key)))
    for u in range(n):
        for p in deps[u]:
            if key[p] != key[u]:
                g.add_edge(key[p], key[u])
    merged = {node: node for node in g.nodes}  # original key -> representative
    for dev in sorted({d for d, _ in g.nodes}):
        mine = sorted(node for node in g.nodes if node[0] == dev)
        i = 0
        while i + 1 < len(mine):
            a, b = mine[i], mine[i + 1]
            if _can_merge(g, a, b):
                _merge(g, a, b)
                for old, rep in merged.items():
                    if rep == b:
                        merged[old] = a
                mine.pop(i + 1)
            else:
                i += 1
    # number each device's stages in a deterministic topological order
    order_keys = list(nx.lexicographical_topological_sort(g, key=lambda node: (node[1], node[0])))
    index: dict[tuple[int, int], tuple[int, int]] = {}
    count: dict[int, int] = {}
    for node in order_keys:
        dev = node[0]
        index[node] = (dev, count.get(dev, 0))
        count[dev] = count.get(dev, 0) + 1
    stage_of = [index[merged[key[u]]] for u in range(n)]
    order = [index[node] for node in order_keys]
    return stage_of, order


def _can_merge(g: nx.DiGraph, a, b) -> bool:
    """True when no path joins ``a`` and ``b`` through a third stage (either direction)."""
    for src, dst in ((a, b), (b, a)):
        for mid in g.successors(src):
            if mid != dst and (mid == dst or nx.has_path(g, mid, dst)):
                return False
    return True


def _merge(g: nx.DiGraph, a, b) -> None:
    for p in list(g.predecessors(b)):
        if p != a:
            g.add_edge(p, a)
    for s in list(g.successors(b)):
        if s != a:
            g.add_edge(a, s)
    g.remove_node(b)
