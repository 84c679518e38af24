"""Keep native solvers' printf() output off stdout, which carries data (--json)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

__all__ = ["c_stdout_to_stderr"]


@contextlib.contextmanager
def c_stdout_to_stderr():
    """Send what C libraries print to stdout (file descriptor 1) to stderr meanwhile.

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
    try:
        os.dup2(fd_err, fd_out)
        yield
    finally:
        libc.fflush(None)  # C stdio buffers hold what was printed: flush them to stderr
        os.dup2(saved, fd_out)
        os.close(saved)
