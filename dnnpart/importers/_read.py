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
        raise InvalidModelError(f"not a valid ONNX model: {path} ({_short(exc)})") from None
    del data
    _check_header(proto, path)
    return proto


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
    if not proto.graph.output:
        raise InvalidModelError(f"not a valid ONNX model: {path} (the graph has no outputs)")
