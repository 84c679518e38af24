"""Where the CPU of a local ``dnnpart run`` goes, per sample: driver, device actors, Ray.

Streams ``--samples`` samples through an exported split on a local Ray (as
``dnnpart run`` does: one actor per device, ``--in-flight`` samples pipelined, after 8
warm-up samples) and reads from ``/proc`` the CPU seconds of the driver, of each device's
actor (beside the wall time its calls spent in ``step``, the runtime's ``busy_s``) and of
Ray's other processes that the driver started (raylet, GCS, idle workers). On a machine
whose cores the actors share with the driver and Ray, the time per sample is at least the
total over the cores; the figures say how far the plan's per-device loads leave that out.
Linux only. The machine is shared: say how loaded it was when quoting figures.

    PYTHONPATH=. python bench/run_cpu.py SPLIT_FOLDER [--samples 200] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dnnpart.exporters._manifest import read_manifest  # noqa: E402
from dnnpart.runtime import _cluster  # noqa: E402
from dnnpart.runtime._overhead import _cpu_seconds, _ray_processes  # noqa: E402
from dnnpart.runtime._session import RunSession  # noqa: E402
from dnnpart.runtime._verify import load_feeds, split_inputs  # noqa: E402

WARMUP = 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1, help="Samples per Ray call.")
    args = ap.parse_args()
    manifest = read_manifest(args.folder)
    feeds = load_feeds(None, split_inputs(args.folder, manifest), samples=args.samples, seed=0)
    ray = _cluster.import_ray()
    n = len(feeds)
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with RunSession(args.folder, in_flight=args.in_flight, batch=args.batch) as session:
        split = session._split
        actors = ray.get([a.ping.remote() for a in split.actors])
        session.submit_many(feeds[:WARMUP])
        list(session.results())
        me = os.getpid()
        ray_procs = [p for p in _ray_processes() if p != me and p not in actors]
        before = [_cpu_seconds([p]) for p in (me, *actors)] + [_cpu_seconds(ray_procs)]
        t0 = time.perf_counter()
        session.submit_many(feeds)
        list(session.results())
        wall = (time.perf_counter() - t0) / n
        after = [_cpu_seconds([p]) for p in (me, *actors)] + [_cpu_seconds(ray_procs)]
        busy = [0.0] * len(actors)
        compute = [0.0] * len(actors)
        for _, _, records in session.records[-n:]:
            for r in records:
                busy[r["device"]] += r["busy_s"]
                compute[r["device"]] += r["compute_s"]
        calls = len(split.calls)
        for e in session.events:
            print(f"  event {e['kind']}: {e['detail']}")
    cpu = [(b - a) / n for a, b in zip(before, after, strict=True)]
    ms = 1e3
    print(f"{n} samples, {calls} calls per sample: {wall * ms:.3f} ms per sample (wall)")
    print(f"  driver           {cpu[0] * ms:8.3f} ms CPU per sample")
    for d in range(len(actors)):
        print(
            f"  device {d} actor   {cpu[1 + d] * ms:8.3f} ms CPU, "
            f"{busy[d] / n * ms:.3f} ms in its calls (busy), "
            f"{compute[d] / n * ms:.3f} ms in onnxruntime"
        )
    print(f"  Ray's processes  {cpu[-1] * ms:8.3f} ms CPU ({len(ray_procs)} processes)")
    total = sum(cpu)
    cores = os.cpu_count() or 1
    print(
        f"  total {total * ms:.3f} ms CPU per sample: at least {total / cores * ms:.3f} ms "
        f"per sample on {cores} cores"
    )
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
