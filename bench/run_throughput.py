"""Throughput of ``dnnpart run`` on a local Ray against onnxruntime alone.

Each CNN case (light ResNet-50 of the onnx wheel, SqueezeNet 1.0 of examples/corpus)
profiles the model as ``dnnpart profile --runtime-overhead`` does (the split's own session
options, 1 thread; one Ray call and this machine's CPU per call and per byte, measured once
on a Ray of its own, so that the two devices share this machine as the profile's host),
plans a 2-device layer split with the pipeline partitioner (Tarnawski et al. 2020) on it
(``--bare`` adds the plan on the layer times alone, ``--flops`` the same partitioner on the
FLOP/byte time model), exports it and streams ``--samples`` samples through
:func:`dnnpart.runtime.run` (one Ray actor per device, 1 onnxruntime thread each,
``--in-flight`` samples pipelined, at least 4 x the batch; one row per ``--batch``, the
samples per Ray call).
Ray's start and the actors' loading are not timed. Against:

* ``1 thr``: one onnxruntime session of the whole model, 1 thread, one sample after the
  other (the issue's reference: target ratio >= 1.7 for ResNet-50 on 2 cores);
* ``2 thr``: one session with 2 intra-op threads (the split's total threads);
* ``2 proc``: the ceiling of 2 cores -- two processes, each one 1-thread session running
  half the samples, timed from a common start to the last one done.

Every session is built by :func:`dnnpart._ort.session_options` (as the split's are), and
the split's outputs are checked against the 1-thread session's. ``--small`` adds the
example MLP (layer and neuron splits by metis, where Ray's per-call cost dwarfs ~30 us of
work) and a small residual net.

    PYTHONPATH=. python bench/run_throughput.py [--samples 200] [--batch 1 4] [--bare] [--flops]

The machine is shared: the load average is printed before and after each case.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


from _models import RESNET, SQUEEZENET  # noqa: E402

import dnnpart  # noqa: E402
from dnnpart._ort import session_options  # noqa: E402
from dnnpart.devices import DeviceSet  # noqa: E402
from dnnpart.exporters import export  # noqa: E402
from dnnpart.importers._ort_profile import profile_layers, profiled_json, with_profile  # noqa: E402
from dnnpart.runtime import run, runtime_overhead  # noqa: E402

MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
DATA = ROOT / "examples" / "mlp" / "digits_test.npz"


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _session(model, threads: int):
    import onnxruntime as ort

    return ort.InferenceSession(
        os.fspath(model), session_options(threads), providers=["CPUExecutionProvider"]
    )


def whole(model, feeds, threads: int):
    """One session, samples one after the other: (samples/s, median latency s, outputs)."""
    sess = _session(model, threads)
    names = [o.name for o in sess.get_outputs()]
    for f in feeds[:3]:
        sess.run(names, f)
    times, outs = [], []
    t0 = time.perf_counter()
    for f in feeds:
        t = time.perf_counter()
        outs.append(dict(zip(names, sess.run(names, f), strict=True)))
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return len(feeds) / total, float(np.median(times)), outs


def _half(model, feeds, barrier, queue) -> None:
    sess = _session(model, 1)
    for f in feeds[:3]:
        sess.run(None, f)
    barrier.wait()
    t0 = time.time()
    for f in feeds:
        sess.run(None, f)
    queue.put((t0, time.time()))


def two_processes(model, feeds) -> float:
    """Samples/s of two 1-thread processes, each running half the samples at once."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    halves = [feeds[0::2], feeds[1::2]]
    procs = [ctx.Process(target=_half, args=(model, h, barrier, queue)) for h in halves]
    for p in procs:
        p.start()
    spans = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return len(feeds) / (max(e for _, e in spans) - min(s for s, _ in spans))


def split_plan(model, how: str, runs: int, call=None):
    """The pipeline plan on ``how``'s times: ``profile`` as ``dnnpart profile
    --runtime-overhead`` makes it (``call``: the measured Ray call and this machine as the
    devices' host), ``profile-bare`` on the layer times alone, ``flops`` on the FLOP
    model."""
    graph = dnnpart.load(model)
    if how.startswith("profile"):
        times = profile_layers(model, runs=runs, warmup=3, threads=1)
        extra = {}
        if how == "profile" and call is not None:
            extra = {"call_overhead": call.device_call_s(), "host": call.host()}
        graph = with_profile(graph, profiled_json(times, DeviceSet.identical(2), **extra))
    plan = dnnpart.partition(graph, k=2, method="pipeline", granularity="layer")
    sc = plan.scores
    print(
        f"  {Path(model).stem} {how}: {sc['volume_bytes']} bytes sent per sample, predicted "
        f"{sc['time_per_sample_s'] * 1e3:.2f} ms per sample",
        flush=True,
    )
    return plan


