"""Does a plan made from measured layer times predict what ``dnnpart run`` measures?

Each case profiles the model with ``dnnpart profile``'s code (onnxruntime node profiling,
1 thread, median of ``--runs``), measures one Ray actor call
(:func:`dnnpart.runtime.runtime_overhead`, what ``--runtime-overhead`` writes), plans a
2-device layer split with the pipeline partitioner (Tarnawski et al. 2020) on those times
(two identical devices like this machine, default 10 Gbit/s links), exports it and streams
``--samples`` samples through :func:`dnnpart.runtime.run` (local Ray, one actor per
device, 1 onnxruntime thread each, ``--in-flight`` samples pipelined). The figure is the
measured time per sample (1 / throughput) divided by a predicted one; the target is
within 25 % (0.75-1.25). Three predictions:

``no call``
    the plan's max-load on the layer times alone (devices pay compute and transfers);
``call``
    the plan's max-load with the call overhead (each used device pays one Ray round trip
    per sample), what ``partition`` reports on a profile made with ``--runtime-overhead``;
``host``
    the larger of ``call`` and the machine's CPU bound: the devices of a local run are
    processes sharing this machine's cores with the driver and Ray's own processes, so
    a sample takes at least (the layers' time + calls x host CPU per call + bytes moved x
    host CPU per byte) / cores, the host figures measured by ``runtime_overhead`` (calls
    from the split's manifest, bytes: the sample's inputs and the planned transfers).

``stages`` are the layer times of the two devices. The machine is shared: say how loaded
it was when quoting figures.

    PYTHONPATH=. python bench/profile_prediction.py [--samples 100] [--in-flight 4]

Cases: SqueezeNet 1.0 of the onnx wheel (examples/corpus/wheel_squeezenet.onnx) and the
light ResNet-50 of the onnx wheel when installed (one 224 x 224 image per sample).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dnnpart  # noqa: E402
from dnnpart.devices import DeviceSet  # noqa: E402
from dnnpart.exporters import export  # noqa: E402
from dnnpart.exporters._manifest import read_manifest  # noqa: E402
from dnnpart.importers._ort_profile import profile_layers, profiled_json, with_profile  # noqa: E402
from dnnpart.runtime import run, runtime_overhead  # noqa: E402
from dnnpart.runtime._routes import Routes  # noqa: E402
from dnnpart.runtime._worker import plan_calls  # noqa: E402

RESNET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
CASES = [
    ("squeezenet", ROOT / "examples" / "corpus" / "wheel_squeezenet.onnx"),
    ("resnet50", RESNET),
]


def _plan(model, times, devices, call):
    doc = profiled_json(times, devices, call_overhead=call)
    graph = with_profile(dnnpart.load(model), doc)
    return dnnpart.partition(graph, k=2, method="pipeline", granularity="layer")


def _host_bound(times, folder, call, cores) -> float:
    """Seconds per sample the machine's cores need at least (module docstring)."""
    manifest = read_manifest(folder)
    calls = len(plan_calls(manifest, Routes(manifest)))
    inputs = sum(t.nbytes or 0 for t in times.graph.inputs)
    moved = inputs + int(manifest.get("transfer_bytes") or 0)
    cpu = float(times.seconds.sum()) + calls * call.host_cpu_s
    return (cpu + moved * call.host_cpu_per_byte_s) / cores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-predict-")
    cores = os.cpu_count() or 1
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {cores} cores")
    call = runtime_overhead()
    print(
        f"one Ray call: {call.seconds * 1e3:.3f} ms round trip, host CPU "
        f"{(call.host_cpu_s or 0) * 1e3:.3f} ms per call and "
        f"{(call.host_cpu_per_byte_s or 0) * 1e9:.2f} ns per byte carried"
    )
    print(
        f"{'model':11} {'measured ms':>11} | {'predicted ms':>12} {'ratio':>6} "
        "(no call / call / host)  stages ms"
    )
    for name, model in CASES:
        if not model.is_file():
            print(f"{name:11} (not installed)")
            continue
        times = profile_layers(model, runs=args.runs, warmup=3, threads=1)
        devices = DeviceSet.identical(2)
        plan = _plan(model, times, devices, call.seconds)
        bare = _plan(model, times, devices, None).scores["max_load"]
        folder = os.path.join(tmp, name)
        export(model, plan, folder)
        report = run(folder, samples=args.samples, in_flight=args.in_flight, threads=1, model=model)
        measured = 1.0 / report.throughput_per_s
        with_call = plan.scores["max_load"]
        predicted = [bare, with_call]
        if call.host_cpu_s is not None:
            predicted.append(max(with_call, _host_bound(times, folder, call, cores)))
        loads = plan.scores["loads"]
        stages = [sum(row[d] for row in loads) * 1e3 for d in range(2)]
        print(
            f"{name:11} {measured * 1e3:11.3f} | "
            + " / ".join(f"{p * 1e3:.3f}" for p in predicted)
            + "  "
            + " / ".join(f"{measured / p:.2f}" for p in predicted)
            + f"  {', '.join(f'{s:.2f}' for s in stages)}"
        )
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
