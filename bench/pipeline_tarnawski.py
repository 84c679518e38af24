"""Pipeline DP on the profiled graphs of Tarnawski et al. (NeurIPS 2020): value and time.

First, the DP at the paper's scale: a generated graph of six parallel chains between a
source and a sink (18,752 ideals, 15.9 million nested pairs; the paper's GNMT graph has
about 18,000 and 15.5 million), on 6 accelerators and 1 CPU core as in the paper. Prints
ideals, pairs, seconds against the 10 s target, the peak memory of the process, and the
max-load against the DP over one topological order's prefixes (the fallback).

Then, per shared file, the max-load of the contiguous DP (against the paper's optimum),
of the DP restricted to one topological order (PipeDream-style linearisation) and of the DP
followed by the non-contiguous local search, with wall times. Times are the best of
``--repeat`` runs (the machine is shared).

    python bench/pipeline_tarnawski.py [--repeat 3] [--data DIR] [--skip-scale]

The data folder defaults to ``../shared/data`` next to the repository, or
``$DNNPART_SHARED_DATA``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from dnnpart.importers._tarnawski import read_profiled_graph
from dnnpart.partitioners._pipeline_dp import pipeline_dp
from dnnpart.partitioners._pipeline_refine import refine
from dnnpart.problem import DeviceClass, PipelineProblem, check_feasibility

TARGET_S = 10.0  # the target for ~20,000 ideals and ~16 million pairs
CHAINS = (4, 4, 4, 4, 4, 5)  # 5**5 * 6 + 2 ideals; 15**5 * 21 + ... nested pairs

# optimum over contiguous splits from the paper's own DP (data README)
PAPER = {
    "layer_bert24_inference.json": 17.7899,
    "operator_resnet50_inference.json": 124.349,
}


def _best_time(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def parallel_chains(lengths=CHAINS, seed=0) -> PipelineProblem:
    """Chains of layers between a source and a sink, with random times and transfer costs
    in the proportions of the paper's files (a CPU core ~5x slower, paying no transfers);
    6 accelerators with room for a third of the model each, and 1 CPU core."""
    rng = np.random.default_rng(seed)
    src, dst, n = [], [], 1
    for length in lengths:
        src += [0] + list(range(n, n + length - 1))
        dst += list(range(n, n + length))
        n += length
    ends = np.cumsum(lengths)
    src += ends.tolist()
    dst += [n] * len(lengths)
    n += 1
    fpga = rng.uniform(0.5, 2.0, n)
    size = rng.uniform(0.5, 1.5, n)
    devices = (
        DeviceClass("accelerator", 6, fpga, memory=size.sum() / 3),
        DeviceClass("cpu", 1, fpga * rng.uniform(3, 8, n), pays_communication=False),
    )
    return PipelineProblem(
        np.array(src), np.array(dst), rng.uniform(0.0, 0.3, n), devices, size=size
    )


def scale(repeat: int) -> None:
    """The DP on :func:`parallel_chains` against the 10 s target."""
    prob = parallel_chains()
    cpu = time.process_time()
    res, sec = _best_time(lambda: pipeline_dp(prob), repeat)
    cpu = (time.process_time() - cpu) / repeat  # CPU seconds per run: the machine is shared
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    lin, t_lin = _best_time(lambda: pipeline_dp(prob, linearize=True), repeat)
    ok = "" if not check_feasibility(prob, res.assignment) else "  INFEASIBLE"
    print(f"generated graph: {len(CHAINS)} parallel chains {CHAINS}, {prob.num_nodes} nodes")
    print(
        f"  dp             ideals {res.num_ideals:>7}  pairs {res.num_pairs:>10}  "
        f"{sec:7.3f} s (cpu {cpu:.3f} s)  = {sec / TARGET_S:.2f} x the {TARGET_S:.0f} s target  "
        f"peak RSS {peak:.0f} MiB  max-load {res.max_load:.5f}{ok}"
    )
    print(
        f"  dp linearised  ideals {lin.num_ideals:>7}  pairs {lin.num_pairs:>10}  "
        f"{t_lin:7.3f} s  max-load {lin.max_load:.5f} = {lin.max_load / res.max_load:.4f} x dp"
    )
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("DNNPART_SHARED_DATA") or str(
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
    ap.add_argument("--data", default=default)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-scale", action="store_true", help="only the shared files")
    args = ap.parse_args(argv)
    if not args.skip_scale:
        scale(args.repeat)
    folder = Path(args.data) / "tarnawski"
    if not folder.is_dir():
        print(f"shared data not found at {folder}", file=sys.stderr)
        return 1
    header = f"{'file':34} {'method':18} {'max-load':>11} {'paper':>9} {'ratio':>7} {'sec':>7}"
    print(header)
    print("-" * len(header))
    for name, paper in PAPER.items():
        path = folder / name
        g, t_read = _best_time(lambda p=path: read_profiled_graph(p), args.repeat)
        print(f"{name:34} {'read':18} {'':>11} {'':>9} {'':>7} {t_read:7.3f}")
        dp, t_dp = _best_time(lambda g=g: pipeline_dp(g), args.repeat)
        lin, t_lin = _best_time(lambda g=g: pipeline_dp(g, linearize=True), args.repeat)
        ref, t_ref = _best_time(
            lambda g=g, a=dp.assignment: refine(g, a, seed=args.seed), args.repeat
        )
        lex, t_lex = _best_time(
            lambda g=g, a=dp.assignment: refine(g, a, seed=args.seed, lexicographic=True),
            args.repeat,
        )
        rows = [
            (f"dp ({dp.num_ideals} ideals)", dp.max_load, t_dp, dp.assignment),
            ("dp linearised", lin.max_load, t_lin, lin.assignment),
            ("dp + refine", ref.max_load, t_dp + t_ref, ref.assignment),
            ("dp + refine (lex)", lex.max_load, t_dp + t_lex, lex.assignment),
        ]
        for label, value, sec, assignment in rows:
            ok = "" if not check_feasibility(g, assignment) else "  INFEASIBLE"
            print(
                f"{'':34} {label:18} {value:11.5f} {paper:9.4f} {value / paper:7.4f} {sec:7.3f}{ok}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
