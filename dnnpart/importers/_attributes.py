"""Check the attributes of the ops whose attributes feed costs, neuron counts or export.

A hostile model can set any attribute to any value: ``group = 0`` on a Conv (a division by
zero when its synapses are counted), ``group = 3`` with 4 channels, ``transB = 7``, a
negative stride, a permutation that is not one. Every attribute dnnpart reads, and those
the exported sub-models depend on, is checked here against the ONNX operator spec and the
weight's shape before any cost is computed; a bad one is an
:class:`~dnnpart.errors.InvalidModelError` naming the node and the attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dnnpart.errors import InvalidModelError

__all__ = ["check_attributes"]

_CONV = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv"})
_POOL = frozenset({"MaxPool", "AveragePool", "LpPool"})
_RECURRENT = frozenset({"LSTM", "GRU", "RNN"})
_FLAGS = {
    "Gemm": ("transA", "transB"),
    "Reshape": ("allowzero",),
    "LSTM": ("layout", "input_forget"),
    "GRU": ("layout", "linear_before_reset"),
    "RNN": ("layout",),
    "MaxPool": ("ceil_mode", "storage_order"),
    "AveragePool": ("ceil_mode", "count_include_pad"),
}
_AXIS_OPS = frozenset(
    "Concat Split Gather Softmax LogSoftmax Hardmax Flatten ArgMax ArgMin "
    "LayerNormalization".split()
)
_CHOICES = {
    ("LSTM", "direction"): ("forward", "reverse", "bidirectional"),
    ("GRU", "direction"): ("forward", "reverse", "bidirectional"),
    ("RNN", "direction"): ("forward", "reverse", "bidirectional"),
    ("Resize", "mode"): ("nearest", "linear", "cubic"),
    ("Upsample", "mode"): ("nearest", "linear", "bilinear"),
}
# Attributes that hold sizes: an int over this bound is a hostile model, not a network.
_MAX_INT = 1 << 31
Shape = Sequence[int | None] | None


def _bad(node: str, attr: str, value: Any, why: str) -> InvalidModelError:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return InvalidModelError(f"node {node!r}: attribute {attr!r} = {text} {why}")


def _int(node: str, attrs: dict, name: str, default: int, lo: int, hi: int = _MAX_INT) -> int:
    value = attrs.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(node, name, value, f"must be an integer in [{lo}, {hi}]")
    return value


def _ints(node: str, attrs: dict, name: str, length: int | None, lo: int) -> None:
    if name not in attrs:
        return
    value = attrs[name]
    if not isinstance(value, list) or not all(
        isinstance(v, int) and lo <= v < _MAX_INT for v in value
    ):
        raise _bad(node, name, value, f"must be a list of integers >= {lo}")
    if length is not None and len(value) != length:
        raise _bad(node, name, value, f"must have {length} values")


def check_attributes(op: str, node: str, attrs: dict[str, Any], weight: Shape, data: Shape) -> None:
    """Raise :class:`InvalidModelError` if a cost- or export-relevant attribute is bad.

    Parameters
    ----------
    op : str
        The op type (standard domain).
    node : str
        The layer's name, for the message.
    attrs : dict
        Attribute values as the importer reads them.
    weight : shape or None
        The shape of the op's constant weight (input 1 of Conv/Gemm/MatMul), if any.
    data : shape or None
        The shape of the op's first input, if known (dimensions may be None).
    """
    for flag in _FLAGS.get(op, ()):
        _int(node, attrs, flag, 0, 0, 1)
    for (choice_op, name), allowed in _CHOICES.items():
        if op == choice_op and name in attrs and attrs[name] not in allowed:
            raise _bad(node, name, attrs[name], f"must be one of {', '.join(allowed)}")
    rank = len(data) if data is not None else None
    if op in _CONV:
        _check_conv(op, node, attrs, weight, data)
    elif op in _POOL:
        spatial = len(attrs.get("kernel_shape") or []) or None
        if "kernel_shape" not in attrs:
            raise _bad(node, "kernel_shape", None, "is required")
        _ints(node, attrs, "kernel_shape", None, 1)
        _spatial(node, attrs, spatial)
    elif op in _RECURRENT:
        _int(node, attrs, "hidden_size", 1, 1)
    elif op in _AXIS_OPS and "axis" in attrs:
        lo, hi = (-rank, rank - 1) if rank else (-_MAX_INT, _MAX_INT)
        if op == "Flatten" and rank:
            hi = rank
        _int(node, attrs, "axis", 0, lo, hi)
    elif op == "Transpose" and "perm" in attrs:
        perm = attrs["perm"]
        if (
            not isinstance(perm, list)
            or sorted(perm) != list(range(len(perm)))
            or (rank is not None and len(perm) != rank)
        ):
            raise _bad(node, "perm", perm, "must be a permutation of the input's axes")
    if op == "Split":
        _ints(node, attrs, "split", None, 0)
        if "num_outputs" in attrs:
            _int(node, attrs, "num_outputs", 1, 1)


def _spatial(node: str, attrs: dict, spatial: int | None) -> None:
    _ints(node, attrs, "strides", spatial, 1)
    _ints(node, attrs, "dilations", spatial, 1)
    _ints(node, attrs, "pads", None if spatial is None else 2 * spatial, 0)


def _check_conv(op: str, node: str, attrs: dict, weight: Shape, data: Shape) -> None:
    group = _int(node, attrs, "group", 1, 1)
    spatial = len(weight) - 2 if weight is not None and len(weight) >= 3 else None
    _ints(node, attrs, "kernel_shape", spatial, 1)
    _spatial(node, attrs, spatial)
    if weight is None or spatial is None or op == "QLinearConv":
        return
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != list(weight[2:]):
        raise _bad(node, "kernel_shape", attrs["kernel_shape"], f"but the weight is {weight}")
    c_out, c_in_g = weight[0], weight[1]
    if op == "ConvTranspose":  # weight (C_in, C_out / group, ...)
        c_in = c_out
    else:
        if c_out % group:
            raise _bad(node, "group", group, f"does not divide the {c_out} output channels")
        c_in = c_in_g * group
    if op == "ConvTranspose" and c_in % group:
        raise _bad(node, "group", group, f"does not divide the {c_in} input channels")
    channels = data[1] if data is not None and len(data) >= 2 else None
    if channels is not None and channels != c_in and op != "ConvTranspose":
        raise _bad(
            node,
            "group",
            group,
            f"with a weight of {weight} needs {c_in} input channels, the input has {channels}",
        )
