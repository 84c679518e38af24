"""The part of one layer that one device computes, in a neuron placement.

Dense (MatMul/Gemm) and convolution layers keep the weight columns (output channels) of
the device's neurons and only the rows (input channels) with a synapse into them; grouped
convolutions run as one grouped Conv over whole groups or one Conv per group touched.
Neuron-wise layers run over the device's own neurons with per-neuron constants sliced;
other layers run whole with their inputs gathered.
"""

from __future__ import annotations

import numpy as np

from dnnpart.errors import UnsupportedModelError
from dnnpart.exporters._neuron_build import Builder
from dnnpart.graph import LayerKind
from dnnpart.problem import Space

__all__ = ["split_layer", "follow_layer", "whole_layer", "synapses", "rows_for"]

# Per-channel constants of these ops are 1-D along the channel axis, not broadcast.
_CHANNEL_PARAMS = frozenset({"BatchNormalization", "InstanceNormalization"})


def _slice_const(arr: np.ndarray, op: str, axis: int, rank: int, count: int, own: np.ndarray):
    """A neuron-wise op's constant restricted to the neurons ``own`` (or as it is when it
    broadcasts along the neuron axis)."""
    if op in _CHANNEL_PARAMS and arr.ndim == 1:
        return arr[own] if arr.shape[0] == count else arr
    a = axis - (rank - arr.ndim)
    if a < 0 or arr.shape[a] == 1:
        return arr
    if arr.shape[a] == count:
        return np.take(arr, own, axis=a)
    raise UnsupportedModelError(
        f"{op}: a constant of shape {arr.shape} does not follow the neuron axis"
    )


def synapses(layer, space: Space):
    """Synapse matrix (input neurons x output neurons) of a splittable layer, CSC."""
    if layer.op_type == "Gemm" and layer.attributes.get("transA", 0):
        raise UnsupportedModelError(f"layer {layer.name!r}: Gemm with transA is not supported")
    syn = layer.synapse_matrix()
    if syn.shape[0] != space.count:
        raise UnsupportedModelError(
            f"layer {layer.name!r} reads {syn.shape[0]} features from a tensor of "
            f"{space.count} neurons (a flattened feature map); neuron export needs a Flatten "
            "layer placed whole before it"
        )
    return syn.tocsc()


