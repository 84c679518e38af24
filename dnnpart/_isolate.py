"""Run native code that untrusted input can crash in a forked child process.

onnx's shape inference and checker are C++: a hostile model can make them abort the
process (an assertion inside ``std::clamp`` on an inferred negative dimension) or loop.
:func:`call_isolated` runs such a call in a child forked from this process (it inherits
the loaded modules and the arguments, so nothing is serialised on the way in), sends the
result back pickled through a pipe, and turns a death by signal or an overrun of the time
limit into :class:`IsolatedCrash`. Where ``fork`` is not available the call runs in
process.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import select
import signal
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["call_isolated", "IsolatedCrash", "IsolatedError"]

T = TypeVar("T")


class IsolatedCrash(Exception):
    """The child died by a signal, or did not finish within the time limit."""


class IsolatedError(Exception):
    """The call raised an exception that could not be sent back as itself."""


def _child(func: Callable[[], Any], write_fd: int) -> None:
    try:
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
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        _child(func, write_fd)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
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
                    break
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
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
