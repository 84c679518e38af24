"""How well ``dnnpart profile``'s per-layer times add up to a whole-model run.

For each model, :func:`dnnpart.importers._ort_profile.profile_layers` measures every layer
with onnxruntime's node profiling (median of ``--runs`` runs after warm-up), then the same
model runs in an unprofiled onnxruntime session with the same options (graph optimisations
off, ``--threads`` intra-op threads), runs interleaved in rounds. The figure is the sum of
the profiled layer times divided by the median unprofiled run; the target is within 10 %
(0.90-1.10). ``share`` is the fraction of each profiled run spent in the layers' kernels
(from the same trace, so load on the machine does not blur it). On a shared machine a
long run catches more interruptions than its nodes' medians do, so the table also gives
the fastest unprofiled run (``whole min``) and the ratio to it.

    PYTHONPATH=. python bench/profile_accuracy.py [--runs 20] [--threads 1] [--rounds 3]

Models: a ResNet-style block (48 channels, 24 x 24), the example MLP (batch 1: a few
microseconds, so the session's fixed cost dominates) and the SqueezeNet of the onnx wheel
(examples/corpus/wheel_squeezenet.onnx).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dnnpart.importers._ort_profile import _feeds, _session, profile_layers  # noqa: E402
from tests import models  # noqa: E402


def whole_runs(path: str, graph, threads: int, runs: int) -> list[float]:
    session = _session(path, threads, None)
    feeds = _feeds(path, graph, 0)
    for _ in range(3):
        session.run(None, feeds)
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-profile-")
    cases = [
        ("resnet-block", str(models.save(models.residual_net(48, inputs=8, image=24), tmp))),
        ("mlp", "examples/mlp/mlp.onnx"),
        ("squeezenet", "examples/corpus/wheel_squeezenet.onnx"),
    ]
    print(f"{'model':14} {'layers ms':>10} {'whole ms':>10} {'ratio':>7} {'share':>6} "
          f"{'prof.run ms':>11} {'whole min':>10} {'ratio min':>9}")  # fmt: skip
    for name, path in cases:
        layer_sums, wholes, shares, profiled = [], [], [], []
        for _ in range(args.rounds):  # interleaved: profile, then the whole model
            t = profile_layers(path, runs=args.runs, warmup=3, threads=args.threads)
            layer_sums.append(float(t.seconds.sum()))
            shares.append(t.kernel_share)
            profiled.append(t.run_seconds)
            wholes += whole_runs(path, t.graph, args.threads, args.runs)
        layers, whole = statistics.median(layer_sums), statistics.median(wholes)
        share = statistics.median(shares)
        ratio, low = layers / whole, min(wholes)
        print(
            f"{name:14} {layers * 1e3:10.3f} {whole * 1e3:10.3f} {ratio:7.3f} {share:6.3f} "
            f"{statistics.median(profiled) * 1e3:11.3f} {low * 1e3:10.3f} {layers / low:9.3f}"
        )


if __name__ == "__main__":
    main()
