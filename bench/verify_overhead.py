"""Overhead of running a split through the local executor, against one onnxruntime session.

For each case the model is partitioned (k = 4), exported, and the same inputs are run
(a) through :class:`dnnpart.runtime.Executor` (one session per sub-model, transfers
routed between per-device stores) and (b) through one onnxruntime session on the whole
model (the verify reference: the original after the plan's pruning). Both use the same
session options (1 intra-op thread unless ``--threads``). The figure is the median
wall time of (a) divided by that of (b), runs interleaved; the target is <= 1.3.

    PYTHONPATH=. python bench/verify_overhead.py [--repeat 50] [--threads 1]

Cases: the example MLP (digits 64-300-100-10) at layer and neuron granularity, batch 1
and the 360-sample test set in one batch; light ResNet-50 of the onnx wheel at layer
granularity (and neuron granularity with ``--neuron-resnet``, slow to partition).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

import dnnpart  # noqa: E402
from dnnpart.exporters import build_split, export  # noqa: E402
from dnnpart.runtime import Executor  # noqa: E402
from dnnpart.runtime._verify import reference_session  # noqa: E402

MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
DATA = ROOT / "examples" / "mlp" / "digits_test.npz"
RESNET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def _median_times(fns, repeat: int) -> list[float]:
    """Median wall time of each function, runs interleaved so that both see the same load
    (the machine is shared)."""
    for fn in fns:
        fn()  # warm-up (first runs allocate)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def run_case(label, model, feeds, *, granularity, method, k, repeat, threads, prune=None):
    graph = dnnpart.load(model)
    plan = dnnpart.partition(graph, k=k, method=method, granularity=granularity, prune=prune)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "split")
        doc = export(model, plan, out)
        executor = Executor(out, threads=threads)
        source, _, _ = build_split(model, plan)
        ref = reference_session(source, tmp, threads=threads)
        names = [o.name for o in ref.get_outputs()]
        got, _ = executor.run(feeds)
        want = ref.run(names, feeds)
        err = max(float(np.max(np.abs(got[n] - w))) for n, w in zip(names, want, strict=True))
        t_split, t_whole = _median_times(
            [lambda: executor.run(feeds), lambda: ref.run(names, feeds)], repeat
        )
    ratio = t_split / t_whole
    print(
        f"{label:<44} stages {len(doc['stages']):>3}  split {t_split * 1e3:9.3f} ms  "
        f"whole {t_whole * 1e3:9.3f} ms  ratio {ratio:6.2f}  max err {err:.1e}",
        flush=True,
    )
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--neuron-resnet", action="store_true")
    args = ap.parse_args()
    with np.load(DATA) as d:
        x = d["x"]
    common = {"k": args.k, "repeat": args.repeat, "threads": args.threads}
    print(f"k = {args.k}, {args.threads} thread(s), median of {args.repeat} interleaved runs")
    for gran in ("layer", "neuron"):
        for batch in (1, len(x)):
            run_case(
                f"MLP {gran} metis batch {batch}",
                MLP,
                {"input": x[:batch]},
                granularity=gran,
                method="metis",
                **common,
            )
    run_case(
        "MLP neuron metis prune 0.9 batch 360",
        MLP,
        {"input": x},
        granularity="neuron",
        method="metis",
        prune=0.9,
        **common,
    )
    img = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    feeds = {dnnpart.load(RESNET).inputs[0].name: img}
    for method in ("vertical", "metis", "pipeline"):
        run_case(
            f"ResNet-50 layer {method} batch 1",
            RESNET,
            feeds,
            granularity="layer",
            method=method,
            **{**common, "repeat": max(5, args.repeat // 5)},
        )
    if args.neuron_resnet:
        run_case(
            "ResNet-50 neuron vertical batch 1",
            RESNET,
            feeds,
            granularity="neuron",
            method="vertical",
            **{**common, "repeat": max(5, args.repeat // 5)},
        )


if __name__ == "__main__":
    main()
