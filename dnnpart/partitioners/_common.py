"""Small steps several partitioners share."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import numpy as np

from dnnpart.partitioners._problem import Problem

__all__ = ["place_unbalanced", "is_balanced", "group_loads", "c_stdout_to_stderr"]


def group_loads(problem: Problem, labels: np.ndarray, g: int) -> np.ndarray:
    """Compute weight each device holds in group ``g``, shape (k,)."""
    sl = problem.layer_slice(g)
    return np.bincount(labels[sl], weights=problem.vertex_weight[sl], minlength=problem.k)


def is_balanced(problem: Problem, labels: np.ndarray) -> bool:
    """True when every balanced group is within :meth:`Problem.capacities`."""
    for g in np.flatnonzero(problem.balanced):
        if np.any(group_loads(problem, labels, g) > problem.capacities(g) + 1e-9):
            return False
    return True


def place_unbalanced(problem: Problem, labels: np.ndarray) -> np.ndarray:
    """Move every vertex of an unbalanced group to the device of most of its neighbours.

    Unbalanced groups are the model's input features (they arrive already split, as the
    plan says) and layers placed whole; their placement is free, so each goes where the
    synapse weight to its consumers and producers is largest (ties: lowest device index).
    Groups are visited in order, so a vertex sees its producers' final devices.
    """
    labels = np.array(labels, dtype=np.int64, copy=True)
    adj = problem.adjacency
    for g in np.flatnonzero(~problem.balanced):
        sl = problem.layer_slice(g)
        for v in range(sl.start, sl.stop):
            lo, hi = adj.indptr[v], adj.indptr[v + 1]
            if lo == hi:
                continue
            pull = np.bincount(
                labels[adj.indices[lo:hi]], weights=adj.data[lo:hi], minlength=problem.k
            )
            labels[v] = int(np.argmax(pull))
    return labels


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
