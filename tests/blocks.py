"""Transformer graphs written the way torch.onnx writes them, built in code.

Unlike :func:`models.transformer_block` (constant Reshape targets), the heads are split
and merged with targets computed at run time (``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape``), the batch and sequence axes are symbolic, and the attention products
(``Q K^T`` and ``P V``) are MatMuls between two activations. ``light=True`` writes every
weight as a ``ConstantOfShape`` fill (as the onnx wheel's light models do), so that even
BERT-base or ViT-B/16 is a file of a few kilobytes whose MACs the importer can count.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["encoder", "attention_macs", "encoder_macs"]

_F = TensorProto.FLOAT


class _Builder:
    def __init__(self, light: bool, seed: int):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.light = light
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def node(self, op, inputs, name=None, **attrs) -> str:
        out = self.fresh(name or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or out, **attrs))
        return out

    def const(self, value, dtype=np.int64) -> str:
        name = self.fresh("c")
        self.inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    def weight(self, name, shape, scale=None) -> str:
        if self.light:
            shape_name = self.const(list(shape))
            value = numpy_helper.from_array(np.array([0.02], np.float32))
            self.nodes.append(
                helper.make_node("ConstantOfShape", [shape_name], [name], name=name, value=value)
            )
        else:
            scale = scale if scale is not None else 1 / np.sqrt(shape[0])
            w = (scale * self.rng.standard_normal(shape)).astype(np.float32)
            self.inits.append(numpy_helper.from_array(w, name))
        return name

    def dense(self, name, x, n_in, n_out) -> str:
        w = self.weight(f"{name}.weight", (n_in, n_out))
        b = self.weight(f"{name}.bias", (n_out,), scale=0.1)
        return self.node("Add", [self.node("MatMul", [x, w], name=name), b], name=f"{name}.add")

    def layer_norm(self, name, x, d) -> str:
        s = self.weight(f"{name}.scale", (d,), scale=0.1)
        b = self.weight(f"{name}.bias", (d,), scale=0.1)
        return self.node("LayerNormalization", [x, s, b], name=name, axis=-1)

    def dim(self, x, axis) -> str:
        """``Unsqueeze(Gather(Shape(x), axis))``: one dimension of ``x`` as a 1-d tensor."""
        shape = self.node("Shape", [x])
        g = self.node("Gather", [shape, self.const(axis)], axis=0)
        return self.node("Unsqueeze", [g, self.const([0])])


def encoder(
    *,
    layers: int = 1,
    d: int = 8,
    heads: int = 2,
    ff: int = 16,
    vit: tuple[int, int, int] | None = None,
    classes: int = 10,
    causal: bool = False,
    light: bool = False,
    seed: int = 0,
) -> onnx.ModelProto:
    """A pre-norm transformer encoder on ``x [B, S, d]`` (B, S symbolic), or with ``vit =
    (image, patch, channels)`` a ViT on ``pixels [B, channels, image, image]``: patch
    convolution, flatten to tokens, a class token expanded to the batch, learned
    positions, the layers, LayerNorm and a classification head on the class token.
    ``causal`` adds a causal mask (a GPT-style decoder) built from the sequence length.
    """
    b = _Builder(light, seed)
    dh = d // heads
    if vit is None:
        inputs = [helper.make_tensor_value_info("x", _F, ["B", "S", d])]
        x = "x"
    else:
        image, patch, channels = vit
        inputs = [helper.make_tensor_value_info("pixels", _F, ["B", channels, image, image])]
        w = b.weight("patch.weight", (d, channels, patch, patch), scale=0.05)
        conv = b.node("Conv", ["pixels", w], name="patch", kernel_shape=[patch, patch],
                      strides=[patch, patch])  # fmt: skip
        flat_shape = b.node("Concat", [b.dim(conv, 0), b.dim(conv, 1), b.const([-1])], axis=0)
        tokens = b.node("Transpose", [b.node("Reshape", [conv, flat_shape])], perm=[0, 2, 1])
        cls = b.weight("cls", (1, 1, d), scale=0.1)
        cls_shape = b.node("Concat", [b.dim(conv, 0), b.const([1, d])], axis=0)
        cls_b = b.node("Expand", [cls, cls_shape])
        x = b.node("Concat", [cls_b, tokens], axis=1)
        n = (image // patch) ** 2 + 1
        x = b.node("Add", [x, b.weight("pos", (1, n, d), scale=0.1)])
    scale = b.const(np.sqrt(dh), np.float32)
    for i in range(layers):
        p = f"l{i}"
        h = b.layer_norm(f"{p}.ln1", x, d)
        bsz, seq = b.dim(h, 0), b.dim(h, 1)
        split = b.node("Concat", [bsz, seq, b.const([heads, dh])], axis=0)
        qkv = []
        for part, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
            y = b.dense(f"{p}.{part}", h, d, d)
            qkv.append(b.node("Transpose", [b.node("Reshape", [y, split])], perm=perm))
        scores = b.node("Div", [b.node("MatMul", qkv[:2], name=f"{p}.scores"), scale])
        if causal:
            n = b.node("Squeeze", [seq, b.const([0])])
            r = b.node("Range", [b.const(0), n, b.const(1)])
            rows = b.node("Unsqueeze", [r, b.const([1])])
            mask = b.node("Greater", [r, rows])  # [S, S]: True above the diagonal
            scores = b.node("Where", [mask, b.const(-1e4, np.float32), scores])
        probs = b.node("Softmax", [scores], axis=-1)
        ctx = b.node("Transpose", [b.node("MatMul", [probs, qkv[2]], name=f"{p}.context")],
                     perm=[0, 2, 1, 3])  # fmt: skip
        merge = b.node("Concat", [bsz, seq, b.const([d])], axis=0)
        attn = b.dense(f"{p}.o", b.node("Reshape", [ctx, merge]), d, d)
        x = b.node("Add", [x, attn], name=f"{p}.residual1")
        h = b.layer_norm(f"{p}.ln2", x, d)
        h = b.node("Relu", [b.dense(f"{p}.ff1", h, d, ff)])
        x = b.node("Add", [x, b.dense(f"{p}.ff2", h, ff, d)], name=f"{p}.residual2")
    x = b.layer_norm("ln_f", x, d)
    if vit is not None:
        x = b.node("Gather", [x, b.const(0)], axis=1)
        x = b.dense("head", x, d, classes)
    x = b.node("Identity", [x], name="output")
    out_shape = ["B", classes] if vit is not None else ["B", "S", d]
    graph = helper.make_graph(
        b.nodes, "encoder", inputs, [helper.make_tensor_value_info(x, _F, out_shape)], b.inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def attention_macs(seq: int, d: int) -> int:
    """``Q K^T`` and ``P V`` of one layer: ``heads * S * S * dh`` each."""
    return 2 * seq * seq * d


def encoder_macs(seq: int, d: int, ff: int, layers: int) -> int:
    """Projections (4 of d x d), the MLP (d x ff and ff x d) and attention, per sample."""
    return layers * (seq * (4 * d * d + 2 * d * ff) + attention_macs(seq, d))
