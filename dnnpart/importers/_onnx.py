"""ONNX model -> LayerGraph.

The pipeline: read the protobuf (no external data), check every tensor and external
reference (``_tensors``), check the structure and sort the nodes (``_structure``), close
the input shapes (``_input_shapes``) and infer every shape from them on a light copy
(``_propagate``, ``_measure``), deserialize with onnx-ir (lazy external tensors, kept
for exporters), then build layers: constants folded into weights, MatMul + Add fused into
dense layers, costs from the inferred shapes.
"""

from __future__ import annotations

import math
import os
import warnings as _warnings

import numpy as np
import onnx
from onnx import numpy_helper

from dnnpart._isolate import IsolatedCrash, call_isolated
from dnnpart.errors import InvalidModelError, ResourceLimitError, UnsupportedModelError
from dnnpart.graph import ExternalRef, Layer, LayerGraph, LayerKind, TensorInfo, Weight
from dnnpart.graph._costs import (
    CHANNELWISE,
    ELEMENTWISE_BINARY,
    NEURONWISE_UNARY,
    has_formula,
    layer_macs,
)
from dnnpart.importers._attributes import check_attributes
from dnnpart.importers._body_costs import control_flow_macs
from dnnpart.importers._input_shapes import declared_inputs, resolve_input_shapes
from dnnpart.importers._propagate import complete_shapes, run_node
from dnnpart.importers._read import read_model_proto
from dnnpart.importers._shape_table import shape_table
from dnnpart.importers._structure import check_and_sort, check_functions, outer_names_used
from dnnpart.importers._tensors import MAX_ELEMENTS, check_tensor, declared_size, iter_tensors

__all__ = ["load_onnx"]

_STANDARD_DOMAINS = ("", "ai.onnx")
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
# Ops folded into a constant when all their inputs are constants (cheap, deterministic).
_FOLDABLE = frozenset(
    "Unsqueeze Squeeze Reshape Flatten Transpose Cast Identity Concat Gather Slice Expand "
    "Add Sub Mul Div Sqrt Reciprocal Neg Shape Size Tile".split()
)
_FOLD_ELEMENTS = 1 << 26
# Big initializers are hidden from shape inference (it needs their shapes, not bytes).
_LIGHT_BYTES = 4096


