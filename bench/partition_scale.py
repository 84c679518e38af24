"""Partitioners at scale: a neuron graph of ~20 million synapses, k = 8.

The graph is a 12-layer MLP alternating 1024 -> 4096 -> 1024 ... keeping 40 % of each
layer's weights at random (31 744 neurons, ~20.1 M synapses). Every built-in neuron
partitioner runs in its own child process (wall time, and peak RSS above what building
the problem took), next to ``pymetis.part_graph`` run directly on the same graph. Each
answer is scored by dnnpart's scoring module: volume, worst per-layer imbalance, and the
layer-synchronous latency that exposes a partition which serialises layers.

    python bench/partition_scale.py [--k 8] [--density 0.4] [--layers 12] [--only a,b]

Targets (issue 3): spectral, kl, metis and munkres each within 3x pymetis' own time, none
above 8 GB, every one at per-layer imbalance <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time

import numpy as np
import scipy.sparse as sp


def build_problem(layers: int, density: float, k: int, seed: int = 0):
    from dnnpart.partitioners import Problem

    rng = np.random.default_rng(seed)
    widths = [1024] + [4096 if i % 2 == 0 else 1024 for i in range(layers)]
    offsets = np.concatenate([[0], np.cumsum(widths)])
    n = int(offsets[-1])
    rows, cols = [], []
    weight = np.zeros(n)
    for layer in range(layers):
        a, b = widths[layer], widths[layer + 1]
        m = sp.random(a, b, density=density, format="coo", random_state=rng)
        rows.append(m.row + offsets[layer])
        cols.append(m.col + offsets[layer + 1])
        weight[offsets[layer + 1] : offsets[layer + 2]] = np.bincount(m.col, minlength=b)
    r, c = np.concatenate(rows), np.concatenate(cols)
    synapses = sp.csr_array((np.ones(len(r)), (r, c)), shape=(n, n))
    balanced = np.ones(layers + 1, bool)
    balanced[0] = False
    return Problem(synapses, weight, offsets, k, balanced=balanced)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(name: str, args, queue) -> None:
    try:
        problem = build_problem(args.layers, args.density, args.k)
        _ = problem.adjacency  # built once, shared by all (cached on the problem)
        base = _peak_mb()
        start = time.perf_counter()
        if name == "pymetis":
            import pymetis

            adj = problem.adjacency
            _, parts = pymetis.part_graph(
                args.k, xadj=adj.indptr, adjncy=adj.indices, eweights=adj.data.astype(np.int64)
            )
            labels = np.asarray(parts)
        else:
            from dnnpart.plugins import get_registry

            labels = get_registry().get(name)().partition(problem)
        seconds = time.perf_counter() - start
        peak = _peak_mb()
        from dnnpart.scoring import score

        s = score(problem, labels)
        queue.put(
            {
                "name": name,
                "seconds": seconds,
                "peak_mb": peak,
                "extra_mb": peak - base,
                "volume": s.volume,
                "imbalance": s.imbalance,
                "latency_ms": s.latency_s * 1e3,
                "synapses": int(problem.synapses.nnz),
            }
        )
    except Exception as exc:  # noqa: BLE001 - report the failure as a row
        queue.put({"name": name, "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--density", type=float, default=0.4)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--only", default="", help="comma-separated subset")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    names = ["pymetis", "vertical", "metis", "kl", "munkres", "spectral"]
    if args.only:
        names = [n for n in names if n in args.only.split(",") or n == "pymetis"]
    ctx = mp.get_context("spawn")
    rows = []
    for name in names:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, args, queue))
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(f"  done {name}", file=sys.stderr)
    ref = next((r for r in rows if r["name"] == "pymetis" and "error" not in r), None)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    syn = next((r["synapses"] for r in rows if "synapses" in r), 0)
    print(f"{args.layers}-layer MLP, density {args.density}, {syn} synapses, k = {args.k}")
    print(
        f"{'partitioner':12} {'seconds':>8} {'x pymetis':>9} {'peak MB':>8} {'+MB':>7} "
        f"{'volume':>8} {'imbal.':>7} {'latency ms':>10}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['name']:12} failed: {r['error']}")
            continue
        ratio = r["seconds"] / ref["seconds"] if ref else float("nan")
        print(
            f"{r['name']:12} {r['seconds']:8.2f} {ratio:9.2f} {r['peak_mb']:8.0f} "
            f"{r['extra_mb']:7.0f} {r['volume']:8d} {r['imbalance']:7.3f} {r['latency_ms']:10.3f}"
        )


if __name__ == "__main__":
    main()
