"""Run an exported split locally: one onnxruntime session per sub-model, transfers routed
between per-device stores, bytes counted per link.

The local executor is the reference runtime of ``dnnpart verify`` (and the model for
distributed runtimes): stages run in the manifest's order; after a stage, every transfer
it feeds puts its value (or the listed elements: a view when they are contiguous, else a
copy) into the receiving device's store and the bytes are added to that link. Nothing is
shared between devices except through a transfer, so a value missing from a store is a
bug of the export, reported as such. Stages run one after the other, each session with
the same thread count as the whole-model reference, so that timings compare like for
like.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnpart._ort import session_options
from dnnpart.errors import DnnpartError, InvalidModelError, UsageError
from dnnpart.exporters._manifest import read_manifest
from dnnpart.runtime._routes import Routes, stage_feed
from dnnpart.runtime._routes import route as _route

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


def load_session(folder: str, stage: dict[str, Any], opts, providers=("CPUExecutionProvider",)):
    """An onnxruntime session of one stage of the export in ``folder`` (its external data
    checked first); the file name was checked by ``read_manifest``."""
    import onnxruntime as ort

    _check_external(folder, stage)
    path = os.path.join(folder, stage["file"])
    try:
        return ort.InferenceSession(path, opts, providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise InvalidModelError(
            f"onnxruntime cannot load {stage['file']}: {str(exc).splitlines()[0][:200]}"
        ) from None


def onnxruntime_failure(exc: BaseException) -> str | None:
    """``"onnxruntime: "`` and the first line of ``exc`` when onnxruntime raised it (a
    stage that cannot run on its inputs), else None."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    if type(exc).__module__ != ort_errors.__name__:
        return None
    return f"onnxruntime: {str(exc).splitlines()[0][:160] if str(exc) else exc!r}"


class Executor:
    """A loaded split, ready to run.

    Everything that does not depend on the inputs is resolved once here: each stage's
    session, feed and fetch names, the transfers that follow it with their selections,
    how outputs are reassembled. :meth:`run` then only moves arrays, so that the time it
    adds to onnxruntime's is small next to a sub-model's run (``bench/verify_overhead.py``).

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
        self.folder = os.fspath(folder)
        self.manifest = read_manifest(self.folder)
        m = self.manifest
        self.k = int(m["k"])
        self.stages = m["stages"]
        self.order = [int(i) for i in m["order"]]
        opts = session_options(threads)
        self.sessions = [load_session(self.folder, s, opts, providers) for s in self.stages]
        self.transfers = m["transfers"]
        self.routes = r = Routes(m)
        # the stages in order: (id, device, onnxruntime's own run, fetch names, feed names,
        # transfers after it). Calling the binding's run skips the Python wrapper's
        # per-call checks, which cost about as much as running a small sub-model.
        self._steps = [
            (
                sid,
                int(self.stages[sid]["device"]),
                self.sessions[sid]._sess.run,
                list(self.stages[sid]["outputs"]),
                list(self.stages[sid]["inputs"]),
                r.after.get(sid, []),
            )
            for sid in self.order
        ]
        self.input_names = r.input_names
        self.output_names = r.output_names

    def run(
        self, feeds: dict[str, np.ndarray], trace: list | None = None
    ) -> tuple[dict[str, np.ndarray], RunStats]:
        """Run the split on ``feeds`` (model input name -> array); outputs by model name.

        ``trace``, if given, gets ``(transfer index, array sent)`` for every transfer, in
        the order they happen (what :func:`~dnnpart.runtime.verify` compares on a
        mismatch). The folder is untrusted: element lists that do not fit their values, or
        stages onnxruntime refuses to run, raise :class:`~dnnpart.errors.InvalidModelError`.
        """
        try:
            return self._run(feeds, trace)
        except DnnpartError:
            raise
        except (IndexError, KeyError, ValueError, TypeError) as exc:
            why = f"{type(exc).__name__}: {str(exc)[:160]}"
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own classes, below
            why = onnxruntime_failure(exc)
            if why is None:
                raise
        raise InvalidModelError(
            f"not a valid dnnpart export: {self.folder} (the split does not run: {why})"
        )

    def _run(
        self, feeds: dict[str, np.ndarray], trace: list | None = None
    ) -> tuple[dict[str, np.ndarray], RunStats]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise UsageError(f"no value for model input {missing[0]!r}")
        k = self.k
        clock = time.perf_counter
        # fresh stores every run: a value left over from an earlier run must not hide a
        # transfer the export forgot
        stores: list[dict[str, np.ndarray]] = [{} for _ in range(k)]
        link = [0] * (k * k)
        per_transfer = [0] * len(self.transfers)
        compute = [0.0] * k
        t0 = clock()
        self.routes.place_inputs(feeds, stores)
        _route(self.routes.first, stores, link, per_transfer, trace)
        route = clock() - t0
        for sid, dev, run, fetch, needs, then in self._steps:
            store = stores[dev]
            feed = stage_feed(store, needs, self.stages[sid]["file"], dev)
            t1 = clock()
            outs = run(fetch, feed, None)
            t2 = clock()
            compute[dev] += t2 - t1
            store.update(zip(fetch, outs, strict=True))
            if then:
                _route(then, stores, link, per_transfer, trace)
                route += clock() - t2
        outputs = self.routes.gather(stores)
        out_bytes = np.zeros(k, dtype=np.int64)
        for dev, value in self.routes.output_values:
            out_bytes[dev] += stores[dev][value].nbytes
        stats = RunStats(
            np.array(link, dtype=np.int64).reshape(k, k),
            per_transfer,
            np.array(compute),
            route,
            out_bytes,
        )
        return outputs, stats
