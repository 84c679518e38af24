"""The fuzz runner classifies every way a run can end, and leaves nothing running.

The CLI's entry point is replaced (in this process, so in the forked child too) by
stand-ins that hang, spin, exit with a code, abort or fork: a hang is a hang (never
``ok``), a run over its CPU seconds is a hang at the ``cpu`` limit (not a crash), exit
codes are counted one by one, and Ctrl-C in the parent kills and reaps the child and
what it forked, and a parent killed outright takes the child along.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _procs import gone, state

import dnnpart.cli

from ._campaign import Report
from ._runner import run_cli


@pytest.fixture
def cli(monkeypatch):
    """Replace the CLI's entry point with ``func(args)``."""

    def use(func):
        monkeypatch.setattr(dnnpart.cli, "main", lambda args, **_: func(args))

    return use


def _run(case: Path, **limits):
    return run_cli(["import", "model.onnx"], case, allowed=[case], **limits)


def test_a_run_over_its_wall_time_is_a_hang_not_ok(tmp_path, cli):
    cli(lambda args: time.sleep(60))
    start = time.monotonic()
    out = _run(tmp_path, timeout=1.0, cpu=30)
    assert time.monotonic() - start < 20
    assert (out.kind, out.code, out.limit, out.label) == ("hang", None, "wall", "wall")
    assert out.failed


def test_a_run_over_its_cpu_seconds_is_a_hang_at_the_cpu_limit_not_a_crash(tmp_path, cli):
    def spin(args):
        while True:
            pass

    cli(spin)
    out = _run(tmp_path, timeout=60.0, cpu=1)
    assert (out.kind, out.limit) == ("hang", "cpu"), out
    assert out.code == -signal.SIGXCPU and out.label == "SIGXCPU"


@pytest.mark.parametrize(
    ("code", "kind"), [(0, "ok"), (2, "typed"), (3, "typed"), (7, "typed"), (1, "internal")]
)
def test_exit_codes_are_classified(tmp_path, cli, code, kind):
    def leave(args):
        sys.exit(code)

    cli(leave)
    out = _run(tmp_path)
    assert (out.kind, out.code, out.label) == (kind, code, f"exit {code}")


def test_an_abort_is_a_signal(tmp_path, cli):
    def abort(args):
        faulthandler.disable()  # pytest's handler would print the abort to the terminal
        os.abort()

    cli(abort)
    out = _run(tmp_path)
    assert (out.kind, out.code, out.label) == ("signal", -signal.SIGABRT, "SIGABRT")


def test_an_exception_past_the_cli_is_internal(tmp_path, cli):
    def boom(args):
        raise RuntimeError("escaped")

    cli(boom)
    assert _run(tmp_path).kind == "internal"


def test_the_summary_counts_each_exit_code(tmp_path, cli):
    report = Report()
    for code in (3, 3, 2, 0):
        cli(lambda args, code=code: sys.exit(code))
        report.add("model", _run(tmp_path))
    cli(lambda args: time.sleep(60))
    report.add("plan", _run(tmp_path, timeout=0.5))
    summary = report.summary()
    assert summary["outcomes"] == {"hang": 1, "ok": 1, "typed": 3}
    assert summary["by_code"] == {
        "hang": {"wall": 1},
        "ok": {"exit 0": 1},
        "typed": {"exit 2": 1, "exit 3": 2},
    }


def test_ctrl_c_in_the_parent_kills_and_reaps_the_child_and_what_it_forked(tmp_path, cli):
    pids = tmp_path / "pids.txt"

    def fork_and_sleep(args):
        grandchild = os.fork()  # as call_isolated does
        if grandchild == 0:
            time.sleep(60)
            os._exit(0)
        tmp = pids.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()} {os.getpgid(0)} {grandchild}")
        tmp.rename(pids)
        time.sleep(60)

    cli(fork_and_sleep)

    def interrupt(signum, frame):
        if not pids.exists():  # not started yet: once more, later
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            return
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, timeout=120)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - start < 30  # the child sleeps 60 s: it was not waited for
    child, group, grandchild = map(int, pids.read_text().split())
    assert group == child  # the child leads its own process group
    with pytest.raises(ChildProcessError):  # reaped: no zombie left
        os.waitpid(child, os.WNOHANG)
    assert state(child) is None
    assert gone(grandchild), f"grandchild {grandchild} outlived the run"


def test_a_parent_killed_outright_takes_the_child_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    root = Path(__file__).resolve().parents[2]
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(root)!r})
        import dnnpart.cli
        from tests.fuzz._runner import run_cli

        def sleep(args, **_):
            tmp = Path({str(pid_file)!r} + ".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.rename({str(pid_file)!r})
            time.sleep(60)

        dnnpart.cli.main = sleep
        case = Path({str(tmp_path)!r})
        run_cli(["import", "model.onnx"], case, allowed=[case], timeout=120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        end = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < end:
            time.sleep(0.02)
        child = int(pid_file.read_text())
        parent.kill()  # SIGKILL: no finally runs in the parent
        parent.wait(timeout=30)
        assert gone(child), f"child {child} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
