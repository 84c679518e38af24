"""Shapes measured by onnxruntime: the final authority on what static inference left open.

The model (with its big initializers as zero-filled inputs: shapes rarely depend on
weights, and ``np.zeros`` costs no memory until read) runs once on a random sample of the
declared input shapes, with every open tensor made a graph output, and reports each
tensor's shape and element type.
"""

from __future__ import annotations

import numpy as np
import onnx

from dnnpart.errors import DnnpartError

__all__ = ["measure_shapes", "sample_feeds", "MeasureError", "ort_node"]


class MeasureError(DnnpartError):
    """onnxruntime could not run the model (its message, with the node named)."""


def ort_node(message: str) -> str | None:
    """The node an onnxruntime error message names, if any."""
    import re

    patterns = (r"[Nn]ode \(([^)]*)\)", r"node_name[=:]\s*'?([^\s',]+)", r"Node:\s*'?([^\s',]+)")
    for pattern in patterns:
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
) -> dict[str, tuple]:
    """``name -> (shape, elem_type)`` of ``names`` after one onnxruntime run.

    Raises
    ------
    MeasureError
        onnxruntime cannot load or run the model.
    """
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(light)
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            elem = shapes.get(name, (None, 0))[1]
            if elem:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
            else:  # no type known: onnxruntime takes an untyped output
                model.graph.output.append(onnx.ValueInfoProto(name=name))
    big_names = {t.name for t in big}
    specs = []
    for vi in model.graph.input:
        if vi.name in big_names or vi.name not in input_shapes:
            continue
        elem = vi.type.tensor_type.elem_type
        specs.append((vi.name, onnx.helper.tensor_dtype_to_np_dtype(elem), input_shapes[vi.name]))
    feeds = sample_feeds(specs)
    for t in big:
        feeds[t.name] = np.zeros(tuple(t.dims), onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # its failure is reported as a warning instead
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        fetch = [o.name for o in session.get_outputs()]
        results = session.run(fetch, feeds)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise MeasureError(text) from None
    out = {}
    for name, value in zip(fetch, results, strict=True):
        if name in names and isinstance(value, np.ndarray):
            elem = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
            out[name] = (tuple(int(d) for d in value.shape), elem)
    return out
