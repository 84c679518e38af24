"""Every intermediate shape from concrete input shapes.

Real exporters compute Reshape, Expand, Tile, ConstantOfShape and Resize targets at run
time from ``Shape`` ops (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``), which
onnx's whole-graph inference (even with data propagation) often leaves open. After that
inference this pass walks the nodes in order, evaluates the small integer tensors of such
shape subgraphs (``values``), and re-infers each node with onnx's single-node inference
given those values, so that a computed Reshape target is as good as a constant one. What
is still open goes to onnxruntime's symbolic shape inference (:mod:`._symbolic`: the
``com.microsoft`` ops of optimized transformers), then to one onnxruntime run
(:mod:`._measure`), and a tensor that has no shape even then is named in a warning.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from dnnpart.importers._body_shapes import refine_body_shapes
from dnnpart.importers._shape_table import full as _full
from dnnpart.importers._shape_table import type_shape

__all__ = ["complete_shapes", "run_node", "VALUE_OPS"]

# Ops whose (small) outputs are worth evaluating: the vocabulary of shape subgraphs.
VALUE_OPS = frozenset(
    "Constant Shape Size Gather Slice Concat Unsqueeze Squeeze Cast Identity Reshape Flatten "
    "Add Sub Mul Div Mod Neg Abs Max Min Floor Ceil Sqrt Equal Less Greater LessOrEqual "
    "GreaterOrEqual Not And Or Where Range ConstantOfShape ReduceProd ReduceSum ReduceMax "
    "ReduceMin Expand Tile Transpose CastLike Sign Clip".split()
)
_MAX_VALUE_ELEMENTS = 4096
_STANDARD = ("", "ai.onnx")


def run_node(node: onnx.NodeProto, feeds: dict[str, np.ndarray], opset: int) -> list:
    """The outputs of one standard node on constant inputs (onnx's reference runtime)."""
    from onnx.reference import ReferenceEvaluator

    graph = onnx.helper.make_graph(
        [node],
        "fold",
        [onnx.helper.make_tensor_value_info(t, 0, None) for t in feeds],
        [onnx.helper.make_tensor_value_info(o, 0, None) for o in node.output if o],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, feeds)


def _type(shape, elem: int) -> onnx.TypeProto:
    return onnx.helper.make_tensor_type_proto(elem, list(shape) if shape is not None else None)


def _node_value(node, values, shapes, opset):
    """The value of ``node``'s single output if it is a small shape-subgraph tensor."""
    op = node.op_type
    if op == "Shape":
        shape = shapes.get(node.input[0], (None, 0))[0]
        if not _full(shape):
            return None
        attrs = {a.name: a.i for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return np.asarray(shape[slice(start, end)], dtype=np.int64)
    if op == "Size":
        shape = shapes.get(node.input[0], (None, 0))[0]
        return np.asarray(int(np.prod(shape)), dtype=np.int64) if _full(shape) else None
    if op == "Constant" or all(not t or t in values for t in node.input):
        out = shapes.get(node.output[0], (None, 0))[0]
        if _full(out) and int(np.prod(out)) > _MAX_VALUE_ELEMENTS:
            return None
        try:
            result = run_node(node, {t: values[t] for t in node.input if t}, opset)[0]
        except Exception:  # noqa: BLE001 - a value we cannot compute stays unknown
            return None
        result = np.asarray(result)
        return result if result.size <= _MAX_VALUE_ELEMENTS else None
    return None


def complete_shapes(
    light: onnx.ModelProto,
    shapes: dict[str, tuple],
    big: list[onnx.TensorProto],
    input_shapes: dict[str, tuple[int, ...]],
    warnings: list[str],
    *,
    measure: bool = True,
    symbolic: bool = True,
    sample=None,
    trips: dict[str, int] | None = None,
) -> dict[str, tuple]:
    """``shapes`` (``name -> (shape, elem_type)`` from whole-graph inference) completed.

    Parameters
    ----------
    light : onnx.ModelProto
        The model with concrete input shapes and small initializers (big ones are typed
        inputs, listed in ``big``).
    shapes : dict
        Modified in place and returned.
    measure : bool
        Run onnxruntime once on a random sample of ``input_shapes`` for what is still open
        (and for the trip counts of Loops that only a run can count).
    symbolic : bool
        Ask onnxruntime's symbolic shape inference (:mod:`._symbolic`) for what is open
        before that run.
    sample : dict of arrays, optional
        A real sample (``--inputs``) for that run instead of random arrays.
    trips : dict, optional
        Filled with ``Loop's first output -> iterations`` measured by that run.
    """
    graph = light.graph
    opset = next((e.version for e in light.opset_import if e.domain in _STANDARD), None)
    if opset is None:  # no standard op can be interpreted
        return shapes
    values: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        if t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) or len(t.dims) <= 1:
            arr = numpy_helper.to_array(t)
            if arr.size <= _MAX_VALUE_ELEMENTS:
                values[t.name] = arr
        shapes.setdefault(t.name, (tuple(t.dims), t.data_type))
    for t in big:
        shapes.setdefault(t.name, (tuple(t.dims), t.data_type))
    _body_shapes(graph, shapes)
    for node in graph.node:
        if node.domain not in _STANDARD or any(a.HasField("g") or a.graphs for a in node.attribute):
            continue
        _infer_node(node, light, opset, shapes, values)
        if node.op_type in VALUE_OPS and len(node.output) == 1 and node.output[0]:
            value = _node_value(node, values, shapes, opset)
            if value is not None:
                values[node.output[0]] = value
                elem = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
                shapes[node.output[0]] = (tuple(value.shape), elem)
    refine_body_shapes(light, shapes)
    produced = [o for n in graph.node for o in n.output if o]
    open_ = [o for o in produced if not _full(shapes.get(o, (None, 0))[0])]
    if open_ and symbolic:
        from dnnpart.importers._symbolic import symbolic_shapes

        shapes.update(symbolic_shapes(light, open_))
        open_ = [o for o in produced if not _full(shapes.get(o, (None, 0))[0])]
    loops = [n.output[0] for n in graph.node if not _fixed_trips(n, values)]
    if (open_ or loops) and measure:
        from dnnpart.importers._measure import MeasureError, measure_shapes

        try:
            measured = measure_shapes(
                light, big, input_shapes, open_, shapes, loops=tuple(loops), sample=sample
            )
        except MeasureError as exc:
            warnings.append(f"onnxruntime could not measure the open shapes ({exc})")
        else:
            shapes.update(measured.shapes)
            if trips is not None:
                trips.update(measured.trips)
            for node, text in measured.failed:
                warnings.append(
                    f"onnxruntime could not run node {node!r} ({text}); the shapes after it "
                    "were not measured"
                )
        open_ = [o for o in produced if not _full(shapes.get(o, (None, 0))[0])]
    if open_:
        more = f" and {len(open_) - 5} more" if len(open_) > 5 else ""
        warnings.append(
            f"{len(open_)} tensors have no known shape: "
            + ", ".join(repr(o) for o in open_[:5])
            + more
        )
    return shapes


def _fixed_trips(node: onnx.NodeProto, values: dict) -> bool:
    """True unless ``node`` is a Loop whose iterations only a run can count: its trip
    count is not a known value, or its condition may stop it early (the body's condition
    output is neither its condition input passed through nor a constant true)."""
    if node.op_type != "Loop" or node.domain not in _STANDARD or not node.output:
        return True
    m = node.input[0] if node.input else ""
    body = next((a.g for a in node.attribute if a.name == "body" and a.HasField("g")), None)
    if not m or m not in values or body is None or len(body.input) < 2 or not body.output:
        return False
    cond_in, cond_out = body.input[1].name, body.output[0].name
    if cond_out == cond_in:
        return True
    for t in body.initializer:
        if t.name == cond_out:
            return bool(np.all(numpy_helper.to_array(t)))
    for n in body.node:
        if cond_out in n.output:
            if n.op_type == "Identity" and n.input and n.input[0] == cond_in:
                return True
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            return (
                n.op_type == "Constant"
                and value is not None
                and bool(np.all(numpy_helper.to_array(value)))
            )
    return False


def _body_shapes(graph: onnx.GraphProto, shapes: dict) -> None:
    """Shapes of control-flow body tensors (from whole-graph inference), for body costs;
    main-graph names win. Iterative: no Python recursion on nesting depth."""
    stack = [a.g for n in graph.node for a in n.attribute if a.HasField("g")]
    stack += [g for n in graph.node for a in n.attribute for g in a.graphs]
    while stack:
        g = stack.pop()
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            if vi.name not in shapes and vi.type.HasField("tensor_type"):
                shapes[vi.name] = (type_shape(vi.type), vi.type.tensor_type.elem_type)
        for t in g.initializer:
            shapes.setdefault(t.name, (tuple(t.dims), t.data_type))
        stack += [a.g for n in g.node for a in n.attribute if a.HasField("g")]
        stack += [sg for n in g.node for a in n.attribute for sg in a.graphs]


def _infer_node(node, light, opset, shapes, values) -> None:
    """Refine ``node``'s output shapes with onnx's single-node inference given ``values``."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except Exception:  # noqa: BLE001 - unknown op: whole-graph inference had its say
        return
    types = {}
    for t in node.input:
        if not t:
            continue
        shape, elem = shapes.get(t, (None, 0))
        if not elem:
            return
        types[t] = _type(shape, elem)
    data = {t: numpy_helper.from_array(values[t], t) for t in node.input if t and t in values}
    try:
        out = onnx.shape_inference.infer_node_outputs(
            schema, node, types, data, opset_imports=list(light.opset_import)
        )
    except Exception:  # noqa: BLE001 - inference is a hint
        return
    for name, tp in out.items():
        shape = type_shape(tp)
        old = shapes.get(name, (None, 0))
        elem = tp.tensor_type.elem_type if tp.HasField("tensor_type") else 0
        if _full(shape) and not _full(old[0]) or (old[0] is None and shape is not None):
            shapes[name] = (shape, elem or old[1])
