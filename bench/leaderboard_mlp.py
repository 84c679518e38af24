"""Wall time of the whole leaderboard of the example MLP: k = 2 4 8, every built-in.

Runs :func:`dnnpart.report.run_leaderboard` on ``examples/mlp/mlp.onnx`` (LeNet-300-100
shape, 64-300-100-10) with every partitioner registered by dnnpart itself (third-party
plugins left out), at neuron granularity and, with ``--granularity both``, also at layer
granularity, then writes the four report formats. Timed from the call to the last row
(worker start-up, model loading, partitioning, scoring), and the writing apart.

Two ways of running are compared (``--modes``):

* ``reuse`` (the default of the library and the CLI): ``--jobs`` worker processes, each
  loads the model once and serves run after run; a crashed or hung worker is replaced.
* ``isolate`` (``--isolate`` on the CLI): a fresh spawned process for every run.

Target: the reuse mode under 60 s on 2 cores. Prints one JSON object per mode.

Usage: ``python bench/leaderboard_mlp.py [--jobs 2] [--granularity neuron|both]
[--modes reuse,isolate] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from dnnpart.plugins import get_registry
from dnnpart.report import run_leaderboard, write_report

MLP = Path(__file__).resolve().parents[1] / "examples" / "mlp" / "mlp.onnx"
KS = (2, 4, 8)
TARGET_S = 60.0


def measure(mode: str, jobs: int, granularity, out_dir: Path) -> dict:
    builtins = sorted(n for n, owner in get_registry().owner.items() if owner == "dnnpart")
    start = time.perf_counter()
    rows = run_leaderboard(
        [str(MLP)],
        KS,
        builtins,
        granularity=granularity,
        jobs=jobs,
        max_tasks_per_worker=1 if mode == "isolate" else None,
    )
    run_s = time.perf_counter() - start
    start = time.perf_counter()
    for ext in ("html", "md", "json", "csv"):
        write_report(rows, out_dir / f"leaderboard_mlp_{mode}.{ext}")
    write_s = time.perf_counter() - start
    partition_s = sum(r.seconds or 0.0 for r in rows)
    return {
        "mode": mode,
        "jobs": jobs,
        "cores": os.cpu_count(),
        "granularity": granularity,
        "partitioners": builtins,
        "rows": len(rows),
        "status": dict(Counter(r.status for r in rows)),
        "failed": [
            f"{r.granularity} k={r.k} {r.partitioner}: {r.reason}"
            for r in rows
            if r.status not in ("ok", "skipped")
        ],  # fmt: skip
        "run_s": round(run_s, 2),
        "partitioners_own_s": round(partition_s, 3),
        "overhead_s": round(run_s - partition_s, 2),
        "write_reports_s": round(write_s, 2),
        "total_s": round(run_s + write_s, 2),
        "target_s": TARGET_S,
        "meets_target": run_s + write_s < TARGET_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--granularity", choices=["neuron", "both"], default="neuron")
    parser.add_argument("--modes", default="reuse,isolate")
    parser.add_argument("--out", help="folder for the reports (default: a temporary one)")
    args = parser.parse_args()
    granularity = ("neuron", "layer") if args.granularity == "both" else "neuron"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for mode in args.modes.split(","):
            print(json.dumps(measure(mode.strip(), args.jobs, granularity, out)), flush=True)


if __name__ == "__main__":
    main()
