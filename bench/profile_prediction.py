"""Does a plan made from measured layer times predict what ``dnnpart run`` measures?

Each case profiles the model as ``dnnpart profile --runtime-overhead`` does (onnxruntime
node profiling, 1 thread, median of ``--runs``; one Ray actor call measured by
:func:`dnnpart.runtime.runtime_overhead`, with the CPU this machine spends per call and
per byte: the profile's ``dnnpart.host``), plans a 2-device layer split with the pipeline
partitioner (Tarnawski et al. 2020) on it (two identical devices like this machine,
default 10 Gbit/s links, sharing this machine as the profile's host), exports it and
streams ``--samples`` samples through :func:`dnnpart.runtime.run` (local Ray, one actor
per device, 1 onnxruntime thread each, ``--in-flight`` samples pipelined). The figure is
the measured time per sample (1 / throughput) over the plan's ``time_per_sample_s``,
which ``dnnpart run`` prints as "the plan predicted"; the target is within 25 %
(0.75-1.25). Beside it, the plan's two bounds:

``devices``
    the largest device load (the paper's max-load: layers, transfers, one call per
    device used), what a plan predicts for devices that share nothing;
``host``
    the host time per sample (:func:`dnnpart.problem.host_time`): every layer, call and
    byte carried on this machine's cores.

``no host`` repeats the plan without the host (the split a plan made before it would
choose) and gives its prediction and measured time too, with ``--no-host``. The machine
is shared: say how loaded it was when quoting figures.

    PYTHONPATH=. python bench/profile_prediction.py [--samples 200] [--in-flight 4]

Cases: SqueezeNet 1.0 of the onnx wheel (examples/corpus/wheel_squeezenet.onnx) and the
light ResNet-50 of the onnx wheel when installed (one 224 x 224 image per sample).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _models import CNNS  # noqa: E402

import dnnpart  # noqa: E402
from dnnpart.devices import DeviceSet  # noqa: E402
from dnnpart.exporters import export  # noqa: E402
from dnnpart.importers._ort_profile import profile_layers, profiled_json, with_profile  # noqa: E402
from dnnpart.runtime import run, runtime_overhead  # noqa: E402

CASES = CNNS


def _plan(model, times, devices, call, host):
    doc = profiled_json(times, devices, call_overhead=call.device_call_s(), host=host)
    graph = with_profile(dnnpart.load(model), doc)
    return dnnpart.partition(graph, k=2, method="pipeline", granularity="layer")


def _row(label, model, plan, folder, args) -> None:
    export(model, plan, folder)
    report = run(folder, samples=args.samples, in_flight=args.in_flight, threads=1, model=model)
    measured = 1.0 / report.throughput_per_s
    sc = plan.scores
    predicted = sc["time_per_sample_s"]
    host = sc.get("host_time_s")
    loads = sc["loads"]
    stages = [sum(row[d] for row in loads) * 1e3 for d in range(2)]
    print(
        f"{label:20} {measured * 1e3:9.3f} | {predicted * 1e3:9.3f} {measured / predicted:6.2f} | "
        f"{sc['max_load'] * 1e3:8.3f} {'-' if host is None else f'{host * 1e3:.3f}':>8} | "
        f"{sc['volume_bytes']:>9} {', '.join(f'{x:.2f}' for x in stages)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-host", action="store_true", help="Also plan and run without the host.")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-predict-")
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    call = runtime_overhead()
    host = call.host()
    if host is None:
        sys.exit("the host CPU per call needs /proc (Linux)")
    print(
        f"one Ray call: {call.seconds * 1e3:.3f} ms round trip; host: {host.cores} cores, CPU "
        f"{host.call_cpu * 1e3:.3f} ms per call and {host.byte_cpu * 1e9:.2f} ns per byte"
    )
    print(
        f"{'case':20} {'measured':>9} | {'predicted':>9} {'ratio':>6} | {'devices':>8} "
        f"{'host':>8} | {'bytes':>9} stages ms   (times in ms per sample)"
    )
    for name, model in CASES:
        if not model.is_file():
            print(f"{name:20} (not installed)")
            continue
        times = profile_layers(model, runs=args.runs, warmup=3, threads=1)
        devices = DeviceSet.identical(2)
        plan = _plan(model, times, devices, call, host)
        _row(name, model, plan, os.path.join(tmp, name), args)
        if args.no_host:
            bare = _plan(model, times, devices, call, None)
            _row(f"{name} (no host)", model, bare, os.path.join(tmp, name + "-nohost"), args)
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
