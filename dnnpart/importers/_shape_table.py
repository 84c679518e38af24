"""Shapes read from onnx value infos: ``name -> (shape, elem_type)`` tables.

A dimension that is symbolic or unknown reads as ``None``; a tensor whose shape is not
given at all as shape ``None``.
"""

from __future__ import annotations

import onnx

__all__ = ["type_shape", "shape_table", "full"]


def full(shape) -> bool:
    """True when every dimension of ``shape`` is known."""
    return shape is not None and None not in shape


def type_shape(tp: onnx.TypeProto) -> tuple | None:
    """The shape of a tensor type (``None`` for unknown dimensions), or None."""
    if not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
        for d in tp.tensor_type.shape.dim
    )


def shape_table(model: onnx.ModelProto) -> dict[str, tuple]:
    """``name -> (shape, elem_type)`` of the main graph's inputs, value infos and outputs
    (a shape beats no shape when a name is listed twice)."""
    out: dict[str, tuple] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if not vi.type.HasField("tensor_type"):
            continue
        shape = type_shape(vi.type)
        prev = out.get(vi.name)
        if prev is None or (prev[0] is None and shape is not None):
            out[vi.name] = (shape, vi.type.tensor_type.elem_type)
    return out
