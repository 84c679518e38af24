"""Neuron placement export: each device computes only its neurons of every split layer.

GraphDNN thesis / RePurpose style intra-layer split. For a splittable layer (a dense
MatMul/Gemm or a group-1 Conv with a constant weight) a device holds the weight columns
(output channels) of its neurons, restricted to the rows (input channels) that have a
non-zero synapse into one of them, and receives from other devices exactly those
activations. A neuron-wise layer (activation, batch norm, pooling, same-shape elementwise)
runs on each device over its own neurons, its per-neuron constants sliced. Any other layer
runs whole on its device with its inputs gathered. Every device's work is a sequence of
*units* (its part of one layer); :mod:`._staging` cuts them into sub-models.

Volume convention (DESIGN.md): a neuron's activation is sent once to each other device
that has a consumer of it; a device receives, per producing device and tensor, one piece
holding every element it needs. Model inputs arrive split as the plan says; outputs stay
where they are computed (the runtime gathers them, outside the volume).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnpart._plan import Plan
from dnnpart.exporters._manifest import Piece, Split, Stage, Transfer
from dnnpart.exporters._neuron_build import Builder
from dnnpart.exporters._neuron_units import (
    follow_layer,
    rows_for,
    split_layer,
    synapses,
    whole_layer,
)
from dnnpart.exporters._source import Source, canonical_initializers
from dnnpart.exporters._staging import assign_stages
from dnnpart.problem import FOLLOW, SPLIT, PlacedLayout, neuron_layout

__all__ = ["export_neurons"]


def export_neurons(source: Source, plan: Plan) -> Split:
    """Cut ``source`` by the plan's neuron placement (see the module docstring)."""
    numbering = neuron_layout(source.graph)
    numbering.check_plan(plan.groups, plan.offsets)
    layout = numbering.place(plan.labels, plan.k)
    b = Builder(source, layout)
    graph = source.graph
    syn: dict[int, Any] = {}  # synapse matrices, computed once
    needs = _needs(layout, syn)
    # model inputs arrive split as the plan says
    for t in graph.inputs:
        space = layout.spaces[t.name]
        dtype = source.dtype(t.name)
        if space.axis is None:
            d = int(layout.owners(space)[0])
            v = b.ir.Value(name=t.name, type=b.ir.TensorType(dtype), shape=source.shape(t.name))
            b.local[d][t.name] = (v, None)
            b.inputs.append(Piece(t.name, d, t.name))
            continue
        for d in range(layout.k):
            own = layout.own(space, d)
            if own.size:
                shape = b.shape_of(t.name, space.axis, own.size)
                v = b.new_value(f"{t.name}@{d}", dtype, shape)
                b.local[d][t.name] = (v, own)
                b.inputs.append(Piece(t.name, d, v.name, space.axis, own.tolist()))
    for name in [t.name for t in graph.inputs]:
        _send(b, name, needs)
    for i, layer in enumerate(graph.layers):
        act = layout.action[i]
        if act == SPLIT:
            split_layer(b, layer, syn.get(i))
        elif act == FOLLOW:
            follow_layer(b, layer)
        else:
            whole_layer(b, layer, layout.layer_device(i))
        for t in layer.outputs:
            _send(b, t.name, needs)
    return _finish(b, plan)