def case(label, model, feeds, plan, args, tmp, refs, batch: int = 1) -> float:
    folder = os.path.join(tmp, label.replace(" ", "-"))
    if not os.path.isdir(folder):
        export(model, plan, folder)
    load0 = _load()
    in_flight = max(args.in_flight, 4 * batch)
    r = run(folder, feeds, model=model, in_flight=in_flight, batch=batch, threads=1)
    label = f"{label} b{batch}/{in_flight}"
    one, two, ceiling, want = refs
    err = max(
        float(np.max(np.abs(r.outputs[k][i] - w[k])))
        for i, w in enumerate(want)
        for k in w
        if k in r.outputs
    )
    thr = r.throughput_per_s
    print(
        f"{label:<34} {thr:8.2f} {one[0]:8.2f} {two[0]:8.2f} {ceiling:8.2f}"
        f" {thr / one[0]:6.2f} {thr / two[0]:6.2f} {ceiling / one[0]:6.2f} {thr / ceiling:6.2f}"
        f" {r.latency_s['median'] * 1e3:8.2f} {one[1] * 1e3:8.2f} {err:9.2e}"
        f"  load {load0} -> {_load()}",
        flush=True,
    )
    return thr / one[0]


HEADER = (
    f"{'case':<34} {'split/s':>8} {'1thr/s':>8} {'2thr/s':>8} {'2proc/s':>8}"
    f" {'x1thr':>6} {'x2thr':>6} {'ceil':>6} {'x ceil':>6} {'lat ms':>8} {'1thr ms':>8}"
    f" {'max err':>9}"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=4, help="At least 4 x the batch.")
    ap.add_argument(
        "--batch", type=int, nargs="+", default=[1, 4], help="Samples per Ray call (one row each)."
    )
    ap.add_argument("--runs", type=int, default=20, help="Profiled runs per model.")
    ap.add_argument("--flops", action="store_true", help="Also plan on the FLOP time model.")
    ap.add_argument(
        "--bare", action="store_true", help="Also plan on the layer times alone (no call, host)."
    )
    ap.add_argument("--small", action="store_true", help="Also the MLP and a residual net.")
    ap.add_argument("--skip-resnet", action="store_true")
    args = ap.parse_args()
    import ray

    from dnnpart.runtime._cluster import connect

    call = runtime_overhead()  # on a Ray of its own, as `dnnpart profile` measures it
    print(
        f"one Ray call: {call.seconds * 1e3:.3f} ms; host CPU {call.host_cpu_s * 1e3:.3f} ms "
        f"per call, {(call.host_cpu_per_byte_s or 0) * 1e9:.2f} ns per byte"
    )
    t = time.perf_counter()
    connect(num_cpus=2)
    print(f"local Ray started in {time.perf_counter() - t:.2f} s; {os.cpu_count()} cores")
    print(f"load average (1/5/15 min) at start: {_load()}")
    print(HEADER)
    rng = np.random.default_rng(0)
    ratios = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cnns = [("SqueezeNet", SQUEEZENET)]
            if not args.skip_resnet:
                cnns.append(("ResNet-50", RESNET))
            for name, model in cnns:
                graph = dnnpart.load(model)
                inp = graph.inputs[0]
                shape = graph.input_shapes.get(inp.name) or inp.shape
                feeds = [
                    {inp.name: rng.standard_normal(shape).astype(np.float32)}
                    for _ in range(args.samples)
                ]
                one = whole(model, feeds, 1)
                two = whole(model, feeds, 2)
                ceiling = two_processes(model, feeds)
                refs = (one[:2], two[:2], ceiling, one[2])
                hows = ["profile"] + (["profile-bare"] if args.bare else [])
                hows += ["flops"] if args.flops else []
                for how in hows:
                    plan = split_plan(model, how, args.runs, call)
                    for batch in args.batch:
                        ratios[(name, how, batch)] = case(
                            f"{name} {how}", model, feeds, plan, args, tmp, refs, batch
                        )
            if args.small:
                _small(args, tmp, rng)
    finally:
        ray.shutdown()
    for (name, how, batch), r in ratios.items():
        if name == "ResNet-50" and how == "profile":
            verdict = "met" if r >= 1.7 else "MISSED"
            print(
                f"ResNet-50 profile-planned split, batch {batch} / 1-thread session: {r:.2f}"
                f" (>= 1.7: {verdict})"
            )


def _small(args, tmp, rng) -> None:
    import models

    with np.load(DATA) as d:
        x = d["x"][: args.samples].astype(np.float32)
    mlp = [{"input": x[i : i + 1]} for i in range(len(x))]
    res = models.save(models.residual_net(channels=32, image=32), tmp, "res.onnx")
    feeds = [
        {"input": rng.standard_normal((1, 4, 32, 32)).astype(np.float32)}
        for _ in range(args.samples)
    ]
    for name, model, f in (("MLP", MLP, mlp), ("residual", res, feeds)):
        one = whole(model, f, 1)
        two = whole(model, f, 2)
        refs = (one[:2], two[:2], two_processes(model, f), one[2])
        for gran in ("layer", "neuron"):
            plan = dnnpart.partition(dnnpart.load(model), k=2, method="metis", granularity=gran)
            for batch in args.batch:
                case(f"{name} {gran} metis", model, f, plan, args, tmp, refs, batch)


if __name__ == "__main__":
    main()
