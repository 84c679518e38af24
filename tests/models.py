"""Tiny named ONNX models built in code, shared by the tests.

Every builder returns an :class:`onnx.ModelProto` whose weights come from a seeded
``numpy.random.default_rng``, so the same call gives the same bytes. The models are small
enough that every expected figure (MACs, neurons, synapses, bytes) can be worked out by hand
from the arguments; the tests do exactly that. :func:`save` writes a model to a folder,
optionally with its weights as external data.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "mlp_matmul",
    "mlp_gemm",
    "conv_net",
    "residual_net",
    "transformer_block",
    "control_flow",
    "external_mlp",
    "branch_net",
    "save",
    "EXTERNAL_LOCATION",
]

EXTERNAL_LOCATION = "weights.bin"
_F = TensorProto.FLOAT


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    # ir_version 8 is what onnxruntime of every supported version reads.
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="dnnpart-tests"
    )
    model.ir_version = 8 if opset <= 17 else 9
    return model


def _init(name: str, array: np.ndarray) -> TensorProto:
    # not np.ascontiguousarray: it turns a 0-d array (a scalar initializer) into shape (1,)
    return numpy_helper.from_array(np.array(array, order="C"), name)


def _prune(w: np.ndarray, ratio: float) -> np.ndarray:
    """Zero the ``ratio`` fraction of ``w`` with the smallest magnitude (Deep Compression)."""
    if ratio <= 0:
        return w
    cut = np.quantile(np.abs(w), ratio)
    return np.where(np.abs(w) <= cut, np.float32(0), w).astype(np.float32)


def mlp_matmul(
    sizes: tuple[int, ...] = (6, 5, 4, 3),
    *,
    prune: float = 0.0,
    batch: int | str = 1,
    seed: int = 0,
) -> onnx.ModelProto:
    """An MLP of ``MatMul + Add`` layers with ReLU between them and Softmax at the end.

    Layer ``i`` is named ``fc{i}`` (MatMul) and ``fc{i}.add`` (Add); weights are
    ``fc{i}.weight`` of shape ``(sizes[i], sizes[i + 1])`` (input x output, the ONNX MatMul
    layout) and ``fc{i}.bias``. ``prune`` zeroes that fraction of every weight matrix.
    """
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "input"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = rng.standard_normal((n_in, n_out)).astype(np.float32)
        inits.append(_init(f"fc{i}.weight", _prune(w, prune)))
        inits.append(_init(f"fc{i}.bias", rng.standard_normal(n_out).astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [x, f"fc{i}.weight"], [f"mm{i}"], name=f"fc{i}"))
        nodes.append(
            helper.make_node("Add", [f"mm{i}", f"fc{i}.bias"], [f"z{i}"], name=f"fc{i}.add")
        )
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"h{i}"], name=f"relu{i}"))
            x = f"h{i}"
        else:
            nodes.append(helper.make_node("Softmax", [f"z{i}"], ["output"], name="softmax"))
    graph = helper.make_graph(
        nodes,
        "mlp_matmul",
        [helper.make_tensor_value_info("input", _F, [batch, sizes[0]])],
        [helper.make_tensor_value_info("output", _F, [batch, sizes[-1]])],
        inits,
    )
    return _model(graph, 17)


def mlp_gemm(sizes: tuple[int, ...] = (6, 5, 3), *, seed: int = 0) -> onnx.ModelProto:
    """An MLP of ``Gemm(transB=1)`` layers (the PyTorch ``nn.Linear`` export) with ReLUs.

    Layer ``i`` is ``gemm{i}`` with weight ``gemm{i}.weight`` of shape
    ``(sizes[i + 1], sizes[i])`` (output x input) and bias ``gemm{i}.bias``.
    """
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "input"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        inits.append(
            _init(f"gemm{i}.weight", rng.standard_normal((n_out, n_in)).astype(np.float32))
        )
        inits.append(_init(f"gemm{i}.bias", rng.standard_normal(n_out).astype(np.float32)))
        y = f"g{i}" if i < len(sizes) - 2 else "output"
        nodes.append(
            helper.make_node(
                "Gemm", [x, f"gemm{i}.weight", f"gemm{i}.bias"], [y], name=f"gemm{i}", transB=1
            )
        )
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [y], [f"h{i}"], name=f"relu{i}"))
            x = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp_gemm",
        [helper.make_tensor_value_info("input", _F, [1, sizes[0]])],
        [helper.make_tensor_value_info("output", _F, [1, sizes[-1]])],
        inits,
    )
    return _model(graph, 17)


def conv_net(
    channels: tuple[int, int, int] = (4, 6, 4),
    *,
    groups: int = 2,
    image: int = 8,
    classes: int = 3,
    prune: float = 0.0,
    seed: int = 0,
) -> onnx.ModelProto:
    """Conv(3x3, pad 1, bias) -> Relu -> grouped Conv(3x3, pad 1, bias) -> Relu -> GAP ->
    Flatten -> Gemm(transB=1).

    Input ``input`` is ``(1, channels[0], image, image)``. ``conv0`` maps ``channels[0]`` to
    ``channels[1]`` (group 1); ``conv1`` maps ``channels[1]`` to ``channels[2]`` in
    ``groups`` groups, so its weight is ``(channels[2], channels[1] // groups, 3, 3)``.
    ``prune`` zeroes that fraction of ``conv1.weight``.
    """
    c0, c1, c2 = channels
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((c1, c0, 3, 3)).astype(np.float32)
    w1 = _prune(rng.standard_normal((c2, c1 // groups, 3, 3)).astype(np.float32), prune)
    inits = [
        _init("conv0.weight", w0),
        _init("conv0.bias", rng.standard_normal(c1).astype(np.float32)),
        _init("conv1.weight", w1),
        _init("conv1.bias", rng.standard_normal(c2).astype(np.float32)),
        _init("fc.weight", rng.standard_normal((classes, c2)).astype(np.float32)),
        _init("fc.bias", rng.standard_normal(classes).astype(np.float32)),
    ]
    pads = [1, 1, 1, 1]
    nodes = [
        helper.make_node(
            "Conv", ["input", "conv0.weight", "conv0.bias"], ["c0"], name="conv0", pads=pads
        ),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node(
            "Conv",
            ["r0", "conv1.weight", "conv1.bias"],
            ["c1"],
            name="conv1",
            pads=pads,
            group=groups,
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
    ]
    return _classified("conv_net", nodes, "r1", inits, (1, c0, image, image), classes)


def _classified(name, nodes, features, inits, input_shape, classes) -> onnx.ModelProto:
    """``nodes`` (reading ``input``) followed by GAP -> Flatten -> Gemm(transB=1) on
    ``features`` (weights ``fc.weight``/``fc.bias`` in ``inits``), output ``output``."""
    nodes = [
        *nodes,
        helper.make_node("GlobalAveragePool", [features], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", _F, list(input_shape))],
        [helper.make_tensor_value_info("output", _F, [1, classes])],
        inits,
    )
    return _model(graph, 17)


def residual_net(
    channels: int = 8, *, inputs: int = 4, image: int = 8, classes: int = 3, seed: int = 0
) -> onnx.ModelProto:
    """A ResNet-style block: Conv(inputs -> channels) -> Relu -> Conv -> Relu -> Conv ->
    Add(the first Relu's output) -> Relu -> GAP -> Flatten -> Gemm(transB=1); every Conv
    3x3, pad 1, with bias. Input ``input`` is ``(1, inputs, image, image)``."""
    rng = np.random.default_rng(seed)
    shapes = {
        "conv0": (channels, inputs),
        "conv1": (channels, channels),
        "conv2": (channels, channels),
    }
    inits = []
    for name, (o, i) in shapes.items():
        w = rng.standard_normal((o, i, 3, 3)).astype(np.float32) / np.float32(3 * np.sqrt(i))
        inits += [
            _init(f"{name}.weight", w),
            _init(f"{name}.bias", rng.standard_normal(o).astype(np.float32)),
        ]
    inits += [
        _init("fc.weight", rng.standard_normal((classes, channels)).astype(np.float32)),
        _init("fc.bias", rng.standard_normal(classes).astype(np.float32)),
    ]
    pads = [1, 1, 1, 1]

    def conv(name, x, y):
        return helper.make_node(
            "Conv", [x, f"{name}.weight", f"{name}.bias"], [y], name=name, pads=pads
        )

    nodes = [
        conv("conv0", "input", "c0"),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        conv("conv1", "r0", "c1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        conv("conv2", "r1", "c2"),
        helper.make_node("Add", ["c2", "r0"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
    ]
    return _classified("residual_net", nodes, "r2", inits, (1, inputs, image, image), classes)


def transformer_block(
    seq: int = 4,
    d_model: int = 8,
    heads: int = 2,
    d_ff: int = 16,
    *,
    gelu: str = "op",
    seed: int = 0,
) -> onnx.ModelProto:
    """A pre-norm transformer encoder block (Vaswani et al. 2017) on ``(1, seq, d_model)``.

    ``x1 = x + O(attn(LN1(x)))``, ``y = x1 + W2 GELU(W1 LN2(x1))``. Multi-head attention is
    written out: projections ``q``, ``k``, ``v``, ``o`` (MatMul + Add, weight
    ``(d_model, d_model)``), Reshape to ``(1, seq, heads, d_model // heads)``, Transpose,
    ``scores`` = MatMul(Q, K^T), Mul by ``1/sqrt(d_head)``, Softmax, ``context`` =
    MatMul(P, V), Transpose and Reshape back. The MLP is ``ff1`` (d_model -> d_ff) and ``ff2``
    (d_ff -> d_model). ``gelu="op"`` uses the opset-20 ``Gelu``; ``gelu="erf"`` writes
    ``0.5 x (1 + erf(x / sqrt 2))`` (opset 17).
    """
    if d_model % heads:
        raise ValueError("d_model must be a multiple of heads")
    dh = d_model // heads
    rng = np.random.default_rng(seed)

    def rand(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)

    inits = [
        _init("ln1.scale", (1 + 0.1 * rng.standard_normal(d_model)).astype(np.float32)),
        _init("ln1.bias", (0.1 * rng.standard_normal(d_model)).astype(np.float32)),
        _init("ln2.scale", (1 + 0.1 * rng.standard_normal(d_model)).astype(np.float32)),
        _init("ln2.bias", (0.1 * rng.standard_normal(d_model)).astype(np.float32)),
        _init("heads_shape", np.array([1, seq, heads, dh], dtype=np.int64)),
        _init("model_shape", np.array([1, seq, d_model], dtype=np.int64)),
        _init("scale", np.array(1 / np.sqrt(dh), dtype=np.float32)),
    ]
    nodes = [
        helper.make_node(
            "LayerNormalization", ["x", "ln1.scale", "ln1.bias"], ["n1"], name="ln1", axis=-1
        )
    ]

    def dense(name, x, n_in, n_out, y):
        inits.append(_init(f"{name}.weight", rand(n_in, n_out)))
        inits.append(_init(f"{name}.bias", (0.1 * rng.standard_normal(n_out)).astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [x, f"{name}.weight"], [f"{name}.mm"], name=name))
        nodes.append(
            helper.make_node("Add", [f"{name}.mm", f"{name}.bias"], [y], name=f"{name}.add")
        )

    for p in "qkv":
        dense(p, "n1", d_model, d_model, f"{p}.flat")
        nodes.append(
            helper.make_node(
                "Reshape", [f"{p}.flat", "heads_shape"], [f"{p}.split"], name=f"{p}.reshape"
            )
        )
    # Q, V: (1, heads, seq, dh); K: (1, heads, dh, seq)
    nodes += [
        helper.make_node("Transpose", ["q.split"], ["qh"], name="q.transpose", perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k.split"], ["kt"], name="k.transpose", perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v.split"], ["vh"], name="v.transpose", perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["qh", "kt"], ["scores.raw"], name="scores"),
        helper.make_node("Mul", ["scores.raw", "scale"], ["scores.scaled"], name="scores.scale"),
        helper.make_node("Softmax", ["scores.scaled"], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "vh"], ["ctx"], name="context"),
        helper.make_node(
            "Transpose", ["ctx"], ["ctx.t"], name="context.transpose", perm=[0, 2, 1, 3]
        ),
        helper.make_node("Reshape", ["ctx.t", "model_shape"], ["ctx.flat"], name="merge_heads"),
    ]
    dense("o", "ctx.flat", d_model, d_model, "attn")
    nodes += [
        helper.make_node("Add", ["x", "attn"], ["x1"], name="residual1"),
        helper.make_node(
            "LayerNormalization", ["x1", "ln2.scale", "ln2.bias"], ["n2"], name="ln2", axis=-1
        ),
    ]
    dense("ff1", "n2", d_model, d_ff, "ff1.out")
    if gelu == "op":
        nodes.append(helper.make_node("Gelu", ["ff1.out"], ["act"], name="gelu"))
        opset = 20
    elif gelu == "erf":
        inits += [
            _init("gelu.inv_sqrt2", np.array(1 / np.sqrt(2), dtype=np.float32)),
            _init("gelu.one", np.array(1, dtype=np.float32)),
            _init("gelu.half", np.array(0.5, dtype=np.float32)),
        ]
        nodes += [
            helper.make_node("Mul", ["ff1.out", "gelu.inv_sqrt2"], ["g.s"], name="gelu.scale"),
            helper.make_node("Erf", ["g.s"], ["g.e"], name="gelu.erf"),
            helper.make_node("Add", ["g.e", "gelu.one"], ["g.p"], name="gelu.plus1"),
            helper.make_node("Mul", ["ff1.out", "g.p"], ["g.m"], name="gelu.mul"),
            helper.make_node("Mul", ["g.m", "gelu.half"], ["act"], name="gelu.half"),
        ]
        opset = 17
    else:
        raise ValueError(f"gelu must be 'op' or 'erf', not {gelu!r}")
    dense("ff2", "act", d_ff, d_model, "mlp")
    nodes.append(helper.make_node("Add", ["x1", "mlp"], ["y"], name="residual2"))
    graph = helper.make_graph(
        nodes,
        "transformer_block",
        [helper.make_tensor_value_info("x", _F, [1, seq, d_model])],
        [helper.make_tensor_value_info("y", _F, [1, seq, d_model])],
        inits,
    )
    return _model(graph, opset)


def control_flow(n: int = 4, *, trips: int = 3, seed: int = 0) -> onnx.ModelProto:
    """``If`` and ``Loop`` whose bodies read values of the main graph.

    Main graph: ``h = Relu(fc(x))`` (``fc``: MatMul with ``fc.weight`` (n, n), no bias),
    ``s = Sigmoid(x)`` (node ``sig``). Node ``branch`` (If on input ``flag``): the then
    branch returns ``h + shift`` (``shift`` a main-graph initializer), the else branch
    ``h * x``. Node ``repeat`` (Loop, ``trips`` iterations, carried ``v`` starting at the
    If's output ``b``): ``v <- v + s``, then a nested If on the loop condition returns
    ``v * h`` (else ``v``). So ``branch`` captures ``h``, ``x`` and the weight ``shift``;
    ``repeat`` captures ``s`` and ``h`` (the latter through the nested If). Output: ``y``.
    """
    rng = np.random.default_rng(seed)
    inits = [
        _init("fc.weight", rng.standard_normal((n, n)).astype(np.float32)),
        _init("shift", rng.standard_normal(n).astype(np.float32)),
        _init("trips", np.array(trips, dtype=np.int64)),
        _init("keep_going", np.array(True)),
    ]
    vec = [1, n]
    then_g = helper.make_graph(
        [helper.make_node("Add", ["h", "shift"], ["t_out"], name="then.add")],
        "then_branch",
        [],
        [helper.make_tensor_value_info("t_out", _F, vec)],
    )
    else_g = helper.make_graph(
        [helper.make_node("Mul", ["h", "x"], ["e_out"], name="else.mul")],
        "else_branch",
        [],
        [helper.make_tensor_value_info("e_out", _F, vec)],
    )
    inner_then = helper.make_graph(
        [helper.make_node("Mul", ["v1", "h"], ["it_out"], name="inner_then.mul")],
        "inner_then",
        [],
        [helper.make_tensor_value_info("it_out", _F, vec)],
    )
    inner_else = helper.make_graph(
        [helper.make_node("Identity", ["v1"], ["ie_out"], name="inner_else.id")],
        "inner_else",
        [],
        [helper.make_tensor_value_info("ie_out", _F, vec)],
    )
    body = helper.make_graph(
        [
            helper.make_node("Add", ["v_in", "s"], ["v1"], name="body.add"),
            helper.make_node(
                "If",
                ["cond_in"],
                ["v_out"],
                name="body.if",
                then_branch=inner_then,
                else_branch=inner_else,
            ),
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body.cond"),
        ],
        "loop_body",
        [
            helper.make_tensor_value_info("iter", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", _F, vec),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", _F, vec),
        ],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "fc.weight"], ["mm"], name="fc"),
        helper.make_node("Relu", ["mm"], ["h"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
        helper.make_node(
            "If", ["flag"], ["b"], name="branch", then_branch=then_g, else_branch=else_g
        ),
        helper.make_node("Loop", ["trips", "keep_going", "b"], ["y"], name="repeat", body=body),
    ]
    graph = helper.make_graph(
        nodes,
        "control_flow",
        [
            helper.make_tensor_value_info("x", _F, vec),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", _F, vec)],
        inits,
    )
    return _model(graph, 17)


def external_mlp(
    sizes: tuple[int, ...] = (32, 64, 16), *, prune: float = 0.5, seed: int = 0
) -> onnx.ModelProto:
    """:func:`mlp_matmul` meant to be saved with :func:`save` (``external_data=True``).

    Big enough that every weight is a few KiB; ``prune`` defaults to a half so that synapse
    counts differ from weight sizes.
    """
    return mlp_matmul(sizes, prune=prune, seed=seed)


def branch_net(
    kind: str, channels: int = 4, *, image: int = 8, classes: int = 3, seed: int = 0
) -> onnx.ModelProto:
    """Three 3x3 convolutions (pad 1, bias, Relu) whose channels travel through a
    ``kind`` of connection, then GlobalAveragePool -> Flatten -> Gemm(transB=1).

    ``"pool"``: ``conv0 -> MaxPool(2, stride 2) -> conv1 -> conv2`` (a channel shrinks
    before it is sent); ``"residual"``: ``conv2`` reads ``r0 + r1`` (a channel of ``r0``
    read through two tensors); ``"concat"``: ``conv2`` reads ``Concat(r0, r1)`` (channels
    renumbered). Input ``input`` is ``(1, channels, image, image)``; every convolution has
    ``channels`` outputs, ``conv2`` takes ``2 * channels`` inputs for ``"concat"``.
    """
    if kind not in ("pool", "residual", "concat"):
        raise ValueError(kind)
    c = channels
    rng = np.random.default_rng(seed)
    c2_in = 2 * c if kind == "concat" else c
    inits = []
    for i, cin in enumerate((c, c, c2_in)):
        inits.append(
            _init(f"conv{i}.weight", rng.standard_normal((c, cin, 3, 3)).astype(np.float32))
        )
        inits.append(_init(f"conv{i}.bias", rng.standard_normal(c).astype(np.float32)))
    inits.append(_init("fc.weight", rng.standard_normal((classes, c)).astype(np.float32)))
    inits.append(_init("fc.bias", rng.standard_normal(classes).astype(np.float32)))
    pads = [1, 1, 1, 1]

    def conv(i, x):
        w, b = f"conv{i}.weight", f"conv{i}.bias"
        return [
            helper.make_node("Conv", [x, w, b], [f"c{i}"], name=f"conv{i}", pads=pads),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
        ]

    nodes = conv(0, "input")
    if kind == "pool":
        nodes.append(
            helper.make_node(
                "MaxPool", ["r0"], ["m0"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
            )
        )
        nodes += conv(1, "m0") + conv(2, "r1")
    else:
        nodes += conv(1, "r0")
        op = helper.make_node("Add", ["r0", "r1"], ["j"], name="join")
        if kind == "concat":
            op = helper.make_node("Concat", ["r0", "r1"], ["j"], name="join", axis=1)
        nodes += [op, *conv(2, "j")]
    nodes += [
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        f"{kind}_net",
        [helper.make_tensor_value_info("input", _F, [1, c, image, image])],
        [helper.make_tensor_value_info("output", _F, [1, classes])],
        inits,
    )
    return _model(graph, 17)


def save(
    model: onnx.ModelProto,
    directory: str | Path,
    name: str = "model.onnx",
    *,
    external_data: bool = False,
) -> Path:
    """Write ``model`` to ``directory/name`` and return the path.

    With ``external_data`` every initializer (whatever its size) goes to one file,
    :data:`EXTERNAL_LOCATION`, beside the model. ``model`` itself is not modified (onnx
    rewrites the proto it saves in place, so a copy is saved).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if external_data:
        onnx.save_model(
            copy.deepcopy(model),
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=EXTERNAL_LOCATION,
            size_threshold=0,
        )
    else:
        onnx.save_model(model, str(path))
    return path


def light_with_weights(path: Path, *, seed: int = 0) -> onnx.ModelProto:
    """A light model of the onnx wheel with trained-looking weights in place of its
    constant 0.02 fills.

    The light models build every weight with ConstantOfShape(0.02): every channel then
    computes the same value, so a split that permutes or drops channels still matches,
    and activations grow to ~1e8, where a softmax turns summation-order rounding into
    different answers. Here convolution and dense weights are He-scaled normals, biases
    small normals and batch norms near the identity, except that a batch norm ending a
    residual branch gets a small scale (Goyal et al., 2017) -- else every ResNet block
    doubles the variance and the softmax saturates to exactly 0 and 1, which would hide a
    wrong channel too.
    """
    model = onnx.load(path)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    roles: dict[str, tuple[onnx.NodeProto, int]] = {}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for i, name in enumerate(node.input):
            roles.setdefault(name, (node, i))
            readers.setdefault(name, []).append(node)

    def feeds_sum(value: str, hops: int = 2) -> bool:
        for r in readers.get(value, []):
            if r.op_type in ("Add", "Sum"):
                return True
            if hops > 1 and r.op_type == "Relu" and feeds_sum(r.output[0], hops - 1):
                return True
        return False

    rng = np.random.default_rng(seed)
    kept = []
    for node in g.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if (
            node.op_type != "ConstantOfShape"
            or node.input[0] not in inits
            or value is None
            or value.data_type != TensorProto.FLOAT
        ):
            kept.append(node)
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
        reader, i = roles.get(node.output[0], (None, -1))
        op = reader.op_type if reader is not None else ""
        if op == "BatchNormalization":  # scale, bias, mean, variance
            gain = 0.3 if feeds_sum(reader.output[0]) else 1.0
            arr = [
                None,
                gain * rng.uniform(0.8, 1.2, shape),
                rng.normal(0, 0.1, shape),
                rng.normal(0, 0.1, shape),
                rng.uniform(0.8, 1.2, shape),
            ][i]
        elif op in ("Conv", "Gemm", "MatMul") and i == 1:
            fan_in = int(np.prod(shape[1:])) if op == "Conv" else shape[0]
            if op == "Gemm" and any(a.name == "transB" and a.i for a in reader.attribute):
                fan_in = shape[1]
            arr = rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), shape)
        else:
            arr = rng.normal(0, 0.01, shape)
        g.initializer.append(numpy_helper.from_array(arr.astype(np.float32), node.output[0]))
    del g.node[:]
    g.node.extend(kept)
    used = {name for node in g.node for name in node.input}
    constants = {t.name for t in g.initializer}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    inputs = [v for v in g.input if v.name not in constants]
    del g.input[:]
    g.input.extend(inputs)
    model.ir_version = max(model.ir_version, 4)  # IR 3 wants every initializer as an input
    return model
