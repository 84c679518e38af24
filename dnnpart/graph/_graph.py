"""The layer graph: a DAG of layers in topological order."""

from __future__ import annotations

from collections import Counter
from typing import Any

from dnnpart.graph._layer import Layer
from dnnpart.graph._tensor import TensorInfo, Weight

__all__ = ["LayerGraph"]


class LayerGraph:
    """A model as a partitioning problem: layers (in topological order) joined by tensors.

    Parameters
    ----------
    layers : list of Layer
        In topological order: every layer comes after the producers of its inputs.
    inputs, outputs : list of TensorInfo
        The model's inputs (not constants) and outputs.
    weights : dict of str to Weight
        Every constant of the model, by name (including intermediates such as the shape
        input of a ``ConstantOfShape``); :meth:`used_weights` are those layers read.
    warnings : list of str
        What the importer imported only approximately.
    model : onnx_ir.Model or None
        The model the graph came from, for exporters.
    path : str or None
        The file it was read from.
    input_shapes : dict of str to tuple of int, optional
        The concrete input shapes every shape, cost and byte count is for.
    """

    def __init__(
        self,
        layers: list[Layer],
        inputs: list[TensorInfo],
        outputs: list[TensorInfo],
        weights: dict[str, Weight] | None = None,
        warnings: list[str] | None = None,
        model: Any = None,
        path: str | None = None,
        input_shapes: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        self.layers = list(layers)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.weights = dict(weights or {})
        self.warnings = list(warnings or [])
        self.model = model
        self.path = path
        self.input_shapes = dict(input_shapes or {})
        self.profile = None  # a ProfiledGraph, for graphs imported from profiles
        self.profile_order = None  # layer index -> profiled node index
        self._index = {id(layer): i for i, layer in enumerate(self.layers)}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        self.tensors: dict[str, TensorInfo] = {t.name: t for t in self.inputs}
        for i, layer in enumerate(self.layers):
            for t in layer.outputs:
                self.producer[t.name] = i
                self.tensors[t.name] = t
        for i, layer in enumerate(self.layers):
            for name in dict.fromkeys([t.name for t in layer.inputs] + list(layer.captured)):
                self.consumers.setdefault(name, []).append(i)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        return f"LayerGraph({len(self.layers)} layers, {self.params} params, {self.macs} MACs)"

    def index(self, layer: Layer) -> int:
        return self._index[id(layer)]

    def with_layers(self, layers: list[Layer]) -> LayerGraph:
        """The same model (inputs, outputs, weights, file) with ``layers`` in place of its
        own, e.g. layers whose weights a compression pass replaced."""
        return LayerGraph(
            layers,
            self.inputs,
            self.outputs,
            weights=self.weights,
            warnings=self.warnings,
            model=self.model,
            path=self.path,
            input_shapes=self.input_shapes,
        )

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def predecessors(self, i: int) -> list[int]:
        """Layers whose outputs layer ``i`` reads (in order, without repeats)."""
        layer = self.layers[i]
        names = [t.name for t in layer.inputs] + list(layer.captured)
        return list(dict.fromkeys(self.producer[n] for n in names if n in self.producer))

    def successors(self, i: int) -> list[int]:
        out: dict[int, None] = {}
        for t in self.layers[i].outputs:
            out.update(dict.fromkeys(self.consumers.get(t.name, [])))
        return list(out)

    def edges(self) -> list[tuple[int, int, str]]:
        """``(producer, consumer, tensor)`` for every tensor passed between layers."""
        out = []
        for name, src in self.producer.items():
            for dst in self.consumers.get(name, []):
                out.append((src, dst, name))
        return out

    # -- totals ------------------------------------------------------------------
    def used_weights(self) -> list[Weight]:
        """Each weight some layer reads, once (intermediate constants folded away are not)."""
        seen: dict[int, Weight] = {}
        for layer in self.layers:
            for w in layer.weights.values():
                seen.setdefault(id(w), w)
        return list(seen.values())

    @property
    def params(self) -> int:
        return sum(w.size for w in self.used_weights())

    @property
    def param_bytes(self) -> int:
        return sum(w.nbytes for w in self.used_weights())

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(layer.activation_bytes or 0 for layer in self.layers)

    @property
    def splittable_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.splittable]

    def op_histogram(self) -> dict[str, int]:
        return dict(sorted(Counter(layer.op_type for layer in self.layers).items()))

    def summary(self, *, synapses: bool = True) -> dict[str, Any]:
        """The document ``dnnpart import --json`` prints (see DESIGN.md, "Contracts")."""
        split = []
        for layer in self.splittable_layers:
            entry: dict[str, Any] = {
                "name": layer.name,
                "op": layer.op_type,
                "neurons": layer.neurons,
            }
            if synapses:
                count = layer.synapse_count()
                size = layer.weights["weight"].size
                entry["synapses"] = count
                entry["density"] = count / size if size else 0.0
            split.append(entry)
        return {
            "model": self.path,
            "layers": len(self.layers),
            "params": self.params,
            "param_bytes": self.param_bytes,
            "macs": self.macs,
            "activation_bytes": self.activation_bytes,
            "ops": self.op_histogram(),
            "inputs": [_tensor_dict(t) for t in self.inputs],
            "outputs": [_tensor_dict(t) for t in self.outputs],
            "splittable": split,
            "warnings": list(self.warnings),
        }

    def to_networkx(self):
        """The layer DAG as a :class:`networkx.MultiDiGraph` (for small graphs and views)."""
        import networkx as nx

        g = nx.MultiDiGraph()
        for i, layer in enumerate(self.layers):
            g.add_node(i, name=layer.name, op=layer.op_type, macs=layer.macs)
        for src, dst, name in self.edges():
            g.add_edge(src, dst, tensor=name, bytes=self.tensors[name].nbytes)
        return g


def _tensor_dict(t: TensorInfo) -> dict[str, Any]:
    return {
        "name": t.name,
        "shape": list(t.shape) if t.shape is not None else None,
        "dtype": t.dtype,
    }
