"""The driver of ``dnnpart run``: streams samples through the device actors, in order,
and survives the loss of devices.

Up to ``in_flight`` samples are submitted at once: every call of a sample (see
:mod:`._worker`) is handed to Ray with its arguments as object references, so that a
device works on sample i+1 while the next device works on sample i. When every actor
runs on this machine, the large arrays of inputs, outboxes and outputs go through shared
memory (:mod:`._shared`, one slot per sample in flight; outputs are copied out as they
are read) and only their places travel with the calls. The rest goes from actor to actor
as Ray passes it: on a local Ray started here, inline through the driver's messages up
to :data:`._cluster.INLINE_BYTES` (cheaper in CPU on one machine than the object
store), on a joined cluster through its object store above 100 KiB. The driver puts
each device's part of the inputs in, and reads the records of finished samples, in
input order. With ``batch`` > 1, consecutive samples travel together: one Ray call per
call of the plan carries the whole batch (each device runs its samples one after the
other), so that Ray's fixed cost per call and per object -- CPU time taken from the
devices when they share a machine -- is paid once per batch.

A device is lost when Ray reports its actor dead (``ActorDiedError``, a lost object) or
when the oldest sample's first unfinished call gets no answer within ``heartbeat``
seconds. Then every actor is stopped, the model is re-partitioned over the survivors
(:func:`._replan.replan`: each survivor keeps its part where balance allows; the
``replanned`` event's ``moves`` say what moved), the new split is started, and every
sample without an output is sent again: each input gets exactly one output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnpart.errors import DnnpartError, UsageError, VerificationError
from dnnpart.exporters._manifest import read_manifest
from dnnpart.runtime import _cluster, _shared
from dnnpart.runtime._routes import Routes
from dnnpart.runtime._shared import Links
from dnnpart.runtime._worker import plan_calls

__all__ = ["RunSession", "AllDevicesLost"]


class AllDevicesLost(VerificationError):
    """Every device of the run is gone; ``completed`` outputs were produced before."""

    def __init__(self, message: str, completed: int):
        super().__init__(message)
        self.completed = completed


@dataclass
class _Batch:
    """Samples launched together: one Ray call per call of the sample plan."""

    records: list = field(default_factory=list)  # per call: a reference to its records
    boxes: list = field(default_factory=list)  # the outboxes' references
    got: list | None = None  # the records, once read


@dataclass
class _Sample:
    index: int
    feed: dict[str, np.ndarray]
    launched: float = 0.0  # when it first went in flight (latency counts from there)
    batch: _Batch = field(default_factory=_Batch)
    pos: int = 0  # its position in the batch


class _Split:
    """A running split: its manifest, routes, calls and actors; its shared-memory links
    (one slot per sample in flight, ``in_flight``), decided at the first launch (its
    samples give their sizes); ``event`` tells what was decided."""

    def __init__(self, folder: str, threads, timeout: float, in_flight: int, event):
        self.folder = folder
        self.timeout = timeout
        self.in_flight = in_flight
        self.event = event
        self.links: Links | None = None
        self._linked = False  # links decided
        self.manifest = read_manifest(folder)
        self.routes = Routes(self.manifest)
        self.calls = plan_calls(self.manifest, self.routes)
        self.names = [d["name"] for d in self.manifest["devices"]["device"]]
        self.actors = _cluster.start_actors(folder, self.manifest, threads=threads, timeout=timeout)
        # per call: the actor method, with as many returns as outboxes + the records
        self._methods = []
        for c in self.calls:
            method = self.actors[c.device].step_many
            n = len(c.dests) + 1
            self._methods.append(method.options(num_returns=n) if n > 1 else method)

    def launch(self, samples: list[_Sample]) -> None:
        """Launch ``samples`` as one batch (every call of the plan once for all of them)."""
        k = self.routes.k
        fed: list[list[dict]] = [[{} for _ in range(k)] for _ in samples]
        for s, f in zip(samples, fed, strict=True):
            self.routes.place_inputs(s.feed, f)
        if not self._linked:
            self._linked = True
            self._open_links(fed, samples[0].feed)
        links = self.links
        if links is not None:
            for s, f in zip(samples, fed, strict=True):
                slot = links.slot(s.index)
                links.start(slot)
                f[:] = [links.put(slot, d) for d in f]
        ids = [s.index for s in samples]
        inbox: list[list] = [[] for _ in self.calls]
        batch = _Batch()
        for i, c in enumerate(self.calls):
            n = len(c.dests) + 1
            feeds = [f[c.device] for f in fed] if c.first else None
            refs = self._methods[i].remote(ids, i, feeds, *inbox[i], shared=links is not None)
            if n == 1:
                refs = [refs]
            for j, dst in enumerate(c.dests):
                inbox[c.consumer[dst]].append(refs[j])
            batch.boxes.extend(refs[:-1])
            batch.records.append(refs[-1])
        for pos, s in enumerate(samples):
            s.batch, s.pos = batch, pos

    def _open_links(self, fed: list[list[dict]], feed: dict) -> None:
        """Pass activations through shared memory when every actor runs on this machine
        (:mod:`._shared`), with slots sized for samples like those in ``fed`` (``feed``:
        the first one's model inputs)."""
        ray = _cluster.import_ray()
        why = "devices on other machines"
        try:
            outputs = ray.get([a.output_bytes.remote() for a in self.actors], timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - a lost actor: the calls will say so
            self.event("links", None, f"activations through Ray's messages ({type(exc).__name__})")
            return
        sizes = _shared.slot_bytes(self.manifest, fed, feed, outputs)
        if max(sizes) == 0:
            return  # nothing large enough to gain from it
        try:
            spec = _shared.create(sizes, self.in_flight)
        except OSError as exc:
            self.event("links", None, f"activations through Ray's messages ({exc})")
            return
        try:
            got = ray.get([a.open_links.remote(spec) for a in self.actors], timeout=self.timeout)
            if all(got):
                self.links = Links(spec, writer=self.routes.k)
        except Exception as exc:  # noqa: BLE001 - a lost actor: the calls will say so
            why = type(exc).__name__
        finally:
            _shared.remove(spec)  # the actors have mapped it (or cannot)
        total = spec.slots * sum(spec.slot_bytes)
        self.event(
            "links",
            None,
            f"activations through shared memory ({total / 2**20:.1f} MiB)"
            if self.links is not None
            else f"activations through Ray's messages ({why})",
        )

    def stop(self) -> None:
        ray = _cluster.import_ray()
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass


class RunSession:
    """A split running on Ray, fed one sample at a time (:meth:`submit`) and read in
    input order (iterate, or :meth:`results`); see :func:`dnnpart.runtime.run`.

    Parameters
    ----------
    folder : path-like
        An export folder.
    address : str, optional
        A Ray cluster (``HOST:PORT``); None starts a local Ray here.
    in_flight : int
        Samples in flight at once (1: one sample at a time, no pipelining).
    batch : int
        Samples per Ray call (each device runs them one after the other): Ray's cost per
        call is shared by ``batch`` samples, and each sample waits for its batch. Keep
        ``in_flight`` at least twice ``batch``, so that devices still work on different
        batches at the same time.
    threads : int, optional
        onnxruntime threads per device where the device file gives none (default 1).
    model : path-like, optional
        The original model, needed to re-partition after a loss (default: the path the
        manifest records, relative to ``folder``; its hash must match).
    heartbeat : float
        Seconds without an answer from the oldest sample after which its stalled device
        counts as lost.
    fail : (device, after), optional
        Rehearse a loss: stop the actor of ``device`` (index or name) once ``after``
        outputs are out.
    object_store_bytes : int, optional
        Object store size of a local Ray started here.
    start_timeout : float
        Seconds for the actors to be placed and load their sub-models.
    on_event : callable, optional
        Called with each event dict (``t``, ``kind``, ``device``, ``detail``).
    """

    def __init__(
        self,
        folder,
        *,
        address: str | None = None,
        in_flight: int = 4,
        batch: int = 1,
        threads: int | None = None,
        model=None,
        heartbeat: float = 60.0,
        fail: tuple[Any, int] | None = None,
        object_store_bytes: int | None = None,
        start_timeout: float = 120.0,
        on_event=None,
    ):
        if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
            raise UsageError(f"--in-flight must be a positive integer, got {in_flight!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise UsageError(f"--batch must be a positive integer, got {batch!r}")
        if heartbeat <= 0:
            raise UsageError(f"heartbeat must be positive, got {heartbeat!r}")
        self.folder = os.fspath(folder)
        self.in_flight = in_flight
        self.batch = batch
        self.threads = threads
        self.heartbeat = float(heartbeat)
        self.start_timeout = float(start_timeout)
        self.on_event = on_event
        self.events: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()
        manifest = read_manifest(self.folder)  # refuse a bad split before starting Ray
        self.original = manifest
        self._model = model
        self._model_path: str | None = None
        names = [d["name"] for d in manifest["devices"]["device"]]
        self._fail = None
        if fail is not None:
            dev, after = fail
            idx = names.index(dev) if dev in names else None
            if idx is None and str(dev).isdigit() and int(dev) < len(names):
                idx = int(dev)
            if idx is None:
                raise UsageError(f"--fail: no device {dev!r} (devices: {', '.join(names)})")
            if int(after) < 0:
                raise UsageError("--fail DEVICE:AFTER needs AFTER >= 0")
            self._fail = (names[idx], int(after))
        self._tmp = tempfile.mkdtemp(prefix="dnnpart-run-")
        self._split: _Split | None = None
        self._started_ray = False
        self.ray = None
        self.ray_start_s = 0.0
        self.recovery_s = 0.0  # from each loss to the samples sent again, summed
        try:
            t = time.perf_counter()
            self._started_ray = _cluster.connect(
                address,
                num_cpus=sum(
                    int(d.get("threads") or threads or 1) for d in manifest["devices"]["device"]
                ),
                object_store_bytes=object_store_bytes,
            )
            self.ray = _cluster.import_ray()
            how = (
                "in use" if not self._started_ray else f"joined {address}" if address else "started"
            )
            self._event(
                "ray",
                None,
                f"{how} in {time.perf_counter() - t:.2f} s",
            )
            self.ray_start_s = time.perf_counter() - t
            self._split = _Split(
                self.folder, threads, self.start_timeout, self.in_flight, self._event
            )
        except BaseException:
            self.close()
            raise
        self._queue: deque[_Sample] = deque()
        self._flying: deque[_Sample] = deque()
        self._next = 0
        self.completed = 0
        # per sample: (device names, planned bytes, the records of its calls)
        self.records: list[tuple[list[str], int | None, list[dict]]] = []
        self.latencies: list[float] = []

    # -- events ---------------------------------------------------------------------
    def _event(self, kind: str, device: str | None, detail: str, **extra) -> None:
        e = {
            "t": round(time.perf_counter() - self._t0, 6),
            "kind": kind,
            "device": device,
            "detail": detail,
            **extra,
        }
        self.events.append(e)
        if self.on_event is not None:
            self.on_event(e)

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest of the split running now."""
        assert self._split is not None
        return self._split.manifest

    # -- streaming ------------------------------------------------------------------
    def submit(self, feed: dict[str, np.ndarray]) -> int:
        """Queue one sample (model input name -> array); returns its index."""
        return self.submit_many([feed])[0]

    def submit_many(self, feeds) -> list[int]:
        """Queue several samples at once (full batches from the start); their indices."""
        split = self._split
        out = []
        for feed in feeds:
            missing = [n for n in split.routes.input_names if n not in feed]
            if missing:
                raise UsageError(f"no value for model input {missing[0]!r}")
            out.append(self._next)
            self._queue.append(_Sample(self._next, feed))
            self._next += 1
        self._fill()
        return out

    def _fill(self) -> None:
        # a full batch when there are enough samples waiting, else what waits (the tail
        # of a run, or a stream fed one sample at a time): never more than in_flight
        while self._queue:
            n = min(self.batch, len(self._queue), self.in_flight)
            if len(self._flying) + n > self.in_flight and self._flying:
                break
            samples = [self._queue.popleft() for _ in range(n)]
            now = time.perf_counter()
            for s in samples:
                s.launched = now
            self._split.launch(samples)
            self._flying.extend(samples)

    def pending(self) -> int:
        """Samples submitted and not yet returned."""
        return len(self._queue) + len(self._flying)

    def __iter__(self):
        return self.results()

    def results(self):
        """Yield ``(index, outputs)`` for every submitted sample, in input order."""
        self._maybe_fail()  # --fail DEVICE:0
        while self._flying or self._queue:
            self._fill()
            out = self._collect(self._flying[0])
            if out is None:
                continue  # a device was lost; the samples in flight were sent again
            s = self._flying.popleft()
            self.latencies.append(time.perf_counter() - s.launched)
            self.completed += 1
            self._maybe_fail()
            self._fill()
            yield s.index, out

    def _collect(self, s: _Sample):
        ray = self.ray
        split = self._split
        b = s.batch
        if b.got is not None:
            return self._outputs(s)
        ready, waiting = ray.wait(b.records, num_returns=len(b.records), timeout=self.heartbeat)
        if waiting:
            stalled = split.calls[b.records.index(waiting[0])].device
            self._lose([stalled], f"no answer within {self.heartbeat:g} s")
            return None
        try:
            b.got = ray.get(b.records)
        except _cluster.ACTOR_FAILURES as exc:
            lost = self._find_lost()
            if not lost:
                raise
            self._lose(lost, type(exc).__name__)
            return None
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)  # the error raised in the actor
            raise (cause if isinstance(cause, DnnpartError) else exc) from None
        return self._outputs(s)

    def _outputs(self, s: _Sample):
        """The outputs of ``s`` from its batch's records (which the report keeps)."""
        split = self._split
        records = [per_call[s.pos] for per_call in s.batch.got]
        self.records.append((split.names, split.manifest.get("volume_bytes_planned"), records))
        values = {r["device"]: r["outputs"] for r in records if "outputs" in r}
        if split.links is not None:  # copied out: the slot is written again later
            values = {d: split.links.get(v, copy=True) for d, v in values.items()}
        return split.routes.gather(values)

    def _find_lost(self) -> list[int]:
        ray = self.ray
        split = self._split
        pings = [a.ping.remote() for a in split.actors]
        ready, _ = ray.wait(pings, num_returns=len(pings), timeout=min(self.heartbeat, 30.0))
        lost = []
        for d, ref in enumerate(pings):
            if ref not in ready:
                lost.append(d)
                continue
            try:
                ray.get(ref)
            except _cluster.ACTOR_FAILURES:
                lost.append(d)
        return lost

    def _settle(self) -> None:
        """Read the failed records of the samples in flight (Ray logs every error that
        is never read), giving up on those that are still running after a second."""
        batches = {id(s.batch): s.batch for s in self._flying}.values()
        refs = [r for b in batches for r in b.records + b.boxes]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=1.0)
        for ref in ready:
            try:
                self.ray.get(ref)
            except Exception:  # noqa: BLE001, S110 - an error of the lost device, known
                pass

    def _maybe_fail(self) -> None:
        if self._fail is None or self.completed < self._fail[1]:
            return
        name, _ = self._fail
        self._fail = None
        split = self._split
        if name in split.names:
            self._event("kill", name, f"--fail: actor stopped after {self.completed} outputs")
            self.ray.kill(split.actors[split.names.index(name)])

    # -- device loss ----------------------------------------------------------------
    def _lose(self, lost: list[int], why: str) -> None:
        split = self._split
        names = [split.names[d] for d in lost]
        for n in names:
            self._event("lost", n, why)
        split.stop()
        self._settle()
        survivors = [n for n in split.names if n not in names]
        if not survivors:
            raise AllDevicesLost(
                f"every device is lost; {self.completed} of {self._next} samples completed",
                self.completed,
            )
        t = time.perf_counter()
        if self._model_path is None:
            from dnnpart.runtime._verify import original_model

            self._model_path = os.path.abspath(
                original_model(self.folder, self.original, self._model)
            )
        from dnnpart.runtime._replan import replan, work_shift

        out = os.path.join(self._tmp, f"split{len(self.events)}")
        try:
            done = replan(self._model_path, split.manifest, lost, out, folder=split.folder)
        except DnnpartError as exc:
            raise AllDevicesLost(
                f"re-partitioning over {', '.join(survivors)} failed ({exc}); "
                f"{self.completed} of {self._next} samples completed",
                self.completed,
            ) from None
        new = done.manifest
        self._event(
            "replanned",
            None,
            f"{new['plan']['method']} over {', '.join(survivors)} in "
            f"{time.perf_counter() - t:.2f} s: {done.summary()}; "
            f"{work_shift(split.manifest, new)}" + "".join(f"; {n}" for n in done.notes),
            moves=done.moves,
        )
        self._split = _Split(out, self.threads, self.start_timeout, self.in_flight, self._event)
        flying = list(self._flying)
        for i in range(0, len(flying), self.batch):
            self._split.launch(flying[i : i + self.batch])
        self._event(
            "resumed",
            None,
            f"{len(self._flying)} samples sent again, {time.perf_counter() - t:.2f} s after loss",
        )
        self.recovery_s += time.perf_counter() - t

    # -- shutting down ----------------------------------------------------------------
    def close(self) -> None:
        """Stop the actors, and Ray if it was started here; remove re-planned splits."""
        if self._split is not None:
            self._split.stop()
            self._split = None
        if self._started_ray:
            _cluster.import_ray().shutdown()
            self._started_ray = False
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
