"""``dnnpart run``: a split on Ray, streamed, measured, and compared with the whole model.

:func:`run` feeds every sample through a :class:`~dnnpart.runtime._session.RunSession`
and reports what the design's ``run --json`` lists: throughput and latency, busy time per
device, bytes and time per link, bytes per sample against the plan's, the events of the
run (Ray started, devices lost, re-planned, resumed) and, with ``compare``, the same
inputs through one onnxruntime session of the whole model.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dnnpart.errors import OutputConflictError, UsageError
from dnnpart.exporters._manifest import read_manifest
from dnnpart.runtime._session import RunSession
from dnnpart.runtime._verify import (
    compare_outputs,
    load_feeds,
    model_inputs,
    original_model,
    original_source,
    reference_session,
    split_inputs,
)

__all__ = ["run", "RunReport"]


@dataclass
class RunReport:
    """The result of :func:`run` (``--json`` prints :meth:`to_dict`)."""

    ok: bool
    samples: int
    max_abs_err: float | None  # with compare
    throughput_per_s: float
    latency_s: dict[str, float]  # median, p95
    bytes_measured: int  # per sample, the largest
    bytes_planned: int | None  # per sample, the plan's volume_bytes
    devices: list[dict[str, Any]]  # name, busy_s, compute_s (onnxruntime's part), samples
    links: list[dict[str, Any]]  # from, to, bytes, seconds (the receiver's wait on the link)
    events: list[dict[str, Any]]
    ray_start_s: float
    recovery_s: float
    predicted_time_per_sample_s: float | None = None  # the plan's score, where it has one
    reference_throughput_per_s: float | None = None
    reference_latency_s: dict[str, float] | None = None
    problems: list[str] = field(default_factory=list)
    outputs: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("outputs")
        return d


def _latency(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds or [0.0])
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95))}


def _stack(outputs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-sample outputs as one array per output: joined along a leading batch axis of
    1, else stacked along a new one."""
    out = {}
    for name in outputs[0]:
        parts = [np.asarray(o[name]) for o in outputs]
        lead = parts[0].ndim and all(p.shape[:1] == (1,) for p in parts)
        out[name] = np.concatenate(parts) if lead else np.stack(parts)
    return out


def save_outputs(path, outputs: dict[str, np.ndarray], *, force: bool = False) -> None:
    """Write ``outputs`` as an ``.npz`` atomically (a temporary file renamed into place)."""
    path = os.fspath(path)
    if os.path.lexists(path) and not force:
        raise OutputConflictError(f"{path} exists (use --force to replace it)")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".outputs-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **outputs)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(
    split_dir,
    inputs=None,
    *,
    samples: int = 16,
    seed: int = 0,
    address: str | None = None,
    in_flight: int = 4,
    batch: int = 1,
    threads: int | None = None,
    compare: bool = False,
    fail: tuple[Any, int] | None = None,
    model=None,
    rtol: float = 1e-5,
    atol: float | None = None,
    heartbeat: float = 60.0,
    progress=None,
    on_event=None,
) -> RunReport:
    """Run the split in ``split_dir`` on Ray, one actor per device, samples pipelined.

    Parameters
    ----------
    split_dir : path-like
        Written by :func:`dnnpart.exporters.export`.
    inputs : path-like (``.npz``), dict or list of dicts, optional
        As for :func:`dnnpart.runtime.verify` (default ``samples`` seeded random
        samples), or the samples' feeds themselves (then the original model is needed
        only for ``compare`` and after a loss).
    address : str, optional
        A Ray cluster to join (``HOST:PORT``); None starts a local Ray on this machine
        (or uses the one this process already has).
    in_flight : int
        Samples in flight at once.
    batch : int
        Samples per Ray call (see :class:`~dnnpart.runtime._session.RunSession`).
    threads : int, optional
        onnxruntime threads per device where the device file sets none (default 1); the
        whole-model reference of ``compare`` uses the same.
    compare : bool
        Also run the whole model in one onnxruntime session on the same inputs: its
        throughput and latency, and whether the outputs match (``rtol``/``atol`` as in
        verify). Needs the original model (``model`` or the manifest's path).
    fail : (device, after), optional
        Stop that device's actor after ``after`` outputs, to rehearse a loss.
    model : path-like, optional
        The original model, for ``compare`` and for re-partitioning after a loss.
    progress : callable, optional
        ``progress(done, total)`` after each output.
    on_event : callable, optional
        Called with each event as it happens.

    Returns
    -------
    RunReport
        With the outputs (``report.outputs``, one array per model output, samples
        along the first axis). Bytes per sample must equal the plan's (``problems``
        otherwise) on every split the run used.
    """
    manifest = read_manifest(split_dir)
    source = None
    specs = None if isinstance(inputs, list) else split_inputs(split_dir, manifest)
    if compare or (specs is None and not isinstance(inputs, list)):
        source = original_source(split_dir, manifest, model)
        specs = specs or model_inputs(source.model)
    elif fail is not None:  # a rehearsed loss re-plans: refuse a missing model before Ray starts
        original_model(split_dir, manifest, model)
    if isinstance(inputs, list):
        feeds = inputs
        if not feeds:
            raise UsageError("no samples to run")
    else:
        feeds = load_feeds(inputs, specs, samples=samples, seed=seed)
    sample_bytes = sum(np.asarray(v).nbytes for v in feeds[0].values())
    per_sample = sample_bytes + int(manifest.get("transfer_bytes") or 0)
    files = sum(
        os.path.getsize(os.path.join(split_dir, s[key]))
        for s in manifest["stages"]
        for key in ("file", "data")
        if s[key]
    )
    outputs: list[dict[str, np.ndarray]] = []
    t_first = t_last = time.perf_counter()
    with RunSession(
        split_dir,
        address=address,
        in_flight=in_flight,
        batch=batch,
        threads=threads,
        model=model,
        heartbeat=heartbeat,
        fail=fail,
        object_store_bytes=4 * files + 8 * in_flight * per_sample,
        on_event=on_event,
    ) as session:
        t_first = time.perf_counter()
        session.submit_many(feeds)
        for _, out in session.results():
            outputs.append(out)
            if progress is not None:
                progress(len(outputs), len(feeds))
        t_last = time.perf_counter()
    report = _report(session, feeds, outputs, t_last - t_first)
    if compare:
        _compare_whole(report, source, feeds, outputs, threads, rtol, atol)
    report.ok = not report.problems
    report.outputs = _stack(outputs)
    return report


