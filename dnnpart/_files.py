"""Read small input files (plans, manifests, sample inputs) that may come from strangers.

A path can name a FIFO (reading blocks forever), a device (``/dev/zero`` never ends),
``/proc/self/mem`` (an I/O error), or a file too big for memory. :func:`read_regular`
opens without blocking, checks on the open descriptor that it holds a regular, non-empty
file under a size limit, and only then reads it. :func:`load_json` adds a nesting-depth
limit, so that no later walk of the document can recurse without bound.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from dnnpart.errors import DnnpartError, ResourceLimitError, UsageError

__all__ = ["read_regular", "load_json", "MAX_JSON_DEPTH"]

MAX_JSON_DEPTH = 32


def read_regular(
    path: str | os.PathLike, *, limit: int, what: str, error: type[DnnpartError] = UsageError
) -> bytes:
    """The bytes of the regular file at ``path``.

    Raises ``error`` (a :class:`~dnnpart.errors.DnnpartError` class) if ``path`` is missing,
    a directory, a FIFO, a device, a socket or empty (``/proc`` files look empty), and
    :class:`~dnnpart.errors.ResourceLimitError` if it is over ``limit`` bytes.
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"no such {what}: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{what} {path} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file (a pipe, device or socket)")
        if st.st_size == 0:
            raise error(f"{what} {path} is empty")
        if st.st_size > limit:
            raise ResourceLimitError(f"{what} {path} is {st.st_size} bytes, over {limit}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 24, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise ResourceLimitError(f"{what} {path} grew over {limit} bytes while read")
    return b"".join(chunks)


def load_json(data: bytes, where: str, error: type[DnnpartError]) -> Any:
    """Parse JSON ``data``; ``error`` for bad JSON or nesting deeper than
    :data:`MAX_JSON_DEPTH` (checked without recursion)."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{where}: not valid JSON ({exc})") from None
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise error(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
    return doc
