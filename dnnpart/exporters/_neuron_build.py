"""Building the sub-models of a neuron placement: per-device values, nodes, data movement.

A :class:`Builder` holds, for every device, the values it has of each tensor (its own
slice, in sorted neuron order, or a whole tensor) and the pieces other devices send it;
:meth:`Builder.fetch` assembles from them the neurons a layer part needs: a Concat of the
pieces in neuron order, a Slice or Gather only where a piece must be cut or reordered
(these run on every inference; a Gather along a non-leading axis is the slowest of them).
Nodes are created in *units*, one per device and layer, which :mod:`._staging` later
groups into stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnpart.errors import InvalidModelError
from dnnpart.exporters._manifest import Piece
from dnnpart.exporters._source import Source
from dnnpart.problem import PlacedLayout

__all__ = ["Builder", "Unit"]


@dataclass
class Unit:
    """One device's part of one layer: the nodes built for it, what they read."""

    device: int
    layer: str
    macs: int = 0
    nodes: list[Any] = field(default_factory=list)
    reads: list[Any] = field(default_factory=list)  # values read, incl. body outer refs
    consts: list[Any] = field(default_factory=list)


class _Names:
    """Fresh value names, never equal to a name of the model (deterministic)."""

    def __init__(self, reserved):
        self.used = set(reserved)

    def __call__(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name = f"{base}~{i}"
            i += 1
        self.used.add(name)
        return name


class Builder:
    def __init__(self, source: Source, layout: PlacedLayout):
        import onnx_ir as ir

        self.ir = ir
        self.source = source
        self.layout = layout
        self.graph = source.graph
        reserved = set(ir.convenience.create_value_mapping(source.model.graph))
        self.fresh = _Names(reserved)
        self.units: list[Unit] = []
        self.unit: Unit | None = None
        self.producer: dict[int, int] = {}  # id(value) -> unit index
        self.sent_from: dict[int, Any] = {}  # id(piece value) -> sender value
        self.local: list[dict[str, tuple[Any, np.ndarray | None]]] = [{} for _ in range(layout.k)]
        self.pieces: dict[tuple[str, int, int], tuple[Any, np.ndarray | None]] = {}
        self.transfers: list[tuple[Any, Any, int, int, str, np.ndarray | None]] = []
        self.inputs: list[Piece] = []
        self.fetched: dict[tuple, tuple[Any, np.ndarray]] = {}
        self.consts: dict[tuple[int, str], Any] = {}

    # -- values and nodes ---------------------------------------------------------------
    def shape_of(self, name: str, axis: int | None, n: int | None):
        shape = self.source.shape(name)
        if shape is None or axis is None or n is None:
            return shape
        dims = list(shape)
        if not -len(dims) <= axis < len(dims):  # the file's value_info contradicts the layer
            raise InvalidModelError(
                f"tensor {name!r} is declared with shape {dims}, which has no axis {axis} "
                "to split; the model's value_info disagrees with its operators"
            )
        dims[axis] = n
        return self.ir.Shape(dims)

    def new_value(self, base: str, dtype, shape):
        return self.ir.Value(name=self.fresh(base), type=self.ir.TensorType(dtype), shape=shape)

    def node(self, op: str, inputs, attrs=(), *, base: str, dtype, shape):
        ir = self.ir
        n = ir.Node("", op, inputs, list(attrs), num_outputs=1, name=self.fresh(f"{base}/{op}"))
        out = n.outputs[0]
        out.name = self.fresh(base)
        out.type = ir.TensorType(dtype)
        out.shape = shape
        self.add_nodes([n])
        self.unit.reads.extend(v for v in inputs if v is not None)
        return out

    def add_nodes(self, nodes) -> None:
        idx = len(self.units) - 1
        for n in nodes:
            self.unit.nodes.append(n)
            for v in n.outputs:
                self.producer[id(v)] = idx

    def const(self, array: np.ndarray, base: str):
        ir = self.ir
        v = ir.Value(name=self.fresh(base), const_value=ir.tensor(np.asarray(array, order="C")))
        v.type = ir.TensorType(v.const_value.dtype)
        v.shape = ir.Shape(list(array.shape))
        self.unit.consts.append(v)
        return v

    def model_const(self, orig, device: int):
        """A copy of a model constant on ``device`` (materialised, checked reads)."""
        ir = self.ir
        key = (device, orig.name)
        v = self.consts.get(key)
        if v is None:
            arr = np.asarray(self.source.constant(orig.name), order="C")
            v = ir.Value(name=orig.name, const_value=ir.tensor(arr, name=orig.name))
            v.type = ir.TensorType(v.const_value.dtype)
            v.shape = ir.Shape(list(arr.shape))
            self.consts[key] = v
        self.unit.consts.append(v)
        return v

    def begin(self, device: int, layer: str, macs: int = 0) -> None:
        self.unit = Unit(device, layer, macs)
        self.units.append(self.unit)

    def graph_opset(self) -> int:
        """The model's version of the default ONNX domain."""
        imports = self.source.model.graph.opset_imports
        return int(imports.get("", imports.get("ai.onnx", 1)))

    # -- where data comes from ---------------------------------------------------------
    def fetch(self, name: str, device: int, wanted: np.ndarray | None, *, ordered: bool):
        """Tensor ``name`` on ``device``: the neurons ``wanted`` (all if None) along the
        space's axis, gathered from the local slice and the pieces received.

        Returns ``(value, order)``: ``order`` lists the neuron indices the value holds
        along the axis, None for a whole tensor: ``wanted`` itself when ``ordered``, else
        ``wanted`` in the order the pieces arrive. Neurons that are not wanted are cut out
        (a Slice or Gather): a device computes with exactly the rows its neurons have
        synapses from, so that no sub-model holds a pruned weight or does work twice.
        """
        space = self.layout.spaces[name]
        if space.whole or space.axis is None:
            if name in self.local[device]:
                value = self.local[device][name][0]
            else:
                src = self.layout.home(space) if space.whole else int(self.layout.owners(space)[0])
                value = self.pieces[(name, src, device)][0]
            self.unit.reads.append(value)
            return value, None
        if wanted is None:
            wanted = np.arange(space.count)
        key = (name, device, wanted.tobytes(), ordered)
        if key in self.fetched:
            value, order = self.fetched[key]
            self.unit.reads.append(value)
            return value, order
        found = []  # (first neuron, value, neurons it holds, positions to keep or None)
        for src in range(self.layout.k):
            have = (
                self.local[device].get(name)
                if src == device
                else self.pieces.get((name, src, device))
            )
            if have is None:
                continue
            value, held = have
            take = np.intersect1d(held, wanted)
            if take.size == 0:
                continue
            keep = None if take.size == held.size else np.searchsorted(held, take)
            found.append((int(take[0]), value, take, keep))
        # pieces in neuron order: contiguous owners (a vertical split) then concatenate
        # straight into order, with no permutation afterwards
        found.sort(key=lambda f: f[0])
        parts, order_parts = [], []
        for _, value, take, keep in found:
            if keep is not None:
                value = self.gather(value, keep, space.axis, name, device)
            else:
                self.unit.reads.append(value)
            parts.append(value)
            order_parts.append(take)
        order = np.concatenate(order_parts) if order_parts else np.zeros(0, np.int64)
        if not np.array_equal(np.sort(order), wanted):
            raise RuntimeError(f"neurons of {name!r} needed on device {device} never arrive")
        dtype = self.source.dtype(name)
        if len(parts) > 1:
            shape = self.shape_of(name, space.axis, len(order))
            value = self.node(
                "Concat",
                parts,
                [self.ir.AttrInt64("axis", space.axis)],
                base=f"{name}@{device}",
                dtype=dtype,
                shape=shape,
            )
        else:
            value = parts[0]
        if ordered and not np.array_equal(order, wanted):
            perm = np.argsort(order, kind="stable")
            value = self.gather(value, perm, space.axis, name, device)
            order = wanted
        self.fetched[key] = (value, order)
        return value, order

    def gather(self, value, positions: np.ndarray, axis: int, name: str, device: int):
        """The elements ``positions`` of ``value`` along ``axis``: a Slice when they are a
        contiguous run (a block copy in onnxruntime), else a Gather (element by element)."""
        positions = np.asarray(positions, dtype=np.int64)
        shape = self.shape_of(name, axis, len(positions))
        dtype = self.source.dtype(name)
        base = f"{name}@{device}"
        first = int(positions[0]) if positions.size else 0
        if positions.size and np.array_equal(positions, np.arange(first, first + positions.size)):
            bounds = (("starts", first), ("ends", first + positions.size), ("axes", axis))
            if self.graph_opset() < 10:  # Slice-1: bounds are attributes
                attrs = [self.ir.AttrInt64s(what, [v]) for what, v in bounds]
                return self.node("Slice", [value], attrs, base=base, dtype=dtype, shape=shape)
            inputs = [self.const(np.array([v], np.int64), f"{base}.{what}") for what, v in bounds]
            return self.node("Slice", [value, *inputs], base=base, dtype=dtype, shape=shape)
        idx = self.const(positions, f"{base}.idx")
        attrs = [self.ir.AttrInt64("axis", axis)]
        return self.node("Gather", [value, idx], attrs, base=base, dtype=dtype, shape=shape)

    # -- cloning the model's nodes --------------------------------------------------------
    def clone(self, layer, mapping: dict[Any, Any], device: int):
        """Clone ``layer``'s nodes with ``mapping`` (model value -> new value) completed by
        copies of the model constants they read (in bodies too)."""
        from onnx_ir._cloner import Cloner

        main = self.source.model.graph
        value_map = dict(mapping)
        for node in layer.nodes:
            for v in _reads(node, main, self.source.values):
                if v in value_map:
                    continue
                if v.name in self.graph.weights or v.is_initializer():
                    value_map[v] = self.model_const(v, device)
                elif any(v is o for n in layer.nodes for o in n.outputs):
                    continue
                else:
                    raise RuntimeError(f"layer {layer.name!r} reads {v.name!r}, not mapped")
        # what the unit reads: taken before cloning, which adds the clones' own values
        self.unit.reads.extend(value_map.values())
        cloner = Cloner(attr_map={}, value_map=value_map, metadata_props={})
        self.add_nodes([cloner.clone_node(n) for n in layer.nodes])
        return {o.name: value_map[o] for n in layer.nodes for o in n.outputs if o.name}


def _reads(node, main, values) -> list:
    """Model values ``node`` reads: its inputs and the outer-scope values of its bodies."""
    import onnx_ir as ir

    out = [v for v in node.inputs if v is not None]
    for attr in node.attributes.values():
        graphs = []
        if attr.type == ir.AttributeType.GRAPH:
            graphs = [attr.as_graph()]
        elif attr.type == ir.AttributeType.GRAPHS:
            graphs = list(attr.as_graphs())
        for g in graphs:
            for inner in ir.traversal.RecursiveGraphIterator(g):
                for v in inner.inputs:
                    if v is not None and v.name in values and values[v.name] is v:
                        out.append(v)
    return list(dict.fromkeys(out))
