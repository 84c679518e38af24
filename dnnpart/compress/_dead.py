"""Dead-neuron removal after pruning (Han et al., "Learning both Weights and Connections
for Efficient Neural Networks", NeurIPS 2015, section 3.3: "neurons with zero input
connections or zero output connections may be safely pruned").

A neuron of a splittable layer is *dead* when no synapse leads from it to a live neuron,
following its value through the neuron-wise ops after it: every weight that reads it is
zero, so nothing the model returns depends on it. Zeroing its own incoming weights changes
no output (its value still meets only zero weights) but removes its MACs, and, for a
split, every activation a device would have fetched only to compute it. Removal is
transitive: a neuron that fed only dead neurons is dead too.

Only the zero-*output* half is done: a neuron with no input connection computes a constant
that still reaches live neurons, and folding it into the next layer's bias is not exact for
padded convolutions. The pass is conservative: a neuron is dead only when every path from
it is understood (splittable consumers, and neuron-wise ops known to map finite values to
finite values, since ``0 * inf`` would not be zero).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dnnpart.graph import Layer, LayerGraph, LayerKind, Weight

__all__ = ["DeadNeurons", "remove_dead_neurons"]

# Neuron-wise ops through which a dead neuron stays harmless: finite in, finite out. Ops
# such as Log, Reciprocal, Div or Exp could turn the dead neuron's new constant into an
# infinity, and an infinity times a zero weight is NaN.
_SAFE_OPS = frozenset(
    "Relu LeakyRelu PRelu Sigmoid Tanh Elu Selu Celu Gelu HardSigmoid HardSwish Softsign "
    "ThresholdedRelu Clip Dropout Identity Erf Abs Neg Floor Ceil Round Sign Sin Cos "
    "BatchNormalization InstanceNormalization Add Sub Mul Min Max Sum Mean "
    "MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool".split()
)


@dataclass(frozen=True)
class DeadNeurons:
    """What :func:`remove_dead_neurons` removed: dead neurons per layer name, and the
    synapses (non-zero weights) that fed them."""

    per_layer: dict[str, int]
    synapses: int

    @property
    def neurons(self) -> int:
        return sum(self.per_layer.values())


def _neuron_counts(graph: LayerGraph) -> dict[str, int]:
    """Neurons of every tensor that carries a neuron split (the problem builder's rule:
    splittable outputs, and neuron-wise ops whose activation inputs all share a count and
    that can follow a split along its axis)."""
    found: dict[str, tuple[int, int]] = {}  # tensor -> (neurons, the axis they run along)
    for layer in graph.layers:
        if layer.splittable:
            if len(layer.outputs) == 1:
                found[layer.outputs[0].name] = (int(layer.neurons), layer.neuron_axis)
        elif layer.neuronwise and len(layer.outputs) == 1:
            seen = {found.get(t.name) for t in layer.inputs}
            if len(seen) == 1 and None not in seen and layer.follows((lead := seen.pop())[1]):
                found[layer.outputs[0].name] = lead
    return {name: count for name, (count, _) in found.items()}


def remove_dead_neurons(graph: LayerGraph) -> tuple[LayerGraph, DeadNeurons]:
    """A graph computing the same outputs in which dead neurons have no incoming synapse.

    Returns the new graph (``graph`` itself when nothing is dead) and a
    :class:`DeadNeurons` summary. Layers whose weights change get a new
    :class:`~dnnpart.graph.Weight` holding the zeroed copy.
    """
    counts = _neuron_counts(graph)
    outputs = {t.name for t in graph.outputs}
    needed: dict[str, np.ndarray | None] = {}  # tensor -> neurons read by live neurons
    live_of: dict[int, np.ndarray] = {}  # splittable layer index -> its live neurons
    synapses: dict[int, object] = {}

    def need(name: str) -> np.ndarray | None:
        """Neurons of tensor ``name`` something live reads; None: all of them."""
        count = counts.get(name)
        if count is None or name in outputs:
            return None
        mask = np.zeros(count, dtype=bool)
        for c in graph.consumers.get(name, []):
            consumer = graph.layers[c]
            if consumer.splittable and consumer.inputs and consumer.inputs[0].name == name:
                s = synapses.get(c)
                if s is None or s.shape[0] != count:  # a flattened map: keep it all
                    return None
                live = live_of[c]
                mask |= np.asarray(s[:, live].sum(axis=1)).ravel() > 0
            elif (
                consumer.neuronwise
                and consumer.op_type in _SAFE_OPS
                and len(consumer.outputs) == 1
                and consumer.outputs[0].name in counts
            ):
                out = needed.get(consumer.outputs[0].name)
                if out is None:
                    return None
                mask |= out
            else:
                return None
        return mask

    for i in range(len(graph.layers) - 1, -1, -1):
        layer = graph.layers[i]
        if layer.splittable:
            synapses[i] = layer.synapse_matrix()
        if len(layer.outputs) == 1 and layer.outputs[0].name in counts:
            needed[layer.outputs[0].name] = need(layer.outputs[0].name)
        if layer.splittable:
            out = needed.get(layer.outputs[0].name) if len(layer.outputs) == 1 else None
            live_of[i] = np.ones(int(layer.neurons), bool) if out is None else out

    layers: list[Layer] = []
    per_layer: dict[str, int] = {}
    removed_synapses = 0
    for i, layer in enumerate(graph.layers):
        dead = None if i not in live_of else ~live_of[i]
        if dead is None or not dead.any():
            layers.append(layer)
            continue
        per_layer[layer.name] = int(dead.sum())
        if not synapses[i][:, dead].count_nonzero():  # already without synapses
            layers.append(layer)
            continue
        zeroed, removed = _zero_neurons(layer, dead)
        removed_synapses += removed
        layers.append(zeroed)
    summary = DeadNeurons(per_layer, removed_synapses)
    if not removed_synapses:
        return graph, summary
    return graph.with_layers(layers), summary


def _zero_neurons(layer: Layer, dead: np.ndarray) -> tuple[Layer, int]:
    """``layer`` with the weights into its ``dead`` neurons zeroed, and how many non-zero
    weights that removed."""
    w = layer.weights["weight"]
    values = np.array(w.numpy(), copy=True)
    before = np.count_nonzero(values)
    if layer.kind == LayerKind.CONV or layer._weight_in_out()[2]:
        values[dead] = 0  # rows are neurons: (C_out, ...) or Gemm transB (out, in)
    else:
        values[:, dead] = 0
    zeroed = Weight(w.name, w.shape, w.dtype, w.bits, values.dtype, compute=lambda v=values: v)
    layer = dataclasses.replace(layer, weights={**layer.weights, "weight": zeroed})
    return layer, int(before - np.count_nonzero(values))
