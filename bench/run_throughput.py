"""Throughput and latency of ``dnnpart run`` on a local Ray against one onnxruntime session.

Each case partitions a model for 2 devices, exports it, and streams the same samples
(a) through :func:`dnnpart.runtime.run` -- one Ray actor per device, 1 onnxruntime thread
each, ``--in-flight`` samples pipelined -- and (b) through one onnxruntime session of the
whole model with 1 thread, one sample after the other (``compare=True``; run right after
(a) in the same process). Ray's start and the actors' loading are not in (a)'s time; they
are printed apart, with the time to recover from a lost device when ``--fail`` is given.

    PYTHONPATH=. python bench/run_throughput.py [--samples 200] [--in-flight 4] [--fail]

Cases: light ResNet-50 of the onnx wheel (one 224 x 224 image per sample, ~45 ms on one
idle core) as a 2-device layer split by the pipeline partitioner (Tarnawski et al. 2020):
the target is a throughput ratio >= 1.7 on 2 cores; the example MLP (digits 64-300-100-10,
~30 us per sample) as 2-device layer and neuron splits, where an actor call (~1-3 ms)
dwarfs the work and the ratio measures Ray's per-call cost, not the split's; and a small
residual conv net. ``predicted`` is the plan's time per sample (layer: the pipelined
slowest stage; neuron: the layer-synchronous latency) on the default device spec
(1e12 FLOP/s, 10 Gbit/s links): a model figure, not calibrated to this CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import onnx  # noqa: E402

import dnnpart  # noqa: E402
from dnnpart.exporters import export  # noqa: E402
from dnnpart.runtime import run  # noqa: E402

MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
DATA = ROOT / "examples" / "mlp" / "digits_test.npz"
RESNET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def case(label, model, feeds, *, granularity, method, args, tmp):
    plan = dnnpart.partition(dnnpart.load(model), k=2, method=method, granularity=granularity)
    folder = os.path.join(tmp, label.replace(" ", "-"))
    export(model, plan, folder)
    fail = ("dev1", len(feeds) // 2) if args.fail else None
    r = run(
        folder,
        feeds,
        model=model,
        in_flight=args.in_flight,
        threads=1,
        compare=True,
        fail=fail,
    )
    thr = r.throughput_per_s / r.reference_throughput_per_s
    ms, ref_ms = r.latency_s["median"] * 1e3, r.reference_latency_s["median"] * 1e3
    lat = ms / ref_ms
    pred = r.predicted_time_per_sample_s
    print(
        f"{label:<26} {r.samples:>5} {r.throughput_per_s:9.1f} {r.reference_throughput_per_s:9.1f}"
        f" {thr:6.2f} {ms:9.2f} {ref_ms:9.2f}"
        f" {lat:6.2f} {1e3 / r.throughput_per_s:9.3f} {(pred or 0) * 1e3:9.4f}"
        f" {r.bytes_measured:>9} {'ok' if r.ok else 'MISMATCH':>8} {r.recovery_s:6.2f}",
        flush=True,
    )
    for e in r.events:
        if e["kind"] != "ray":
            print(f"    [{e['t']:.2f} s] {e['kind']} {e['device'] or ''}: {e['detail']}")
    return thr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--fail", action="store_true", help="Lose dev1 half-way through each case.")
    ap.add_argument("--skip-resnet", action="store_true")
    args = ap.parse_args()
    import ray

    from dnnpart.runtime._cluster import connect

    t = time.perf_counter()
    connect(num_cpus=2)
    print(f"local Ray started in {time.perf_counter() - t:.2f} s; {os.cpu_count()} cores")
    print(
        f"{'case':<26} {'n':>5} {'split/s':>9} {'whole/s':>9} {'thr x':>6} {'lat ms':>9}"
        f" {'whole ms':>9} {'lat x':>6} {'ms/smpl':>9} {'pred ms':>9} {'bytes':>9}"
        f" {'outputs':>8} {'recov':>6}"
    )
    rng = np.random.default_rng(0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with np.load(DATA) as d:
                x = d["x"][: args.samples].astype(np.float32)
            mlp = [{"input": x[i : i + 1]} for i in range(len(x))]
            for gran in ("layer", "neuron"):
                case(
                    f"MLP {gran} metis",
                    MLP,
                    mlp,
                    granularity=gran,
                    method="metis",
                    args=args,
                    tmp=tmp,
                )
            import models

            res = models.save(models.residual_net(channels=32, image=32), tmp, "res.onnx")
            feeds = [
                {"input": rng.standard_normal((1, 4, 32, 32)).astype(np.float32)}
                for _ in range(args.samples)
            ]
            for gran, method in (("layer", "metis"), ("neuron", "metis")):
                case(
                    f"residual {gran} {method}",
                    res,
                    feeds,
                    granularity=gran,
                    method=method,
                    args=args,
                    tmp=tmp,
                )
            if not args.skip_resnet:
                name = dnnpart.load(RESNET).inputs[0].name
                img = [
                    {name: rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
                    for _ in range(args.samples)
                ]
                thr = case(
                    "ResNet-50 layer pipeline",
                    RESNET,
                    img,
                    granularity="layer",
                    method="pipeline",
                    args=args,
                    tmp=tmp,
                )
                verdict = "met" if thr >= 1.7 else "MISSED"
                print(f"ResNet-50 throughput ratio {thr:.2f} (target >= 1.7: {verdict})")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
