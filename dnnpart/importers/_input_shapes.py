"""Concrete input shapes: the model's declared input dimensions closed by the user's
``--input-shape NAME=D0,D1,...``, ``--dim SYMBOL=VALUE`` or the arrays of a sample.

A model becomes a partitioning problem only for concrete input shapes (DESIGN.md,
"Concrete shapes"). A leading batch axis left open defaults to 1, with a note; any other
open dimension is a :class:`~dnnpart.errors.UsageError` naming the input, the dimension
and the flag that sets it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from dnnpart.errors import UsageError

__all__ = [
    "parse_input_shape",
    "parse_dim",
    "read_npz",
    "declared_inputs",
    "resolve_input_shapes",
]

Declared = list[tuple[str, list[int | str | None] | None]]


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"x=1,3,224,224"`` -> ``("x", (1, 3, 224, 224))`` (``--input-shape``)."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise UsageError(f"--input-shape {text!r}: write NAME=D0,D1,... (e.g. input=1,3,224,224)")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise UsageError(f"--input-shape {text!r}: dimensions must be integers") from None
    if any(d < 1 for d in shape):
        raise UsageError(f"--input-shape {text!r}: dimensions must be at least 1")
    return name, shape


def parse_dim(text: str) -> tuple[str, int]:
    """``"sequence=128"`` -> ``("sequence", 128)`` (``--dim``)."""
    name, sep, value = text.rpartition("=")
    try:
        size = int(value)
    except ValueError:
        size = 0
    if not sep or not name or size < 1:
        raise UsageError(f"--dim {text!r}: write SYMBOL=VALUE with VALUE at least 1")
    return name, size


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, pickles refused (``allow_pickle`` stays off)."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise UsageError(f"{path}: not an .npz archive of named arrays")
            return {key: data[key] for key in data.files}
    except UsageError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read inputs {path}: {first}") from None


def declared_inputs(graph) -> Declared:
    """``(name, dims)`` of an ONNX GraphProto's real inputs (initializers excluded); a
    dim is an int, a symbol (str) or None (unknown); ``dims`` is None without a shape."""
    init = {t.name for t in graph.initializer}
    out: Declared = []
    for vi in graph.input:
        if vi.name in init or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            out.append((vi.name, None))
            continue
        dims: list[int | str | None] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value >= 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        out.append((vi.name, dims))
    return out


def _label(dim: int | str | None, axis: int) -> str:
    return f"{axis} ({dim!r})" if isinstance(dim, str) else f"{axis}"


def resolve_input_shapes(
    declared: Declared,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    dims: Mapping[str, int] | None = None,
    sample_shapes: Mapping[str, Sequence[int]] | None = None,
) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """Concrete shapes of every model input, and notes on what was defaulted.

    Parameters
    ----------
    declared : list of (name, dims)
        From :func:`declared_inputs`.
    input_shapes : mapping of name to shape, optional
        Whole shapes by input name (``--input-shape``, or a sample's arrays); each must
        agree with the dimensions the model fixes.
    dims : mapping of symbol to size, optional
        Sizes of named symbolic dimensions, wherever they appear (``--dim``).
    sample_shapes : mapping of name to shape, optional
        The shapes of a real sample's arrays (``--inputs``): an array with one more
        leading axis than its input holds stacked samples (the axis is dropped); arrays
        named after no input (labels) are left alone. ``input_shapes`` win over these.

    Raises
    ------
    UsageError
        An unknown input or symbol, a shape that contradicts the model, or an open
        dimension other than a leading batch axis.
    """
    input_shapes = dict(input_shapes or {})
    dims = dict(dims or {})
    names = [n for n, _ in declared]
    for name, ds in declared:
        shape = (sample_shapes or {}).get(name)
        if shape is not None and name not in input_shapes:
            extra = ds is not None and len(shape) == len(ds) + 1
            input_shapes[name] = tuple(shape[1:] if extra else shape)
    for name in input_shapes:
        if name not in names:
            raise UsageError(
                f"--input-shape {name}=...: the model has no input {name!r} "
                f"(inputs: {', '.join(names) or 'none'})"
            )
    symbols = {d for _, ds in declared for d in (ds or []) if isinstance(d, str)}
    for sym in dims:
        if sym not in symbols:
            raise UsageError(
                f"--dim {sym}=...: no input has a dimension named {sym!r} "
                f"(symbols: {', '.join(sorted(symbols)) or 'none'})"
            )
    shapes: dict[str, tuple[int, ...]] = {}
    notes: list[str] = []
    for name, ds in declared:
        given = input_shapes.get(name)
        if given is not None:
            given = tuple(int(d) for d in given)
            if ds is not None and len(given) != len(ds):
                raise UsageError(
                    f"input {name!r} has rank {len(ds)} ({_show(ds)}); "
                    f"--input-shape gives {len(given)} dimensions {list(given)}"
                )
            for axis, (d, g) in enumerate(zip(ds or [], given, strict=False)):
                if isinstance(d, int) and d != g:
                    raise UsageError(
                        f"input {name!r} dimension {axis} is fixed at {d} by the model; "
                        f"given {g} (shape {list(given)})"
                    )
                if isinstance(d, str) and d in dims and dims[d] != g:
                    raise UsageError(
                        f"input {name!r} dimension {_label(d, axis)}: --dim {d}={dims[d]} "
                        f"but --input-shape gives {g}"
                    )
            shapes[name] = given
            continue
        if ds is None:
            raise UsageError(
                f"input {name!r} declares no shape; set it with --input-shape {name}=D0,D1,..."
            )
        shape = []
        for axis, d in enumerate(ds):
            if isinstance(d, int):
                shape.append(d)
            elif isinstance(d, str) and d in dims:
                shape.append(dims[d])
            elif axis == 0 and len(ds) > 1:
                shape.append(1)
                what = f"symbolic batch axis {d!r}" if d else "open batch axis"
                notes.append(
                    f"input {name!r}: {what} set to 1 "
                    f"(set it with --input-shape {name}=...{f' or --dim {d}=N' if d else ''})"
                )
            else:
                flag = f"--dim {d}=VALUE or " if d else ""
                raise UsageError(
                    f"input {name!r} dimension {_label(d, axis)} of {_show(ds)} is open; "
                    f"set it with {flag}--input-shape {name}=D0,D1,..."
                )
        shapes[name] = tuple(shape)
    return shapes, notes


def _show(ds) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in ds) + "]"