def load_onnx(
    path,
    *,
    strict: bool = False,
    progress=None,
    input_shapes=None,
    dims=None,
    sample_shapes=None,
    sample=None,
) -> LayerGraph:
    """Import the ONNX model at ``path``; see :func:`dnnpart.load`."""
    path = os.fspath(path)
    proto = read_model_proto(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    warnings: list[str] = []

    # 1. every tensor checked before any byte of external data is read
    for tensor, where in iter_tensors(proto):
        check_tensor(tensor, where, base_dir)
    if proto.graph.sparse_initializer:
        name = proto.graph.sparse_initializer[0].values.name
        raise UnsupportedModelError(
            f"{path}: sparse initializer {name!r} is not supported; store it as a dense initializer"
        )

    # 2. structure: names, cycles, order, functions
    check_and_sort(proto)
    check_functions(proto)
    external = _external_refs(proto, base_dir)
    opset = _default_opset(proto)
    known = onnx.defs.onnx_opset_version()
    if opset > known:
        _warn(warnings, strict, f"opset {opset} is newer than this onnx knows ({known})")

    # 3. shapes: concrete inputs, every intermediate from them
    _check_input_types(proto.graph)
    concrete, notes = resolve_input_shapes(
        declared_inputs(proto.graph), input_shapes, dims, sample_shapes
    )
    warnings.extend(notes)
    for name, shape in concrete.items():
        if math.prod(shape) > MAX_ELEMENTS:  # the measuring run would allocate it
            raise ResourceLimitError(
                f"input {name!r} has shape {list(shape)} ({math.prod(shape)} elements, "
                f"over the limit of {MAX_ELEMENTS})"
            )
    trips: dict[str, int] = {}
    shapes = _infer_shapes(proto, warnings, concrete, trips, sample)

    # 4. onnx-ir model, kept for exporters (external tensors stay lazy)
    model = _deserialize(proto, base_dir, path)

    # 5. layers
    builder = _Builder(proto, model, shapes, external, warnings, strict, trips)
    layers = builder.build(progress)
    init_names = {t.name for t in proto.graph.initializer}
    inputs = [builder.info(i.name) for i in proto.graph.input if i.name not in init_names]
    outputs = [builder.info(o.name) for o in proto.graph.output]
    return LayerGraph(
        layers,
        inputs,
        outputs,
        weights=builder.weights,
        warnings=warnings,
        model=model,
        path=path,
        input_shapes=concrete,
    )


def _external_refs(proto: onnx.ModelProto, base_dir: str) -> dict[str, ExternalRef]:
    """Checked references of the main graph's external tensors, by tensor name.

    Keyed by name (initializer name, or the output of a ``Constant`` node), never by the
    identity of protobuf wrappers, which Python may free and reuse.
    """
    refs: dict[str, ExternalRef] = {}
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            refs[t.name] = check_tensor(t, f"initializer {t.name!r}", base_dir)
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.HasField("t") and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                    where = f"attribute {attr.name!r} of node {node.name or node.op_type!r}"
                    refs[node.output[0]] = check_tensor(attr.t, where, base_dir)
    return refs


def _warn(warnings: list[str], strict: bool, message: str) -> None:
    if strict:
        raise UnsupportedModelError(f"{message} (strict mode)")
    warnings.append(message)


def _default_opset(proto: onnx.ModelProto) -> int:
    for entry in proto.opset_import:
        if entry.domain in _STANDARD_DOMAINS:
            return entry.version
    return 1


def _check_input_types(graph: onnx.GraphProto) -> None:
    """Every real tensor input has a defined element type: without one nothing can feed
    it, and shape inference tools loop on it (the fuzzer's ``elem_type 0``)."""
    init = {t.name for t in graph.initializer}
    defined = set(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}
    for vi in graph.input:
        if vi.name in init or not vi.type.HasField("tensor_type"):
            continue
        elem = vi.type.tensor_type.elem_type
        if elem not in defined:
            raise InvalidModelError(f"model input {vi.name!r} has no valid element type ({elem})")


def _infer_shapes(
    proto: onnx.ModelProto,
    warnings: list[str],
    input_shapes: dict[str, tuple[int, ...]],
    trips: dict[str, int],
    sample=None,
) -> dict[str, tuple]:
    """``name -> (shape, elem_type)`` for the concrete ``input_shapes``: onnx shape
    inference on a light copy, completed by :func:`~._propagate.complete_shapes` (which
    fills ``trips`` with the measured trip counts of Loops, measured on ``sample``'s arrays
    where given).

    Big initializers become typed inputs so that the copy stays small.
    """
    light, big = _light_copy(proto)
    for inp in light.graph.input:
        if inp.name in input_shapes:
            tt = inp.type.tensor_type
            tt.ClearField("shape")
            tt.shape.SetInParent()  # a scalar has a shape of no dimensions
            for d in input_shapes[inp.name]:
                tt.shape.dim.add().dim_value = d
    try:
        # in a child process: a hostile model can make onnx's C++ abort or loop
        data = call_isolated(lambda: _inferred(light).SerializeToString())
    except IsolatedCrash as exc:
        # the same nodes would crash the per-node inference of complete_shapes here
        warnings.append(f"shape inference crashed ({exc}); shapes are hints")
        return shape_table(light)
    except Exception as exc:  # noqa: BLE001 - inference is a hint, never fatal
        warnings.append(
            f"shape inference failed ({str(exc).splitlines()[0][:160]}); shapes are hints"
        )
        inferred = light
    else:
        inferred = onnx.ModelProto()
        inferred.ParseFromString(data)
    return complete_shapes(
        inferred, shape_table(inferred), big, input_shapes, warnings, trips=trips, sample=sample
    )


def _inferred(light: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(
        light, check_type=False, strict_mode=False, data_prop=True
    )


def _light_copy(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list[onnx.TensorProto]]:
    """The model without the payload of its big main-graph initializers.

    Big initializers become typed graph inputs (shape inference needs their shapes, not
    their bytes), so the copy never holds a second copy of the weights.
    """
    src = proto.graph
    light = onnx.ModelProto(ir_version=proto.ir_version)
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    graph = light.graph
    graph.name = src.name
    graph.node.extend(src.node)
    graph.input.extend(src.input)
    graph.output.extend(src.output)
    graph.value_info.extend(src.value_info)
    inputs = {i.name for i in src.input}
    big = []
    for t in src.initializer:
        if t.ByteSize() <= _LIGHT_BYTES and t.data_location != onnx.TensorProto.EXTERNAL:
            graph.initializer.append(t)
            continue
        big.append(t)
        if t.name not in inputs:
            graph.input.append(
                onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
            )
    return light, big


def _deserialize(proto: onnx.ModelProto, base_dir: str, path: str):
    import onnx_ir as ir

    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            model = ir.serde.deserialize_model(proto)
        ir.external_data.set_base_dir(model.graph, base_dir)
    except Exception as exc:  # noqa: BLE001 - onnx-ir rejects what it cannot represent
        raise InvalidModelError(
            f"not a valid ONNX model: {path} ({str(exc).splitlines()[0][:160]})"
        ) from None
    return model


def _dtype_bits(elem_type: int) -> tuple[str | None, int | None]:
    import onnx_ir as ir

    try:
        name = onnx.TensorProto.DataType.Name(elem_type)
        return name, ir.DataType(elem_type).bitwidth
    except Exception:  # noqa: BLE001 - undefined/unknown element type
        return None, None


class _Builder:
    """Turns the sorted, checked proto (and its onnx-ir twin) into layers."""

    def __init__(self, proto, model, shapes, external, warnings, strict, trips=None):
        self.proto = proto
        self.trips = trips or {}
        self.graph = proto.graph
        self.ir_nodes = list(model.graph)
        self.shapes = shapes
        self.external = external
        self.warnings = warnings
        self.strict = strict
        self.functions = {(f.domain, f.name) for f in proto.functions}
        self.weights: dict[str, Weight] = {}
        self._tensor_infos: dict[str, TensorInfo] = {}
        for t in self.graph.initializer:
            self.weights[t.name] = self._weight_from_proto(t, t.name)

    # -- tensors -----------------------------------------------------------------
    def info(self, name: str) -> TensorInfo:
        if name not in self._tensor_infos:
            shape, elem = self.shapes.get(name, (None, 0))
            known = [d for d in shape or () if d is not None]
            if known and math.prod(known) > MAX_ELEMENTS:  # costs stay far from int64's end
                raise ResourceLimitError(
                    f"tensor {name!r} declares shape {list(shape)} ({math.prod(known)} "
                    f"elements, over the limit of {MAX_ELEMENTS})"
                )
            dtype, bits = _dtype_bits(elem) if elem else (None, None)
            self._tensor_infos[name] = TensorInfo(name, shape, dtype, bits)
        return self._tensor_infos[name]

    def _weight_from_proto(self, t: onnx.TensorProto, name: str) -> Weight:
        elements, _ = declared_size(t, f"tensor {name!r}")
        dtype, bits = _dtype_bits(t.data_type)
        if t.data_type == onnx.TensorProto.STRING:
            bits, np_dtype = 0, np.dtype(object)
        else:
            np_dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        return Weight(
            name, tuple(t.dims), dtype, bits, np_dtype, proto=t, external=self.external.get(name)
        )

    def _constant_node_weight(self, node: onnx.NodeProto) -> Weight | None:
        name = node.output[0]
        for attr in node.attribute:
            if attr.name == "value":
                return self._weight_from_proto(attr.t, name)
            if attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
                value = onnx.helper.get_attribute_value(attr)
                dtype = np.float32 if "float" in attr.name else np.int64
                t = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
                return self._weight_from_proto(t, name)
        return None  # string / sparse constants: leave as an ordinary layer

    def _constant_of_shape(self, node: onnx.NodeProto) -> Weight | None:
        """A ConstantOfShape of a constant shape is a weight filled with one value."""
        if not node.input or node.input[0] not in self.weights:
            return None
        shape_w = self.weights[node.input[0]]
        if shape_w.size > 64:
            return None
        shape = [int(d) for d in np.asarray(shape_w.numpy()).reshape(-1)]
        if any(d < 0 for d in shape):
            raise InvalidModelError(
                f"ConstantOfShape {node.output[0]!r} has negative shape {shape}"
            )
        if np.prod(shape, dtype=object) > MAX_ELEMENTS:
            raise ResourceLimitError(f"ConstantOfShape {node.output[0]!r} declares shape {shape}")
        value = np.zeros(1, dtype=np.float32)
        for attr in node.attribute:
            if attr.name == "value":
                t = attr.t
                if (
                    attr.type != onnx.AttributeProto.TENSOR
                    or t.data_location == onnx.TensorProto.EXTERNAL
                    or declared_size(t, f"value of {node.output[0]!r}")[0] != 1
                ):
                    raise InvalidModelError(
                        f"ConstantOfShape {node.output[0]!r}: attribute 'value' must be a "
                        "one-element tensor held in the model"
                    )
                value = numpy_helper.to_array(t).reshape(-1)
        elem = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
        dtype, bits = _dtype_bits(elem)
        fill = value[0].item() if value.size else 0
        return Weight(node.output[0], tuple(shape), dtype, bits, value.dtype, fill=fill)

    def _foldable(self, node: onnx.NodeProto) -> bool:
        """A cheap standard op whose inputs are all constants folds into a constant."""
        return (
            node.op_type in _FOLDABLE
            and node.domain in _STANDARD_DOMAINS
            and len(node.output) == 1
            and bool(node.input)
            and all((not t) or t in self.weights for t in node.input)
        )

    def _folded(self, node: onnx.NodeProto) -> Weight | None:
        """A lazily evaluated weight for a constant expression (shape from inference)."""
        name = node.output[0]
        shape, elem = self.shapes.get(name, (None, 0))
        if (
            shape is None
            or None in shape
            or not elem
            or np.prod(shape, dtype=object) > _FOLD_ELEMENTS
        ):
            return None
        dtype, bits = _dtype_bits(elem)
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        inputs = [self.weights.get(t) if t else None for t in node.input]
        opset = _default_opset(self.proto)

        def compute(node=node, inputs=inputs, opset=opset):
            feeds = {t: w.numpy() for t, w in zip(node.input, inputs, strict=True) if w is not None}
            return run_node(node, feeds, opset)[0]

        return Weight(name, tuple(shape), dtype, bits, np_dtype, compute=compute)

    def _shape_of(self, name: str):
        if name in self.weights:
            return self.weights[name].shape
        return self.shapes.get(name, (None, 0))[0]

    def _trips_of(self, node: onnx.NodeProto) -> int | None:
        return self.trips.get(node.output[0]) if node.output else None

    def _value_of(self, name: str):
        w = self.weights.get(name)
        return np.asarray(w.numpy()) if w is not None and w.size <= 64 else None

    # -- layers ------------------------------------------------------------------
    def build(self, progress=None) -> list[Layer]:
        nodes = list(self.graph.node)
        consumers: dict[str, int] = {}
        for n in nodes:
            for name in list(n.input) + outer_names_used(n):
                if name:
                    consumers[name] = consumers.get(name, 0) + 1
        graph_outputs = {o.name for o in self.graph.output}
        absorbed: set[int] = set()
        # fold constants first: later nodes see them as weights
        for i, n in enumerate(nodes):
            w = None
            if n.op_type == "Constant" and n.domain in _STANDARD_DOMAINS and len(n.output) == 1:
                w = self._constant_node_weight(n)
            elif n.op_type == "ConstantOfShape" and n.domain in _STANDARD_DOMAINS:
                w = self._constant_of_shape(n)
            elif self._foldable(n):
                w = self._folded(n)
            if w is not None and n.output[0] not in graph_outputs:
                self.weights[n.output[0]] = w
                absorbed.add(i)
        producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
        layers: list[Layer] = []
        names: set[str] = set()
        total = len(nodes)
        for i, n in enumerate(nodes):
            if progress is not None and i % 256 == 0:
                progress(i, total, "layers")
            if i in absorbed:
                continue
            group = [i]
            add = self._bias_add(n, nodes, producer, consumers, graph_outputs, absorbed)
            if add is not None:
                group.append(add)
                absorbed.add(add)
            layers.append(
                self._layer([nodes[j] for j in group], [self.ir_nodes[j] for j in group], i, names)
            )
        if progress is not None:
            progress(total, total, "layers")
        return layers

    def _bias_add(self, n, nodes, producer, consumers, graph_outputs, absorbed) -> int | None:
        """Index of the Add that adds a constant bias to MatMul ``n``'s output, if any."""
        if n.op_type != "MatMul" or n.domain not in _STANDARD_DOMAINS or len(n.input) < 2:
            return None
        w = self.weights.get(n.input[1])
        out = n.output[0]
        if w is None or len(w.shape) != 2 or out in graph_outputs or consumers.get(out, 0) != 1:
            return None
        for j in range(producer[out] + 1, len(nodes)):
            m = nodes[j]
            if out in m.input:
                if m.op_type != "Add" or m.domain not in _STANDARD_DOMAINS or j in absorbed:
                    return None
                other = m.input[1] if m.input[0] == out else m.input[0]
                bias = self.weights.get(other)
                if (
                    bias is None
                    or bias.size != w.shape[1]
                    or (bias.shape and bias.shape[-1] != w.shape[1])
                ):
                    return None
                return j
        return None

    def _layer(self, group, ir_nodes, index, names) -> Layer:
        head = group[0]
        op, domain = head.op_type, head.domain
        name = head.name or f"{op}_{index}"
        while name in names:
            name = f"{name}_{index}"
        names.add(name)
        attrs = {a.name: _attr_value(a) for a in head.attribute}
        all_inputs = list(head.input)
        outputs = [self.info(o) for o in group[-1].output if o]
        weights: dict[str, Weight] = {}
        act_inputs: list[TensorInfo] = []
        for pos, t in enumerate(all_inputs):
            if not t:
                continue
            if t in self.weights:
                weights[self._role(op, pos)] = self.weights[t]
            else:
                act_inputs.append(self.info(t))
        if len(group) == 2:  # fused bias Add
            add = group[1]
            bias_name = add.input[1] if add.input[0] == head.output[0] else add.input[0]
            weights["bias"] = self.weights[bias_name]
        captured: list[str] = []
        if any(a.HasField("g") or a.graphs for a in head.attribute):
            for t in outer_names_used(head):
                if t in self.weights:
                    weights[f"outer:{t}"] = self.weights[t]
                else:
                    captured.append(t)
        if domain in _STANDARD_DOMAINS:
            w = weights.get("weight")
            data = act_inputs[0].shape if act_inputs else None
            check_attributes(op, name, attrs, w.shape if w is not None else None, data)
        kind, neurons = self._classify(head, weights, act_inputs)
        notes: list[str] = []
        macs = self._macs(head, all_inputs, outputs, attrs, name, notes)
        return Layer(
            name=name,
            op_type=op,
            domain=domain,
            kind=kind,
            attributes=attrs,
            inputs=tuple(act_inputs),
            outputs=tuple(outputs),
            weights=weights,
            macs=macs,
            nodes=tuple(ir_nodes),
            captured=tuple(captured),
            neurons=neurons,
            notes=notes,
        )

    @staticmethod
    def _role(op: str, pos: int) -> str:
        if op in ("Conv", "MatMul", "Gemm", "ConvTranspose"):
            return {1: "weight", 2: "bias"}.get(pos, f"input{pos}")
        return f"input{pos}"

    def _classify(self, node, weights, act_inputs) -> tuple[str, int | None]:
        op, domain = node.op_type, node.domain
        if domain not in _STANDARD_DOMAINS:
            what = "local function" if (domain, op) in self.functions else "custom domain"
            _warn(
                self.warnings,
                self.strict,
                f"node {node.name or op!r}: {what} {domain!r} op {op!r} kept whole "
                "as an opaque layer (cost 0)",
            )
            return LayerKind.OPAQUE, None
        if not onnx.defs.has(op):
            _warn(
                self.warnings,
                self.strict,
                f"node {node.name or op!r}: unknown op {op!r} kept whole as an opaque layer "
                "(cost 0)",
            )
            return LayerKind.OPAQUE, None
        if op in _CONTROL_FLOW:
            return LayerKind.CONTROL_FLOW, None
        w = weights.get("weight")
        if w is not None and w.size == 0:  # an empty weight: nothing to split
            return LayerKind.OTHER, None
        if op == "Conv" and w is not None and len(w.shape) >= 3 and len(act_inputs) == 1:
            return LayerKind.CONV, w.shape[0]
        if (
            op in ("MatMul", "Gemm")
            and w is not None
            and len(w.shape) == 2
            and len(act_inputs) == 1
        ):
            if (
                op == "Gemm"
                and node.attribute
                and any(a.name == "transB" and a.i for a in node.attribute)
            ):
                return LayerKind.DENSE, w.shape[0]
            return LayerKind.DENSE, w.shape[1]
        if op in NEURONWISE_UNARY or op in CHANNELWISE:
            return LayerKind.NEURONWISE, None
        if op in ELEMENTWISE_BINARY:
            shapes = {t.shape for t in act_inputs}
            if len(shapes) == 1 and None not in shapes:
                return LayerKind.NEURONWISE, None
        return LayerKind.OTHER, None

    def _macs(self, node, all_inputs, outputs, attrs, name, notes) -> int:
        in_shapes = []
        for t in all_inputs:
            if not t:
                in_shapes.append(None)
            elif t in self.weights:
                in_shapes.append(self.weights[t].shape)
            else:
                in_shapes.append(self.info(t).shape)
        if node.op_type in _CONTROL_FLOW:
            macs, why = control_flow_macs(
                node, self._shape_of, self._value_of, self._trips_of, self.warnings
            )
            if macs is None:
                self.warnings.append(
                    f"layer {name!r}: cost of the {node.op_type} bodies unknown ({why}); "
                    "counted as 0 MACs"
                )
            return macs or 0
        macs = layer_macs(node.op_type, attrs, in_shapes, [o.shape for o in outputs])
        if macs is None:
            unknown = [
                t
                for t, s in zip(all_inputs, in_shapes, strict=True)
                if t and (s is None or None in s)
            ]
            unknown += [o.name for o in outputs if o.shape is None or None in o.shape]
            why = f"shape of tensor {unknown[0]!r} is unknown" if unknown else "an input is missing"
            self.warnings.append(f"layer {name!r}: cost unknown, {why}")
            return 0
        if macs == 0 and not has_formula(node.op_type):
            self.warnings.append(
                f"layer {name!r}: no cost formula for {node.op_type}; counted as 0 MACs"
            )
        return int(macs)


def _attr_value(attr: onnx.AttributeProto):
    if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        return f"<{onnx.AttributeProto.AttributeType.Name(attr.type).lower()}>"
    if attr.type in (
        onnx.AttributeProto.TENSOR,
        onnx.AttributeProto.SPARSE_TENSOR,
        onnx.AttributeProto.TENSORS,
    ):
        return f"<{onnx.AttributeProto.AttributeType.Name(attr.type).lower()}>"
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    return value
