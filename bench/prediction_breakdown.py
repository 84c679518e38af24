"""Per device, where does the time of a profile-planned ``dnnpart run`` go?
(bench/profile_prediction.py compares the plan's prediction, with the call cost and this
machine as the devices' host, with the measured time; this script plans on the layer times
alone and splits the time per device.)

Each case profiles the model with ``dnnpart profile``'s code (the split's own onnxruntime
session options, 1 thread, median of ``--runs``), plans a 2-device layer split with the
pipeline partitioner (Tarnawski et al. 2020) on those times (two identical devices like
this machine, default 10 Gbit/s links), exports it and streams ``--samples`` samples
through :func:`dnnpart.runtime.run` (local Ray, one actor per device, 1 onnxruntime
thread each, ``--in-flight`` samples pipelined). The headline is the measured time per
sample (1 / throughput) over the plan's predicted time per sample (its max-load); the
target is within 25 % (0.75-1.25).

Then per device, in ms per sample, predicted against measured:

* ``compute``: predicted, the device's layer times; measured, onnxruntime's run calls;
* ``transfer``: predicted, the cost of what it sends and receives (the plan's links);
  measured, its wait on the links it receives from (idle, the value sent, its call not
  started: ``links[].seconds``);
* ``call``: measured only -- the rest of its calls (routing values, the per-sample store;
  ``busy_s - compute_s``) and the time per sample it was neither busy nor waiting on a
  link (Ray's per-call cost, the driver, other processes on the cores).

    PYTHONPATH=. python bench/prediction_breakdown.py [--samples 100] [--in-flight 4] [--batch 1]

Cases: SqueezeNet 1.0 of the onnx wheel (examples/corpus/wheel_squeezenet.onnx) and the
light ResNet-50 of the onnx wheel when installed (one 224 x 224 image per sample).
The machine is shared: the load average is printed with each case.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _models import CNNS  # noqa: E402

import dnnpart  # noqa: E402
from dnnpart.devices import DeviceSet  # noqa: E402
from dnnpart.exporters import export  # noqa: E402
from dnnpart.importers._ort_profile import profile_layers, profiled_json, with_profile  # noqa: E402
from dnnpart.problem import build_problem, device_loads, pipeline_problem_of  # noqa: E402
from dnnpart.runtime import run  # noqa: E402

CASES = CNNS


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _predicted_loads(graph, plan):
    """The plan's per-device load breakdown (compute, send, receive) on the profile."""
    devices = DeviceSet.identical(2)
    problem = build_problem(graph, "layer", k=2, devices=devices)
    pipeline, layers, order = pipeline_problem_of(problem)
    assignment = np.empty(len(order), dtype=np.int64)
    assignment[order] = np.asarray(plan.labels)[layers]
    return device_loads(pipeline, assignment)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1, help="Samples per Ray call.")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-predict-")
    print(f"{os.cpu_count()} cores; load average (1/5/15 min) {_load()}")
    for name, model in CASES:
        if not model.is_file():
            print(f"{name}: not installed")
            continue
        times = profile_layers(model, runs=args.runs, warmup=3, threads=1)
        graph = with_profile(dnnpart.load(model), profiled_json(times, DeviceSet.identical(2)))
        plan = dnnpart.partition(graph, k=2, method="pipeline", granularity="layer")
        folder = os.path.join(tmp, name)
        export(model, plan, folder)
        load0 = _load()
        r = run(
            folder,
            samples=args.samples,
            in_flight=args.in_flight,
            batch=args.batch,
            threads=1,
            model=model,
        )
        predicted = plan.scores["max_load"]
        measured = 1.0 / r.throughput_per_s
        print(
            f"\n{name}: predicted {predicted * 1e3:.2f} ms/sample, measured "
            f"{measured * 1e3:.2f} (ratio {measured / predicted:.3f}; whole model profiled "
            f"{times.seconds.sum() * 1e3:.2f}); load {load0} -> {_load()}"
        )
        loads = _predicted_loads(graph, plan)
        n = r.samples
        print(
            f"  {'device':8} {'compute':>16} {'transfer':>16} {'call':>7} {'idle':>7}"
            f" {'total':>16}   (ms/sample, predicted / measured)"
        )
        for d, dev in enumerate(r.devices):
            comp = dev["compute_s"] / n
            call = (dev["busy_s"] - dev["compute_s"]) / n
            wait = sum(x["seconds"] for x in r.links if x["to"] == dev["name"]) / n
            idle = max(0.0, measured - dev["busy_s"] / n - wait)
            p_comp = loads.compute[d]
            p_comm = loads.comm_in[d] + loads.comm_out[d]
            print(
                f"  {dev['name']:8} {p_comp * 1e3:7.2f} / {comp * 1e3:6.2f}"
                f" {p_comm * 1e3:7.2f} / {wait * 1e3:6.2f} {call * 1e3:7.2f} {idle * 1e3:7.2f}"
                f" {(p_comp + p_comm) * 1e3:7.2f} / {measured * 1e3:6.2f}"
            )


if __name__ == "__main__":
    main()
