"""Run native code that untrusted input can crash in a forked child process.

onnx's shape inference and checker are C++: a hostile model can make them abort the
process (an assertion inside ``std::clamp`` on an inferred negative dimension) or loop.
:func:`call_isolated` runs such a call in a child forked from this process (it inherits
the loaded modules and the arguments, so nothing is serialised on the way in), sends the
result back pickled through a pipe, and turns a death by signal or an overrun of the time
limit into :class:`IsolatedCrash`. Where ``fork`` is not available the call runs in
process.

The child cannot outlive the call: on Linux it asks the kernel for SIGKILL when its
parent dies (:func:`die_with_parent`), and a parent interrupted while waiting
(``KeyboardInterrupt``, any exception) kills and reaps it before the exception goes on.
The child also turns the garbage collector off: a collection in a child forked from a
process with threads can block on a lock a thread of the parent held at the fork, and the
child lives only for one call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import faulthandler
import gc
import os
import pickle
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["call_isolated", "die_with_parent", "IsolatedCrash", "IsolatedError"]

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _find_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux only), looked up once at import: not in a forked child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None


_PRCTL = _find_prctl()


class IsolatedCrash(Exception):
    """The child died by a signal, or did not finish within the time limit."""


class IsolatedError(Exception):
    """The call raised an exception that could not be sent back as itself."""


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a forked child: have the kernel send ``sig`` to it when its parent dies.

    ``parent`` is the parent's pid as seen before the fork: if the parent died between
    the fork and this call the child exits at once (the death signal would never come).
    A no-op where ``prctl`` is not available (not Linux).
    """
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _child(func: Callable[[], Any], write_fd: int, parent: int) -> None:
    try:
        die_with_parent(parent)
        gc.disable()  # a collection here may wait on a lock a parent's thread held
        # the parent reports what happened; C++ assertion text would break its one line
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        faulthandler.disable()  # a test runner's handler would print the abort anyway
        warnings.simplefilter("ignore")
        try:
            payload = pickle.dumps(("ok", func()), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            try:
                payload = pickle.dumps(("raise", exc), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                text = f"{type(exc).__name__}: {exc}"
                payload = pickle.dumps(("text", text), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view) :]
    finally:
        os._exit(0)


def call_isolated(func: Callable[[], T], *, timeout: float = 600.0) -> T:
    """``func()`` computed in a forked child; its value or its exception, as if run here.

    Raises
    ------
    IsolatedCrash
        The child was killed by a signal (e.g. SIGABRT from a C++ assertion), exited
        without an answer, or ran longer than ``timeout`` seconds (it is then killed).
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        return func()
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        _child(func, write_fd, parent)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    finished = False  # the child closed its end: no kill needed
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    finished = True
                    break
                chunks.append(chunk)
    finally:
        # timed out, or interrupted (KeyboardInterrupt...): the child goes, and is reaped
        os.close(read_fd)
        if not finished:
            _kill(pid)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        raise IsolatedCrash(f"did not finish within {timeout:g} s")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        raise IsolatedCrash(f"killed by {name}")
    if not chunks:
        raise IsolatedCrash("exited without an answer")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "ok":
        return value
    if kind == "raise":
        raise value
    raise IsolatedError(value)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # pragma: no cover - already gone (a zombie is still there)
        pass
