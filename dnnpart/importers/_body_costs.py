"""MACs of control flow: ``If`` costs its costlier branch, ``Loop`` its body times the trip
count, ``Scan`` its body times the length of the scanned axis (nested bodies likewise).

A Loop's trip count is the one the measuring onnxruntime run counted (a main-graph Loop
whose count or condition comes from data, see :mod:`._measure`), else its constant trip
count; when neither is known the Loop is costed as one trip and a note names it.

Body tensors get their shapes from the model's shape inference (bodies included); a body
op whose shape is unknown makes the whole cost unknown, and the importer names it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from dnnpart.graph._costs import layer_macs

__all__ = ["control_flow_macs", "CONTROL_FLOW"]

CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
_MAX_DEPTH = 64

ShapeOf = Callable[[str], "tuple | None"]
ValueOf = Callable[[str], "np.ndarray | None"]
TripsOf = Callable[[onnx.NodeProto], "int | None"]


class _Unknown(Exception):
    def __init__(self, what: str):
        self.what = what


def control_flow_macs(
    node: onnx.NodeProto,
    shape_of: ShapeOf,
    value_of: ValueOf,
    trips_of: TripsOf | None = None,
    notes: list[str] | None = None,
) -> tuple[int | None, str | None]:
    """``(MACs, None)``, or ``(None, reason)`` when a shape is unknown.

    ``trips_of(node)`` is the measured trip count of a main-graph Loop (or None); a Loop
    whose trip count is unknown costs one trip, and a note saying so goes to ``notes``.
    """
    said = [] if notes is None else notes
    try:
        return _control(node, shape_of, value_of, 0, trips_of, said), None
    except _Unknown as exc:
        return None, exc.what


def _attrs(node: onnx.NodeProto) -> dict:
    return {
        a.name: onnx.helper.get_attribute_value(a)
        for a in node.attribute
        if a.type not in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    }


def _body(node: onnx.NodeProto, name: str) -> onnx.GraphProto:
    for a in node.attribute:
        if a.name == name and a.HasField("g"):
            return a.g
    raise _Unknown(f"{node.op_type} {node.name!r} has no {name!r} graph")


def _control(node, shape_of, value_of, depth, trips_of=None, notes=None) -> int:
    if depth > _MAX_DEPTH:
        raise _Unknown(f"control flow nested deeper than {_MAX_DEPTH}")
    op = node.op_type
    if op == "If":
        return max(
            _graph_macs(_body(node, b), shape_of, value_of, depth + 1, notes)
            for b in ("then_branch", "else_branch")
        )
    body = _graph_macs(_body(node, "body"), shape_of, value_of, depth + 1, notes)
    if op == "Loop":
        return body * _trips(node, value_of, trips_of if depth == 0 else None, notes)
    # Scan (opset >= 9): state inputs, then num_scan_inputs scanned inputs
    attrs = _attrs(node)
    n_scan = int(attrs.get("num_scan_inputs", 1))
    axes = list(attrs.get("scan_input_axes", [])) or [0]
    first = node.input[len(node.input) - n_scan]
    shape = shape_of(first)
    if shape is None or len(shape) == 0:
        raise _Unknown(f"shape of tensor {first!r} is unknown")
    length = shape[axes[0]]
    if length is None:
        raise _Unknown(f"shape of tensor {first!r} is unknown")
    return body * int(length)


def _trips(node, value_of, trips_of, notes) -> int:
    """The Loop's measured trip count, else its constant one, else 1 (with a note)."""
    measured = trips_of(node) if trips_of is not None else None
    if measured is not None:
        return max(int(measured), 0)
    m = value_of(node.input[0]) if node.input and node.input[0] else None
    if m is not None and np.size(m) == 1:
        return max(int(np.asarray(m).reshape(-1)[0]), 0)
    if notes is not None:
        notes.append(
            f"the trip count of Loop {node.name or list(node.output)!r} comes from data and "
            "was not measured; its body is costed as one trip"
        )
    return 1


def _graph_macs(graph: onnx.GraphProto, shape_of, value_of, depth, notes=None) -> int:
    local = {t.name: tuple(t.dims) for t in graph.initializer}

    def shape(name):
        return local[name] if name in local else shape_of(name)

    total = 0
    for n in graph.node:
        if n.op_type in CONTROL_FLOW and n.domain in ("", "ai.onnx"):
            total += _control(n, shape, value_of, depth, None, notes)
            continue
        ins = [shape(t) if t else None for t in n.input]
        outs = [shape(o) for o in n.output if o]
        macs = layer_macs(n.op_type, _attrs(n), ins, outs)
        if macs is None:
            bad = next(
                (t for t in [*n.input, *n.output] if t and (shape(t) is None or None in shape(t))),
                n.output[0] if n.output else n.op_type,
            )
            raise _Unknown(f"shape of tensor {bad!r} is unknown")
        total += macs
    return total