def _report(session: RunSession, feeds, outputs, seconds: float) -> RunReport:
    devices: dict[str, dict[str, Any]] = {
        d["name"]: {"name": d["name"], "busy_s": 0.0, "compute_s": 0.0, "samples": 0}
        for d in session.original["devices"]["device"]
    }
    links: dict[tuple[str, str], dict[str, Any]] = {}
    problems: list[str] = []
    measured = 0
    for i, (names, planned, records) in enumerate(session.records):
        total = 0
        seen = set()
        for r in records:
            name = names[r["device"]]
            dev = devices.setdefault(
                name, {"name": name, "busy_s": 0.0, "compute_s": 0.0, "samples": 0}
            )
            dev["busy_s"] += r["busy_s"]
            dev["compute_s"] += r["compute_s"]
            if name not in seen:
                dev["samples"] += 1
                seen.add(name)
            for dst, n in r["sent"].items():
                key = (name, names[dst])
                link = links.setdefault(
                    key, {"from": key[0], "to": key[1], "bytes": 0, "seconds": 0.0}
                )
                link["bytes"] += n
                total += n
            for src, secs in r["waited"].items():
                key = (names[src], name)
                link = links.setdefault(
                    key, {"from": key[0], "to": key[1], "bytes": 0, "seconds": 0.0}
                )
                link["seconds"] += secs
        measured = max(measured, total)
        if planned is not None and total != planned and len(problems) < 20:
            problems.append(f"sample {i}: {total} bytes moved, the plan says {planned}")
    scores = (session.original.get("plan") or {}).get("scores") or {}
    return RunReport(
        ok=True,
        samples=len(outputs),
        max_abs_err=None,
        throughput_per_s=len(outputs) / seconds if seconds > 0 else 0.0,
        latency_s=_latency(session.latencies),
        bytes_measured=measured,
        bytes_planned=session.original.get("volume_bytes_planned"),
        devices=list(devices.values()),
        links=sorted(links.values(), key=lambda x: (x["from"], x["to"])),
        events=session.events,
        ray_start_s=session.ray_start_s,
        recovery_s=session.recovery_s,
        predicted_time_per_sample_s=scores.get("time_per_sample_s") or scores.get("latency_s"),
        problems=problems,
    )


def _compare_whole(report, source, feeds, outputs, threads, rtol, atol) -> None:
    """The whole model in one onnxruntime session, one sample after the other."""
    with tempfile.TemporaryDirectory(prefix="dnnpart-run-") as tmp:
        ref = reference_session(source, tmp, threads=threads or 1)
        names = [o.name for o in ref.get_outputs()]
        times = []
        max_err = 0.0
        t0 = time.perf_counter()
        for i, (feed, got) in enumerate(zip(feeds, outputs, strict=True)):
            t = time.perf_counter()
            expected = dict(zip(names, ref.run(names, feed), strict=True))
            times.append(time.perf_counter() - t)
            err, found = compare_outputs(got, expected, rtol, atol)
            max_err = max(max_err, err)
            room = max(0, 20 - len(report.problems))
            report.problems.extend(f"sample {i}: {p}" for p in found[:room])
        total = time.perf_counter() - t0
    report.max_abs_err = max_err
    report.reference_throughput_per_s = len(feeds) / total if total > 0 else 0.0
    report.reference_latency_s = _latency(times)
