"""Shapes inside Loop and Scan bodies, from the shapes of what the node feeds them.

Exporters declare a body's inputs with the model's symbolic dimensions (torch writes a
loop-carried ``x`` as ``[batch, 8]``), and onnx's whole-graph inference keeps those
declarations instead of the node's concrete input shapes, so every tensor in the body
stays open and the body's cost unknown. Here each main-graph Loop or Scan body is inferred
again as a model of its own whose inputs carry the concrete shapes: a Loop's iteration
number and condition are scalars and its loop-carried values have the shapes of the node's
initial values; a Scan's state inputs likewise, its scanned inputs one slice of the node's
(the scan axis removed); values the body reads from outside come with their known shapes.
The inference runs in a forked child (:func:`dnnpart._isolate.call_isolated`).
"""

from __future__ import annotations

import onnx

from dnnpart._isolate import call_isolated
from dnnpart.importers._shape_table import full as _full
from dnnpart.importers._shape_table import shape_table
from dnnpart.importers._structure import outer_names_used

__all__ = ["refine_body_shapes"]


def refine_body_shapes(light: onnx.ModelProto, shapes: dict[str, tuple]) -> None:
    """Complete ``shapes`` (``name -> (shape, elem_type)``, in place) with the shapes of
    the tensors in main-graph Loop and Scan bodies; a body that cannot be inferred keeps
    what it had (shapes are hints)."""
    models = []
    for node in light.graph.node:
        model = _body_model(light, node, shapes)
        if model is not None:
            models.append(model)
    if not models:
        return
    try:
        tables = call_isolated(lambda: [_inferred_table(m) for m in models])
    except Exception:  # noqa: BLE001 - a crash or failure of inference: keep the hints
        return
    for table in tables:
        for name, (shape, elem) in table.items():
            if _full(shape) and not _full(shapes.get(name, (None, 0))[0]):
                shapes[name] = (shape, elem)


def _body_model(light, node, shapes) -> onnx.ModelProto | None:
    if node.op_type not in ("Loop", "Scan") or node.domain not in ("", "ai.onnx"):
        return None
    body = next((a.g for a in node.attribute if a.name == "body" and a.HasField("g")), None)
    if body is None:
        return None
    feeds = _input_shapes(node, body, shapes)
    if feeds is None:
        return None
    graph = onnx.GraphProto()
    graph.CopyFrom(body)
    del graph.input[:]
    del graph.value_info[:]
    for vi, shape in zip(body.input, feeds, strict=True):
        elem = vi.type.tensor_type.elem_type
        graph.input.append(onnx.helper.make_tensor_value_info(vi.name, elem, list(shape)))
    for name in outer_names_used(node):
        shape, elem = shapes.get(name, (None, 0))
        if elem:
            dims = list(shape) if shape is not None else None
            graph.input.append(onnx.helper.make_tensor_value_info(name, elem, dims))
    model = onnx.helper.make_model(graph, opset_imports=list(light.opset_import))
    model.ir_version = light.ir_version
    model.functions.extend(light.functions)
    return model


def _input_shapes(node, body, shapes) -> list[tuple] | None:
    """Concrete shapes of the body's inputs, or None when one is not known."""
    outer = [shapes.get(t, (None, 0))[0] if t else None for t in node.input]
    if node.op_type == "Loop":
        carried = outer[2:]
        want = [(), (), *carried]
    else:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        n_scan = int(attrs.get("num_scan_inputs", 1))
        n_state = len(node.input) - n_scan
        axes = list(attrs.get("scan_input_axes", [])) or [0] * n_scan
        scanned = []
        for shape, axis in zip(outer[n_state:], axes, strict=False):
            if shape is None or not shape:
                return None
            axis = axis % len(shape)
            scanned.append(tuple(shape[:axis]) + tuple(shape[axis + 1 :]))
        want = [*outer[:n_state], *scanned]
    if len(want) != len(body.input) or not all(_full(s) for s in want):
        return None
    return [tuple(s) for s in want]


def _inferred_table(model: onnx.ModelProto) -> dict[str, tuple]:
    inferred = onnx.shape_inference.infer_shapes(
        model, check_type=False, strict_mode=False, data_prop=True
    )
    return shape_table(inferred)
