"""The plan's labels (one device per vertex of the problem) recorded with an exported split.

A re-plan after a device loss (:mod:`dnnpart.runtime._replan`) starts from them, so that
each surviving device keeps its part. The manifest's ``labels`` entry holds:

``vertices``
    The number of labels (the problem's vertices).
``groups_sha256``
    A digest of the problem's groups (names and vertex offsets, :func:`groups_digest`):
    the labels mean something only for a problem with the same vertices.
``runs``
    When the labels form at most :data:`INLINE_MAX_RUNS` runs, inline: ``"0*22 1*20"``
    is 22 vertices on device 0, then 20 on device 1.
``file``, ``sha256``
    Otherwise the labels are in ``labels.npy`` (the smallest unsigned integer type that
    holds ``k - 1``), with the sha256 of the file's bytes.

The folder is untrusted input: :func:`read_labels` refuses a missing, altered or
malformed record (:class:`~dnnpart.errors.InvalidModelError`, exit 3).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from typing import Any

import numpy as np

from dnnpart._files import read_regular
from dnnpart.errors import InvalidModelError

__all__ = ["LABELS_FILE", "INLINE_MAX_RUNS", "groups_digest", "labels_entry", "read_labels"]

LABELS_FILE = "labels.npy"
INLINE_MAX_RUNS = 256
_RUN = re.compile(r"(\d{1,7})\*(\d{1,12})")
_SHA = re.compile(r"[0-9a-f]{64}")


def groups_digest(groups, offsets) -> str:
    """sha256 of the groups' names and vertex offsets (what gives the labels a meaning)."""
    text = json.dumps([[str(g) for g in groups], [int(x) for x in offsets]])
    return hashlib.sha256(text.encode()).hexdigest()


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, length) of each run of equal labels."""
    if labels.size == 0:
        return labels, labels
    starts = np.flatnonzero(np.concatenate([[True], labels[1:] != labels[:-1]]))
    lengths = np.diff(np.concatenate([starts, [labels.size]]))
    return labels[starts], lengths


def labels_entry(labels, k: int, groups, offsets, folder) -> dict[str, Any]:
    """The manifest's ``labels`` entry; writes ``folder/labels.npy`` when the labels are
    too long to inline (see the module docstring)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    entry: dict[str, Any] = {
        "vertices": int(labels.size),
        "groups_sha256": groups_digest(groups, offsets),
    }
    values, lengths = _runs(labels)
    if len(values) <= INLINE_MAX_RUNS:
        entry["runs"] = " ".join(
            f"{v}*{n}" for v, n in zip(values.tolist(), lengths.tolist(), strict=True)
        )
        return entry
    dtype = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.uint32
    buf = io.BytesIO()
    np.save(buf, labels.astype(dtype), allow_pickle=False)
    data = buf.getvalue()
    path = os.path.join(folder, LABELS_FILE)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    entry.update(file=LABELS_FILE, sha256=hashlib.sha256(data).hexdigest())
    return entry


def _bad(folder, what: str):
    raise InvalidModelError(f"not a valid dnnpart export: {folder} (labels: {what})")


def read_labels(folder, manifest: dict[str, Any]) -> np.ndarray | None:
    """The labels recorded in ``manifest`` (int64, one per vertex), None if it has none
    (splits exported before labels were recorded).

    Raises
    ------
    InvalidModelError
        A malformed entry, a labels file that is missing, a symbolic link, or whose
        sha256 differs, labels of the wrong count, type or shape, or outside
        ``0 .. k-1``.
    """
    entry = manifest.get("labels")
    if entry is None:
        return None
    if not isinstance(entry, dict):
        _bad(folder, "the entry must be an object")
    n = entry.get("vertices")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 1 << 40:
        _bad(folder, f"vertices = {str(n)[:40]!r} must be a non-negative integer")
    digest = entry.get("groups_sha256")
    if not isinstance(digest, str) or not _SHA.fullmatch(digest):
        _bad(folder, "groups_sha256 must be 64 hex digits")
    k = manifest.get("k")
    if ("runs" in entry) == ("file" in entry):
        _bad(folder, "give either runs or file")
    if "runs" in entry:
        labels = _parse_runs(folder, entry["runs"], n)
    else:
        labels = _load_file(folder, entry, n)
    if labels.size != n:
        _bad(folder, f"{labels.size} labels for {n} vertices")
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        _bad(folder, f"a label outside 0 .. {k - 1}")
    return labels


def _parse_runs(folder, runs: Any, n: int) -> np.ndarray:
    if not isinstance(runs, str) or len(runs) > 32 * INLINE_MAX_RUNS:
        _bad(folder, "runs must be a short string")
    parts = runs.split()
    if len(parts) > INLINE_MAX_RUNS:
        _bad(folder, f"more than {INLINE_MAX_RUNS} runs inline")
    values, lengths = [], []
    for part in parts:
        m = _RUN.fullmatch(part)
        if m is None or int(m.group(2)) == 0:
            _bad(folder, f"run {part[:40]!r} is not DEVICE*COUNT")
        values.append(int(m.group(1)))
        lengths.append(int(m.group(2)))
    if sum(lengths) != n:
        _bad(folder, f"runs cover {sum(lengths)} vertices, not {n}")
    return np.repeat(np.asarray(values, dtype=np.int64), np.asarray(lengths, dtype=np.int64))


def _load_file(folder, entry: dict[str, Any], n: int) -> np.ndarray:
    if entry.get("file") != LABELS_FILE:
        _bad(folder, f"file must be {LABELS_FILE!r}")
    want = entry.get("sha256")
    if not isinstance(want, str) or not _SHA.fullmatch(want):
        _bad(folder, "sha256 must be 64 hex digits")
    path = os.path.join(os.fspath(folder), LABELS_FILE)
    if os.path.islink(path):
        _bad(folder, f"{LABELS_FILE} is a symbolic link")
    data = read_regular(path, limit=8 * n + 4096, what=LABELS_FILE, error=InvalidModelError)
    if hashlib.sha256(data).hexdigest() != want:
        _bad(folder, f"{LABELS_FILE} was altered (sha256 differs)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        _bad(folder, f"{LABELS_FILE} is not a NumPy array ({exc})")
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind not in "iu":
        _bad(folder, f"{LABELS_FILE} must hold one integer per vertex")
    return array.astype(np.int64)
