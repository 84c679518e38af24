"""Partitioning problems from a LayerGraph, at neuron and at layer granularity.

Neuron granularity (GraphDNN thesis, RePurpose): vertices are the model's input features
and the output neurons of splittable layers (dense: output features; conv: output
channels); a synapse is a non-zero weight. Neuron-wise ops (activations, bias, batch norm,
pooling, same-shape elementwise) follow the split of their input and add no vertex: their
output neuron ``c`` lives where input neuron ``c`` lives (a second input's neuron ``c`` is
sent there). Every other layer is placed whole: one vertex that needs its whole input.

Layer granularity (pipeline tools, Tarnawski et al.): vertices are the model's input
tensors and the layers; edges carry tensor bytes; one balanced group holds every layer.

Both record :class:`~dnnpart.partitioners.Nets`, what the exporter really sends: one net
per tensor (layer granularity) or per (tensor, neuron) -- a pooled channel sends its
pooled size, and a neuron read through two tensors (a residual) is two messages.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dnnpart.errors import ResourceLimitError, UnsupportedModelError, UsageError
from dnnpart.graph import Layer, LayerGraph, TensorInfo
from dnnpart.problem._layout import FOLLOW, SPLIT, Space, elements, neuron_layout
from dnnpart.problem._problem import Nets, Problem
from dnnpart.problem._profile import Profile

__all__ = ["neuron_problem", "layer_problem", "build_problem"]


def build_problem(graph: LayerGraph, granularity: str = "neuron", **kwargs) -> Problem:
    """:func:`neuron_problem` or :func:`layer_problem` by name."""
    if not graph.layers:
        raise UnsupportedModelError("the model has no operators: there is nothing to split")
    if granularity == "neuron":
        return neuron_problem(graph, **kwargs)
    if granularity == "layer":
        return layer_problem(graph, **kwargs)
    raise UsageError(f"granularity must be 'neuron' or 'layer', got {granularity!r}")


def _counts(values: np.ndarray) -> np.ndarray:
    """Element or byte counts as int64, refusing any that would not fit (exit code 5)."""
    values = np.rint(values)
    if values.size and not (np.all(np.isfinite(values)) and values.max() < 2.0**62):
        raise ResourceLimitError("the model's sizes overflow 64-bit counts")
    return values.astype(np.int64)


def _bytes_per_element(t: TensorInfo) -> float:
    return (t.bits or 32) / 8


class _NeuronBuilder:
    def __init__(self, graph: LayerGraph, spaces: dict[str, Space] | None = None):
        self.graph = graph
        self.spaces: dict[str, Space] = dict(spaces or {})
        self.offsets = [0]
        self.names: list[str] = []
        self.balanced: list[bool] = []
        self.weight: list[np.ndarray] = []
        self.elements: list[np.ndarray] = []
        self.bytes: list[np.ndarray] = []
        self.params: list[np.ndarray] = []
        self.traffic: list[np.ndarray] = []
        self.more_traffic: list[tuple[np.ndarray, float]] = []  # (vertices, bytes each)
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        # nets: tensor -> first net id; per net its source, elements, bytes; pins
        self.first_net: dict[str, int] = {}
        self.num_nets = 0
        self.net_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pin_rows: list[np.ndarray] = []
        self.pin_cols: list[np.ndarray] = []

    def nets_of(self, name: str) -> int | None:
        """First net id of tensor ``name`` (one net per neuron of its space), made on first
        use; None when the tensor has no vertex (a constant)."""
        if name in self.first_net:
            return self.first_net[name]
        space = self.spaces.get(name)
        if space is None:
            return None
        t = self.graph.tensors.get(name)
        count = space.count
        if t is None:
            per, nbytes = space.per_neuron, space.per_neuron * 4
        elif space.whole:
            per = elements(t)
            nbytes = t.nbytes or per * 4
        else:
            per = max(1, elements(t) // count)
            nbytes = per * _bytes_per_element(t)
        start = self.num_nets
        self.first_net[name] = start
        self.num_nets += count
        self.net_parts.append(
            (
                space.offset + np.arange(count, dtype=np.int64),
                np.full(count, per, dtype=np.float64),
                np.full(count, nbytes, dtype=np.float64),
            )
        )
        return start

    def pins(self, name: str, neurons, consumers) -> None:
        """Vertices ``consumers`` read neurons ``neurons`` of tensor ``name`` (pairwise)."""
        start = self.nets_of(name)
        if start is None:
            return
        self.pin_rows.append(start + np.asarray(neurons, dtype=np.int64))
        self.pin_cols.append(np.asarray(consumers, dtype=np.int64))

    def layer_pin(self, name: str, source: int, t: TensorInfo | None, consumer: int) -> None:
        """Layer granularity: vertex ``consumer`` reads the whole tensor ``name``."""
        if name not in self.first_net:
            self.first_net[name] = self.num_nets
            self.num_nets += 1
            size = elements(t) if t is not None else 1
            nbytes = (t.nbytes or size * 4) if t is not None else 4
            self.net_parts.append(
                (np.array([source]), np.array([size], float), np.array([nbytes], float))
            )
        self.pin_rows.append(np.array([self.first_net[name]]))
        self.pin_cols.append(np.array([consumer]))

    def group(self, name, count, *, balanced, weight, elements, nbytes, params, traffic=0.0):
        start = self.offsets[-1]
        self.offsets.append(start + count)
        self.names.append(name)
        self.balanced.append(balanced)
        for store, value in (
            (self.weight, weight),
            (self.elements, elements),
            (self.bytes, nbytes),
            (self.params, params),
            (self.traffic, traffic),
        ):
            store.append(np.broadcast_to(np.asarray(value, dtype=np.float64), (count,)).copy())
        return start

    def edges(self, src, dst, val) -> None:
        self.rows.append(np.asarray(src, dtype=np.int64))
        self.cols.append(np.asarray(dst, dtype=np.int64))
        self.vals.append(np.asarray(val, dtype=np.float64))

    def add_input(self, t: TensorInfo) -> None:
        space = self.spaces[t.name]
        self.group(
            f"input:{t.name}",
            space.count,
            balanced=False,
            weight=0.0,
            elements=space.per_neuron,
            nbytes=space.per_neuron * _bytes_per_element(t),
            params=0,
        )

    def add_whole(self, layer: Layer) -> None:
        out_elems = sum(elements(t) for t in layer.outputs)
        out_bytes = sum(t.nbytes or elements(t) * 4 for t in layer.outputs)
        v = self.group(
            layer.name,
            1,
            balanced=False,
            weight=float(layer.macs),
            elements=out_elems,
            nbytes=out_bytes,
            params=layer.param_bytes,
            traffic=layer.memory_traffic,
        )
        for name in dict.fromkeys([t.name for t in layer.inputs] + list(layer.captured)):
            space = self.spaces.get(name)
            if space is None:
                continue
            srcs = np.arange(space.offset, space.offset + space.count)
            self.edges(srcs, np.full(len(srcs), v), np.full(len(srcs), float(space.per_neuron)))
            self.pins(name, np.arange(space.count), np.full(space.count, v))

    def add_splittable(self, layer: Layer) -> None:
        neurons = int(layer.neurons)
        space = self.spaces.get(layer.inputs[0].name) if layer.inputs else None
        if space is None or space.whole:  # only the count of synapses into each neuron matters
            syn = None
            in_count = layer.fan_in_counts().astype(np.float64)
        else:
            syn = layer.synapse_matrix().tocoo()
            in_count = np.bincount(syn.col, weights=syn.data, minlength=neurons)
        out = layer.outputs[0]
        per = max(1, elements(out) // neurons)
        macs = in_count * per
        off = self.group(
            layer.name,
            neurons,
            balanced=True,
            weight=macs,
            elements=per,
            nbytes=per * _bytes_per_element(out),
            params=layer.param_bytes / neurons,
            traffic=layer.memory_traffic / neurons,
        )
        src_name = layer.inputs[0].name if layer.inputs else None
        if space is not None:
            if syn is None:
                self.edges(np.full(neurons, space.offset), off + np.arange(neurons), in_count)
                self.pins(src_name, np.zeros(neurons, np.int64), off + np.arange(neurons))
            else:
                # features of the input map onto its neurons (equal blocks when a flattened
                # conv output feeds a dense layer)
                fan_in = syn.shape[0]
                ratio = max(1, fan_in // space.count) if fan_in % space.count == 0 else None
                if ratio is None:
                    srcs = np.arange(space.offset, space.offset + space.count)
                    self.edges(
                        np.repeat(srcs, neurons),
                        np.tile(off + np.arange(neurons), len(srcs)),
                        np.full(len(srcs) * neurons, 1.0),
                    )
                    self.pins(
                        src_name,
                        np.repeat(np.arange(space.count), neurons),
                        np.tile(off + np.arange(neurons), space.count),
                    )
                else:
                    m = sp.coo_array(
                        (syn.data, (syn.row // ratio, syn.col)), shape=(space.count, neurons)
                    ).tocsr()
                    m.sum_duplicates()
                    c = m.tocoo()
                    self.edges(space.offset + c.row, off + c.col, c.data)
                    self.pins(src_name, c.row, off + c.col)

    def add_follow(self, layer: Layer) -> None:
        """A neuron-wise layer follows its lead input: neuron ``c`` of every other input
        is read where neuron ``c`` of the lead lives."""
        names = [t.name for t in layer.inputs if t.name in self.spaces]
        lead = self.spaces[names[0]]
        self.more_traffic.append((lead.vertices, layer.memory_traffic / lead.count))
        for name in names[1:]:
            other = self.spaces[name]
            if other.offset != lead.offset:
                self.edges(other.vertices, lead.vertices, np.ones(lead.count))
            self.pins(name, np.arange(lead.count), lead.vertices)


def neuron_problem(
    graph: LayerGraph,
    k: int = 2,
    *,
    targets=None,
    imbalance: float = 0.03,
    seed: int = 0,
    devices=None,
) -> Problem:
    """The neuron-level problem of ``graph`` (see the module docstring)."""
    layout = neuron_layout(graph)
    b = _NeuronBuilder(graph, layout.spaces)
    for t in graph.inputs:
        b.add_input(t)
    for layer, action in zip(graph.layers, layout.action, strict=True):
        if action == SPLIT:
            b.add_splittable(layer)
        elif action == FOLLOW:
            b.add_follow(layer)
        else:
            b.add_whole(layer)
    if tuple(b.offsets) != layout.offsets:  # pragma: no cover - one numbering, built twice
        raise RuntimeError("neuron problem groups do not follow the neuron layout")
    return _finish(b, graph, k, targets, imbalance, seed, "neuron", devices=devices)


def layer_problem(
    graph: LayerGraph,
    k: int = 2,
    *,
    targets=None,
    imbalance: float = 0.03,
    seed: int = 0,
    devices=None,
) -> Problem:
    """The layer-level problem of ``graph``: one vertex per layer (after the inputs)."""
    b = _NeuronBuilder(graph)
    for t in graph.inputs:
        off = b.group(
            f"input:{t.name}",
            1,
            balanced=False,
            weight=0.0,
            elements=elements(t),
            nbytes=t.nbytes or elements(t) * 4,
            params=0,
        )
        b.spaces[t.name] = Space(off, 1, elements(t), True, None)
    first = b.offsets[-1]
    n_layers = len(graph.layers)
    profile = None if graph.profile is None else Profile(graph.profile, graph.profile_order)
    if profile is not None:  # profiled graphs: accelerator seconds, not MACs
        work = profile.graph.fpga_time[profile.order].astype(float).tolist()
    else:
        work = [float(layer.macs) for layer in graph.layers]
    # only outputs someone reads (or the model returns) travel: e.g. Dropout's mask does not
    model_outputs = {t.name for t in graph.outputs}
    sent = [
        [t for t in layer.outputs if t.name in graph.consumers or t.name in model_outputs]
        for layer in graph.layers
    ]
    out_elems = [sum(elements(t) for t in ts) for ts in sent]
    out_bytes = [sum(t.nbytes or elements(t) * 4 for t in ts) for ts in sent]
    b.group(
        "layers",
        n_layers,
        balanced=True,
        weight=work,
        elements=out_elems,
        nbytes=out_bytes,
        params=[layer.param_bytes for layer in graph.layers],
        traffic=[layer.memory_traffic for layer in graph.layers],
    )
    src, dst, val = [], [], []
    for i, layer in enumerate(graph.layers):
        for name in dict.fromkeys([t.name for t in layer.inputs] + list(layer.captured)):
            if name in graph.producer:
                u = first + graph.producer[name]
            elif name in b.spaces:
                u = b.spaces[name].offset
            else:
                continue
            t = graph.tensors.get(name)
            src.append(u)
            dst.append(first + i)
            val.append(float(t.nbytes or 4) if t is not None else 4.0)
            b.layer_pin(name, u, t, first + i)
    b.edges(src, dst, val)
    unit = "seconds" if profile is not None else "macs"
    return _finish(
        b, graph, k, targets, imbalance, seed, "layer", devices=devices, unit=unit, profile=profile
    )


def _finish(
    b: _NeuronBuilder,
    graph,
    k,
    targets,
    imbalance,
    seed,
    granularity,
    *,
    devices,
    unit="macs",
    profile=None,
) -> Problem:
    n = b.offsets[-1]
    if b.rows:
        rows, cols, vals = (np.concatenate(x) for x in (b.rows, b.cols, b.vals))
    else:
        rows = cols = np.zeros(0, np.int64)
        vals = np.zeros(0)
    keep = rows != cols
    synapses = sp.csr_array((vals[keep], (rows[keep], cols[keep])), shape=(n, n))
    synapses.sum_duplicates()
    cat = np.concatenate
    nets = None
    if b.net_parts:
        pin_rows = cat(b.pin_rows) if b.pin_rows else np.zeros(0, np.int64)
        pin_cols = cat(b.pin_cols) if b.pin_cols else np.zeros(0, np.int64)
        pins = sp.csr_array(
            (np.ones(len(pin_rows), dtype=np.int8), (pin_rows, pin_cols)), shape=(b.num_nets, n)
        )
        pins.sum_duplicates()
        pins.data[:] = 1  # structure only: who reads which net
        nets = Nets(
            pins=pins,
            source=cat([p[0] for p in b.net_parts]),
            elements=_counts(cat([p[1] for p in b.net_parts])),
            nbytes=_counts(cat([p[2] for p in b.net_parts])),
            tensors=dict(b.first_net),
        )
    traffic = cat(b.traffic) if b.traffic else np.zeros(0)
    for vertices, each in b.more_traffic:  # layers that follow a split add no vertex
        np.add.at(traffic, vertices, each)
    return Problem(
        synapses=synapses,
        vertex_weight=cat(b.weight) if b.weight else np.zeros(0),
        layer_offsets=np.asarray(b.offsets),
        k=k,
        targets=targets,
        imbalance=imbalance,
        seed=seed,
        granularity=granularity,
        balanced=np.asarray(b.balanced, dtype=bool),
        activation_elements=_counts(cat(b.elements)),
        activation_bytes=_counts(cat(b.bytes)),
        param_bytes=_counts(cat(b.params)),
        layer_names=tuple(b.names),
        graph=graph,
        nets=nets,
        devices=devices,
        weight_unit=unit,
        profile=profile,
        memory_traffic=traffic,
    )
