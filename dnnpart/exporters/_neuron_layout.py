"""Where every neuron of a neuron-level plan lives, tensor by tensor.

This mirrors :func:`dnnpart.problem._build.neuron_problem` (and is checked
against the plan's group names and offsets, so that a change there cannot silently
misplace neurons): the model's input features and the output neurons of splittable layers
are vertices; a neuron-wise layer's output lives where its first input's neurons live; any
other layer is one vertex holding its whole output. A *space* is one such vertex range
with the tensor axis its neurons run along (the last axis for dense features, axis 1 for
convolution channels, None for a tensor that is a single neuron).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnnpart._plan import Plan
from dnnpart.errors import UsageError
from dnnpart.graph import Layer, LayerGraph, LayerKind, TensorInfo

__all__ = ["Space", "Layout", "layout_of"]

SPLIT, FOLLOW, WHOLE = "split", "follow", "whole"


@dataclass(frozen=True)
class Space:
    offset: int
    count: int
    whole: bool
    axis: int | None  # tensor axis of the neurons (non-negative), None for one neuron


@dataclass
class Layout:
    """The plan's neuron placement seen per tensor and per layer."""

    graph: LayerGraph
    labels: np.ndarray
    spaces: dict[str, Space]  # tensor name -> space
    action: list[str]  # per layer: SPLIT, FOLLOW or WHOLE
    k: int

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


def _rank(t: TensorInfo) -> int | None:
    return len(t.shape) if t.shape is not None else None


def layout_of(graph: LayerGraph, plan: Plan) -> Layout:
    """The :class:`Layout` of ``plan`` on ``graph`` (checked against the plan's groups)."""
    spaces: dict[str, Space] = {}
    names: list[str] = []
    offsets = [0]

    def group(name: str, count: int) -> int:
        names.append(name)
        offsets.append(offsets[-1] + count)
        return offsets[-2]

    for t in graph.inputs:
        consumers = graph.consumers.get(t.name, [])
        first = graph.layers[consumers[0]] if consumers else None
        rank = _rank(t)
        if not t.shape:
            count, axis = 1, None
        elif first is not None and first.kind == LayerKind.CONV and rank > 1:
            count, axis = int(t.shape[1] or 1), 1
        else:
            count, axis = int(t.shape[-1] or 1), rank - 1
        count = max(1, count)
        spaces[t.name] = Space(group(f"input:{t.name}", count), count, False, axis)
    action: list[str] = []
    for layer in graph.layers:
        if layer.splittable and layer.inputs:
            neurons = int(layer.neurons)
            out = layer.outputs[0]
            axis = 1 if layer.kind == LayerKind.CONV else (_rank(out) or 1) - 1
            space = Space(group(layer.name, neurons), neurons, False, axis)
            for t in layer.outputs:
                spaces[t.name] = space
            action.append(SPLIT)
        elif layer.neuronwise and _can_follow(layer, spaces):
            lead = spaces[next(t.name for t in layer.inputs if t.name in spaces)]
            for t in layer.outputs:
                spaces[t.name] = lead
            action.append(FOLLOW)
        else:
            v = group(layer.name, 1)
            for t in layer.outputs:
                spaces[t.name] = Space(v, 1, True, None)
            action.append(WHOLE)
    if list(plan.groups) != names or [int(x) for x in plan.offsets] != offsets:
        raise UsageError(
            "the plan's neuron-granularity layout does not match the model "
            f"({len(plan.groups)} groups and {plan.offsets[-1] if plan.offsets else 0} "
            f"vertices in the plan, {len(names)} and {offsets[-1]} here); was it made for "
            "another model?"
        )
    labels = np.asarray(plan.labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= plan.k):
        raise UsageError(f"the plan has device labels outside 0..{plan.k - 1}")
    return Layout(graph, labels, spaces, action, plan.k)


def _can_follow(layer: Layer, spaces: dict[str, Space]) -> bool:
    found = [spaces[t.name] for t in layer.inputs if t.name in spaces]
    if not found or found[0].whole:
        return False
    return all(not s.whole and s.count == found[0].count for s in found[1:])
