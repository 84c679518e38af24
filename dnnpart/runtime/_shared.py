"""Activations between the processes of one machine through shared memory, not Ray's
messages.

On a local Ray an array passed from actor to actor travels inline in Ray's task messages,
from the sender to the driver (the owner of the result) and on to the receiver: about
2.5 ns of CPU per byte on each hop (serialising, gRPC over loopback, parsing), taken
from the layers of the devices that share the cores (``runtime_overhead``'s per-byte
figure; Ray's object store costs more per object, see :mod:`._cluster`). Here each
*writer* -- the driver for the model inputs, each device for its outboxes and model
outputs -- owns one file of ``slots`` equal slots, preallocated in a private folder of
``/dev/shm``. A large array is copied once into its writer's slot for its sample and
replaced by a small :class:`SharedArray` (writer, offset, shape, dtype) that travels
through Ray instead; the reader sees it as a read-only numpy view of the same pages: no
second copy (the driver copies the model outputs it hands on, which outlive the slot).

Lifetime: the driver creates the folder and files (:func:`create`, mode 0600 in a 0700
folder), every actor maps them all (:class:`Links`), then the driver removes the folder:
the mappings last as long as the processes that hold them, so nothing is left behind in
``/dev/shm`` when they end, killed or not. An actor that cannot open the files is on
another machine (or in another container): then the run keeps Ray's messages throughout.

Reuse: a sample's arrays go into slot ``sample index % slots`` (:meth:`Links.slot`) of
their writer's file. The driver launches samples in index order, keeps at most
``in_flight`` of them in flight and reads every record of a sample's batch before the
sample leaves the flight: the samples in flight are consecutive indices, at most
``in_flight`` of them, so with ``slots = in_flight`` a slot is written again only when
every call that could read its previous contents has returned.

An array that does not fit in what is left of its slot (samples larger than those the
slots were sized for) travels in Ray's message as before: slower, never wrong.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["SharedArray", "LinkSpec", "Links", "create", "remove", "slot_bytes", "MIN_BYTES"]

MIN_BYTES = 16 << 10  # smaller arrays stay in Ray's message (a copy would save nothing)
_ALIGN = 64  # each array starts on a cache line
_SHM = "/dev/shm"


class SharedArray(NamedTuple):
    """Where a writer put an array: its file, offset in it, shape and dtype."""

    writer: int
    offset: int
    shape: tuple
    dtype: str


@dataclass(frozen=True)
class LinkSpec:
    """The files of a run's links: ``folder``/``w{i}`` of ``slots * slot_bytes[i]`` bytes
    for writer i."""

    folder: str
    slots: int
    slot_bytes: tuple[int, ...]


def _round(n: int, to: int) -> int:
    return -(-int(n) // to) * to


def create(slot_bytes: list[int], slots: int) -> LinkSpec:
    """Create the folder and a preallocated file per writer (``slot_bytes[i]`` per slot).

    Raises ``OSError`` when there is no ``/dev/shm`` or not room in it (preallocating
    fails now rather than an actor dying of ``SIGBUS`` at its first write); nothing is
    left behind then.
    """
    if not os.path.isdir(_SHM):
        raise OSError(f"no {_SHM} on this machine")
    sizes = tuple(_round(max(b, _ALIGN), mmap.PAGESIZE) for b in slot_bytes)
    folder = tempfile.mkdtemp(prefix="dnnpart-links-", dir=_SHM)
    try:
        for i, size in enumerate(sizes):
            fd = os.open(os.path.join(folder, f"w{i}"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.posix_fallocate(fd, 0, size * slots)
            finally:
                os.close(fd)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return LinkSpec(folder, int(slots), sizes)


def remove(spec: LinkSpec) -> None:
    """Remove the folder (mappings already made stay valid)."""
    shutil.rmtree(spec.folder, ignore_errors=True)


class Links:
    """One process's view of a run's links: writes as ``writer`` (None: reads only).

    Maps every file of ``spec`` (``OSError`` if they are not there: another machine).
    """

    def __init__(self, spec: LinkSpec, writer: int | None):
        self.spec = spec
        self.writer = writer
        self._maps: list[mmap.mmap] = []
        for i, size in enumerate(spec.slot_bytes):
            fd = os.open(
                os.path.join(spec.folder, f"w{i}"), os.O_RDWR if i == writer else os.O_RDONLY
            )
            try:
                if os.fstat(fd).st_size != size * spec.slots:
                    raise OSError(f"{spec.folder}/w{i} is not the size the driver made it")
                access = mmap.ACCESS_WRITE if i == writer else mmap.ACCESS_READ
                self._maps.append(mmap.mmap(fd, size * spec.slots, access=access))
            finally:
                os.close(fd)
        self._used: dict[int, int] = {}  # slot -> bytes written in it for the current batch

    def slot(self, sample: int) -> int:
        """The slot of sample number ``sample`` (see module)."""
        return sample % self.spec.slots

    def start(self, slot: int) -> None:
        """A new sample in ``slot``: its earlier contents are free (see module)."""
        self._used[slot] = 0

    def put(self, slot: int, values: dict) -> dict:
        """``values`` with each array of at least :data:`MIN_BYTES` that fits copied into
        ``slot`` and replaced by its :class:`SharedArray`."""
        w = self.writer
        size = self.spec.slot_bytes[w]
        out = {}
        for name, arr in values.items():
            n = getattr(arr, "nbytes", 0)
            used = self._used.get(slot, 0)
            if n < MIN_BYTES or used + n > size or arr.dtype.hasobject:
                out[name] = arr
                continue
            offset = slot * size + used
            dst = np.ndarray(arr.shape, arr.dtype, buffer=self._maps[w], offset=offset)
            np.copyto(dst, arr, casting="no")
            self._used[slot] = used + _round(n, _ALIGN)
            out[name] = SharedArray(w, offset, tuple(arr.shape), arr.dtype.str)
        return out

    def get(self, values: dict, copy: bool = False) -> dict:
        """``values`` with every :class:`SharedArray` replaced by a read-only view (by a
        copy of it with ``copy``: to keep after the slot is written again)."""
        out = {}
        for name, v in values.items():
            if type(v) is SharedArray:
                dtype = np.dtype(v.dtype)
                end = v.offset + dtype.itemsize * int(np.prod(v.shape, dtype=np.int64))
                if (
                    not 0 <= v.writer < len(self._maps)
                    or v.offset < 0
                    or end > len(self._maps[v.writer])
                ):
                    raise ValueError(f"shared array {name!r} lies outside its writer's file")
                v = np.ndarray(v.shape, dtype, buffer=self._maps[v.writer], offset=v.offset)
                if copy:
                    v = v.copy()
            out[name] = v
        return out


def slot_bytes(
    manifest: dict, fed: list[list[dict]], feed: dict, outputs: list[list[int]]
) -> list[int]:
    """Bytes per slot (one sample) of each writer's links, the devices' then the
    driver's: a device's planned transfers and its model-output values (``outputs``, per
    device, as its sub-models declare them), scaled by the size of the model inputs
    ``feed`` against the export's; the driver's, the largest of the inputs placed in
    ``fed``; a quarter more for larger samples. Arrays under :data:`MIN_BYTES`
    do not count."""
    big = MIN_BYTES
    pad = _ALIGN
    per_input = max(
        sum(a.nbytes + pad for d in f for a in d.values() if a.nbytes >= big) for f in fed
    )
    exported = 0  # elements of the model inputs at the export's shapes
    for dims in ((manifest.get("model") or {}).get("input_shapes") or {}).values():
        if all(isinstance(x, int) for x in dims):
            exported += int(np.prod(dims, dtype=np.int64))
    given = sum(np.asarray(a).size for a in feed.values())
    scale = given / exported if exported else 1.0
    arrays = [(int(t["from"]), int(t.get("bytes") or 0)) for t in manifest["transfers"]]
    arrays += [(d, n) for d, sizes in enumerate(outputs) for n in sizes]
    sent = [0] * int(manifest["k"])
    for d, n in arrays:
        if n * scale >= big:
            sent[d] += int(n * scale) + pad
    return [int(1.25 * n) for n in (*sent, per_input)]