def rows_for(syn, cols: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Input neurons with a synapse into any of ``cols``; never empty (a device whose
    neurons have no synapse at all still needs one input element for the batch shape:
    one of its own if it has any)."""
    sub = syn[:, cols]
    rows = np.unique(sub.indices[sub.data != 0]) if sub.nnz else np.zeros(0, np.int64)
    if rows.size == 0:
        rows = fallback[:1] if fallback.size else np.zeros(1, np.int64)
    return rows.astype(np.int64)


def split_layer(b: Builder, layer, syn=None) -> None:
    """Every device's part of splittable ``layer`` (``syn``: its synapse matrix, CSC, if
    already computed; None to compute it here when its input is neuron-split)."""
    layout = b.layout
    src = layer.inputs[0].name
    in_space = layout.spaces[src]
    out = layer.outputs[0].name
    space = layout.spaces[out]
    w = layer.weights["weight"]
    full = np.asarray(w.numpy())  # already pruned: the source graph is the pruned one
    bias = layer.weights.get("bias")
    bias_arr = bias.numpy() if bias is not None else None
    if syn is None and not in_space.whole:
        syn = synapses(layer, in_space)
    trans = layer.op_type == "Gemm" and bool(layer.attributes.get("transB", 0))
    for d in range(layout.k):
        mine = layout.own(space, d)
        if not mine.size:
            continue
        b.begin(d, layer.name)
        if int(layer.attributes.get("group", 1)) != 1:
            _grouped_conv_part(b, layer, d, mine, syn, full, bias_arr)
            continue
        by_row = trans or layer.kind == LayerKind.CONV  # weight rows are output neurons
        if syn is None:
            x, _ = b.fetch(src, d, None, ordered=True)
            order = np.arange(full.shape[1] if by_row else full.shape[0])
        else:
            rows = rows_for(syn, mine, layout.own(in_space, d))
            x, order = b.fetch(src, d, rows, ordered=False)
        if by_row:
            wsub = np.take(np.take(full, mine, axis=0), order, axis=1)
        else:
            wsub = np.take(np.take(full, order, axis=0), mine, axis=1)
        mapping = {b.source.value(src): x, b.source.value(w.name): b.const(wsub, f"{w.name}@{d}")}
        if bias is not None:
            if layer.kind == LayerKind.CONV:
                bsub = bias_arr[mine]
            else:
                bsub = (
                    bias_arr
                    if bias_arr.ndim == 0 or bias_arr.shape[-1] == 1
                    else np.take(bias_arr, mine, axis=-1)
                )
            mapping[b.source.value(bias.name)] = b.const(bsub, f"{bias.name}@{d}")
        outs = b.clone(layer, mapping, d)
        for v in outs.values():
            v.shape = None  # intermediate: let onnxruntime infer it
        final = outs[out]
        final.shape = b.shape_of(out, space.axis, mine.size)
        final.type = b.ir.TensorType(b.source.dtype(out))
        final.name = b.fresh(f"{out}@{d}")
        b.unit.macs = _macs(layer, wsub)
        b.local[d][out] = (final, mine)


def _grouped_conv_part(b: Builder, layer, d: int, mine, syn, full, bias_arr) -> None:
    """Device ``d``'s output channels ``mine`` of a grouped convolution.

    One grouped Conv when the device holds whole groups with all their inputs (the usual
    case of depthwise layers split along channels); otherwise one Conv per group it
    touches, each on the input channels with a synapse into it, concatenated.
    """
    ir = b.ir
    layout = b.layout
    node = layer.nodes[0]
    src, out = layer.inputs[0].name, layer.outputs[0].name
    in_space, space = layout.spaces[src], layout.spaces[out]
    group = int(layer.attributes["group"])
    c_out, cin_g = full.shape[0], full.shape[1]
    per_out = c_out // group
    if syn is None:
        x, _ = b.fetch(src, d, None, ordered=True)
        order = np.arange(cin_g * group)
    else:
        rows = rows_for(syn, mine, layout.own(in_space, d))
        x, order = b.fetch(src, d, rows, ordered=True)
    attrs = [a for a in node.attributes.values() if a.name != "group"]
    dtype = b.source.dtype(out)
    groups = np.unique(mine // per_out)
    whole = order.size == groups.size * cin_g and all(
        np.count_nonzero(mine // per_out == g) == per_out
        and np.count_nonzero((order >= g * cin_g) & (order < (g + 1) * cin_g)) == cin_g
        for g in groups
    )
    if whole:  # one grouped Conv over the device's groups, inputs in group order
        parts = [(mine, np.arange(order.size), full[mine], len(groups))]
    else:
        parts = []
        for g in groups:
            outs_g = mine[mine // per_out == g]
            pos = np.flatnonzero((order >= g * cin_g) & (order < (g + 1) * cin_g))
            if pos.size == 0:  # every synapse pruned: zero weights on any channel
                pos = np.zeros(1, np.int64)
                w = np.zeros((outs_g.size, 1, *full.shape[2:]), full.dtype)
            else:
                w = full[outs_g][:, order[pos] - g * cin_g]
            parts.append((outs_g, pos, w, 1))
    values, used = [], 0
    for outs_g, pos, w, n_groups in parts:
        xg = x if pos.size == order.size else b.gather(x, pos, 1, src, d)  # conv input channels
        inputs = [xg, b.const(w, f"{node.name}@{d}.w")]
        if bias_arr is not None:
            inputs.append(b.const(bias_arr[outs_g], f"{node.name}@{d}.b"))
        conv = ir.Node(
            "",
            "Conv",
            inputs,
            [*attrs, ir.AttrInt64("group", n_groups)],
            num_outputs=1,
            name=b.fresh(f"{node.name}@{d}"),
        )
        v = conv.outputs[0]
        v.name = b.fresh(f"{out}@{d}.g")
        v.type = ir.TensorType(dtype)
        v.shape = b.shape_of(out, space.axis, outs_g.size)
        b.add_nodes([conv])
        b.unit.reads.extend(inputs)
        values.append(v)
        used += w.size
    final = values[0]
    if len(values) > 1:
        final = b.node(
            "Concat",
            values,
            [ir.AttrInt64("axis", space.axis)],
            base=f"{out}@{d}",
            dtype=dtype,
            shape=b.shape_of(out, space.axis, mine.size),
        )
    b.unit.macs = int(layer.macs) * used // full.size
    b.local[d][out] = (final, mine)


def _macs(layer, wsub: np.ndarray) -> int:
    """MACs of a part computing with ``wsub`` (the layer's MACs scaled by the share
    of weights kept: dense ``n * rows``, conv ``H * W * n * rows * kh * kw`` per sample)."""
    full = int(np.prod(layer.weights["weight"].shape))
    return int(layer.macs) * int(wsub.size) // full if full else 0


def follow_layer(b: Builder, layer) -> None:
    layout = b.layout
    names = [t.name for t in layer.inputs if t.name in layout.spaces]
    lead = layout.spaces[names[0]]
    node = layer.nodes[0]
    out_rank = len(b.source.shape(layer.outputs[0].name) or []) or None
    for d in range(layout.k):
        mine = layout.own(lead, d)
        if not mine.size:
            continue
        b.begin(d, layer.name)
        mapping = {}
        for name in names:
            if layout.spaces[name] == lead and name in b.local[d]:
                mapping[b.source.value(name)] = b.local[d][name][0]
                b.unit.reads.append(b.local[d][name][0])
            else:
                mapping[b.source.value(name)] = b.fetch(name, d, mine, ordered=True)[0]
        for v in node.inputs:
            if v is None or v in mapping or v.name not in b.graph.weights:
                continue
            arr = np.asarray(b.source.constant(v.name))
            if lead.axis is None:  # a single neuron: nothing to slice
                mapping[v] = b.model_const(v, d)
                continue
            rank = out_rank if out_rank is not None else arr.ndim
            sub = _slice_const(arr, layer.op_type, lead.axis, rank, lead.count, mine)
            mapping[v] = b.const(sub, f"{v.name}@{d}") if sub is not arr else b.model_const(v, d)
        outs = b.clone(layer, mapping, d)
        for t in layer.outputs:
            v = outs[t.name]
            v.name = b.fresh(f"{t.name}@{d}")
            v.shape = b.shape_of(t.name, lead.axis, mine.size)
            b.local[d][t.name] = (v, mine)
        for name, v in outs.items():  # outputs nobody reads (e.g. a Dropout mask)
            if name not in b.local[d]:
                v.name = b.fresh(f"{name}@{d}")
                v.shape = None


def whole_layer(b: Builder, layer, d: int) -> None:
    b.begin(d, layer.name, layer.macs)
    mapping = {}
    for name in dict.fromkeys([t.name for t in layer.inputs] + list(layer.captured)):
        if name in b.layout.spaces:
            mapping[b.source.value(name)] = b.fetch(name, d, None, ordered=True)[0]
    outs = b.clone(layer, mapping, d)
    for t in layer.outputs:
        b.local[d][t.name] = (outs[t.name], None)