def _needs(layout: PlacedLayout, syn_cache: dict) -> dict[tuple[str, int], np.ndarray | None]:
    """(tensor, device) -> neurons that device reads of it (None: the whole tensor).

    Fills ``syn_cache`` (layer index -> synapse matrix) on the way.
    """
    graph = layout.graph
    need: dict[tuple[str, int], Any] = {}

    def add(name: str, device: int, idx) -> None:
        space = layout.spaces.get(name)
        if space is None:
            return
        if space.whole or space.axis is None or idx is None:
            need[(name, device)] = None
            return
        old = need.get((name, device), np.zeros(0, np.int64))
        need[(name, device)] = None if old is None else np.union1d(old, idx)

    for i, layer in enumerate(graph.layers):
        act = layout.action[i]
        if act == SPLIT:
            src = layer.inputs[0].name
            space = layout.spaces[src]
            syn = None if space.whole else synapses(layer, space)
            if syn is not None:
                syn_cache[i] = syn
            out_space = layout.spaces[layer.outputs[0].name]
            for d in range(layout.k):
                mine = layout.own(out_space, d)
                if not mine.size:
                    continue
                if syn is None:
                    add(src, d, None)
                else:
                    add(src, d, rows_for(syn, mine, layout.own(space, d)))
        elif act == FOLLOW:
            names = [t.name for t in layer.inputs if t.name in layout.spaces]
            lead = layout.spaces[names[0]]
            for d in range(layout.k):
                mine = layout.own(lead, d)
                if mine.size:
                    for name in names[1:]:
                        add(name, d, mine)
        else:
            d = layout.layer_device(i)
            for name in dict.fromkeys([t.name for t in layer.inputs] + list(layer.captured)):
                add(
                    name, d, np.arange(layout.spaces[name].count) if name in layout.spaces else None
                )
    return need


