"""Does a plan made from measured layer times predict what ``dnnpart run`` measures?

Each case profiles the model with ``dnnpart profile``'s code (onnxruntime node profiling,
1 thread, median of ``--runs``), plans a 2-device layer split with the pipeline
partitioner (Tarnawski et al. 2020) on those times (two identical devices like this
machine, default 10 Gbit/s links), exports it and streams ``--samples`` samples through
:func:`dnnpart.runtime.run` (local Ray, one actor per device, 1 onnxruntime thread each,
``--in-flight`` samples pipelined). The figure is the measured time per sample
(1 / throughput) divided by the plan's predicted time per sample (its max-load); the
target is within 25 % (0.75-1.25). ``stages`` are the predicted loads of the two devices.

    PYTHONPATH=. python bench/profile_prediction.py [--samples 100] [--in-flight 4]

Cases: SqueezeNet 1.0 of the onnx wheel (examples/corpus/wheel_squeezenet.onnx) and the
light ResNet-50 of the onnx wheel when installed (one 224 x 224 image per sample).
The machine is shared: say how loaded it was when quoting figures.
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
from dnnpart.importers._ort_profile import profile_layers, profiled_json, with_profile  # noqa: E402
from dnnpart.runtime import run  # noqa: E402

RESNET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
CASES = [
    ("squeezenet", ROOT / "examples" / "corpus" / "wheel_squeezenet.onnx"),
    ("resnet50", RESNET),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-predict-")
    print(
        f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    print(f"{'model':12} {'predicted ms':>12} {'measured ms':>12} {'ratio':>6}  stages ms")
    for name, model in CASES:
        if not model.is_file():
            print(f"{name:12} (not installed)")
            continue
        times = profile_layers(model, runs=args.runs, warmup=3, threads=1)
        devices = DeviceSet.identical(2)
        doc = profiled_json(times, devices)
        graph = with_profile(dnnpart.load(model), doc)
        plan = dnnpart.partition(graph, k=2, method="pipeline", granularity="layer")
        folder = os.path.join(tmp, name)
        export(model, plan, folder)
        report = run(folder, samples=args.samples, in_flight=args.in_flight, threads=1, model=model)
        predicted = plan.scores["max_load"]
        measured = 1.0 / report.throughput_per_s
        loads = plan.scores["loads"]
        stages = [sum(row[d] for row in loads) * 1e3 for d in range(2)]
        print(
            f"{name:12} {predicted * 1e3:12.3f} {measured * 1e3:12.3f} "
            f"{measured / predicted:6.3f}  {', '.join(f'{s:.2f}' for s in stages)}"
        )


if __name__ == "__main__":
    main()
