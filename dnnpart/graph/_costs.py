"""Cost model: multiply-accumulates (MACs) of a layer from its shapes.

MACs count the multiply-accumulates of the linear algebra (convolutions, matrix products,
recurrent cells), the figure papers report (ResNet-50 ~ 4.09 G at 224x224). Elementwise,
normalisation and pooling ops count 0 MACs: they are memory-bound and their cost is
negligible next to the products. A shape needed for a cost that is unknown makes the cost
``None``, and the importer names the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "layer_macs",
    "has_formula",
    "NEURONWISE_UNARY",
    "ELEMENTWISE_BINARY",
    "CHANNELWISE",
    "CHANNEL_AXIS",
]

Shape = Sequence[int | None] | None

# Ops that act on each element (or each channel) independently: they can follow a neuron
# split of their input without any exchange.
NEURONWISE_UNARY = frozenset(
    "Relu LeakyRelu PRelu Sigmoid Tanh Elu Selu Celu Gelu HardSigmoid HardSwish Softplus "
    "Softsign Mish ThresholdedRelu Clip Dropout Identity Erf Exp Log Abs Neg Sqrt Reciprocal "
    "Cast Floor Ceil Round Sign Sin Cos BatchNormalization InstanceNormalization".split()
)
ELEMENTWISE_BINARY = frozenset("Add Sub Mul Div Pow Min Max Sum Mean".split())
# Pooling acts per channel: a conv layer's channel split passes through it.
CHANNELWISE = frozenset("MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool".split())
# Neuron-wise ops tied to axis 1: pooling windows over axes 2.. and the normalisations'
# per-channel parameters index axis 1. They follow a neuron split only along axis 1 (a
# conv's channels, a 2-D dense output), not a dense split of the last axis of [B, S, N].
CHANNEL_AXIS = CHANNELWISE | frozenset({"BatchNormalization", "InstanceNormalization"})
# Known ops whose MACs are 0 by the definition above (no warning for these).
_HEAVY_WITHOUT_FORMULA = frozenset("DeformConv Attention".split())


def _prod(shape: Shape) -> int | None:
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)  # type: ignore[arg-type]


def _dim(shape: Shape, axis: int) -> int | None:
    if shape is None or len(shape) < (axis + 1 if axis >= 0 else -axis):
        return None
    return shape[axis]


def layer_macs(
    op_type: str,
    attributes: dict,
    input_shapes: Sequence[Shape],
    output_shapes: Sequence[Shape],
) -> int | None:
    """MACs of one node (or fused dense layer) given its input and output shapes.

    ``input_shapes`` follow the ONNX input order (weights included). Returns ``0`` for ops
    without a product, ``None`` when a needed shape is unknown.
    """
    ins = list(input_shapes) + [None] * 8
    out = output_shapes[0] if output_shapes else None
    if op_type in ("Conv", "ConvInteger", "QLinearConv"):
        w = ins[3] if op_type == "QLinearConv" else ins[1]
        per_output = _prod(w[1:]) if w is not None else None
        n_out = _prod(out)
        return None if per_output is None or n_out is None else n_out * per_output
    if op_type == "ConvTranspose":
        w = ins[1]
        per_input = _prod(w[1:]) if w is not None else None
        n_in = _prod(ins[0])
        return None if per_input is None or n_in is None else n_in * per_input
    if op_type in ("MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"):
        a = ins[0]
        k = _dim(a, -1)
        n_out = _prod(out)
        return None if k is None or n_out is None else n_out * k
    if op_type == "Gemm":
        a = ins[0]
        k = _dim(a, 0) if attributes.get("transA", 0) else _dim(a, 1)
        n_out = _prod(out)
        return None if k is None or n_out is None else n_out * k
    if op_type == "Einsum":
        return _einsum_macs(str(attributes.get("equation", "")), ins[: len(input_shapes)])
    if op_type in ("LSTM", "GRU", "RNN"):
        x, w, r = ins[0], ins[1], ins[2]
        seq, batch = _dim(x, 0), _dim(x, 1)
        if attributes.get("layout", 0):
            seq, batch = batch, seq
        sizes = (seq, batch, _prod(w), _prod(r))
        if any(s is None for s in sizes):
            return None
        return sizes[0] * sizes[1] * (sizes[2] + sizes[3])  # type: ignore[operator]
    return 0


def _einsum_macs(equation: str, shapes: Sequence[Shape]) -> int | None:
    """An Einsum of two or more operands multiplies once per point of the index space:
    the product of every index's size (``bij,bjk->bik``: b*i*j*k). One operand only
    sums or permutes (0 MACs)."""
    lhs = equation.replace(" ", "").split("->")[0]
    terms = lhs.split(",")
    if len(terms) != len(shapes) or any(s is None for s in shapes):
        return None
    if len(terms) < 2:
        return 0
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        if "..." in term:
            extra = len(shape) - (len(term) - 3)
            # ellipsis axes align from the right, as numpy broadcasts them
            term = term.replace("...", "".join(chr(0x200 - extra + i) for i in range(extra)))
        if len(term) != len(shape):
            return None
        for letter, d in zip(term, shape, strict=True):
            if d is None:
                return None
            sizes[letter] = max(sizes.get(letter, 1), d)
    return math.prod(sizes.values())


def has_formula(op_type: str) -> bool:
    """False for compute-heavy ops whose MACs this model does not know (reported as 0)."""
    return op_type not in _HEAVY_WITHOUT_FORMULA
