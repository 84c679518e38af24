"""dnnpart._isolate: a call in a forked child never outlives the call that made it.

A parent killed outright takes its child with it (the kernel's parent-death signal), a
parent interrupted while waiting kills and reaps its child (no zombie left), and the
child runs without the garbage collector.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _procs import gone, state

from dnnpart import _isolate
from dnnpart._isolate import IsolatedCrash, call_isolated

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")


def _wait_file(path: Path, seconds: float = 30.0) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def _sleeper(pid_file: Path):
    """A call that writes its process id to ``pid_file`` and then sleeps a minute."""

    def func():
        tmp = pid_file.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.rename(pid_file)
        time.sleep(60)

    return func


def test_the_value_and_the_exception_come_back():
    assert call_isolated(lambda: 6 * 7) == 42
    with pytest.raises(ZeroDivisionError):
        call_isolated(lambda: 1 // 0)


def test_the_child_runs_without_the_garbage_collector():
    assert gc.isenabled()
    assert call_isolated(gc.isenabled) is False
    assert gc.isenabled()  # the parent's is untouched


@linux
def test_the_child_asks_for_a_kill_when_its_parent_dies():
    pr_get_pdeathsig = 2  # linux/prctl.h

    def ask():
        import ctypes

        sig = ctypes.c_int(0)
        _isolate._PRCTL(pr_get_pdeathsig, ctypes.byref(sig), 0, 0, 0)
        return sig.value

    assert call_isolated(ask) == signal.SIGKILL


def test_die_with_parent_is_a_no_op_without_prctl(monkeypatch):
    monkeypatch.setattr(_isolate, "_PRCTL", None)
    assert _isolate.die_with_parent(os.getppid()) is None


@linux
def test_a_parent_killed_outright_takes_its_child_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from dnnpart._isolate import call_isolated

        def func():
            tmp = Path({str(pid_file)!r} + ".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.rename({str(pid_file)!r})
            time.sleep(60)

        call_isolated(func, timeout=120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        child = int(_wait_file(pid_file))
        assert state(child) not in (None, "Z")  # running, as the parent is
        parent.kill()  # SIGKILL: no finally, no handler runs in the parent
        parent.wait(timeout=30)
        assert gone(child), f"child {child} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_an_interrupted_parent_kills_and_reaps_its_child(tmp_path):
    pid_file = tmp_path / "child.pid"

    def interrupt(signum, frame):
        if not pid_file.exists():  # the child has not started yet: once more, later
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            return
        raise KeyboardInterrupt  # what Ctrl-C raises

    old = signal.signal(signal.SIGALRM, interrupt)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            call_isolated(_sleeper(pid_file), timeout=120)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - start < 30  # the child sleeps 60 s: it was not waited for
    child = int(_wait_file(pid_file, 1.0))
    # reaped by call_isolated itself: not our child any more, and no zombie left
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)
    assert state(child) is None


def test_a_child_over_its_time_limit_is_killed_and_reaped(tmp_path):
    pid_file = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(IsolatedCrash, match="within"):
        call_isolated(_sleeper(pid_file), timeout=3.0)
    assert time.monotonic() - start < 30  # the child sleeps 60 s: it was killed
    child = int(_wait_file(pid_file, 1.0))
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)
    assert state(child) is None
