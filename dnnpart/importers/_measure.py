"""Shapes measured by onnxruntime: the final authority on what static inference left open.

The model (with its big initializers as zero-filled inputs: shapes rarely depend on
weights, and ``np.zeros`` costs no memory until read) runs once on a random sample of the
declared input shapes, with every open tensor made a graph output, and reports each
tensor's shape and element type.

A run that onnxruntime refuses at some node (an op it does not implement, a kernel that
fails on the sample) is not lost: the node it names is left out with everything that
depends on it, and the rest runs again (a few times at most), so every shape upstream of
the failure is still measured and :attr:`Measured.failed` names the nodes left out.

Loops whose trip count comes from data are counted in the same run: each one named in
``loops`` gets one more scan output, its iteration number, whose length is the number of
iterations the Loop ran (:attr:`Measured.trips`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import onnx

from dnnpart.errors import DnnpartError, InvalidModelError
from dnnpart.importers._structure import outer_names_used

__all__ = ["measure_shapes", "sample_feeds", "MeasureError", "Measured", "ort_node"]

# runs after a refusal, each without the node refused last (and what depends on it)
_MAX_RETRIES = 8
_COUNTER = "dnnpart.trips"
_NODE_PATTERNS = (
    r"[Nn]ode \(([^)]*)\)",
    r"node_name[=:]\s*'?([^\s',]+)",
    r"Node:\s*'?([^\s',]+)",
    r"[Nn]ode\.?\s+Name:\s*'([^']+)'",
    r"In Node, \(\"([^\"]+)\"",
    r"node with name '([^']+)'",
)


# the measuring run's inputs (random sample and big weights as zeros) at most; a model that
# needs more is not measured (its open shapes are named in a warning)
MAX_FEED_BYTES = 1 << 31


class MeasureError(DnnpartError):
    """onnxruntime could not run the model (its message, with the node named)."""


@dataclass
class Measured:
    """What one measuring run found.

    Attributes
    ----------
    shapes : dict
        ``name -> (shape, elem_type)`` of the tensors asked for that the run produced.
    trips : dict
        ``Loop's first output -> iterations run``, for the Loops asked for.
    failed : list of (str, str)
        ``(node, onnxruntime's message)`` for each node onnxruntime refused; it and every
        node depending on it were left out of the run.
    """

    shapes: dict = field(default_factory=dict)
    trips: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)


def ort_node(message: str) -> str | None:
    """The node an onnxruntime error message names, if any."""
    for pattern in _NODE_PATTERNS:
        m = re.search(pattern, message)
        if m and m.group(1):
            return m.group(1)
    return None


def sample_feeds(specs, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays for ``(name, numpy dtype, shape)`` specs: normal floats, ones for
    integers (a valid token id, index and mask), True for booleans."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, dtype, shape in specs:
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = np.ones(shape, dtype=bool)
        else:
            feeds[name] = np.ones(shape, dtype=dtype)
    return feeds


def measure_shapes(
    light: onnx.ModelProto,
    big: list[onnx.TensorProto],
    input_shapes: dict[str, tuple[int, ...]],
    names: list[str],
    shapes: dict[str, tuple],
    *,
    loops: tuple[str, ...] = (),
    sample=None,
) -> Measured:
    """Shapes of ``names`` (and trip counts of the Loops whose first output is in
    ``loops``) after one onnxruntime run, resumed without any node it refuses.

    The run's inputs are random arrays of ``input_shapes``, or the first sample of
    ``sample`` (``name -> array``, possibly with a leading axis of stacked samples) for
    the inputs it holds at those shapes: data decides how often a Loop runs.

    Raises
    ------
    MeasureError
        onnxruntime cannot run the model and names no node it could be run without.
    """
    model = onnx.ModelProto()
    model.CopyFrom(light)
    nodes = model.graph.node
    taken = {n.name for n in nodes}
    for i, n in enumerate(nodes):  # every node named, so that a refusal can be traced
        if not n.name:
            n.name = _fresh(f"dnnpart_node_{i}", taken)
    counters = _count_loops(model.graph, set(loops), taken)
    have = {o.name for o in model.graph.output}
    for name in list(names) + list(counters):
        if name not in have:
            elem = onnx.TensorProto.INT64 if name in counters else shapes.get(name, (None, 0))[1]
            if elem:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
            else:  # no type known: onnxruntime takes an untyped output
                model.graph.output.append(onnx.ValueInfoProto(name=name))
    feeds = _feeds(model, big, input_shapes, sample or {})
    measured = Measured()
    for attempt in range(_MAX_RETRIES + 1):
        try:
            fetch, results = _run(model, feeds)
            break
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            refused = _refused(model.graph, str(exc))
            if attempt == _MAX_RETRIES or not refused:
                raise MeasureError(text) from None
            _drop(model.graph, refused)
            measured.failed.extend((node, text) for node in refused)
    for name, value in zip(fetch, results, strict=True):
        if not isinstance(value, np.ndarray):
            continue
        if name in counters:
            measured.trips[counters[name]] = int(value.shape[0]) if value.ndim else 1
        elif name in names:
            elem = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
            measured.shapes[name] = (tuple(int(d) for d in value.shape), elem)
    return measured


def _fresh(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _count_loops(graph: onnx.GraphProto, loops: set[str], taken: set[str]) -> dict[str, str]:
    """Give each main-graph Loop whose first output is in ``loops`` one more scan output,
    its iteration number; ``{that output: the Loop's first output}``."""
    counters = {}
    for node in graph.node:
        if node.op_type != "Loop" or not node.output or node.output[0] not in loops:
            continue
        body = next((a.g for a in node.attribute if a.name == "body" and a.HasField("g")), None)
        if body is None or not body.input:
            continue
        if not body.input[0].name:
            body.input[0].name = _fresh(f"{_COUNTER}.i", taken)
        inner = _fresh(f"{_COUNTER}.body:{node.output[0]}", taken)
        body.node.append(onnx.helper.make_node("Identity", [body.input[0].name], [inner]))
        body.output.append(onnx.helper.make_tensor_value_info(inner, onnx.TensorProto.INT64, []))
        outer = _fresh(f"{_COUNTER}:{node.output[0]}", taken)
        node.output.append(outer)
        counters[outer] = node.output[0]
    return counters


def _feeds(model, big, input_shapes, sample) -> dict[str, np.ndarray]:
    big_names = {t.name for t in big}
    specs = []
    for vi in model.graph.input:
        if vi.name in big_names or vi.name not in input_shapes:
            continue
        elem = vi.type.tensor_type.elem_type
        specs.append((vi.name, _np_dtype(elem, f"model input {vi.name!r}"), input_shapes[vi.name]))
    need = sum(math.prod(shape) * np.dtype(dtype).itemsize for _, dtype, shape in specs)
    need += sum(math.prod(t.dims) * _np_dtype(t.data_type, "initializer").itemsize for t in big)
    if need > MAX_FEED_BYTES:  # before anything is allocated
        raise MeasureError(f"its inputs would take {need} bytes, over {MAX_FEED_BYTES}")
    feeds = sample_feeds(specs)
    for name, dtype, shape in specs:
        value = np.asarray(sample[name]) if name in sample else None
        if value is not None and value.ndim and value.shape[1:] == tuple(shape) and len(value):
            value = value[0]  # stacked samples: the first
        if value is not None and value.shape == tuple(shape) and value.dtype.kind in "biuf":
            feeds[name] = value.astype(dtype, copy=False)
    for t in big:
        feeds[t.name] = np.zeros(tuple(t.dims), _np_dtype(t.data_type, f"initializer {t.name!r}"))
    return feeds


def _np_dtype(elem: int, what: str) -> np.dtype:
    """The numpy type of an ONNX element type; a file's undefined or unknown type is an
    :class:`InvalidModelError` (the fuzzer's ``elem_type 0`` on a model input)."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    except (KeyError, ValueError, TypeError):
        raise InvalidModelError(f"{what} has no valid element type ({elem})") from None


def _run(model: onnx.ModelProto, feeds) -> tuple[list[str], list]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # its failure is reported as a warning instead
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    fetch = [o.name for o in session.get_outputs()]
    return fetch, session.run(fetch, feeds)


def _refused(graph: onnx.GraphProto, message: str) -> list[str]:
    """The main-graph nodes an onnxruntime refusal is about: the node it names, or every
    node of an op it says it does not know (``custom:Foo(-1) is not a registered ...``)."""
    names = {n.name for n in graph.node}
    node = ort_node(message)
    if node in names:
        return [node]
    m = re.search(r"(?:([\w.]+):)?(\w+)\(-?\d+\) is not a registered", message)
    if m is None:
        return []
    domain, op = m.group(1) or "", m.group(2)
    return [n.name for n in graph.node if n.op_type == op and n.domain == domain]


def _drop(graph: onnx.GraphProto, refused: list[str]) -> None:
    """Remove the nodes named ``refused`` and every node that depends on them (directly,
    or through a subgraph reading their outputs), and the graph outputs they produced."""
    dead: set[str] = set()
    keep = []
    for n in graph.node:  # sorted: a consumer comes after its producer
        if n.name in refused or any(t in dead for t in list(n.input) + outer_names_used(n)):
            dead.update(o for o in n.output if o)
        else:
            keep.append(n)
    del graph.node[:]
    graph.node.extend(keep)
    outputs = [o for o in graph.output if o.name not in dead]
    del graph.output[:]
    graph.output.extend(outputs)
