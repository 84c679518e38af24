"""``dnnpart verify``: prove that a split computes what the whole model computed.

The split runs through the local executor (:mod:`._execute`), the reference is the
original model after the plan's pruning in one onnxruntime session, and the two must
agree on every output: ``|split - ref| <= atol + rtol * |ref|`` elementwise, with
``atol = rtol * max|ref|`` of that output unless given (fp32 products summed in another
order differ by a few ulps; integer and boolean outputs must be equal). The bytes that
really crossed between devices are counted on every run and must equal the plan's
``volume_bytes`` exactly. Plans score one sample with symbolic dimensions set to 1, so
every sample runs on its own (batch 1) and each run is compared with the plan.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dnnpart._accuracy import (
    DEFAULT_LABELS,
    MAX_FEED_BYTES,
    accuracy,
    accuracy_of,
    load_data,
    output_name,
    read_npz,
    top1,
)
from dnnpart._zeros import message_bytes
from dnnpart.errors import DnnpartError, InvalidModelError, ResourceLimitError, UsageError
from dnnpart.runtime._execute import Executor

MAX_SAMPLES = 1 << 20

__all__ = [
    "verify",
    "VerifyReport",
    "model_inputs",
    "reference_session",
    "original_model",
    "original_source",
    "load_feeds",
    "compare_outputs",
]


@dataclass
class VerifyReport:
    """The result of :func:`verify` (``--json`` prints :meth:`to_dict`)."""

    ok: bool
    max_abs_err: float
    bytes_measured: int | None  # per sample (the largest over samples)
    bytes_planned: int | None  # the plan's volume_bytes
    bytes_manifest: int | None  # the sum of the manifest's transfers
    samples: int
    link_bytes: list[list[int]]  # per sample, [from][to]
    compute_s: list[float]  # per device, per sample
    reference_s: float  # per sample
    route_s: float  # per sample
    output_bytes: list[int]  # per device, per sample (gathering outputs; not volume)
    problems: list[str] = field(default_factory=list)
    # top-1 on the inputs file (None without one): of the split, and of the original
    # model (before the plan's passes); on the labels, or else agreement with the original
    accuracy: float | None = None
    reference_accuracy: float | None = None
    accuracy_of: str | None = None
    device_names: list[str] = field(default_factory=list)  # from the device file
    # zero skipping (dnnpart._zeros): the transfers' bytes as sparse messages, per sample
    # (mean over samples), and the plan's volume_bytes_sparse (None: not scored)
    bytes_sparse_measured: float | None = None
    bytes_sparse_planned: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _np_dtype(ir_dtype) -> np.dtype:
    return np.dtype(ir_dtype.numpy())


def model_inputs(model) -> list[tuple[str, np.dtype, list]]:
    """``(name, numpy dtype, dims)`` of the model's inputs (dims: int, or None if symbolic)."""
    out = []
    init = set(model.graph.initializers)
    for v in model.graph.inputs:
        if v.name in init:
            continue
        if v.dtype is None:
            raise InvalidModelError(f"model input {v.name!r} has no element type")
        dims = None
        if v.shape is not None:
            dims = [d if isinstance(d, int) else None for d in v.shape]
        out.append((v.name, _np_dtype(v.dtype), dims))
    return out


