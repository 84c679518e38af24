"""Import speed and peak memory of ``dnnpart.load`` on a big model with external data.

Builds a deep MLP (``--layers`` MatMul + Add + Relu layers of ``--width`` x ``--width``
float32 weights; the defaults give 32 x 16 MiB = 512 MiB of weights, all non-zero) with its
weights in one external-data file, written one layer at a time so that the builder never
holds more than one weight matrix. Then measures, each run in a fresh Python process (so
that peak RSS, ``getrusage(RUSAGE_SELF).ru_maxrss``, is per run):

(a) ``onnx.load(path)``: the reference, which reads every weight into the protobuf;
(b) ``dnnpart.load(path)`` then ``graph.summary()``, which counts synapses and so streams
    every weight byte.

Before every run the model and its weights file are read once, so both start with a warm
page cache (the figures compare parsing and memory, not the disk). Times cover the call
only, after the imports (import times are printed apart). Runs alternate a, b, a, b... and
the median of ``--repeats`` is reported. Targets: time (b)/(a) <= 1.5 and peak RSS of (b)
<= 1.5 x the weights' bytes.

Caveat: the children run with the model's folder as working directory. At the time of
writing the importer loses most checked external-data references (keyed by ``id()`` of
transient protobuf objects) and then reads those weights through onnx relative to the
working directory; elsewhere (b) fails. The synapse total is checked against
``layers x width^2`` (every weight is non-zero), so a run that skips weights or reads
zeros is refused, not timed.

Usage: ``python bench/import_speed.py [--dir DIR] [--layers 32] [--width 2048]``. Without
``--dir`` the model goes to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

WEIGHTS = "weights.bin"
MODEL = "model.onnx"

# Child process: imports first (timed apart), then the measured call; one JSON line out.
CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
mode, path, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "onnx":
    import onnx
else:  # what dnnpart.load imports lazily, so that the timed part is the work itself
    import onnx_ir
    import dnnpart
    import dnnpart.importers._onnx
rss_imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t1 = time.perf_counter()
if mode == "onnx":
    model = onnx.load(path)
    check = sum(len(t.raw_data) for t in model.graph.initializer)
else:
    graph = dnnpart.load(path)
    doc = graph.summary()
    check = sum(s["synapses"] for s in doc["splittable"])
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with open("/proc/self/status") as f:  # cross-check: the kernel's high-water mark of this mm
    hwm = [int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM")][0]
print(json.dumps({"vm_hwm": hwm, "import_s": t1 - t0, "seconds": t2 - t1, "peak_rss": peak,
                  "rss_after_imports": rss_imported, "check": check, "expected": expected}))
"""


