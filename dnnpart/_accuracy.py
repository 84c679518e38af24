"""The user's data and top-1 accuracy on it.

A data file is an ``.npz`` with one array per model input (by name) and, optionally, a
label array (``--labels NAME``, default ``y``). Accuracy is top-1 of one model output
(the first unless ``--output NAME``): the argmax over its last axis for scores, the
values themselves for integer outputs (a model that already returns labels). Without
labels, accuracy is the agreement with the original model's top-1.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from dnnpart.errors import ResourceLimitError, UsageError

__all__ = [
    "Data",
    "accuracy",
    "accuracy_of",
    "load_data",
    "output_name",
    "predict",
    "read_npz",
    "samples_from",
    "top1",
]

DEFAULT_LABELS = "y"
MAX_FEED_BYTES = 1 << 30  # what an .npz of inputs may unpack to


@dataclass
class Data:
    """Per-sample feeds and their labels (None: the file has none)."""

    feeds: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    label_name: str | None


def _fits(shape, dims) -> bool:
    if len(shape) != len(dims):
        return False
    return all(d is None or d == s for s, d in zip(shape, dims, strict=True))


def samples_from(arrays: dict[str, np.ndarray], specs) -> list[dict[str, np.ndarray]]:
    """Cut each input array into per-sample feeds.

    ``specs`` are ``(name, numpy dtype, dims)`` of the model inputs. An input whose first
    dimension is symbolic (or 1) is cut into samples along it; an array with one more
    dimension than the input is cut along its first; an array of the input's own rank is
    reused for every sample. Every sample must have the input's shape (``dims``; None
    matches any size): else UsageError naming the input, the expected and the given shape.
    """
    per_input: dict[str, list[np.ndarray] | np.ndarray] = {}
    count = None
    for name, dtype, dims in specs:
        if name not in arrays:
            raise UsageError(f"the inputs file has no array {name!r}")
        a = np.asarray(arrays[name])
        if a.dtype != dtype:
            if a.dtype.kind != np.dtype(dtype).kind:
                raise UsageError(f"input {name!r} is {a.dtype}, the model wants {dtype}")
            a = a.astype(dtype)
        rank = len(dims) if dims is not None else a.ndim
        dims = dims if dims is not None else [None] * a.ndim
        if a.ndim == rank and rank and dims[0] in (None, 1) and _fits(a.shape[1:], dims[1:]):
            parts = [a[i : i + 1] for i in range(a.shape[0])]
        elif a.ndim == rank + 1 and _fits(a.shape[1:], dims):
            parts = [a[i] for i in range(a.shape[0])]
        elif _fits(a.shape, dims):
            per_input[name] = a  # the same for every sample
            continue
        else:
            want = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
            raise UsageError(
                f"input {name!r}: expected shape {want} (or samples of it), given {list(a.shape)}"
            )
        if count is not None and len(parts) != count:
            raise UsageError(f"input {name!r} has {len(parts)} samples, another has {count}")
        count = len(parts)
        per_input[name] = parts
    if count == 0:
        raise UsageError("the inputs file holds no sample (an array with 0 rows)")
    count = count or 1
    return [
        {n: (v[i] if isinstance(v, list) else v) for n, v in per_input.items()}
        for i in range(count)
    ]


def read_npz(path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, refusing special files, pickles and archives that
    would unpack to more than :data:`MAX_FEED_BYTES`."""
    import io
    import zipfile

    from dnnpart._files import read_regular

    data = read_regular(path, limit=MAX_FEED_BYTES, what="inputs file")
    if data[:4] != b"PK\x03\x04":
        one = data[:6] == b"\x93NUMPY"
        hint = " (that is one .npy array: save it with numpy.savez)" if one else ""
        raise UsageError(
            f"--inputs {os.fspath(path)} is not an .npz file (numpy.savez: one array per "
            f"model input){hint}"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            unpacked = sum(info.file_size for info in z.infolist())
            for info in z.infolist():  # what each array header declares, before loading
                with z.open(info) as member:
                    fmt = np.lib.format
                    version = fmt.read_magic(member)
                    read = fmt.read_array_header_1_0 if version == (1, 0) else None
                    shape, _, dtype = (read or fmt.read_array_header_2_0)(member)
                unpacked += math.prod(shape) * dtype.itemsize
        if unpacked > MAX_FEED_BYTES:
            raise ResourceLimitError(
                f"inputs file {path} unpacks to {unpacked} bytes, over {MAX_FEED_BYTES}"
            )
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        text = "it holds pickled objects" if "pickle" in str(exc) else str(exc)[:200]
        raise UsageError(f"cannot read inputs {os.fspath(path)}: {text}") from None


def load_data(
    data: str | os.PathLike | dict[str, np.ndarray], specs, *, labels: str | None = None
) -> Data:
    """Read a data file (or a dict of arrays) into per-sample feeds and labels.

    Parameters
    ----------
    data : path-like (``.npz``) or dict
        One array per model input; for a one-input model, the file's only other array or
        its array ``x`` is also accepted.
    specs : list
        ``(name, numpy dtype, dims)`` of the model inputs.
    labels : str, optional
        The label array. Given and missing: :class:`~dnnpart.errors.UsageError`. Not
        given: ``y`` when the file has it, else no labels.
    """
    arrays = dict(data) if isinstance(data, dict) else read_npz(data)
    name = labels if labels is not None else DEFAULT_LABELS
    inputs = {s[0] for s in specs}
    if labels is not None and name not in arrays:
        raise UsageError(f"the data file has no label array {name!r}: {sorted(arrays)}")
    y = arrays.pop(name) if name in arrays and name not in inputs else None
    if len(specs) == 1 and specs[0][0] not in arrays:
        # one input: the file's only array, or the conventional "x" (as in examples/)
        only = next(iter(arrays.values())) if len(arrays) == 1 else arrays.get("x")
        if only is not None:
            arrays = {specs[0][0]: only}
    feeds = samples_from(arrays, specs)
    for key, a in ((n, np.asarray(v)) for feed in feeds for n, v in feed.items()):
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise UsageError(
                f"input {key!r} holds NaN or infinite values: outputs would be NaN on "
                "both sides and the comparison would prove nothing"
            )
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if y.dtype.kind not in "iub":
            raise UsageError(f"labels {name!r} must be integers, they are {y.dtype}")
        if y.size != len(feeds):
            raise UsageError(f"{y.size} labels in {name!r} for {len(feeds)} samples")
    return Data(feeds, y, name if y is not None else None)


def top1(output: np.ndarray) -> np.ndarray:
    """The predicted labels of one output: the values of an integer output, else the
    argmax over the last axis (one label per row)."""
    out = np.asarray(output)
    if out.dtype.kind in "iub":
        return out.reshape(-1).astype(np.int64)
    if out.ndim == 0:
        raise UsageError("a scalar output has no top-1; pick another with --output")
    return np.argmax(out, axis=-1).reshape(-1)


def accuracy(predicted: np.ndarray, expected: np.ndarray) -> float:
    """The fraction of ``predicted`` labels equal to ``expected``."""
    predicted, expected = np.asarray(predicted), np.asarray(expected)
    if predicted.shape != expected.shape:
        raise UsageError(
            f"{predicted.size} predictions for {expected.size} labels (one prediction per "
            "sample is needed: does the output have one row per sample?)"
        )
    return float(np.mean(predicted == expected)) if expected.size else 0.0


def accuracy_of(label_name: str | None) -> str:
    """What an accuracy is measured against: the labels, or the original model."""
    return "agreement with the original model" if label_name is None else f"labels {label_name}"


def output_name(names: list[str], output: str | None) -> str:
    """The output accuracy is measured on (the first, unless ``output``)."""
    if output is None:
        return names[0]
    if output not in names:
        raise UsageError(f"the model has no output {output!r}; it has {', '.join(names)}")
    return output


def predict(session, feeds: list[dict[str, np.ndarray]], output: str | None = None) -> np.ndarray:
    """Top-1 labels of an onnxruntime ``session`` on every sample of ``feeds``."""
    name = output_name([o.name for o in session.get_outputs()], output)
    return np.concatenate([top1(session.run([name], feed)[0]) for feed in feeds])