def split_inputs(folder, manifest: dict[str, Any]) -> list[tuple[str, np.dtype, list]] | None:
    """The model inputs as :func:`model_inputs` gives them, read from the split itself
    (the element type from the sub-model that takes each input, the shape the plan
    recorded), so that a split runs on random samples without its original model.

    None when the manifest records no shape for some input (a split of an older version).
    """
    import onnx_ir as ir

    shapes = (manifest.get("model") or {}).get("input_shapes") or {}
    tensor_of = {e["value"]: e["tensor"] for e in manifest["inputs"]}  # one input: many slices
    tensors = list(dict.fromkeys(tensor_of.values()))
    if any(t not in shapes for t in tensors):
        return None
    dtypes: dict[str, np.dtype] = {}
    for stage in manifest["stages"]:
        if not any(tensor_of.get(v) not in (None, *dtypes) for v in stage["inputs"]):
            continue
        sub = ir.load(os.path.join(os.fspath(folder), stage["file"]))
        for v in sub.graph.inputs:
            t = tensor_of.get(v.name)
            if t is not None and t not in dtypes and v.dtype is not None:
                dtypes[t] = _np_dtype(v.dtype)
    if dtypes.keys() != set(tensors):
        return None
    return [(t, dtypes[t], [int(d) for d in shapes[t]]) for t in tensors]


def _random_sample(rng, dtype: np.dtype, dims) -> np.ndarray:
    shape = [1 if d is None else d for d in (dims or [])]
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 2, size=shape).astype(dtype)  # small: safe as indices
    return rng.standard_normal(shape).astype(dtype)


