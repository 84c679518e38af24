"""``python -m tests.fuzz``: the long fuzz run (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ._campaign import Campaign, main_models
from ._runner import FAILURES


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    ap.add_argument("--mutants", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", action="append", help="a real ONNX model (repeat)")
    ap.add_argument("--work", help="folder for cases and reproductions (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per CLI run")
    ap.add_argument("--cpu", type=float, help="CPU seconds per run (default: timeout + 1)")
    ap.add_argument("--memory", type=float, default=3.0, help="GiB of address space per run")
    ap.add_argument("--partition", type=float, default=1.0, help="share of mutants partitioned")
    ap.add_argument("--deep", type=float, default=0.2, help="share of mutants exported+verified")
    ap.add_argument("--minutes", type=float, help="stop after this much wall time")
    ap.add_argument("--keep-cases", action="store_true", help="keep every case, not only failures")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="dnnpart-fuzz-"))
    models = [Path(m) for m in args.model] if args.model else main_models()
    camp = Campaign(
        models,
        work,
        seed=args.seed,
        timeout=args.timeout,
        cpu=args.cpu,
        memory=int(args.memory * (1 << 30)),
        partition=args.partition,
        deep=args.deep,
        log=sys.stderr,
    )
    report = camp.run(args.mutants, seconds=args.minutes * 60 if args.minutes else None)
    if not args.keep_cases:
        import shutil

        shutil.rmtree(work / "cases", ignore_errors=True)
    summary = report.summary()
    summary["models"] = [str(m) for m in models]
    summary["work"] = str(work)
    print(json.dumps(summary, indent=1))
    bad = sum(report.counts[k] for k in FAILURES)
    return 130 if report.interrupted else 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
