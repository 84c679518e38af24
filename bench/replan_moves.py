"""Vertices moved by a re-plan after a device loss: keeping survivors' parts vs from scratch.

For each case, partitions the model for k = 3 identical devices (``-p``, default metis),
exports the split (which records the plan's labels), then, for each device lost in turn,
re-plans over the two survivors twice with :func:`dnnpart.runtime._replan.replan`: keeping
each survivor's part (``keep=True``, the default of ``dnnpart run``) and from scratch
(``keep=False``, the plan's partitioner and options again). A vertex moved when its
device, matched by name, differs from the k = 3 split's. Printed per case and lost device:
vertices moved by each, the lost device's own vertices (which must move), the ratio kept
/ from scratch, how the kept re-plan ended (kept / refined / fresh, see
:class:`~dnnpart.runtime._replan.Replanned`) and the plan's objective of both (the
kept one's over the fresh one's; the tolerance is ``KEEP_TOLERANCE``), and their bytes
sent per sample.

Cases: SqueezeNet 1.0 of the onnx wheel (``examples/corpus/wheel_squeezenet.onnx``) at
layer and neuron granularity, the example MLP (``examples/mlp/mlp.onnx``) at neuron
granularity.

Usage: ``python bench/replan_moves.py [--cases squeezenet-layer squeezenet-neuron
mlp-neuron] [-p metis] [--lost 0 1 2] [--json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dnnpart
from dnnpart.exporters import export
from dnnpart.exporters._manifest import read_manifest
from dnnpart.problem._objective import objective_score
from dnnpart.runtime._replan import KEEP_TOLERANCE, replan

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = {
    "squeezenet-layer": (EXAMPLES / "corpus" / "wheel_squeezenet.onnx", "layer"),
    "squeezenet-neuron": (EXAMPLES / "corpus" / "wheel_squeezenet.onnx", "neuron"),
    "mlp-neuron": (EXAMPLES / "mlp" / "mlp.onnx", "neuron"),
}


def measure(case: str, method: str, lost: list[int], tmp: Path) -> list[dict]:
    model, granularity = CASES[case]
    plan = dnnpart.partition(dnnpart.load(model), k=3, method=method, granularity=granularity)
    folder = tmp / case
    export(model, plan, folder)
    manifest = read_manifest(folder)
    rows = []
    for d in lost:
        row: dict = {"case": case, "lost": manifest["devices"]["device"][d]["name"]}
        for keep in (True, False):
            t = time.perf_counter()
            out = tmp / f"{case}-{d}-{keep}"
            done = replan(model, manifest, [d], out, folder=folder, keep=keep)
            scores = done.manifest["plan"]["scores"]
            tag = "kept" if keep else "fresh"
            row[f"{tag}_moved"] = done.moves["moved"]
            row[f"{tag}_objective"] = objective_score(scores, "throughput")
            row[f"{tag}_volume_bytes"] = scores.get("volume_bytes")
            row[f"{tag}_seconds"] = round(time.perf_counter() - t, 2)
            if keep:
                row.update(
                    vertices=done.moves["vertices"],
                    from_lost=done.moves["from_lost"],
                    how=done.moves["how"],
                    notes=done.notes,
                )
        row["ratio"] = row["kept_moved"] / max(row["fresh_moved"], 1)
        row["objective_ratio"] = row["kept_objective"] / row["fresh_objective"]
        row["volume_ratio"] = row["kept_volume_bytes"] / max(row["fresh_volume_bytes"], 1)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("-p", "--method", default="metis")
    ap.add_argument("--lost", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="replan-moves-") as tmp:
        for case in args.cases:
            rows += measure(case, args.method, args.lost, Path(tmp))
    if args.json:
        print(json.dumps({"tolerance": KEEP_TOLERANCE, "rows": rows}, indent=1))
        return
    head = (
        f"{'case':<18} {'lost':<5} {'vertices':>8} {'lost own':>8} {'kept':>6} "
        f"{'fresh':>6} {'kept/fresh':>10} {'how':<8} {'objective kept/fresh':>20} "
        f"{'volume kept/fresh':>17}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['case']:<18} {r['lost']:<5} {r['vertices']:>8} {r['from_lost']:>8} "
            f"{r['kept_moved']:>6} {r['fresh_moved']:>6} {r['ratio']:>10.2f} {r['how']:<8} "
            f"{r['objective_ratio']:>20.3f} {r['volume_ratio']:>17.3f}"
        )
        for note in r["notes"]:
            print(f"    {note}")


if __name__ == "__main__":
    main()