def reference_session(
    source, folder: str, *, threads: int | None = 1, extra_outputs: list[str] | None = None
):
    """An onnxruntime session of the whole model after the plan's pruning.

    Built like a stage (onnx-ir extraction of the whole graph, pruned weights and external
    data read through the importer's checked paths) and saved in ``folder``.
    ``extra_outputs`` names inner tensors to return too (after the model's outputs).
    """
    import onnxruntime as ort

    from dnnpart._ort import session_options
    from dnnpart.exporters._source import whole_model
    from dnnpart.exporters._write import save_model

    model = whole_model(source, extra_outputs)
    size = sum(v.const_value.nbytes for v in model.graph.initializers.values())
    stem = "reference_trace" if extra_outputs else "reference"
    path = os.path.join(folder, f"{stem}.onnx")
    save_model(
        model,
        path,
        external_data=f"{stem}.data" if size > 64 << 20 else None,
        source=source.path,
    )
    try:
        return ort.InferenceSession(
            path, session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise InvalidModelError(
            f"onnxruntime cannot load the model {source.path}: {str(exc).splitlines()[0][:200]}"
        ) from None


def _localise(executor, source, folder, feed, rtol, atol, threads) -> str:
    """Run the sample again, recording every transfer, against the whole model's values of
    the same tensors (see :mod:`dnnpart.runtime._diverge`)."""
    from dnnpart.runtime._diverge import divergence

    m = executor.manifest
    inner = [t["tensor"] for t in m["transfers"] if t["tensor"] not in feed]
    try:
        ref = reference_session(source, folder, threads=threads, extra_outputs=inner)
    except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the mismatch
        return f"could not localise it ({type(exc).__name__})"
    names = [o.name for o in ref.get_outputs()]
    values = dict(zip(names, ref.run(names, feed), strict=True))
    values.update({n: np.asarray(v) for n, v in feed.items()})
    trace: list = []
    executor.run(feed, trace=trace)
    return divergence(m, trace, values, rtol, atol, _compare)


def original_model(folder, manifest: dict[str, Any], model=None) -> str:
    """The path of the model a split was exported from, its sha256 checked (see
    :func:`_reference_model`)."""
    return _reference_model(folder, manifest, model)


def original_source(folder, manifest: dict[str, Any], model=None):
    """The original model (see :func:`original_model`) after the plan's passes, at the
    plan's input shapes, as the exporter prepared it."""
    from dnnpart.exporters._manifest import manifest_passes
    from dnnpart.exporters._source import prepare

    path = original_model(folder, manifest, model)
    info = manifest.get("model") or {}
    return prepare(
        path,
        manifest_passes(manifest),
        info.get("sha256"),
        info.get("input_shapes"),
        store=os.fspath(folder),
    )


def load_feeds(inputs, specs, *, samples: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Per-sample feeds: from ``inputs`` (an ``.npz`` path or a dict; see :func:`verify`)
    or ``samples`` seeded random samples; ``specs`` from :func:`model_inputs`."""
    if inputs is None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise UsageError(f"--samples must be at least 1, got {samples}")
        per_sample = sum(
            math.prod(1 if d is None else d for d in dims or []) * dt.itemsize
            for _, dt, dims in specs
        )
        if samples > MAX_SAMPLES or samples * per_sample > MAX_FEED_BYTES:
            raise ResourceLimitError(
                f"{samples} random samples of {per_sample} bytes are over the limit of "
                f"{MAX_FEED_BYTES} bytes; use fewer --samples"
            )
        rng = np.random.default_rng(seed)
        return [{n: _random_sample(rng, dt, dims) for n, dt, dims in specs} for _ in range(samples)]
    return load_data(inputs, specs).feeds


def _compare(name: str, got: np.ndarray, ref: np.ndarray, rtol: float, atol):
    """(max abs error, problem or None) of one output."""
    if got.shape != ref.shape:
        return float("inf"), f"output {name!r}: shape {got.shape}, reference {ref.shape}"
    if ref.dtype.kind not in "fc":
        bad = int(np.count_nonzero(got != ref))
        return float(bad > 0), (f"output {name!r}: {bad} elements differ" if bad else None)
    g64, r64 = got.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(g64 - r64)
    both_nan = np.isnan(g64) & np.isnan(r64)
    diff[both_nan] = 0.0
    scale = float(np.nanmax(np.abs(r64))) if r64.size and not np.all(np.isnan(r64)) else 0.0
    tol = (rtol * scale if atol is None else atol) + rtol * np.abs(r64)
    err = float(np.nanmax(diff)) if diff.size else 0.0
    if np.isnan(diff).any() or bool((diff > tol).any()):
        return err if not np.isnan(err) else float("inf"), (
            f"output {name!r}: max abs error {err:.3g} over tolerance (rtol {rtol:g})"
        )
    return err, None


def compare_outputs(got, expected, rtol: float = 1e-5, atol=None) -> tuple[float, list[str]]:
    """(max abs error, problems) of a split's outputs ``got`` against ``expected`` (the
    whole model's, by output name); tolerances as in :func:`verify`."""
    max_err, problems = 0.0, []
    for name, ref in expected.items():
        if name not in got:
            problems.append(f"output {name!r} is not produced by the split")
            continue
        err, problem = _compare(name, np.asarray(got[name]), ref, rtol, atol)
        max_err = max(max_err, err)
        if problem:
            problems.append(problem)
    return max_err, problems


def verify(
    folder: str | os.PathLike,
    *,
    inputs: str | os.PathLike | dict[str, np.ndarray] | None = None,
    samples: int = 4,
    seed: int = 0,
    rtol: float = 1e-5,
    atol: float | None = None,
    model: str | os.PathLike | None = None,
    threads: int | None = 1,
    labels: str | None = None,
    output: str | None = None,
) -> VerifyReport:
    """Run the export in ``folder`` and compare it with the whole model.

    Parameters
    ----------
    folder : path-like
        Written by :func:`dnnpart.exporters.export`.
    inputs : path-like (``.npz``) or dict, optional
        One array per model input, by name. An input whose first dimension is symbolic
        (or 1) is cut into samples along it; an array with one more dimension than the
        input is cut along its first; an array of the input's own shape is reused for
        every sample. For a one-input model, the file's only array or its array ``x``
        is also accepted. Default: ``samples`` random samples (seeded: normal floats, 0/1
        integers and booleans).
    model : path-like, optional
        The original model, if it moved since the export (its sha256 must match).
    labels : str, optional
        The label array of the inputs file (default: ``y`` when there is one). With an
        inputs file, the report gives top-1 ``accuracy`` of the split and
        ``reference_accuracy`` of the original model (before the plan's passes) on the
        labels; without labels, the split's agreement with the original model's top-1.
    output : str, optional
        The output accuracy is measured on (default: the model's first).

    Returns
    -------
    VerifyReport
        ``ok`` is False when an output differs or the bytes moved differ from the plan;
        ``problems`` says which.
    """
    from dnnpart.exporters._manifest import manifest_passes
    from dnnpart.exporters._source import prepare

    _check_tolerances(rtol, atol)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UsageError(f"--samples must be at least 1, got {samples}")
    if samples > MAX_SAMPLES:
        raise ResourceLimitError(f"--samples {samples} is over the limit of {MAX_SAMPLES}")
    if inputs is not None and not isinstance(inputs, dict):
        inputs = read_npz(inputs)  # cheap checks first
    executor = Executor(folder, threads=threads)
    m = executor.manifest
    path = original_model(folder, m, model)
    want = (m.get("model") or {}).get("sha256")
    # each sample has the plan's shapes (an array of many along a batch axis of 1 is cut)
    recorded = (m.get("model") or {}).get("input_shapes") or {}
    source = prepare(path, manifest_passes(m), want, recorded, store=os.fspath(folder))
    specs = [(n, dt, recorded.get(n, dims)) for n, dt, dims in model_inputs(source.model)]
    y = None
    if inputs is None:
        if labels is not None:
            raise UsageError("--labels needs --inputs (a data file with the labels)")
        feeds = load_feeds(None, specs, samples=samples, seed=seed)
    else:
        data = load_data(inputs, specs, labels=labels)
        feeds, y = data.feeds, data.labels
    planned = m.get("volume_bytes_planned")
    manifest_bytes = m.get("transfer_bytes")
    problems: list[str] = []
    max_err = 0.0
    measured_max: int | None = None
    k = executor.k
    link = np.zeros((k, k), dtype=np.int64)
    compute = np.zeros(k)
    out_bytes = np.zeros(k, dtype=np.int64)
    route = ref_s = sparse = 0.0
    diagnosed = False
    with tempfile.TemporaryDirectory(prefix="dnnpart-verify-") as tmp:
        ref = reference_session(source, tmp, threads=threads)
        out_names = [o.name for o in ref.get_outputs()]
        scored = output_name(out_names, output) if inputs is not None else None
        split_top, ref_top = [], []
        for i, feed in enumerate(feeds):
            t0 = time.perf_counter()
            ref_out = _run(ref.run, out_names, feed, "the model")
            expected = dict(zip(out_names, ref_out, strict=True))
            ref_s += time.perf_counter() - t0
            trace: list = []
            got, stats = _run(lambda f, t=trace: executor.run(f, trace=t), None, feed, "the split")
            sparse += sum(
                int(message_bytes(a.size, np.count_nonzero(a), a.itemsize)) for _, a in trace
            )
            if scored is not None:
                ref_top.append(top1(expected[scored]))
                if scored in got:
                    split_top.append(top1(np.asarray(got[scored])))
            for name in out_names:
                if name not in got:
                    problems.append(f"output {name!r} is not produced by the split")
                    continue
                err, problem = _compare(name, np.asarray(got[name]), expected[name], rtol, atol)
                max_err = max(max_err, err)
                if problem and not diagnosed:  # where did it go wrong? (once)
                    diagnosed = True
                    problem += "; " + _localise(executor, source, tmp, feed, rtol, atol, threads)
                if problem and len(problems) < 20:
                    problems.append(f"sample {i}: {problem}")
            total = stats.bytes_total
            measured_max = total if measured_max is None else max(measured_max, total)
            if planned is not None and total != planned and len(problems) < 20:
                problems.append(f"sample {i}: {total} bytes moved, the plan says {planned}")
            for t, got_b in zip(m["transfers"], stats.transfer_bytes, strict=True):
                if t["bytes"] is not None and got_b != t["bytes"] and len(problems) < 20:
                    problems.append(
                        f"sample {i}: transfer of {t['tensor']!r} {t['from']}->{t['to']} "
                        f"moved {got_b} bytes, the manifest says {t['bytes']}"
                    )
            link += stats.link_bytes
            compute += stats.compute_s
            out_bytes += stats.output_bytes
            route += stats.route_s
        if scored is not None and len(split_top) == len(feeds):
            original = ref_top
            if source.passes:  # the original model is the one before the passes
                os.mkdir(os.path.join(tmp, "original"))
                whole = reference_session(
                    prepare(path, [], want), os.path.join(tmp, "original"), threads=threads
                )
                original = [top1(whole.run([scored], feed)[0]) for feed in feeds]
            split_y, original_y = np.concatenate(split_top), np.concatenate(original)
            truth = original_y if y is None else y
            acc = (accuracy(split_y, truth), accuracy(original_y, truth))
            acc_of = accuracy_of(None if y is None else labels or DEFAULT_LABELS)
        else:
            acc, acc_of = (None, None), None
    n = len(feeds)
    return VerifyReport(
        ok=not problems,
        max_abs_err=max_err,
        bytes_measured=measured_max,
        bytes_planned=planned,
        bytes_manifest=manifest_bytes,
        samples=n,
        link_bytes=(link // n).tolist(),
        compute_s=(compute / n).tolist(),
        reference_s=ref_s / n,
        route_s=route / n,
        output_bytes=(out_bytes // n).tolist(),
        problems=problems,
        accuracy=acc[0],
        reference_accuracy=acc[1],
        accuracy_of=acc_of,
        device_names=[str(d["name"]) for d in m["devices"]["device"]],
        bytes_sparse_measured=sparse / n,
        bytes_sparse_planned=((m.get("plan") or {}).get("scores") or {}).get("volume_bytes_sparse"),
    )


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2])[:240] if lines else type(exc).__name__


def _check_tolerances(rtol, atol) -> None:
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None and name == "atol":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"--{name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"--{name} must be finite and >= 0, got {value!r}")


def _reference_model(folder, manifest: dict[str, Any], model) -> str:
    """The path of the model the split is compared with, its sha256 checked first.

    ``model`` (``--model``) is the user's choice; otherwise the manifest's ``model.file``,
    relative to the folder that holds the split, is checked like external data (no
    absolute or ``..`` path, inside that folder, a regular singly-linked file).
    """
    from dnnpart._plan import file_sha256
    from dnnpart.importers._tensors import checked_file

    info = manifest.get("model") or {}
    want = info.get("sha256") if isinstance(info, dict) else None
    if model is not None:
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise UsageError(f"--model {path}: no such regular file")
    else:
        rel = info.get("file") if isinstance(info, dict) else None
        if not isinstance(rel, str) or not rel:
            raise UsageError(f"{folder}: the manifest names no model beside it; pass --model PATH")
        base = os.path.dirname(os.path.realpath(folder))
        where = f"{folder}: manifest"
        try:
            path, _ = checked_file(rel, base, where, "model")
        except InvalidModelError as exc:  # not found: the model moved
            raise UsageError(f"{exc}; pass --model PATH") from None
    if not isinstance(want, str) or not want:
        if model is None:
            raise InvalidModelError(f"not a valid dnnpart export: {folder} (no model sha256)")
        return path
    if file_sha256(path) != want:
        raise UsageError(f"{path} is not the model this split was exported from (sha256 differs)")
    return path


def _run(run, names, feed, what):
    """``run(names, feed)``, an onnxruntime refusal turned into InvalidModelError (exit 3)
    naming the node: a shape under which the model cannot run."""
    from dnnpart.importers._measure import ort_node

    try:
        return run(feed) if names is None else run(names, feed)
    except DnnpartError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        node = ort_node(str(exc))
        where = f" at node {node!r}" if node else ""
        shapes = ", ".join(f"{n} {list(np.shape(v))}" for n, v in feed.items())
        raise InvalidModelError(
            f"onnxruntime cannot run {what}{where} on inputs {shapes}: {text}"
        ) from None
