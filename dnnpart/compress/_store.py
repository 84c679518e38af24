"""Weights a pass computed, stored beside a plan (or a split) by content hash.

A pass whose result cannot be recomputed from the model alone (a least-squares re-fit on
the user's calibration data) records the sha256 of the weights it wrote; the weights lie
in ``<sha256>.npz`` beside the plan and the split, and a replay refuses a file whose
content does not hash to the recorded value.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping

import numpy as np

from dnnpart.errors import InvalidModelError, UsageError

__all__ = ["arrays_digest", "arrays_file", "load_arrays", "save_arrays"]

Arrays = Mapping[str, np.ndarray]
# where arrays live: a folder, or arrays held in memory by their content hash
Store = str | os.PathLike | Mapping[str, Arrays] | None


def arrays_digest(arrays: Arrays) -> str:
    """sha256 over the arrays' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def arrays_file(sha256: str) -> str:
    """The file name of the arrays with content hash ``sha256``."""
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise InvalidModelError(f"a stored-weights hash must be 64 hex digits, got {sha256!r}")
    return f"{sha256}.npz"


def save_arrays(folder: str | os.PathLike, arrays: Arrays) -> str:
    """Write ``arrays`` to ``folder/<sha256>.npz`` (atomically; kept if already there);
    return the path."""
    from dnnpart._output import write_bytes

    path = os.path.join(os.fspath(folder), arrays_file(arrays_digest(arrays)))
    if not os.path.exists(path):
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.ascontiguousarray(v) for k, v in sorted(arrays.items())})
        write_bytes(path, buffer.getvalue())
    return path


def load_arrays(store: Store, sha256: str) -> dict[str, np.ndarray]:
    """The arrays with content hash ``sha256`` from ``store`` (a folder or a mapping).

    Raises
    ------
    UsageError
        No store, or the file is missing (the weights must travel with the plan).
    InvalidModelError
        The content does not hash to ``sha256``.
    """
    name = arrays_file(sha256)
    if store is None:
        raise UsageError(
            f"the plan's weights {name} are needed but there is no folder to read them from"
        )
    if isinstance(store, Mapping):
        if sha256 not in store:
            raise UsageError(f"the plan's weights {name} are not in memory")
        arrays = {k: np.asarray(v) for k, v in store[sha256].items()}
    else:
        from dnnpart._accuracy import read_npz

        path = os.path.join(os.fspath(store), name)
        if not os.path.lexists(path):
            raise UsageError(
                f"the plan's adjusted weights {name} are missing from {os.fspath(store)} "
                "(keep the file beside the plan and the split)"
            )
        arrays = read_npz(path)
    found = arrays_digest(arrays)
    if found != sha256:
        raise InvalidModelError(
            f"stored weights {name} hash to {found[:12]}...: they are not the weights the "
            "plan was made with"
        )
    return arrays
