"""Keep native solvers' printf() output off stdout, which carries data (--json)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile

__all__ = ["c_stdout_to_stderr"]


@contextlib.contextmanager
def c_stdout_to_stderr(capture: list[str] | None = None):
    """Send what C libraries print to stdout (file descriptor 1) to stderr meanwhile, or
    into ``capture`` (its lines, once the block ends) when a list is given.

    Native solvers (METIS) printf() diagnostics; dnnpart's stdout carries data (--json).
    """
    fd_out, fd_err = 1, 2  # what C code writes to, whatever sys.stdout is in Python
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    try:
        saved = os.dup(fd_out)
    except OSError:  # no descriptor 1 at all: nothing to protect
        yield
        return
    sink = tempfile.TemporaryFile() if capture is not None else None
    try:
        os.dup2(sink.fileno() if sink is not None else fd_err, fd_out)
        yield
    finally:
        libc.fflush(None)  # C stdio buffers hold what was printed: flush them
        os.dup2(saved, fd_out)
        os.close(saved)
        if sink is not None:
            sink.seek(0)
            text = sink.read(1 << 20).decode("utf-8", "replace")
            capture.extend(line.strip() for line in text.splitlines() if line.strip())
            sink.close()
