"""The neuron numbering: which vertex is which neuron or channel of which tensor.

One numbering serves problem building (:func:`dnnpart.problem.neuron_problem`) and neuron
export (:mod:`dnnpart.exporters`), so that a vertex means the same neuron in both:

- the model's input features come first, one group per input: the channels (axis 1) of
  an input read by a convolution, else the last axis; an input without a shape is one
  vertex;
- the output neurons of every splittable layer (dense: output features on the last axis;
  convolution: output channels on axis 1) are one group each, in layer order;
- a neuron-wise layer (activation, bias, pooling, same-shape elementwise) adds no vertex:
  its outputs live where the neurons of its first input live, when every input it reads
  from the numbering has that many neurons and, for a per-channel op (pooling, batch or
  instance norm), they run along axis 1 (else it is placed whole);
- any other layer is one vertex holding its whole output.

A *space* is the vertex range of a tensor with the axis its neurons run along.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dnnpart.errors import UsageError
from dnnpart.graph import LayerGraph, LayerKind, TensorInfo

__all__ = ["SPLIT", "FOLLOW", "WHOLE", "Space", "NeuronLayout", "PlacedLayout", "neuron_layout"]

SPLIT, FOLLOW, WHOLE = "split", "follow", "whole"


def elements(t: TensorInfo) -> int:
    """Elements of ``t`` per sample (1 when its shape is unknown)."""
    n = t.num_elements
    return int(n) if n is not None else 1


@dataclass(frozen=True)
class Space:
    """Where the neurons of a tensor live: vertices ``offset .. offset + count``."""

    offset: int
    count: int
    per_neuron: int  # elements of the producing tensor per neuron (H*W for a conv channel)
    whole: bool  # a single vertex holding the whole tensor
    axis: int | None  # tensor axis of the neurons (non-negative); None for a whole tensor

    @property
    def vertices(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + self.count, dtype=np.int64)


@dataclass(frozen=True)
class NeuronLayout:
    """The neuron numbering of a graph (see the module docstring).

    ``groups`` and ``offsets`` are the vertex groups in order (inputs, then split and
    whole layers); ``spaces`` maps every tensor with vertices to its :class:`Space`;
    ``action`` says per layer whether it is split, follows its input, or is placed whole.
    """

    graph: LayerGraph
    groups: tuple[str, ...]
    offsets: tuple[int, ...]
    spaces: dict[str, Space]
    action: tuple[str, ...]

    @property
    def num_vertices(self) -> int:
        return self.offsets[-1]

    def check_plan(self, groups: Any, offsets: Any) -> None:
        """Refuse a plan whose groups or offsets are not this numbering's."""
        if list(groups) != list(self.groups) or [int(x) for x in offsets] != list(self.offsets):
            raise UsageError(
                "the plan's neuron-granularity layout does not match the model "
                f"({len(groups)} groups and {offsets[-1] if len(offsets) else 0} vertices in "
                f"the plan, {len(self.groups)} and {self.num_vertices} here); was it made "
                "for another model?"
            )

    def place(self, labels: Any, k: int) -> PlacedLayout:
        """This numbering with one device label per vertex."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (self.num_vertices,):
            raise UsageError(f"the plan has {labels.size} labels for {self.num_vertices} vertices")
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise UsageError(f"the plan has device labels outside 0..{k - 1}")
        return PlacedLayout(self, labels, k)


@dataclass(frozen=True)
class PlacedLayout:
    """A :class:`NeuronLayout` with the device of every vertex."""

    layout: NeuronLayout
    labels: np.ndarray
    k: int

    @property
    def graph(self) -> LayerGraph:
        return self.layout.graph

    @property
    def spaces(self) -> dict[str, Space]:
        return self.layout.spaces

    @property
    def action(self) -> tuple[str, ...]:
        return self.layout.action

    def owners(self, space: Space) -> np.ndarray:
        return self.labels[space.offset : space.offset + space.count]

    def own(self, space: Space, device: int) -> np.ndarray:
        """Sorted neuron indices of ``space`` on ``device``."""
        return np.flatnonzero(self.owners(space) == device)

    def home(self, space: Space) -> int:
        """Device of a whole space (its single vertex)."""
        return int(self.labels[space.offset])

    def layer_device(self, i: int) -> int:
        """Device of a layer placed whole."""
        return self.home(self.spaces[self.graph.layers[i].outputs[0].name])


def _input_space(graph: LayerGraph, t: TensorInfo, offset: int) -> Space:
    consumers = graph.consumers.get(t.name, [])
    first = graph.layers[consumers[0]] if consumers else None
    if not t.shape:
        count, axis = 1, None
    elif first is not None and first.kind == LayerKind.CONV and len(t.shape) > 1:
        count, axis = int(t.shape[1] or 1), 1
    else:
        count, axis = int(t.shape[-1] or 1), len(t.shape) - 1
    count = max(1, count)
    return Space(offset, count, max(1, elements(t) // count), False, axis)


def _followed(layer, spaces: dict[str, Space]) -> Space | None:
    """The space a neuron-wise layer's outputs live in, or None if it cannot follow."""
    found = [spaces[t.name] for t in layer.inputs if t.name in spaces]
    if not found or found[0].whole or not layer.follows(found[0].axis):
        return None
    if all(not s.whole and s.count == found[0].count for s in found[1:]):
        return found[0]
    return None


def neuron_layout(graph: LayerGraph) -> NeuronLayout:
    """The :class:`NeuronLayout` of ``graph``."""
    spaces: dict[str, Space] = {}
    groups: list[str] = []
    offsets = [0]

    def group(name: str, count: int) -> int:
        groups.append(name)
        offsets.append(offsets[-1] + count)
        return offsets[-2]

    for t in graph.inputs:
        space = _input_space(graph, t, offsets[-1])
        group(f"input:{t.name}", space.count)
        spaces[t.name] = space
    action: list[str] = []
    for layer in graph.layers:
        if layer.splittable and layer.inputs:
            neurons = int(layer.neurons)
            per = max(1, elements(layer.outputs[0]) // neurons)
            space = Space(group(layer.name, neurons), neurons, per, False, layer.neuron_axis)
            for t in layer.outputs:
                spaces[t.name] = space
            action.append(SPLIT)
        elif (lead := _followed(layer, spaces)) is not None:
            for t in layer.outputs:
                spaces[t.name] = lead
            action.append(FOLLOW)
        else:
            v = group(layer.name, 1)
            for t in layer.outputs:
                spaces[t.name] = Space(v, 1, elements(t), True, None)
            action.append(WHOLE)
    return NeuronLayout(graph, tuple(groups), tuple(offsets), spaces, tuple(action))
