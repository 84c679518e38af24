"""Read an ONNX file into a ModelProto, refusing what is not a model."""

from __future__ import annotations

import os
import stat

import onnx
from google.protobuf.message import DecodeError

from dnnpart.errors import InvalidModelError, ResourceLimitError, UsageError

__all__ = ["read_model_proto", "MAX_PROTO_BYTES"]

# protobuf cannot hold a message of 2 GiB or more: bigger models keep weights outside.
MAX_PROTO_BYTES = (2 << 30) - 1
MAX_IR_VERSION = 64


def read_model_proto(path: str) -> onnx.ModelProto:
    """Parse ``path`` without loading external data; raise typed errors for bad files."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"no such model file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read model file {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidModelError(f"not a valid ONNX model: {path} (not a regular file)")
    if st.st_size > MAX_PROTO_BYTES:
        raise ResourceLimitError(
            f"{path} is {st.st_size / (1 << 30):.2f} GiB; an ONNX file over 2 GiB cannot be "
            "parsed: save the weights as external data "
            "(onnx.save_model(..., save_as_external_data=True))"
        )
    with open(path, "rb") as f:
        data = f.read(MAX_PROTO_BYTES + 1)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        if "depth" in str(exc).lower():  # upb/C++ parsers stop at 100 nested messages
            raise ResourceLimitError(
                f"{path}: messages nested deeper than the protobuf parser allows "
                "(subgraphs nested too deeply?); refusing"
            ) from None
        raise InvalidModelError(f"not a valid ONNX model: {path} ({_short(exc)})") from None
    twice = _singular_field_given_twice(data)
    if twice:
        raise InvalidModelError(
            f"not a valid ONNX model: {path} ({twice} given twice: trailing bytes?)"
        )
    del data
    _check_header(proto, path)
    return proto


# ModelProto's singular fields: protobuf merges a repeat silently (the last one wins), so
# bytes appended to a model can parse cleanly and replace its graph or version.
_SINGULAR_FIELDS = {
    1: "ir_version",
    2: "producer_name",
    3: "producer_version",
    4: "domain",
    5: "model_version",
    6: "doc_string",
    7: "graph",
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _singular_field_given_twice(data: bytes) -> str | None:
    """Name of a top-level singular field that occurs twice in ``data`` (already parsed).

    Walks the top-level field headers only, skipping payloads: cheap, and no writer emits
    a singular field twice, so a repeat means bytes were appended to the model.
    """
    seen: set[int] = set()
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number in _SINGULAR_FIELDS and number in seen:
            return _SINGULAR_FIELDS[number]
        seen.add(number)
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:  # groups: not in onnx.proto; the parser has judged them already
            return None
    return None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__


def _check_header(proto: onnx.ModelProto, path: str) -> None:
    from google.protobuf import unknown_fields

    if not proto.HasField("graph"):
        why = "empty file" if proto.ByteSize() == 0 else "no graph"
        raise InvalidModelError(f"not a valid ONNX model: {path} ({why})")
    if len(unknown_fields.UnknownFieldSet(proto)) or len(
        unknown_fields.UnknownFieldSet(proto.graph)
    ):
        raise InvalidModelError(
            f"not a valid ONNX model: {path} (unknown fields or trailing bytes)"
        )
    if not 1 <= proto.ir_version <= MAX_IR_VERSION:
        raise InvalidModelError(f"not a valid ONNX model: {path} (ir_version {proto.ir_version})")
    for entry in proto.opset_import:
        if not isinstance(entry.domain, str):  # proto2 strings: bytes when not UTF-8
            raise InvalidModelError(
                f"not a valid ONNX model: {path} (opset domain {entry.domain!r} is not UTF-8)"
            )
        if entry.domain in ("", "ai.onnx") and entry.version < 1:
            raise InvalidModelError(
                f"not a valid ONNX model: {path} (opset version {entry.version} "
                f"for domain {entry.domain or 'ai.onnx'!r})"
            )
    if not proto.graph.output:
        raise InvalidModelError(f"not a valid ONNX model: {path} (the graph has no outputs)")
