"""The routing tables of an exported split, shared by every runtime.

From a manifest (:mod:`dnnpart.exporters._manifest`) this resolves, once, what does not
depend on the inputs: where each model input enters (and which of its elements), which
transfers follow each stage (with their element selections prepared), and how each model
output is reassembled from its pieces. The local executor (``dnnpart verify``) and the Ray
actors of ``dnnpart run`` move values with the same :func:`route`, so that both send
exactly the manifest's transfers and count the same bytes.

A *store* is one device's dict of values (name -> array). :func:`route` reads from
``stores[src]`` and writes into ``stores[dst]``: the local executor passes the k device
stores; an actor passes its own store at its index and an outbox (an empty dict, sent
on to that device) at every other index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnpart.errors import InvalidModelError

__all__ = ["Routes", "route", "stage_feed"]


def _selection(positions, axis):
    """How to cut listed elements out of a value, prepared once: None (all of it), a tuple
    of slices for a contiguous run (a view, no copy), or ``[index array, axis, index
    tuple]`` (a list, to tell it apart) for any other set of elements."""
    if positions is None:
        return None
    pos = np.asarray(positions, dtype=np.int64)
    axis = int(axis)
    if pos.size and np.array_equal(pos, np.arange(pos[0], pos[0] + pos.size)):
        return (slice(None),) * axis + (slice(int(pos[0]), int(pos[0]) + pos.size),)
    return [pos, axis, (slice(None),) * axis + (pos,)]


def _cut(arr: np.ndarray, sel) -> np.ndarray:
    """``arr`` restricted by a prepared :func:`_selection` (not None)."""
    if type(sel) is tuple:
        return arr[sel]
    idx, axis, index = sel
    if axis and arr.shape[0] != 1:
        # rows before the axis (a batch): fancy indexing copies row by row, about twice
        # as fast as ndarray.take along a non-leading axis of a [360, n] array
        return arr[index]
    return arr.take(idx, axis)


def route(transfers, stores, link, per_transfer, trace: list | None = None) -> None:
    """Copy (or view) each transfer's elements from ``stores[src]`` into ``stores[dst]``
    and count the bytes on its link (``link[src * k + dst]``) and in ``per_transfer``;
    ``trace``, if given, gets ``(transfer index, array sent)`` of each."""
    for i, src, dst, value, to_value, cell, sel in transfers:
        arr = stores[src][value]
        if sel is not None:
            arr = arr[sel] if type(sel) is tuple else _cut(arr, sel)
        stores[dst][to_value] = arr
        n = arr.nbytes
        link[cell] += n
        per_transfer[i] += n
        if trace is not None:
            trace.append((i, arr))


def stage_feed(store: dict, needs, file: str, device: int) -> dict:
    """A stage's feed from its device's store; a missing value is a bug of the export."""
    try:
        return {name: store[name] for name in needs}
    except KeyError as exc:
        raise InvalidModelError(
            f"stage {file} needs value {exc.args[0]!r}, which never reached device {device}"
        ) from None


class Routes:
    """What moves where in a split (``manifest``: as read by ``read_manifest``).

    Attributes
    ----------
    first : list
        Transfers of model inputs (before any stage), as :func:`route` entries
        ``(index, from, to, value, as, link cell, selection)``.
    after : dict of int -> list
        The transfers that follow each stage id.
    inputs : list of (tensor, device, value, selection)
        Where each model input (or part of it) enters.
    outputs : list of (name, pieces, axis, inverse)
        How each model output is rebuilt (see :meth:`_reassembly`).
    output_values : list of (device, value)
        Every value read as (part of) a model output.
    """

    def __init__(self, manifest: dict[str, Any]):
        m = manifest
        self.k = k = int(m["k"])
        self.transfers = m["transfers"]
        after: dict[int | None, list[tuple]] = {}
        for i, t in enumerate(self.transfers):
            src, dst = int(t["from"]), int(t["to"])
            sel = _selection(t["positions"], t["axis"])
            entry = (i, src, dst, t["value"], t["as"], src * k + dst, sel)
            after.setdefault(t["after"], []).append(entry)
        self.first = after.pop(None, [])
        self.after = after
        self.inputs = [
            (p["tensor"], int(p["device"]), p["value"], _selection(p["indices"], p["axis"]))
            for p in m["inputs"]
        ]
        self.outputs = [
            (name, *self._reassembly([p for p in m["outputs"] if p["tensor"] == name]))
            for name in dict.fromkeys(p["tensor"] for p in m["outputs"])
        ]
        self.output_values = [(int(p["device"]), p["value"]) for p in m["outputs"]]
        self.input_names = list(dict.fromkeys(p["tensor"] for p in m["inputs"]))
        self.output_names = [name for name, *_ in self.outputs]

    @staticmethod
    def _reassembly(parts):
        """How to rebuild one model output from its pieces: ``(pieces, axis, inverse)``
        with ``pieces`` (device, value) in manifest order; ``inverse`` is None when the
        pieces' elements, concatenated along ``axis``, are already in order (or when there
        is one whole piece), else the positions that put them in order."""
        pieces = [(int(p["device"]), p["value"]) for p in parts]
        if len(parts) == 1 and parts[0]["indices"] is None:
            return pieces, None, None
        axis = int(parts[0]["axis"])
        idx = np.concatenate([np.asarray(p["indices"], np.int64) for p in parts])
        if np.array_equal(idx, np.arange(idx.size)):
            return pieces, axis, None
        if not np.array_equal(np.sort(idx), np.arange(idx.size)):
            raise InvalidModelError(
                f"manifest: the pieces of output {parts[0]['tensor']!r} do not hold each "
                "element once"
            )
        inverse = np.empty_like(idx)
        inverse[idx] = np.arange(idx.size)
        return pieces, axis, _selection(inverse, axis)

    def place_inputs(self, feeds: dict[str, np.ndarray], stores) -> None:
        """Put each model input (or its elements) into the store of the device it enters."""
        for tensor, dev, value, sel in self.inputs:
            arr = np.asarray(feeds[tensor])
            stores[dev][value] = arr if sel is None else _cut(arr, sel)

    def gather(self, stores) -> dict[str, np.ndarray]:
        """The model outputs, rebuilt from the values in ``stores`` (indexed by device)."""
        out = {}
        for name, pieces, axis, inverse in self.outputs:
            if axis is None:
                dev, value = pieces[0]
                out[name] = stores[dev][value]
                continue
            cat = np.concatenate([stores[dev][value] for dev, value in pieces], axis=axis)
            out[name] = cat if inverse is None else _cut(cat, inverse)
        return out
