"""The fixed cost of one device call in ``dnnpart run``: a Ray actor round trip.

Every device that holds work makes at least one actor call per sample (:mod:`._worker`),
and each call costs time that no layer profile sees: the driver serialises the
arguments and submits the task, Ray schedules it, the actor deserialises them, runs the
method and sends the result back. :func:`runtime_overhead` measures that round trip on a
call shaped like a device's (a small feed in, a small record out, nothing computed), so
that a plan made from a profile can charge it to every device it uses (the device file's
``call_overhead``, the profile's ``dnnpart.call_overhead_s``).

Most of a round trip is CPU work, not waiting, and most of it is not the actor's: the
driver and Ray's own processes (raylet, GCS) do it. Where the devices are separate
machines that is the driver's business; where they share one machine (a local
``dnnpart run``), it competes with their layers for the same cores. So the measurement
also counts the CPU seconds the whole local Ray spends per call (the driver and every
process it started, read from ``/proc``; Linux only) and per byte of a payload (a
second series with a large feed, carried as a run carries a sample's inputs and
transfers: through shared memory where the actor can map it, :mod:`._shared`).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

import numpy as np

from dnnpart.devices import Host
from dnnpart.errors import UsageError
from dnnpart.runtime import _cluster, _shared

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
    host_cpu_s : float or None
        CPU seconds per call of the driver and every process of the Ray it started here
        (the actor, raylet, GCS, ...); None when Ray was not started here or ``/proc`` is
        not there.
    host_cpu_per_byte_s : float or None
        Extra host CPU seconds per byte of feed carried by a call (a large feed against a
        few bytes, carried as a run carries it: see the module), as ``host_cpu_s``.
    actor_cpu_s : float or None
        CPU seconds per call of the actor's own process (a part of ``host_cpu_s``), as
        ``host_cpu_s``.
    """

    seconds: float
    driver_cpu_s: float
    calls: int
    host_cpu_s: float | None = None
    host_cpu_per_byte_s: float | None = None
    actor_cpu_s: float | None = None

    def device_call_s(self) -> float:
        """What a device pays per call in its own pipelined load: the actor's CPU per
        call where it was measured on this machine (the rest of a round trip is the
        driver's and Ray's work, which :meth:`host` charges to the shared cores, and
        waiting, which calls in flight overlap), else the round trip."""
        return self.seconds if self.actor_cpu_s is None else self.actor_cpu_s

    def host(self) -> Host | None:
        """This machine as devices sharing it see it (:class:`dnnpart.devices.Host`): the
        cores this process may run on, the host CPU per call and per byte; None when the
        host CPU was not measured."""
        if self.host_cpu_s is None:
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return Host(cores or os.cpu_count() or 1, self.host_cpu_s, self.host_cpu_per_byte_s or 0.0)


class _Echo:
    """An actor doing nothing but what a device's call does around its stage."""

    links = None

    def open_links(self, spec) -> bool:
        try:
            self.links = _shared.Links(spec, writer=None)
        except OSError:
            return False
        return True

    def step(self, sample: int, index: int, fed, *payloads, shared: bool = False):
        if shared:
            fed = self.links.get(fed)
        return {"device": 0, "compute_s": 0.0, "sample": sample, "index": index}

    def pid(self) -> int:
        return os.getpid()


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
        small = {"input": np.zeros(16, np.float32)}
        for i in range(warmup):
            ray.get(actor.step.remote(i, 0, small))
        procs = _ray_processes() if started else None
        mine = None if procs is None else [ray.get(actor.pid.remote())]
        host0, actor0 = _cpu_seconds(procs), _cpu_seconds(mine)
        wall = []
        cpu0 = time.process_time()
        for i in range(calls):
            t0 = time.perf_counter()
            ray.get(actor.step.remote(i, 0, small))
            wall.append(time.perf_counter() - t0)
        cpu = (time.process_time() - cpu0) / calls
        host = _per_call(_cpu_seconds(procs), host0, calls)
        actor_cpu = _per_call(_cpu_seconds(mine), actor0, calls)
        per_byte = None
        if host is not None:
            n_big = max(1, calls // 4)
            send, nbytes = _big_sender(ray, actor)
            ray.get(send(0))
            host0 = _cpu_seconds(procs)
            for i in range(n_big):
                ray.get(send(i))
            big_host = _per_call(_cpu_seconds(procs), host0, n_big)
            if big_host is not None:
                per_byte = max(0.0, big_host - host) / (nbytes - small["input"].nbytes)
        ray.kill(actor)
    finally:
        if started:
            ray.shutdown()
    return CallOverhead(statistics.median(wall), cpu, calls, host, per_byte, actor_cpu)


# bytes of the feed that prices a byte carried: in Ray's messages, and in shared memory
# (a copy: 16 times more, for /proc's 10 ms ticks to see it)
_BIG_FEED = 1 << 20
_BIG_SHARED = 16 << 20


def _big_sender(ray, actor):
    """``(send, nbytes)``: ``send(i)`` makes a call carrying ``nbytes`` of feed as
    ``dnnpart run`` carries a sample's large arrays on this machine -- copied into shared
    memory (:mod:`._shared`), or in Ray's message where there is none -- and returns its
    object reference."""
    inline = {"input": np.zeros(_BIG_FEED // 4, np.float32)}
    try:
        spec = _shared.create([_BIG_SHARED + 4096], 1)
    except OSError:
        return (lambda i: actor.step.remote(i, 0, inline)), _BIG_FEED
    try:
        links = _shared.Links(spec, writer=0)
        if not ray.get(actor.open_links.remote(spec)):
            return (lambda i: actor.step.remote(i, 0, inline)), _BIG_FEED
    finally:
        _shared.remove(spec)
    big = {"input": np.ones(_BIG_SHARED // 4, np.float32)}

    def send(i):
        links.start(0)
        return actor.step.remote(i, 0, links.put(0, big), shared=True)

    return send, _BIG_SHARED


def _ray_processes() -> list[int] | None:
    """This process and every process below it (a local Ray's), or None without /proc."""
    if not os.path.isdir("/proc/self"):
        return None
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(name))
    found, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _cpu_seconds(pids: list[int] | None) -> float | None:
    """User plus system CPU seconds of ``pids`` so far (those gone count 0)."""
    if pids is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def _per_call(after: float | None, before: float | None, calls: int) -> float | None:
    return None if after is None or before is None else (after - before) / calls
