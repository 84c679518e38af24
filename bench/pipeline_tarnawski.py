"""Pipeline DP on the profiled graphs of Tarnawski et al. (NeurIPS 2020): value and time.

Prints, per shared file, the max-load of the contiguous DP (against the paper's optimum),
of the DP restricted to one topological order (PipeDream-style linearisation) and of the DP
followed by the non-contiguous local search, with wall times. Times are the best of
``--repeat`` runs (the machine is shared).

    python bench/pipeline_tarnawski.py [--repeat 3] [--data DIR]

The data folder defaults to ``../shared/data`` next to the repository, or
``$DNNPART_SHARED_DATA``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dnnpart.importers._tarnawski import read_profiled_graph
from dnnpart.partitioners._pipeline_dp import pipeline_dp
from dnnpart.partitioners._pipeline_refine import refine
from dnnpart.problem import check_feasibility

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("DNNPART_SHARED_DATA") or str(
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
    ap.add_argument("--data", default=default)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
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