def build(directory: Path, layers: int, width: int, seed: int = 0) -> tuple[Path, int]:
    """Write the deep MLP to ``directory``; return the model path and the weights' bytes.

    Weights are uniform in ``[0.5, 1.5)`` with a random sign: never zero, so every
    weight is a synapse. Written streaming, one ``width x width`` matrix at a time.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    inits, nodes = [], []
    offset = 0
    x = "input"
    with open(directory / WEIGHTS, "wb") as f:
        for i in range(layers):
            for name, shape in ((f"fc{i}.weight", (width, width)), (f"fc{i}.bias", (width,))):
                a = rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
                a *= np.where(rng.random(shape) < 0.5, -1, 1).astype(np.float32)
                data = a.tobytes()
                f.write(data)
                t = TensorProto()
                t.name = name
                t.data_type = TensorProto.FLOAT
                t.dims.extend(shape)
                # the reference by hand: onnx's set_external_data wants the bytes in memory
                for key, value in (
                    ("location", WEIGHTS),
                    ("offset", offset),
                    ("length", len(data)),
                ):
                    entry = t.external_data.add()
                    entry.key, entry.value = key, str(value)
                t.data_location = TensorProto.EXTERNAL
                inits.append(t)
                offset += len(data)
            nodes.append(
                helper.make_node("MatMul", [x, f"fc{i}.weight"], [f"mm{i}"], name=f"fc{i}")
            )
            nodes.append(helper.make_node("Add", [f"mm{i}", f"fc{i}.bias"], [f"z{i}"]))
            y = f"h{i}" if i < layers - 1 else "output"
            nodes.append(helper.make_node("Relu", [f"z{i}"], [y], name=f"relu{i}"))
            x = y
    graph = helper.make_graph(
        nodes,
        "deep_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = directory / MODEL
    onnx.save_model(model, str(path))
    return path, offset


def warm(directory: Path) -> None:
    """Read every file of the model once so that the run finds it in the page cache."""
    for p in (directory / MODEL, directory / WEIGHTS):
        with open(p, "rb") as f:
            while f.read(64 << 20):
                pass


def run(mode: str, path: Path, expected: int) -> dict:
    warm(path.parent)
    # Through a shell that forks (no exec): a child exec'd straight from this process
    # inherits this process' ru_maxrss high-water mark (vfork + exec keep signal->maxrss),
    # which would floor every child's peak at the builder's. The child runs in the model's
    # folder (see "Caveat" in the module docstring).
    out = subprocess.run(
        ["/bin/sh", "-c", '"$0" "$@"; exit $?', sys.executable, "-c", CHILD]
        + [mode, str(path), str(expected)],
        capture_output=True,
        text=True,
        cwd=path.parent,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed ({out.returncode}):\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["check"] != result["expected"]:
        raise SystemExit(f"{mode}: read {result['check']}, expected {result['expected']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, help="build the model here (kept) instead of a temp dir"
    )
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    tmp = None
    directory = args.dir
    if directory is None:
        tmp = tempfile.mkdtemp(prefix="dnnpart-bench-")
        directory = Path(tmp)
    try:
        path, weight_bytes = build(directory, args.layers, args.width, args.seed)
        n = args.layers * args.width * args.width
        print(
            f"model: {args.layers} x ({args.width}x{args.width} + {args.width}) float32, "
            f"weights {weight_bytes / 2**20:.0f} MiB in {directory / WEIGHTS}",
            file=sys.stderr,
        )
        results: dict[str, list[dict]] = {"onnx": [], "dnnpart": []}
        for r in range(args.repeats):
            for mode, expected in (("onnx", weight_bytes), ("dnnpart", n)):
                res = run(mode, path, expected)
                results[mode].append(res)
                print(
                    f"  run {r + 1} {mode:8s} {res['seconds']:.3f} s  "
                    f"peak {res['peak_rss'] / 2**20:.0f} MiB  "
                    f"(after imports {res['rss_after_imports'] / 2**20:.0f} MiB, "
                    f"imports {res['import_s']:.2f} s)",
                    file=sys.stderr,
                )
        med = {
            mode: {
                key: statistics.median(r[key] for r in runs)
                for key in ("seconds", "peak_rss", "vm_hwm", "rss_after_imports", "import_s")
            }
            for mode, runs in results.items()
        }
        a, b = med["onnx"], med["dnnpart"]
        print(f"weights: {weight_bytes} bytes ({weight_bytes / 2**20:.0f} MiB)")
        print(f"(a) onnx.load                      median {a['seconds']:.3f} s")
        print(f"(b) dnnpart.load + summary         median {b['seconds']:.3f} s")
        print(
            f"time ratio (b)/(a):                {b['seconds'] / a['seconds']:.2f}  (target <= 1.5)"
        )
        print(
            f"peak RSS / weights: (b) {b['peak_rss'] / weight_bytes:.2f} (target <= 1.5), "
            f"(a) {a['peak_rss'] / weight_bytes:.2f}; VmHWM cross-check (b) "
            f"{b['vm_hwm'] / weight_bytes:.2f}, (a) {a['vm_hwm'] / weight_bytes:.2f}"
        )
        print(
            f"RSS after imports: (a) {a['rss_after_imports'] / 2**20:.0f} MiB, "
            f"(b) {b['rss_after_imports'] / 2**20:.0f} MiB; "
            f"import time (a) {a['import_s']:.2f} s, (b) {b['import_s']:.2f} s"
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
