"""Mutators: hostile variants of models, plans, manifests, device files and inputs.

Each mutator takes a ``numpy.random.Generator`` and the thing to mutate (a protobuf, a
JSON document, bytes) and returns a one-line description of what it did, so that a
reproduction says how it was made. Structure-aware ONNX mutators follow the onnx
project's own fuzzers and BAD_INPUTS.md: dimensions, element types, attributes, nodes,
opsets, subgraphs and external data; byte-level mutators flip, cut, insert and repeat.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "mutate_model",
    "mutate_bytes",
    "mutate_plan",
    "mutate_manifest",
    "device_file",
    "npz_file",
    "CANARY",
]

CANARY = b"FUZZ-CANARY-SECRET-" * 8
_INTS = [0, -1, 1, 2, 3, 5, 7, 64, 1 << 31, (1 << 40), (1 << 62), -(1 << 62)]
_OPS = "Conv MatMul Gemm Relu Add Slice Reshape Concat Split MaxPool LSTM If Loop Unknown".split()


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _value_infos(g: onnx.GraphProto) -> list:
    return [*g.input, *g.output, *g.value_info]


# -- ONNX, structure-aware ---------------------------------------------------------------
def _dims(rng, m: onnx.ModelProto) -> str:
    infos = [vi for vi in _value_infos(m.graph) if vi.type.tensor_type.shape.dim]
    if not infos:
        return _add_value_info(rng, m)
    vi = _pick(rng, infos)
    dim = _pick(rng, vi.type.tensor_type.shape.dim)
    value = int(_pick(rng, _INTS))
    if rng.random() < 0.2:
        dim.Clear()
        dim.dim_param = "N"
        return f"dim of {vi.name!r} made symbolic"
    dim.dim_value = value
    return f"dim of {vi.name!r} set to {value}"


def _add_value_info(rng, m: onnx.ModelProto) -> str:
    names = [o for n in m.graph.node for o in n.output]
    if not names:
        return "no value to describe"
    name = _pick(rng, names)
    shape = [int(_pick(rng, [1, 2, 1 << 40, 0])) for _ in range(int(rng.integers(1, 4)))]
    m.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    return f"value_info {name!r} declared {shape}"


def _dtype(rng, m: onnx.ModelProto) -> str:
    if m.graph.initializer and rng.random() < 0.5:
        t = _pick(rng, m.graph.initializer)
        t.data_type = int(_pick(rng, [0, 2, 7, 8, 10, 16, 23, 99]))
        return f"initializer {t.name!r} data_type {t.data_type}"
    vi = _pick(rng, _value_infos(m.graph))
    vi.type.tensor_type.elem_type = int(_pick(rng, [0, 6, 7, 9, 11, 99]))
    return f"{vi.name!r} elem_type {vi.type.tensor_type.elem_type}"


def _attribute(rng, m: onnx.ModelProto) -> str:
    if not m.graph.node:
        return "no node"
    node = _pick(rng, m.graph.node)
    name = _pick(
        rng,
        [a.name for a in node.attribute]
        + "group axis transA transB kernel_shape strides pads perm split layout".split(),
    )
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    r = rng.random()
    if r < 0.6:
        value = int(_pick(rng, _INTS))
        node.attribute.append(helper.make_attribute(name, value))
    elif r < 0.85:
        value = [int(_pick(rng, _INTS)) for _ in range(int(rng.integers(0, 5)))]
        node.attribute.append(helper.make_attribute(name, value, attr_type=7))
    else:
        value = _pick(rng, ["NOTSET", "", "bidirectional", 1.5])
        node.attribute.append(helper.make_attribute(name, value))
    return f"node {node.name or node.op_type!r} attribute {name} = {value!r}"


def _node(rng, m: onnx.ModelProto) -> str:
    g = m.graph
    if not g.node:
        return "no node"
    i = int(rng.integers(len(g.node)))
    node = g.node[i]
    r = rng.random()
    if r < 0.2:
        del g.node[i]
        return f"node {i} deleted"
    if r < 0.35:
        g.node.append(copy.deepcopy(node))
        return f"node {i} duplicated"
    if r < 0.5:
        node.op_type = _pick(rng, _OPS)
        return f"node {i} op_type {node.op_type}"
    if r < 0.65:
        names = [x for n in g.node for x in [*n.input, *n.output]] + ["", "nobody"]
        if node.input:
            j = int(rng.integers(len(node.input)))
            node.input[j] = _pick(rng, names)
            return f"node {i} input {j} = {node.input[j]!r}"
        return "node without input"
    if r < 0.75:
        node.domain = _pick(rng, ["ai.onnx.ml", "com.example", "ai.onnx"])
        return f"node {i} domain {node.domain!r}"
    if r < 0.85:
        order = list(g.node)
        rng.shuffle(order)
        del g.node[:]
        g.node.extend(order)
        return "nodes shuffled"
    if node.output:
        node.output[0] = _pick(rng, [x for n in g.node for x in n.input] or ["y"])
        return f"node {i} output renamed {node.output[0]!r}"
    return "node without output"


def _opset(rng, m: onnx.ModelProto) -> str:
    version = int(_pick(rng, [0, 1, 6, 7, 11, 13, 21, 99, 1 << 40]))
    if rng.random() < 0.3:
        m.opset_import.append(helper.make_opsetid(_pick(rng, ["ai.onnx.ml", "x.y"]), version))
        return f"extra opset {version}"
    for entry in m.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = version
    if rng.random() < 0.2:
        m.ir_version = int(_pick(rng, [0, 3, 4, 99]))
    return f"opset {version} ir {m.ir_version}"


def _subgraph(rng, m: onnx.ModelProto) -> str:
    g = m.graph
    if not g.node or not g.input:
        return "no node for a subgraph"
    node = g.node[0]
    body_out = node.output[0] if node.output else "y"
    depth = int(_pick(rng, [1, 2, 5, 20]))
    out_info = [helper.make_tensor_value_info(body_out, TensorProto.FLOAT, None)]
    inner = helper.make_graph([copy.deepcopy(node)], "body", [], out_info)
    other = copy.deepcopy(inner)  # the else branches stay one level deep: linear size
    for _ in range(depth - 1):
        cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
        wrap = helper.make_node("If", ["cond"], [body_out], then_branch=inner, else_branch=other)
        inner = helper.make_graph(
            [helper.make_node("Constant", [], ["cond"], value=cond), wrap],
            "body",
            [],
            [helper.make_tensor_value_info(body_out, 1, None)],
        )
    cond = numpy_helper.from_array(np.array(rng.random() < 0.5), "cond_outer")
    g.initializer.append(cond)
    g.node[0].CopyFrom(
        helper.make_node(
            "If",
            ["cond_outer"],
            list(node.output)[:1] or ["y"],
            then_branch=inner,
            else_branch=other,
            name="if0",
        )
    )
    return f"first node wrapped in If, depth {depth}"


def _external(rng, m: onnx.ModelProto, case: Path, canary: Path) -> str:
    inits = list(m.graph.initializer)
    if not inits:
        return "no initializer"
    t = _pick(rng, inits)
    inline = t.data_type not in (0, 8) and t.data_location != TensorProto.EXTERNAL
    try:
        data = numpy_helper.to_array(t).tobytes() if inline else b""
    except Exception:  # noqa: BLE001 - an earlier mutation broke the tensor
        data = b""
    kind = int(rng.integers(8))
    location = {
        0: "w.bin",
        1: "../canary.bin",
        2: str(canary),
        3: "sub/../../canary.bin",
        4: "link.bin",
        5: "/proc/self/mem",
        6: "w.bin",
        7: "dir",
    }[kind]
    (case / "w.bin").write_bytes(data + (b"\0" * int(rng.integers(0, 3)) if kind == 6 else b""))
    if kind == 4:
        (case / "link.bin").symlink_to(canary)
    if kind == 7:
        (case / "dir").mkdir(exist_ok=True)
    t.ClearField("raw_data")
    for f in ("float_data", "int64_data", "int32_data", "double_data"):
        t.ClearField(f)
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    t.external_data.add(key="location", value=location)
    if rng.random() < 0.4:
        t.external_data.add(key="offset", value=_pick(rng, ["0", "-1", "x", "99999999999", "4"]))
    if rng.random() < 0.4:
        t.external_data.add(key="length", value=_pick(rng, ["0", "4", "-4", str(len(data))]))
    return f"initializer {t.name!r} external at {location!r}"


_MODEL_MUTATORS = [
    _dims,
    _add_value_info,
    _dtype,
    _attribute,
    _attribute,
    _node,
    _node,
    _opset,
    _subgraph,
]


def mutate_model(rng, model: onnx.ModelProto, case: Path, canary: Path) -> tuple[bytes, str]:
    """A structure-aware mutant of ``model`` (1-3 mutations), serialised."""
    m = copy.deepcopy(model)
    done = []
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.15:
            done.append(_external(rng, m, case, canary))
        else:
            try:
                done.append(_pick(rng, _MODEL_MUTATORS)(rng, m))
            except DecodeError:  # protobuf's own depth limit, while building the mutant
                done.append("mutation too deep for protobuf, skipped")
    return m.SerializeToString(), "; ".join(done)


# -- bytes ----------------------------------------------------------------------------------
def mutate_bytes(rng, data: bytes) -> tuple[bytes, str]:
    """A byte-level mutant: flips, a cut, an insertion, a repeated chunk or appended bytes."""
    b = bytearray(data)
    r = rng.random()
    if r < 0.35 and b:
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        return bytes(b), "bytes flipped"
    if r < 0.55:
        cut = int(rng.integers(len(b) + 1))
        return bytes(b[:cut]), f"truncated at {cut}"
    if r < 0.75:
        at = int(rng.integers(len(b) + 1))
        junk = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        return bytes(b[:at] + junk + b[at:]), f"{len(junk)} bytes inserted at {at}"
    if r < 0.9 and b:
        lo = int(rng.integers(len(b)))
        hi = min(len(b), lo + int(rng.integers(1, 256)))
        return bytes(b[:hi] + b[lo:hi] + b[hi:]), f"bytes {lo}:{hi} repeated"
    return bytes(b) + bytes(b[: int(rng.integers(1, 64))]), "bytes appended"


# -- JSON documents ---------------------------------------------------------------------------
_JSON_VALUES = [
    None,
    True,
    -1,
    0,
    1,
    2,
    1 << 70,
    10**12,
    1.5,
    float("nan"),
    float("inf"),
    "2",
    "",
    [],
    {},
    [1, 2],
    {"a": 1},
]


def _mutate_json(rng, doc, fields) -> str:
    key = _pick(rng, fields)
    target = doc
    path = key.split(".")
    for part in path[:-1]:
        target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, list) and target:
            target = target[0]
    if not isinstance(target, dict):
        return f"{key}: no such field"
    last = path[-1]
    value = target.get(last)
    r = rng.random()
    if isinstance(value, list) and value and r < 0.5:
        op = int(rng.integers(4))
        if op == 0:
            value.pop()
            return f"{key}: one item fewer"
        if op == 1:
            value.append(copy.deepcopy(value[-1]))
            return f"{key}: one item more"
        i = int(rng.integers(len(value)))
        value[i] = _pick(rng, _JSON_VALUES) if op == 2 else -1
        return f"{key}[{i}] = {value[i]!r}"
    if r < 0.6 and last in target:
        del target[last]
        return f"{key} removed"
    target[last] = _pick(rng, _JSON_VALUES)
    return f"{key} = {target[last]!r}"


def _json_text(rng, doc) -> tuple[bytes, str]:
    if rng.random() < 0.05:
        depth = int(_pick(rng, [100, 5000, 100000]))
        return ("[" * depth + "]" * depth).encode(), f"nested {depth} deep"
    return json.dumps(doc).encode(), ""


_PLAN_FIELDS = [
    "k",
    "labels",
    "groups",
    "groups.start",
    "groups.stop",
    "groups.name",
    "granularity",
    "method",
    "parameters.prune",
    "parameters.dead_neurons",
    "model_sha256",
    "scores",
    "devices",
    "format",
]


def mutate_plan(rng, plan: dict) -> tuple[bytes, str]:
    doc = copy.deepcopy(plan)
    what = _mutate_json(rng, doc, _PLAN_FIELDS)
    text, nested = _json_text(rng, doc)
    return (
        (mutate_bytes(rng, text)[0], "plan bytes") if rng.random() < 0.1 else (text, nested or what)
    )


_MANIFEST_FIELDS = [
    "k",
    "stages",
    "stages.file",
    "stages.data",
    "stages.device",
    "stages.inputs",
    "stages.outputs",
    "order",
    "transfers",
    "transfers.from",
    "transfers.to",
    "transfers.axis",
    "transfers.positions",
    "transfers.indices",
    "transfers.after",
    "transfers.value",
    "transfers.bytes",
    "inputs",
    "inputs.device",
    "inputs.indices",
    "inputs.axis",
    "outputs",
    "model.file",
    "model.sha256",
    "model.prune",
    "volume_bytes_planned",
    "format",
]
_MODEL_FILES = [
    "/etc/passwd",
    "../../etc/passwd",
    "/proc/self/mem",
    "../canary.bin",
    "../../canary.bin",
    "model.onnx",
    "canary-link.onnx",
    "split",
]


def mutate_manifest(rng, manifest: dict) -> tuple[bytes, str]:
    doc = copy.deepcopy(manifest)
    if rng.random() < 0.25:
        doc["model"]["file"] = _pick(rng, _MODEL_FILES)
        what = f"model.file = {doc['model']['file']!r}"
    else:
        what = _mutate_json(rng, doc, _MANIFEST_FIELDS)
    text, nested = _json_text(rng, doc)
    return text, nested or what


# -- device files and inputs ---------------------------------------------------------------------
_DEVICE_VALUES = [
    "1",
    "0",
    "-1",
    "nan",
    "inf",
    "1e400",
    '"1.3TFLOPS"',
    '"8GiB"',
    '"x"',
    '"inf"',
    '"-5GiB"',
    "true",
    "[1]",
    '"10Gbit/s"',
    '"50us"',
    '"1e-400s"',
]


def device_file(rng) -> tuple[bytes, str]:
    """A device file (TOML) with random devices, fields, values and links."""
    lines = []
    if rng.random() < 0.5:
        lines += [
            "[link]",
            f"bandwidth = {_pick(rng, _DEVICE_VALUES)}",
            f"latency = {_pick(rng, _DEVICE_VALUES)}",
        ]
    names = []
    for i in range(int(_pick(rng, [0, 1, 2, 3, 2]))):
        name = _pick(rng, [f"d{i}", f"d{i}", "", "d0", "x" * 300])
        names.append(name)
        lines += ["[[device]]", f"name = {json.dumps(name)}"]
        for key in ("speed", "memory", _pick(rng, ["colour", "speed", "memory"])):
            if rng.random() < 0.8:
                lines.append(f"{key} = {_pick(rng, _DEVICE_VALUES)}")
    if names and rng.random() < 0.3:
        lines += [
            "[[link.pair]]",
            f"between = {json.dumps([names[0], _pick(rng, names + ['z'])])}",
            f"bandwidth = {_pick(rng, _DEVICE_VALUES)}",
        ]
    text = "\n".join(lines).encode()
    if rng.random() < 0.1:
        text, _ = mutate_bytes(rng, text)
    return text, f"{len(names)} devices"


def npz_file(rng, specs: list[tuple[str, np.dtype, list]]) -> tuple[bytes, str]:
    """An .npz for a model with inputs ``specs`` (name, dtype, dims): wrong names, dtypes,
    shapes, NaN, object arrays, an archive declaring a huge array, or not a zip."""
    r = rng.random()
    if r < 0.1:
        return mutate_bytes(rng, b"PK\x03\x04" + bytes(40))[0], "not an archive"
    if r < 0.2:  # a member whose .npy header declares a huge array
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            header = (
                b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': ("
                + str(1 << 40).encode()
                + b", 64), }"
            )
            z.writestr(f"{specs[0][0] if specs else 'x'}.npy", header.ljust(128, b" ") + b"\n")
        return buf.getvalue(), "huge array header"
    arrays = {}
    what = []
    for name, dtype, dims in specs:
        shape = [1 if d is None else d for d in dims or []]
        kind = int(rng.integers(6))
        if kind == 0:
            shape = [int(rng.integers(0, 4))] + shape
        elif kind == 1 and shape:
            shape[-1] += 1
        elif kind == 2:
            shape = shape[1:]
        a = np.zeros(shape, dtype=dtype) if np.prod(shape) < 1 << 20 else np.zeros(1, dtype)
        if kind == 3 and a.dtype.kind == "f":
            a[...] = np.nan
        if kind == 4:
            a = a.astype(_pick(rng, [np.int64, np.float64, np.bool_, np.complex64]))
        arrays[_pick(rng, [name, name, name, "x", "other"])] = a
        what.append(f"{name}: kind {kind}")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), ", ".join(what)
