"""One device of a split in ``dnnpart run``: the calls it makes per sample and the worker
that makes them (a Ray actor's body, plain Python so that it runs and tests without Ray).

Per sample, each device makes *calls* in the manifest's order: a *feed* call where a
model input enters a device and is sent on from there before any stage runs (or where a
device holds inputs or outputs but no stage), then one call per stage. A call takes the
device's part of the model inputs (on its first call), and the *outboxes* that other
devices' earlier calls sent it; it runs its stage, routes the transfers that follow the
stage with :func:`dnnpart.runtime._routes.route` (the local executor's), and returns one
outbox per receiving device and a small record (times, bytes, and on the device's last
call of the sample, its model output values). The record's ``waited`` is, per sending
device, the time this device waited for its outboxes: idle (its previous call over) with
the outbox sent and the call not started yet -- not the time an outbox sat queued while
the device worked on other samples. An outbox goes to the receiver's first call
after the sender's, so it is there before any stage of the receiver needs it. Values a
device keeps for its own later stages stay in its per-sample store, which its last call
of the sample drops. When the run's devices share the driver's machine, the large arrays
of inputs, outboxes and model outputs travel through shared memory (:mod:`._shared`):
the messages hold their places, and the receiver reads them in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnpart._ort import session_options
from dnnpart.errors import InvalidModelError
from dnnpart.runtime._execute import load_session, onnxruntime_failure
from dnnpart.runtime._routes import Routes, route, stage_feed
from dnnpart.runtime._shared import Links, LinkSpec

__all__ = ["Call", "plan_calls", "DeviceWorker", "FEED"]

FEED = -1  # the stage id of a feed call


@dataclass
class Call:
    """One call of one sample: ``device`` runs ``stage`` (or :data:`FEED`), sends an outbox
    to each of ``dests``, which call ``consumer[dst]`` (an index into the call list)
    receives; ``first``/``last``: the device's first/last call of the sample."""

    device: int
    stage: int
    dests: list[int]
    consumer: dict[int, int] = field(default_factory=dict)
    first: bool = False
    last: bool = False


def plan_calls(manifest: dict[str, Any], routes: Routes) -> list[Call]:
    """The calls of one sample, in an order every device can run them in (see module)."""
    stages = manifest["stages"]
    has_stage = {int(s["device"]) for s in stages}
    sends_inputs = {e[1] for e in routes.first}
    holds = {dev for _, dev, _, _ in routes.inputs} | {dev for dev, _ in routes.output_values}
    calls = [
        Call(d, FEED, sorted({e[2] for e in routes.first if e[1] == d}))
        for d in sorted(sends_inputs | (holds - has_stage))
    ]
    for sid in manifest["order"]:
        calls.append(
            Call(
                int(stages[sid]["device"]),
                int(sid),
                sorted({e[2] for e in routes.after.get(int(sid), [])}),
            )
        )
    seen: dict[int, int] = {}
    for i, c in enumerate(calls):
        c.first = c.device not in seen
        seen[c.device] = i
    for i in seen.values():
        calls[i].last = True
    for i, c in enumerate(calls):
        for dst in c.dests:
            nxt = next((j for j in range(i + 1, len(calls)) if calls[j].device == dst), None)
            if nxt is None:
                raise InvalidModelError(
                    f"a transfer to device {dst} comes after its last stage (bad manifest order)"
                )
            c.consumer[dst] = nxt
    return calls