def _send(b: Builder, name: str, needs) -> None:
    """Create the pieces of tensor ``name`` that other devices need."""
    layout = b.layout
    space = layout.spaces.get(name)
    if space is None or not any((name, d) in needs for d in range(layout.k)):
        return
    info = b.graph.tensors.get(name)
    elems = info.num_elements if info is not None else None
    bits = info.bits if info is not None else None
    dtype = b.source.dtype(name)
    for d in range(layout.k):
        if (name, d) not in needs:
            continue
        want = needs[(name, d)]
        if space.whole or space.axis is None:
            src = layout.home(space) if space.whole else int(layout.owners(space)[0])
            if src == d:
                continue
            sender = b.local[src][name][0]
            piece = b.ir.Value(name=name, type=b.ir.TensorType(dtype), shape=b.source.shape(name))
            nbytes = (elems * bits + 7) // 8 if elems is not None and bits else None
            b.pieces[(name, src, d)] = (piece, None)
            b.transfers.append((sender, piece, src, d, name, None))
            b.sent_from[id(piece)] = (sender, nbytes)
            continue
        if want is None:
            want = np.arange(space.count)
        for src in range(layout.k):
            if src == d or name not in b.local[src]:
                continue
            sender, held = b.local[src][name]
            idx = np.intersect1d(held, want)
            if not idx.size:
                continue
            shape = b.shape_of(name, space.axis, idx.size)
            piece = b.new_value(f"{name}@{src}>{d}", dtype, shape)
            nbytes = None
            if elems is not None and bits:
                nbytes = (elems // space.count * idx.size * bits + 7) // 8
            b.pieces[(name, src, d)] = (piece, idx)
            b.transfers.append((sender, piece, src, d, name, idx))
            b.sent_from[id(piece)] = (sender, nbytes)


def _finish(b: Builder, plan: Plan) -> Split:
    """Stages, transfers, inputs and outputs from the units built."""
    stage_of, order = assign_stages([unit.device for unit in b.units], _unit_deps(b))
    transfers = _transfers(b, stage_of, order)
    outputs = _outputs(b)
    leaving = _leaving(b, stage_of)
    out_names = {(p.device, p.value) for p in outputs}
    members: dict[tuple[int, int], list[int]] = {}
    for u in range(len(b.units)):
        members.setdefault(stage_of[u], []).append(u)
    stages = [_stage(b, key, members[key], leaving, out_names) for key in order]
    return Split("neuron", plan.k, stages, order, transfers, b.inputs, outputs)


def _unit_deps(b: Builder) -> list[list[int]]:
    """Per unit, the units whose values it reads (directly or through a transfer)."""
    deps: list[list[int]] = []
    for u, unit in enumerate(b.units):
        mine: set[int] = set()
        for v in unit.reads:
            p = b.producer.get(id(v))
            if p is None and id(v) in b.sent_from:
                p = b.producer.get(id(b.sent_from[id(v)][0]))
            if p is not None and p != u:
                mine.add(p)
        deps.append(sorted(mine))
    return deps


def _transfers(b: Builder, stage_of, order) -> list[Transfer]:
    """The manifest's transfers, in execution order (model inputs first)."""
    transfers = []
    for sender, piece, src, dst, name, idx in b.transfers:
        p = b.producer.get(id(sender))
        held = b.local[src][name][1]
        positions = None if idx is None else np.searchsorted(held, idx).tolist()
        transfers.append(
            Transfer(
                src,
                dst,
                name,
                sender.name,
                piece.name,
                stage_of[p] if p is not None else None,
                b.sent_from[id(piece)][1],
                b.layout.spaces[name].axis if idx is not None else None,
                idx.tolist() if idx is not None else None,
                positions,
            )
        )
    rank = {key: i for i, key in enumerate(order)}
    transfers.sort(key=lambda t: (rank[t.after] if t.after else -1, t.src, t.dst))
    return transfers


def _outputs(b: Builder) -> list[Piece]:
    """Where each model output leaves: the devices holding (slices of) it."""
    outputs: list[Piece] = []
    for t in b.graph.outputs:
        space = b.layout.spaces.get(t.name)
        for d in range(b.layout.k):
            have = b.local[d].get(t.name)
            if have is None or (space is not None and space.whole and b.layout.home(space) != d):
                continue
            value, held = have
            if held is None or space.axis is None:
                outputs.append(Piece(t.name, d, value.name))
            else:
                outputs.append(Piece(t.name, d, value.name, space.axis, held.tolist()))
    return outputs


def _leaving(b: Builder, stage_of) -> set[int]:
    """Ids of the values that leave the stage producing them (read elsewhere, or sent)."""
    leaving: dict[int, None] = {}
    for u, unit in enumerate(b.units):
        for v in unit.reads:
            p = b.producer.get(id(v))
            if p is not None and stage_of[p] != stage_of[u]:
                leaving[id(v)] = None
    for sender, *_ in b.transfers:
        leaving[id(sender)] = None
    return set(leaving)


def _stage(b: Builder, key, members: list[int], leaving: set[int], out_names) -> Stage:
    """The sub-model of one (device, stage): its units' nodes, constants and boundary."""
    units = b.units
    produced: dict[int, Any] = {}
    for u in members:
        for node in units[u].nodes:
            for v in node.outputs:
                produced[id(v)] = v
    consts = {id(c): c for u in members for c in units[u].consts}
    inputs: dict[int, Any] = {}
    for u in members:
        for v in units[u].reads:
            if id(v) not in produced and id(v) not in consts:
                inputs[id(v)] = v
    outs = [v for v in produced.values() if id(v) in leaving or (key[0], v.name) in out_names]
    nodes = [node for u in members for node in units[u].nodes]
    if not outs:  # dead work (e.g. neurons whose synapses were all pruned): still run
        outs = [v for v in nodes[-1].outputs if v.name][:1]
    view = b.ir.GraphView(
        list(inputs.values()),
        outs,
        nodes=nodes,
        initializers=sorted(consts.values(), key=lambda c: c.name),
        opset_imports=dict(b.source.model.graph.opset_imports),
        name=f"device{key[0]}_stage{key[1]}",
    )
    g = view.clone()
    _drop_unused_initializers(g)
    canonical_initializers(g, b.source)
    return Stage(
        device=key[0],
        index=key[1],
        graph=g,
        inputs=[v.name for v in inputs.values()],
        outputs=[v.name for v in outs],
        layers=list(dict.fromkeys(units[u].layer for u in members)),
        macs=sum(units[u].macs for u in members),
    )


def _drop_unused_initializers(g) -> None:
    import onnx_ir as ir

    used = set()
    for node in ir.traversal.RecursiveGraphIterator(g):
        used.update(id(v) for v in node.inputs if v is not None)
    for name in [n for n, v in g.initializers.items() if id(v) not in used]:
        g.initializers.pop(name)
