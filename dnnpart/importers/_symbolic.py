"""onnxruntime's symbolic shape inference, for the shapes onnx's inference and the value
propagation leave open.

onnx's inference knows only the standard ops; models written by onnxruntime's transformer
optimizer are full of ``com.microsoft`` ops (``Attention``, ``SkipLayerNormalization``,
``BiasGelu``, ``EmbedLayerNormalization``, ...) whose outputs it leaves unshaped, and so
everything after them. onnxruntime's ``SymbolicShapeInference`` knows them. It runs on the
light copy (concrete input shapes, big initializers as typed inputs) in a forked child
(:func:`dnnpart._isolate.call_isolated`): it is Python and C++ code run on an untrusted
model. What it cannot infer stays open for the measuring run (:mod:`._measure`).
"""

from __future__ import annotations

import onnx

from dnnpart._isolate import IsolatedCrash, call_isolated
from dnnpart.importers._shape_table import type_shape

__all__ = ["symbolic_shapes"]

_TIMEOUT = 30.0
# passes of its inference loop; it stops when a pass adds nothing, in a few passes on the
# models we have seen, but it is not guaranteed to stop on a hostile one
_MAX_PASSES = 16


def symbolic_shapes(light: onnx.ModelProto, names: list[str]) -> dict[str, tuple]:
    """``name -> (shape, elem_type)`` of those of ``names`` that symbolic inference gives
    a concrete shape; ``{}`` when it is not available or fails (it is only a hint)."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference  # noqa: F401
    except Exception:  # noqa: BLE001 - an onnxruntime without its tools
        return {}
    wanted = set(names)
    try:
        return call_isolated(lambda: _infer(light, wanted), timeout=_TIMEOUT)
    except (IsolatedCrash, Exception):  # noqa: BLE001 - a hint, never fatal
        return {}


def _infer(light: onnx.ModelProto, wanted: set[str]) -> dict[str, tuple]:
    """In the child: the inference loop of ``SymbolicShapeInference.infer_shapes``, which
    keeps what it inferred when it cannot infer everything (the public function raises,
    and writes the partial model into the working directory)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    sym = SymbolicShapeInference(2**31 - 1, True, False, 0)  # int_max, auto_merge, guess, verbose
    sym._preprocess(light)
    for _ in range(_MAX_PASSES):
        if not sym.run_:
            break
        sym._infer_impl()
    sym._update_output_from_vi()
    graph = sym.out_mp_.graph
    out = {}
    for vi in list(graph.value_info) + list(graph.output):
        if vi.name in wanted and vi.type.HasField("tensor_type"):
            shape = type_shape(vi.type)
            if shape is not None and None not in shape:
                out[vi.name] = (shape, vi.type.tensor_type.elem_type)
    return out