class DeviceWorker:
    """The sessions and per-sample stores of one device.

    Parameters
    ----------
    manifest : dict
        The split's manifest (checked by the driver with ``read_manifest``).
    device : int
        This worker's device index.
    files : dict of str -> bytes
        The device's sub-model files (``device{d}_stage{s}.onnx`` / ``.data``) as read and
        checked by the driver; written to a private temporary folder to be loaded, so that
        a worker on another machine needs no shared file system.
    threads : int or None
        onnxruntime intra-op threads of each session.
    """

    def __init__(self, manifest, device: int, files: dict[str, bytes], threads: int | None):
        self.device = int(device)
        self.k = int(manifest["k"])
        self.routes = Routes(manifest)
        self.calls = plan_calls(manifest, self.routes)
        stages = manifest["stages"]
        mine = [s for s in stages if int(s["device"]) == self.device]
        tmp = tempfile.mkdtemp(prefix="dnnpart-run-")
        try:
            for s in mine:
                for name in (s["file"], s["data"]):
                    if name is not None:
                        with open(os.path.join(tmp, os.path.basename(name)), "wb") as f:
                            f.write(files[name])
            opts = session_options(threads)
            sessions = {int(s["id"]): load_session(tmp, s, opts) for s in mine}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.runs = {
            int(s["id"]): (
                sessions[int(s["id"])]._sess.run,
                list(s["outputs"]),
                list(s["inputs"]),
                s["file"],
            )
            for s in mine
        }
        self.first = [e for e in self.routes.first if e[1] == self.device]
        self.outputs = [v for d, v in self.routes.output_values if d == self.device]
        declared = {o.name: o for sess in sessions.values() for o in sess.get_outputs()}
        self._output_sizes = [_declared_bytes(declared.get(v)) for v in self.outputs]
        self.stores: dict[int, dict] = {}
        self.links: Links | None = None
        self.free_since = time.time()  # when the last call ended (wall clock, as sent_at)

    def ping(self) -> int:
        """The worker's process id (a liveness check)."""
        return os.getpid()

    def output_bytes(self) -> list[int]:
        """Bytes of each of this device's model-output values per sample, as its
        sub-models declare them (open dimensions as 1: a guess that only sizes the
        shared-memory slots, see :mod:`._shared`)."""
        return list(self._output_sizes)

    def open_links(self, spec: LinkSpec) -> bool:
        """Map the run's shared-memory links (:mod:`._shared`); False when their files
        are not there (this worker runs on another machine than the driver)."""
        try:
            self.links = Links(spec, writer=self.device)
        except OSError:
            self.links = None
        return self.links is not None

    def step(self, sample: int, index: int, fed, *payloads):
        """Make call ``index`` of ``sample``; returns its outboxes then its record (the
        record alone when it sends nothing). A payload is ``(sent_at, src, values)``."""
        got = self.step_many(
            [sample], index, None if fed is None else [fed], *((t, d, [v]) for t, d, v in payloads)
        )
        got = got if isinstance(got, tuple) else (got,)
        out = [(t, d, values[0]) for t, d, values in got[:-1]]
        return (*out, got[-1][0]) if out else got[-1][0]

    def step_many(self, samples: list[int], index: int, feds, *payloads, shared: bool = False):
        """Make call ``index`` of each of ``samples`` in turn (a batch: one Ray call for
        several samples). ``feds`` and each payload's values hold one entry per sample.
        Returns the outboxes (``(sent_at, device, [values per sample])``, one per receiving
        device) then the list of records (the list alone when it sends nothing: one Ray
        return each); the wait on the links goes to the first record. ``shared``: large
        arrays come and go through the run's shared memory (:meth:`open_links`)."""
        t_start = time.time()
        call = self.calls[index]
        links = self.links if shared else None
        if links is not None:
            payloads = [(t, d, [links.get(v) for v in values]) for t, d, values in payloads]
            if feds is not None:
                feds = [links.get(f) for f in feds]
        waited: dict[int, float] = {}
        for sent_at, src, _ in payloads:
            # the receiver's wait on this link: idle, the value sent, the call not started
            since = max(sent_at, self.free_since)
            waited[src] = waited.get(src, 0.0) + max(0.0, t_start - since)
        sent: list[list[dict]] = [[] for _ in call.dests]
        records = []
        for j, sample in enumerate(samples):
            boxes, record = self._one(
                sample, call, None if feds is None else feds[j], [p[2][j] for p in payloads]
            )
            if links is not None:
                slot = links.slot(sample)
                if call.first:
                    links.start(slot)
                boxes = [links.put(slot, values) for values in boxes]
                if "outputs" in record:
                    record["outputs"] = links.put(slot, record["outputs"])
            for box, values in zip(sent, boxes, strict=True):
                box.append(values)
            record["waited"] = waited if j == 0 else {}
            records.append(record)
        sent_at = time.time()
        self.free_since = sent_at
        boxes = [(sent_at, self.device, values) for values in sent]
        return (*boxes, records) if boxes else records

    def _one(self, sample: int, call: Call, fed, values: list[dict]):
        """One sample's part of a call: its outboxes' values and its record."""
        c0 = time.perf_counter()
        store = self.stores.setdefault(sample, {})
        for v in values:
            store.update(v)
        if fed:
            store.update(fed)
        k = self.k
        stores: list[dict] = [{} for _ in range(k)]
        stores[self.device] = store
        link = [0] * (k * k)
        per: dict[int, int] = defaultdict(int)
        compute = 0.0
        if call.stage == FEED:
            route(self.first, stores, link, per)
        else:
            run, fetch, needs, file = self.runs[call.stage]
            feed = stage_feed(store, needs, file, self.device)
            t1 = time.perf_counter()
            try:
                outs = run(fetch, feed, None)
            except Exception as exc:  # noqa: BLE001 - onnxruntime's own classes
                why = onnxruntime_failure(exc)
                if why is None:
                    raise
                shapes = ", ".join(f"{k} {list(np.shape(v))}" for k, v in feed.items())
                raise InvalidModelError(
                    f"device {self.device}: {file} does not run on sample {sample} "
                    f"(inputs {shapes}; {why})"
                ) from None
            compute = time.perf_counter() - t1
            store.update(zip(fetch, outs, strict=True))
            route(self.routes.after.get(call.stage, []), stores, link, per)
        record: dict[str, Any] = {
            "device": self.device,
            "compute_s": compute,
            "sent": {d: link[self.device * k + d] for d in call.dests},
            "transfers": dict(per),
        }
        if call.last:
            record["outputs"] = {v: store[v] for v in self.outputs}
            del self.stores[sample]
        record["busy_s"] = time.perf_counter() - c0
        return [stores[d] for d in call.dests], record


_ITEMSIZE = {
    "tensor(float)": 4,
    "tensor(double)": 8,
    "tensor(float16)": 2,
    "tensor(bfloat16)": 2,
    "tensor(int64)": 8,
    "tensor(uint64)": 8,
    "tensor(int32)": 4,
    "tensor(uint32)": 4,
    "tensor(int16)": 2,
    "tensor(uint16)": 2,
    "tensor(int8)": 1,
    "tensor(uint8)": 1,
    "tensor(bool)": 1,
}


def _declared_bytes(arg) -> int:
    """Bytes of an onnxruntime output (a ``NodeArg``) at its declared shape, an open
    dimension (a batch, most often) counted as 1; 0 when it is unknown or its type has
    no fixed size."""
    if arg is None or arg.type not in _ITEMSIZE or arg.shape is None:
        return 0
    dims = [d if isinstance(d, int) and d >= 0 else 1 for d in arg.shape]
    return int(np.prod(dims, dtype=np.int64)) * _ITEMSIZE[arg.type]
