"""Run an exported split locally: one onnxruntime session per sub-model, transfers routed
between per-device stores, bytes counted per link.

The local executor is the reference runtime of ``dnnpart verify`` (and the model for
distributed runtimes): stages run in the manifest's order; after a stage, every transfer
it feeds copies its value (or the listed elements) into the receiving device's store and
the bytes are added to that link. Nothing is shared between devices except through a
transfer, so a value missing from a store is a bug of the export, reported as such.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnpart.errors import InvalidModelError, UsageError
from dnnpart.exporters._manifest import read_manifest

__all__ = ["Executor", "RunStats"]


@dataclass
class RunStats:
    """What one run moved and spent.

    ``link_bytes[a, b]`` bytes sent from device ``a`` to ``b``; ``transfer_bytes`` per
    manifest transfer; ``compute_s`` onnxruntime time per device; ``route_s`` time spent
    moving data between stores; ``output_bytes`` bytes of model outputs read per device
    (gathering them is not communication of the split, as in the plan's volume).
    """

    link_bytes: np.ndarray
    transfer_bytes: list[int]
    compute_s: np.ndarray
    route_s: float = 0.0
    output_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def bytes_total(self) -> int:
        return int(self.link_bytes.sum())


def _session_options(threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def _check_external(folder: str, stage: dict[str, Any]) -> None:
    """Refuse a sub-model whose external data is anything but its own listed data file."""
    import onnx

    path = os.path.join(folder, stage["file"])
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors
        raise InvalidModelError(f"not a valid ONNX model: {path} ({exc})") from None
    for t in _tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in t.external_data}.get("location")
            if location != stage["data"]:
                raise InvalidModelError(
                    f"{stage['file']}: tensor {t.name!r} points at external data "
                    f"{location!r}, not at {stage['data']!r}"
                )


def _tensors(graph):
    """Every tensor of ``graph``: initializers and tensor attributes, in bodies too."""
    stack = [graph]
    while stack:  # no recursion: bodies may nest deeply
        g = stack.pop()
        yield from g.initializer
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


def _selection(positions, axis):
    """How to cut a transfer's elements out of its value: None (all), a tuple of slices
    for a contiguous run (a view, no copy), or ``(index array, axis)``."""
    if positions is None:
        return None
    pos = np.asarray(positions, dtype=np.int64)
    if pos.size and np.array_equal(pos, np.arange(pos[0], pos[0] + pos.size)):
        return (slice(None),) * int(axis) + (slice(int(pos[0]), int(pos[0]) + pos.size),)
    return [pos, int(axis)]


class Executor:
    """A loaded split, ready to run.

    Parameters
    ----------
    folder : path-like
        An export folder (``manifest.json`` and its sub-models).
    threads : int or None
        onnxruntime intra-op threads per session (None: onnxruntime's default).
    providers : sequence of str
        onnxruntime execution providers.
    """

    def __init__(self, folder, *, threads: int | None = 1, providers=("CPUExecutionProvider",)):
        import onnxruntime as ort

        self.folder = os.fspath(folder)
        self.manifest = read_manifest(self.folder)
        m = self.manifest
        self.k = int(m["k"])
        self.stages = m["stages"]
        self.order = [int(i) for i in m["order"]]
        self.sessions = []
        opts = _session_options(threads)
        for s in self.stages:
            _check_external(self.folder, s)
            path = os.path.join(self.folder, s["file"])
            try:
                self.sessions.append(ort.InferenceSession(path, opts, providers=list(providers)))
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                raise InvalidModelError(
                    f"onnxruntime cannot load {s['file']}: {str(exc).splitlines()[0][:200]}"
                ) from None
        # per producing stage: (index, from, to, value, as, selection) with the selection
        # prepared once: None (whole value), a slice (contiguous elements) or an index array
        self.after: dict[int | None, list[tuple]] = {}
        self.transfers = m["transfers"]
        for i, t in enumerate(self.transfers):
            sel = _selection(t["positions"], t["axis"])
            entry = (i, int(t["from"]), int(t["to"]), t["value"], t["as"], sel)
            self.after.setdefault(t["after"], []).append(entry)
        for p in m["inputs"] + m["outputs"]:
            p["_idx"] = None if p["indices"] is None else np.asarray(p["indices"], np.int64)
        self.input_names = list(dict.fromkeys(p["tensor"] for p in m["inputs"]))
        self.output_names = list(dict.fromkeys(p["tensor"] for p in m["outputs"]))

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], RunStats]:
        """Run the split on ``feeds`` (model input name -> array); outputs by model name."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise UsageError(f"no value for model input {missing[0]!r}")
        k = self.k
        stores: list[dict[str, np.ndarray]] = [{} for _ in range(k)]
        link = np.zeros((k, k), dtype=np.int64)
        per_transfer = [0] * len(self.transfers)
        compute = np.zeros(k)
        route = 0.0
        t0 = time.perf_counter()
        for p in self.manifest["inputs"]:
            arr = np.asarray(feeds[p["tensor"]])
            if p["_idx"] is not None:
                arr = np.take(arr, p["_idx"], axis=p["axis"])
            stores[p["device"]][p["value"]] = arr
        route += self._route(None, stores, link, per_transfer)
        route += time.perf_counter() - t0
        for sid in self.order:
            s = self.stages[sid]
            dev = s["device"]
            store = stores[dev]
            try:
                feed = {name: store[name] for name in s["inputs"]}
            except KeyError as exc:
                raise InvalidModelError(
                    f"stage {s['file']} needs value {exc.args[0]!r}, which never reached "
                    f"device {dev}"
                ) from None
            t1 = time.perf_counter()
            outs = self.sessions[sid].run(s["outputs"], feed)
            compute[dev] += time.perf_counter() - t1
            store.update(zip(s["outputs"], outs, strict=True))
            route += self._route(sid, stores, link, per_transfer)
        outputs = self._gather(stores)
        out_bytes = np.zeros(k, dtype=np.int64)
        for p in self.manifest["outputs"]:
            out_bytes[p["device"]] += stores[p["device"]][p["value"]].nbytes
        stats = RunStats(link, per_transfer, compute, route, out_bytes)
        return outputs, stats

    def _route(self, sid, stores, link, per_transfer) -> float:
        t0 = time.perf_counter()
        for i, src, dst, value, to_value, sel in self.after.get(sid, ()):
            arr = stores[src][value]
            if sel is not None:
                arr = arr[sel] if isinstance(sel, tuple) else arr.take(sel[0], sel[1])
            stores[dst][to_value] = arr
            link[src, dst] += arr.nbytes
            per_transfer[i] += arr.nbytes
        return time.perf_counter() - t0

    def _gather(self, stores) -> dict[str, np.ndarray]:
        pieces: dict[str, list[dict[str, Any]]] = {}
        for p in self.manifest["outputs"]:
            pieces.setdefault(p["tensor"], []).append(p)
        out = {}
        for name, parts in pieces.items():
            if len(parts) == 1 and parts[0]["_idx"] is None:
                out[name] = stores[parts[0]["device"]][parts[0]["value"]]
                continue
            axis = parts[0]["axis"]
            arrays = [stores[p["device"]][p["value"]] for p in parts]
            idx = np.concatenate([p["_idx"] for p in parts])
            cat = np.concatenate(arrays, axis=axis)
            inverse = np.empty_like(idx)
            inverse[idx] = np.arange(len(idx))
            out[name] = np.take(cat, inverse, axis=axis)
        return out
