"""Output files of the command line: checked before the work, written atomically.

One policy for every file a command writes (``partition -o``, ``leaderboard -o``; export
folders follow the same rules in :mod:`dnnpart.exporters._write`): the destination's
folder must exist and be writable, and an existing file is replaced only with ``force``,
all checked *before* the expensive work starts. Files are written to a temporary name in
the same folder and renamed into place, so a reader never sees half a file, with the
permissions the user's umask gives a new file (not the private ``0600`` of ``mkstemp``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dnnpart.errors import OutputConflictError, UsageError

__all__ = ["check_output", "write_bytes", "write_text"]


def check_output(path: str | os.PathLike, *, force: bool = False) -> None:
    """Fail early when ``path`` cannot or may not be written.

    Raises
    ------
    UsageError
        The folder does not exist, is not a folder, or is not writable; or ``path`` is a
        folder (exit code 2).
    OutputConflictError
        ``path`` exists and ``force`` is false (exit code 6).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {path}: folder {folder} is not writable")
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path}: it is a folder")
    if os.path.lexists(path) and not force:
        raise OutputConflictError(f"output file exists: {path} (use --force to replace it)")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file renamed into place."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file renamed into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dnnpart-", suffix=Path(path).suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; outputs are for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
