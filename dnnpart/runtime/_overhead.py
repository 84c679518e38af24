"""The fixed cost of one device call in ``dnnpart run``: a Ray actor round trip.

Every device that holds work makes at least one actor call per sample (:mod:`._worker`),
and each call costs time that no layer profile sees: the driver serialises the
arguments and submits the task, Ray schedules it, the actor deserialises them, runs the
method and sends the result back. :func:`runtime_overhead` measures that round trip on a
call shaped like a device's (a small feed in, a small record out, nothing computed), so
that a plan made from a profile can charge it to every device it uses (the device file's
``call_overhead``, the profile's ``dnnpart.call_overhead_s``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from dnnpart.errors import UsageError
from dnnpart.runtime import _cluster

__all__ = ["CallOverhead", "runtime_overhead"]


@dataclass(frozen=True)
class CallOverhead:
    """What one actor call costs, measured by :func:`runtime_overhead`.

    Attributes
    ----------
    seconds : float
        Median wall time of one round trip (submit, run an empty method, get the result).
    driver_cpu_s : float
        CPU seconds the calling process spent per call (submitting and reading results):
        on a machine whose cores the devices share, the driver's work competes with theirs.
    calls : int
        Round trips measured.
    """

    seconds: float
    driver_cpu_s: float
    calls: int


class _Echo:
    """An actor doing nothing but what a device's call does around its stage."""

    def step(self, sample: int, index: int, fed, *payloads):
        return {"device": 0, "compute_s": 0.0, "sample": sample, "index": index}


def runtime_overhead(
    *, calls: int = 200, warmup: int = 20, address: str | None = None
) -> CallOverhead:
    """Measure one Ray actor round trip, as a device call of ``dnnpart run`` makes it.

    Parameters
    ----------
    calls : int
        Round trips measured (their median counts), one after another.
    warmup : int
        Round trips made first and not counted.
    address : str, optional
        A Ray cluster to join (``HOST:PORT``); None starts a local Ray here and stops it
        after (a Ray already initialised in this process is used as it is).

    Returns
    -------
    CallOverhead
    """
    for name, value, low in (("calls", calls, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    ray = _cluster.import_ray()
    started = _cluster.connect(address)
    try:
        actor = ray.remote(_Echo).options(num_cpus=1, max_restarts=0).remote()
        feed = {"input": b"\0" * 64}
        for i in range(warmup):
            ray.get(actor.step.remote(i, 0, feed))
        wall = []
        cpu0 = time.process_time()
        for i in range(calls):
            t0 = time.perf_counter()
            ray.get(actor.step.remote(i, 0, feed))
            wall.append(time.perf_counter() - t0)
        cpu = (time.process_time() - cpu0) / calls
        ray.kill(actor)
    finally:
        if started:
            ray.shutdown()
    return CallOverhead(statistics.median(wall), cpu, calls)
