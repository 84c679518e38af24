"""Measure each layer's time with onnxruntime's node profiling (``dnnpart profile``).

The model runs in one onnxruntime session built with the options every split's session
uses (:func:`dnnpart._ort.session_options`: graph optimisations on), with profiling on
(``SessionOptions.enable_profiling``): ``warmup`` runs, then ``runs`` measured ones. The
JSON trace onnxruntime writes lists, per run (``model_run``), one ``<node>_kernel_time``
event per kernel of the optimised graph with its duration. Each kernel is paid by one
node of the model (:func:`dnnpart.importers._ort_fused.kernel_owners`: a fused Conv +
BatchNormalization + Relu by its Conv, which then gets the fused kernel's time, the
BatchNormalization and the Relu nothing); a node's time is its kernels' summed duration
within a run, the median over the measured runs, and a layer's time is the sum over the
ONNX nodes the importer grouped into it (``Layer.nodes``; nodes without a name are named
``<op>_<index>`` first, in a copy of the model, so that every kernel maps to one layer).

:func:`profiled_json` writes the result in the profiled-graph format of Tarnawski et al.
(2020) that :func:`dnnpart.load` reads, with transfer costs from a device file's links and
memory per layer (parameters plus output activations, as scoring counts it).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from dnnpart._ort import option_values, session_options
from dnnpart.devices import DeviceSet, Host
from dnnpart.errors import UsageError
from dnnpart.graph import LayerGraph
from dnnpart.importers._ort_fused import kernel_owners

__all__ = ["LayerTimes", "profile_layers", "profiled_json", "with_profile", "read_profile"]


@dataclass(frozen=True, eq=False)
class LayerTimes:
    """Measured times of one model on this machine.

    Attributes
    ----------
    graph : LayerGraph
        The imported model (node names made unique).
    seconds : ndarray, shape (L,)
        Median time of each layer (``graph.layers`` order), summed over its ONNX nodes.
    run_seconds : float
        Median duration of a whole profiled run (onnxruntime's ``model_run`` event).
    kernel_share : float
        Median over the runs of (the run's node times) / (its duration): what the layer
        times leave out (the executor's own work), measured within each run, so a noisy
        machine does not blur it.
    runs, threads : int
    """

    graph: LayerGraph
    seconds: np.ndarray
    run_seconds: float
    kernel_share: float
    runs: int
    threads: int


def _named_copy(path: str | os.PathLike, folder: str) -> str:
    """The model with a unique name on every node (of the main graph), saved in
    ``folder``."""
    model = onnx.load(os.fspath(path))
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
            while node.name in seen:
                node.name += "_"
        seen.add(node.name)
    out = os.path.join(folder, "model.onnx")
    onnx.save(model, out)
    return out


def _feeds(model_path: str, graph: LayerGraph, seed: int):
    from dnnpart.importers._measure import sample_feeds

    model = onnx.load(model_path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        shape = graph.input_shapes.get(value.name)
        if shape is None:
            shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
        specs.append((value.name, dtype, tuple(shape)))
    return sample_feeds(specs, seed=seed)


def _session(
    model_path: str, threads: int, profile_prefix: str | None, optimized: str | None = None
):
    import onnxruntime as ort

    from dnnpart._ort import session_options

    options = session_options(threads, profile_prefix=profile_prefix, optimized_model=optimized)
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def _node_times(trace: list[dict], warmup: int) -> tuple[list[dict[str, float]], list[float]]:
    """Per measured run: seconds per node name; and each measured run's duration."""
    runs = sorted(
        (e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )[warmup:]
    per_run: list[dict[str, float]] = [{} for _ in runs]
    starts = [e["ts"] for e in runs]
    ends = [e["ts"] + e["dur"] for e in runs]
    for e in trace:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        for r, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
            if lo <= e["ts"] <= hi:
                per_run[r][node] = per_run[r].get(node, 0.0) + e["dur"] * 1e-6
                break
    return per_run, [e["dur"] * 1e-6 for e in runs]


def profile_layers(
    model: str | os.PathLike,
    *,
    runs: int = 10,
    warmup: int = 2,
    threads: int = 1,
    seed: int = 0,
    **load_options,
) -> LayerTimes:
    """Measure every layer of ``model`` with onnxruntime's node profiling.

    Parameters
    ----------
    model : path-like
        An ONNX model.
    runs, warmup : int
        Measured runs (their median counts) after ``warmup`` unmeasured ones.
    threads : int
        onnxruntime's intra-op threads.
    seed : int
        Seed of the random sample fed to the model.
    **load_options
        ``input_shapes``, ``dims``, ``inputs`` as in :func:`dnnpart.load`.

    Returns
    -------
    LayerTimes
    """
    from dnnpart.importers._load import load

    for name, value, low in (("runs", runs, 1), ("warmup", warmup, 0), ("threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    with tempfile.TemporaryDirectory(prefix="dnnpart-profile-") as folder:
        path = _named_copy(model, folder)
        graph = load(path, **load_options)
        feeds = _feeds(path, graph, seed)
        optimized = os.path.join(folder, "optimized.onnx")
        session = _session(path, threads, os.path.join(folder, "trace"), optimized)
        for _ in range(warmup + runs):
            session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
        owners = kernel_owners(onnx.load(path), onnx.load(optimized, load_external_data=False))
    per_run, run_seconds = _node_times(trace, warmup)
    per_node: list[dict[str, float]] = []
    for r in per_run:  # kernels of the optimised graph -> the model's nodes that pay them
        paid: dict[str, float] = {}
        for kernel, secs in r.items():
            node = owners.get(kernel, kernel)
            paid[node] = paid.get(node, 0.0) + secs
        per_node.append(paid)
    nodes = set().union(*per_node) if per_node else set()
    median = {n: statistics.median(r.get(n, 0.0) for r in per_node) for n in nodes}
    seconds = np.array(
        [
            sum(median.get(getattr(n, "name", ""), 0.0) for n in layer.nodes)
            for layer in graph.layers
        ]
    )
    share = statistics.median(
        sum(r.values()) / d for r, d in zip(per_run, run_seconds, strict=True) if d > 0
    )
    return LayerTimes(graph, seconds, statistics.median(run_seconds), share, runs, threads)


def profiled_json(
    times: LayerTimes,
    devices: DeviceSet | None = None,
    reference: str | None = None,
    call_overhead: float | None = None,
    host: Host | None = None,
) -> dict:
    """The profiled-graph document (Tarnawski et al. 2020 format, times in seconds).

    Parameters
    ----------
    times : LayerTimes
    devices : DeviceSet, optional
        The devices to plan for (default: one device like this machine). Measured times
        are this machine's; it counts as the device ``reference`` (default: the first of
        the file), so a device of speed ``s`` takes ``measured * speed_ref / s``. Each
        node's ``fpgaLatency`` is its time on the fastest device (the convention of
        profiled problems, :mod:`dnnpart.scoring`); ``maxFPGAs`` is the device count,
        ``maxSizePerFPGA`` the smallest memory (0: unlimited), ``maxCPUs`` 0.
        An edge's ``cost`` is ``latency + bytes / bandwidth`` of the default link.
    reference : str, optional
        The device name of this machine in ``devices``.
    call_overhead : float, optional
        Seconds of one device call in ``dnnpart run`` (:func:`dnnpart.runtime.
        runtime_overhead`), written as ``dnnpart.call_overhead_s``: plans on this profile
        charge it once per sample to every device they use that sets none of its own.
    host : Host, optional
        This machine as devices sharing it see it (:class:`dnnpart.devices.Host`: cores,
        CPU per call and per byte, from :func:`dnnpart.runtime.runtime_overhead`), written
        as ``dnnpart.host``: plans on this profile for devices that all run here (none
        placed on a Ray node) take at least its time per sample.
    """
    devices = devices if devices is not None else DeviceSet.identical(1)
    names = list(devices.names)
    if reference is not None and reference not in names:
        raise UsageError(f"--reference {reference!r} is not a device of the file ({names})")
    ref = names.index(reference) if reference is not None else 0
    speeds = devices.speeds
    scale = speeds[ref] / speeds.max()  # measured time -> time on the fastest device
    graph = times.graph
    link = devices.default_link
    nodes, edges = [], []
    for i, layer in enumerate(graph.layers):
        t = float(times.seconds[i]) * scale
        nodes.append(
            {
                "id": i,
                "name": layer.name,
                "fpgaLatency": t,
                "cpuLatency": t,
                "supportedOnFpga": True,
                "isBackwardNode": False,
                "size": int(layer.param_bytes + (layer.activation_bytes or 0)),
            }
        )
        sent = [t for t in layer.outputs if t.name in graph.consumers]
        nbytes = sum(int(t.nbytes or 0) for t in sent)
        cost = link.latency + nbytes / link.bandwidth
        targets = {j for t in sent for j in graph.consumers[t.name]}
        edges += [
            {"sourceId": i, "destId": j, "cost": cost, "size": nbytes} for j in sorted(targets)
        ]
    memory = devices.memories.min()
    ours = {
        "unit": "seconds",
        "runs": times.runs,
        "threads": times.threads,
        "run_seconds": times.run_seconds,
        "kernel_share": times.kernel_share,
        "devices": devices.to_dict(),
        "reference": names[ref],
        "session": option_values(session_options(times.threads)),
        # what a driver feeds in and reads back per sample (a shared host's bytes)
        "io_bytes": sum(int(t.nbytes or 0) for t in [*graph.inputs, *graph.outputs]),
    }
    if call_overhead is not None:
        if not (isinstance(call_overhead, (int, float)) and 0 <= call_overhead < math.inf):
            raise UsageError(f"call_overhead must be finite and >= 0, got {call_overhead!r}")
        ours["call_overhead_s"] = float(call_overhead)
    if host is not None:
        if not isinstance(host, Host):
            raise UsageError(f"host must be a Host, got {type(host).__name__}")
        ours["host"] = host.to_dict()
    return {
        "maxFPGAs": devices.k,
        "maxCPUs": 0,
        "maxSizePerFPGA": 0 if math.isinf(memory) else float(memory),
        "nodes": nodes,
        "edges": edges,
        "dnnpart": ours,
    }


def with_profile(graph: LayerGraph, doc: dict) -> LayerGraph:
    """``graph`` (an ONNX model) planning on the measured times of ``doc``
    (:func:`profiled_json` of the same model and input shapes): its problems then weigh
    each layer by its time, as a profiled graph's do, and export still has the model.

    Raises
    ------
    UsageError
        ``doc`` has another number of layers, or other op names in another order.
    """
    from dnnpart.importers._tarnawski import parse_profiled_graph

    prof = parse_profiled_graph(json.dumps(doc), source="profile")
    if prof.num_nodes != len(graph.layers):
        raise UsageError(
            f"the profile has {prof.num_nodes} layers, the model {len(graph.layers)}: "
            "profile the same model with the same input shapes"
        )
    if list(prof.ids) != list(range(prof.num_nodes)):
        raise UsageError("the profile's node ids must be the layers' positions 0, 1, ...")
    graph.profile = prof
    graph.profile_order = np.arange(prof.num_nodes, dtype=np.int64)
    return graph


def read_profile(path: str | os.PathLike) -> dict:
    """A profile file as a dict (checked by :func:`with_profile` when attached)."""
    from dnnpart.errors import InvalidModelError
    from dnnpart.importers._tarnawski import MAX_PROFILE_BYTES

    p = Path(path)
    if p.stat().st_size > MAX_PROFILE_BYTES:
        raise UsageError(f"{path}: a profile over {MAX_PROFILE_BYTES >> 20} MiB")
    try:
        doc = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidModelError(f"{path}: not a profile JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidModelError(f"{path}: not a profile JSON file (top level is not an object)")
    return doc
