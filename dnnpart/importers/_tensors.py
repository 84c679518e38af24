"""Check every tensor of an ONNX model before a byte of its data is read.

Model files come from strangers (see BAD_INPUTS.md, "Reading a model"). Each tensor's
declared shape must be sane and agree with the data it carries; each external-data
reference must name a regular, singly-linked file inside the model's folder (compared by
real paths, whole components), with an offset and length inside that file that match the
tensor's size. Everything is refused *before* any external byte is read or any array
allocated. Known onnx CVEs this guards against: 2022-25882, 2024-27318, 2025-51480,
2026-27489.
"""

from __future__ import annotations

import math
import ntpath
import os
import re
import stat
from collections.abc import Iterator

import onnx

from dnnpart.errors import InvalidModelError, ResourceLimitError, UnsafeReferenceError
from dnnpart.graph._tensor import ExternalRef

__all__ = ["iter_tensors", "check_tensor", "checked_file", "MAX_RANK", "MAX_ELEMENTS"]

MAX_RANK = 64
MAX_ELEMENTS = 1 << 44  # 16 Ti elements: no real weight comes close
_EXTERNAL_KEYS = {"location", "offset", "length", "checksum"}
_DECIMAL = re.compile(r"^[0-9]{1,19}$")
_TYPED_FIELDS = (
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def iter_tensors(model: onnx.ModelProto) -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every TensorProto of the model with a label saying where it sits.

    Walks initializers, sparse initializers, tensor attributes and every subgraph and
    local function iteratively (no Python recursion on graph depth).
    """
    stack: list[tuple[onnx.GraphProto, str]] = [(model.graph, "graph")]
    node_lists = [(f.node, f"function {f.name}") for f in model.functions]
    while stack or node_lists:
        if stack:
            graph, where = stack.pop()
            for t in graph.initializer:
                yield t, f"initializer {t.name!r}"
            for s in graph.sparse_initializer:
                yield s.values, f"sparse initializer {s.values.name!r}"
                yield s.indices, f"indices of sparse initializer {s.values.name!r}"
            node_lists.append((graph.node, where))
            continue
        nodes, where = node_lists.pop()
        for node in nodes:
            for attr in node.attribute:
                label = f"attribute {attr.name!r} of node {node.name or node.op_type!r}"
                if attr.HasField("t"):
                    yield attr.t, label
                for t in attr.tensors:
                    yield t, label
                sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
                for sp in [*sparse, *attr.sparse_tensors]:
                    yield sp.values, label
                    yield sp.indices, f"indices of {label}"
                if attr.HasField("g"):
                    stack.append((attr.g, label))
                for g in attr.graphs:
                    stack.append((g, label))


def _bits(data_type: int, where: str) -> int:
    try:
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(data_type)
    except Exception:  # noqa: BLE001 - unknown or undefined element type
        raise InvalidModelError(f"{where} has unknown element type {data_type}") from None
    import onnx_ir as ir

    try:
        return ir.DataType(data_type).bitwidth
    except Exception:  # noqa: BLE001
        return np_dtype.itemsize * 8


def declared_size(t: onnx.TensorProto, where: str) -> tuple[int, int]:
    """``(elements, bytes)`` the tensor's header declares, after sanity checks."""
    dims = list(t.dims)
    if len(dims) > MAX_RANK:
        raise ResourceLimitError(f"{where} has rank {len(dims)} (limit {MAX_RANK})")
    for d in dims:
        if d < 0:
            raise InvalidModelError(f"{where} has a negative dimension in shape {dims}")
    elements = math.prod(dims)
    if elements > MAX_ELEMENTS:
        raise ResourceLimitError(f"{where} declares {elements} elements (shape {dims})")
    if t.data_type == onnx.TensorProto.STRING:
        return elements, 0
    if t.data_type == onnx.TensorProto.UNDEFINED:
        raise InvalidModelError(f"{where} has no element type")
    bits = _bits(t.data_type, where)
    return elements, (elements * bits + 7) // 8


def check_tensor(t: onnx.TensorProto, where: str, base_dir: str) -> ExternalRef | None:
    """Validate one tensor; return its checked external reference, if it has one."""
    elements, nbytes = declared_size(t, where)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return _check_external(t, where, base_dir, nbytes)
    if t.data_type == onnx.TensorProto.STRING:
        if len(t.string_data) != elements:
            raise InvalidModelError(
                f"{where} declares {elements} strings but holds {len(t.string_data)}"
            )
        return None
    if t.HasField("raw_data"):
        if len(t.raw_data) != nbytes:
            raise InvalidModelError(
                f"{where} declares shape {list(t.dims)} ({nbytes} bytes) "
                f"but holds {len(t.raw_data)} bytes"
            )
        return None
    held = sum(len(getattr(t, f)) for f in _TYPED_FIELDS)
    # complex numbers take two values per element; 4/8-bit types are packed into int32s
    if held not in (elements, 2 * elements) and not (
        held and held < elements and _bits(t.data_type, where) < 8
    ):
        raise InvalidModelError(f"{where} declares {elements} elements but holds {held}")
    return None


def _check_external(t: onnx.TensorProto, where: str, base_dir: str, nbytes: int) -> ExternalRef:
    info: dict[str, str] = {}
    for entry in t.external_data:
        if not isinstance(entry.value, str):  # proto2 strings: bytes when not UTF-8
            raise InvalidModelError(f"{where}: external_data {entry.key!r} is not valid UTF-8")
        if entry.key not in _EXTERNAL_KEYS:
            raise InvalidModelError(f"{where}: unknown external_data key {entry.key!r}")
        if entry.key in info:
            raise InvalidModelError(f"{where}: external_data key {entry.key!r} given twice")
        info[entry.key] = entry.value
    location = info.get("location", "")
    if not location:
        raise InvalidModelError(f"{where}: external data without a location")
    offset = _number(info.get("offset", "0"), "offset", where)
    length = _number(info["length"], "length", where) if "length" in info else None
    real, st = checked_file(location, base_dir, where, "external data")
    if length is None:
        length = max(st.st_size - offset, 0)
    if length != nbytes:
        raise InvalidModelError(
            f"{where}: external data length {length} does not match shape "
            f"{list(t.dims)} ({nbytes} bytes)"
        )
    if offset + length > st.st_size:
        raise InvalidModelError(
            f"{where}: external data {location!r} range {offset}+{length} is past "
            f"its end ({st.st_size} bytes)"
        )
    return ExternalRef(real, offset, length, st.st_dev, st.st_ino)


def checked_file(location: str, base_dir: str, where: str, what: str) -> tuple[str, os.stat_result]:
    """Real path and stat of the file ``location`` names relative to ``base_dir``.

    Refused before anything is opened: absolute, drive-letter, UNC, ``~`` and ``..``
    locations, a real path (through symlinks, compared by whole components) outside
    ``base_dir``, anything but a regular file, a hard-linked file.
    """
    _check_location_text(location, where, what)
    base_real = os.path.realpath(base_dir)
    candidate = os.path.join(base_real, location)
    real = os.path.realpath(candidate)
    if os.path.commonpath([base_real, real]) != base_real or real == base_real:
        raise UnsafeReferenceError(
            f"{where}: {what} {location!r} resolves outside its folder ({real})"
        )
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise InvalidModelError(f"{where}: {what} file {location!r} not found ({real})") from None
    except OSError as exc:
        raise UnsafeReferenceError(f"{where}: cannot stat {what} {location!r}: {exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeReferenceError(f"{where}: {what} {location!r} is not a regular file")
    if st.st_nlink > 1:
        raise UnsafeReferenceError(
            f"{where}: {what} {location!r} is hard-linked ({st.st_nlink} links); refusing"
        )
    return real, st


def _number(text: str, key: str, where: str) -> int:
    if not _DECIMAL.match(text.strip()):
        raise InvalidModelError(
            f"{where}: external data {key} {text!r} is not a non-negative integer"
        )
    return int(text)


def _check_location_text(location: str, where: str, what: str) -> None:
    """Refuse absolute, drive-letter, UNC and parent-directory locations outright."""
    unsafe = (
        "\x00" in location
        or os.path.isabs(location)
        or ntpath.isabs(location)
        or bool(ntpath.splitdrive(location)[0])
        or location.startswith(("\\\\", "//", "~"))
        or ".." in re.split(r"[\\/]", location)
    )
    if unsafe:
        raise UnsafeReferenceError(f"{where}: unsafe {what} location {location!r}")
