"""Overhead of running a split through the local executor, against one onnxruntime session.

For each case the model is partitioned (k = 4), exported, and the same inputs are run
(a) through :class:`dnnpart.runtime.Executor` (one session per sub-model, transfers
routed between per-device stores) and (b) through one onnxruntime session on the whole
model (the verify reference: the original after the plan's pruning). Both use the same
session options (1 intra-op thread unless ``--threads``; the executor runs its sessions
one after the other, so both use the same number of threads). The figure is the median
wall time of (a) divided by that of (b), runs interleaved; the target is <= 1.3.

    PYTHONPATH=. python bench/verify_overhead.py [--repeat 40] [--threads 1] [--neuron-resnet]

Cases: the example MLP (digits 64-300-100-10) at layer and neuron granularity, batch 1
and the 360-sample test set in one batch; light ResNet-50 of the onnx wheel at layer
granularity (and neuron granularity with ``--neuron-resnet``, slow to partition).

Which figure is the headline: for the MLP, batch 360. A split is checked on a set of
inputs, and on a batch the figure measures what the split itself costs (sub-model work
and routed bytes); at batch 1 the whole MLP runs in about 10 us, so the ratio there is
the fixed cost of a session call (3-8 us each, one per sub-model) and says how many
sub-models there are, not how well they run: it is the latency case, reported too (and
what ``dnnpart verify`` pays today, as it feeds the samples one at a time). ResNet-50
runs batch 1 (one 224 x 224 image: ~45 ms for the whole model on one idle core).

Columns: ``split`` and ``whole`` wall times; ``in ort`` the part of ``split`` spent
inside onnxruntime (the sub-models' own cost); ``exec`` the rest (Python routing and
bookkeeping) as a fraction of ``whole``: ``ratio = in ort / whole + exec``.
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


from _models import RESNET  # noqa: E402

import dnnpart  # noqa: E402
from dnnpart.exporters import build_split, export  # noqa: E402
from dnnpart.runtime import Executor  # noqa: E402
from dnnpart.runtime._verify import reference_session  # noqa: E402

MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
DATA = ROOT / "examples" / "mlp" / "digits_test.npz"


def _median_times(fns, repeat: int) -> list[float]:
    """Median wall time of each function, runs interleaved so that all see the same load
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
        got, stats = executor.run(feeds)
        want = ref.run(names, feeds)
        err = max(float(np.max(np.abs(got[n] - w))) for n, w in zip(names, want, strict=True))
        # every transfer here carries activations, which scale with the batch
        planned = doc["volume_bytes_planned"] * next(iter(feeds.values())).shape[0]
        if stats.bytes_total != planned:
            raise SystemExit(f"{label}: {stats.bytes_total} bytes moved, planned {planned}")
        in_ort: list[float] = []

        def split():
            in_ort.append(float(executor.run(feeds)[1].compute_s.sum()))

        t_split, t_whole = _median_times([split, lambda: ref.run(names, feeds)], repeat)
    ratio = t_split / t_whole
    t_ort = statistics.median(in_ort)
    print(
        f"{label:<38} {len(doc['stages']):>6} {t_split * 1e3:10.3f} {t_whole * 1e3:10.3f} "
        f"{t_ort * 1e3:10.3f} {ratio:6.2f} {(t_split - t_ort) / t_whole:6.2f} {err:9.1e}",
        flush=True,
    )
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--neuron-resnet", action="store_true")
    args = ap.parse_args()
    with np.load(DATA) as d:
        x = d["x"]
    common = {"k": args.k, "repeat": args.repeat, "threads": args.threads}
    print(
        f"k = {args.k}, {args.threads} thread(s), median of {args.repeat} interleaved runs "
        f"(ResNet-50: {max(10, args.repeat // 2)}); headline: MLP batch {len(x)}"
    )
    print(
        f"{'case':<38} {'stages':>6} {'split ms':>10} {'whole ms':>10} {'in ort ms':>10} "
        f"{'ratio':>6} {'exec':>6} {'max err':>9}"
    )
    for gran in ("layer", "neuron"):
        for batch in (len(x), 1):
            run_case(
                f"MLP {gran} metis batch {batch}",
                MLP,
                {"input": x[:batch]},
                granularity=gran,
                method="metis",
                **common,
            )
    for batch in (len(x), 1):
        run_case(
            f"MLP neuron metis prune 0.9 batch {batch}",
            MLP,
            {"input": x[:batch]},
            granularity="neuron",
            method="metis",
            prune=0.9,
            **common,
        )
    img = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    feeds = {dnnpart.load(RESNET).inputs[0].name: img}
    slow = {**common, "repeat": max(10, args.repeat // 2)}
    for method in ("vertical", "metis", "pipeline"):
        run_case(
            f"ResNet-50 layer {method} batch 1",
            RESNET,
            feeds,
            granularity="layer",
            method=method,
            **slow,
        )
    if args.neuron_resnet:
        run_case(
            "ResNet-50 neuron vertical batch 1",
            RESNET,
            feeds,
            granularity="neuron",
            method="vertical",
            **slow,
        )


if __name__ == "__main__":
    main()
