"""The IR of dnnpart: a model as a graph of layers."""

from dnnpart.graph._graph import LayerGraph
from dnnpart.graph._layer import Layer, LayerKind
from dnnpart.graph._tensor import ExternalRef, TensorInfo, Weight

__all__ = ["ExternalRef", "Layer", "LayerGraph", "LayerKind", "TensorInfo", "Weight"]
