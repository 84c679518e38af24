"""Tensors of the layer graph: activations (:class:`TensorInfo`) and constants (:class:`Weight`)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dnnpart.errors import InvalidModelError, ResourceLimitError, UnsafeReferenceError

__all__ = ["TensorInfo", "Weight", "ExternalRef", "MAX_MATERIALIZE_BYTES"]

# Materialising a weight larger than this raises ResourceLimitError instead of allocating.
MAX_MATERIALIZE_BYTES = int(os.environ.get("DNNPART_MAX_WEIGHT_BYTES", 8 << 30))
_CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class TensorInfo:
    """An activation tensor: name, shape (ints; ``None`` where unknown) and element type.

    ``dtype`` is the ONNX element type name (``"FLOAT"``, ``"INT64"``...) and ``bits`` its
    width; shapes are hints from shape inference, so any dimension may be unknown.
    """

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str | None
    bits: int | None

    @property
    def num_elements(self) -> int | None:
        if self.shape is None or any(d is None for d in self.shape):
            return None
        return math.prod(self.shape)  # type: ignore[arg-type]

    @property
    def nbytes(self) -> int | None:
        n = self.num_elements
        if n is None or self.bits is None:
            return None
        return (n * self.bits + 7) // 8


@dataclass(frozen=True)
class ExternalRef:
    """A checked reference into an external-data file (see ``importers._external``)."""

    path: str  # real path, inside the model's folder
    offset: int
    length: int
    device: int
    inode: int

    def open(self) -> int:
        """Open the file for reading, refusing it if it changed since it was checked."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            raise UnsafeReferenceError(f"cannot open external data {self.path}: {exc}") from exc
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (
            self.device,
            self.inode,
        ) or st.st_size < self.offset + self.length:
            os.close(fd)
            raise UnsafeReferenceError(
                f"external data file {self.path} changed after it was checked"
            )
        return fd


class Weight:
    """A constant tensor of the model, read only when asked for.

    The bytes live in one of four places: an embedded ONNX tensor, a checked range of an
    external-data file (read in chunks, never mapped whole), a fill value
    (``ConstantOfShape`` of a constant shape), or a small constant expression folded by
    the importer (e.g. ``Unsqueeze`` of a weight), evaluated on demand. :meth:`numpy` materialises;
    :meth:`count_nonzero` and :meth:`iter_rows` stream.
    """

    __slots__ = (
        "name",
        "shape",
        "dtype",
        "bits",
        "_np_dtype",
        "_proto",
        "_external",
        "_fill",
        "_compute",
    )

    def __init__(
        self,
        name,
        shape,
        dtype,
        bits,
        np_dtype,
        *,
        proto=None,
        external=None,
        fill=None,
        compute=None,
    ):
        self.name: str = name
        self.shape: tuple[int, ...] = tuple(int(d) for d in shape)
        self.dtype: str = dtype
        self.bits: int = bits
        self._np_dtype = np_dtype
        self._proto = proto
        self._external: ExternalRef | None = external
        self._fill = fill
        self._compute = compute  # callable evaluating a folded constant expression

    def __repr__(self) -> str:
        return f"Weight({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return (self.size * self.bits + 7) // 8

    @property
    def is_external(self) -> bool:
        return self._external is not None

    def numpy(self) -> np.ndarray:
        """The whole tensor as an array (refused past ``DNNPART_MAX_WEIGHT_BYTES``)."""
        if self.nbytes > MAX_MATERIALIZE_BYTES:
            raise ResourceLimitError(
                f"weight {self.name!r} is {self.nbytes} bytes, over the limit of "
                f"{MAX_MATERIALIZE_BYTES} (set DNNPART_MAX_WEIGHT_BYTES to raise it)"
            )
        if self._fill is not None:
            return np.full(self.shape, self._fill, dtype=self._np_dtype)
        if self._compute is not None:
            return np.asarray(self._compute()).reshape(self.shape)
        if self._external is not None:
            out = np.empty(self.size, dtype=self._np_dtype)
            view = memoryview(out.view(np.uint8).reshape(-1))
            fd = self._external.open()
            try:
                done = 0
                while done < self._external.length:
                    got = os.preadv(
                        fd, [view[done : done + _CHUNK_BYTES]], self._external.offset + done
                    )
                    if got <= 0:
                        raise InvalidModelError(f"external data of {self.name!r} ends early")
                    done += got
            finally:
                os.close(fd)
            return out.reshape(self.shape)
        import onnx
        from onnx import numpy_helper

        if self._proto.data_location == onnx.TensorProto.EXTERNAL:
            # never let onnx resolve the location itself (relative to the working directory)
            raise UnsafeReferenceError(f"weight {self.name!r}: external data was not checked")
        try:
            return np.asarray(numpy_helper.to_array(self._proto)).reshape(self.shape)
        except Exception as exc:  # the proto's payload disagrees with its header
            raise InvalidModelError(f"cannot decode tensor {self.name!r}: {exc}") from exc

    def iter_rows(self, max_bytes: int = _CHUNK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, block)`` of the tensor seen as ``(shape[0], -1)``, streamed."""
        rows = self.shape[0] if self.shape else 1
        row_elems = self.size // rows if rows else 0
        if self._external is None or self.size == 0:
            arr = self.numpy().reshape(rows, row_elems)
            yield 0, arr
            return
        row_bytes = max(1, (row_elems * self.bits) // 8)
        step = max(1, max_bytes // row_bytes)
        fd = self._external.open()
        try:
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                buf = np.empty((r1 - r0) * row_elems, dtype=self._np_dtype)
                want = buf.nbytes
                got = os.preadv(fd, [buf], self._external.offset + r0 * row_bytes)
                if got != want:
                    raise InvalidModelError(f"external data of {self.name!r} ends early")
                yield r0, buf.reshape(r1 - r0, row_elems)
        finally:
            os.close(fd)

    def count_nonzero(self) -> int:
        """Number of non-zero elements, streamed (a fill value answers without reading)."""
        if self._fill is not None:
            return self.size if self._fill != 0 else 0
        return int(sum(np.count_nonzero(block) for _, block in self.iter_rows()))
