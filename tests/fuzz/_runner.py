"""Run ``dnnpart`` once in a forked child with time and memory limits, and classify it.

The parent has imported the CLI already, so a child costs a ``fork`` (no interpreter
start, no imports). The child leads a process group of its own (so that it and whatever
it forks go together), limits its address space (what it inherited plus ``memory``) and
CPU time (``resource.setrlimit``), changes into the case's folder, sends stdout and
stderr to files, and records every file Python opens (an audit hook on ``open``) so that
a read outside the case's folder can be caught. The parent kills the group after
``timeout`` seconds of wall time, and also when it is itself interrupted (Ctrl-C) while
waiting; a parent killed outright takes the child along (the kernel's parent-death
signal, :func:`dnnpart._isolate.die_with_parent`): no child outlives :func:`run_cli`.

Outcomes (DESIGN.md exit codes): ``ok`` (0), ``typed`` (2-7, a typed error), ``oom``
(exit 5 from the CLI's generic out-of-memory handler: no limit check caught it first),
``internal`` (1: a bug escaped as an internal error), ``signal`` (killed by a signal),
``hang`` (over a limit: ``limit`` says which, ``"wall"`` for the time limit, ``"cpu"``
for the CPU-seconds one, whose SIGXCPU, or SIGKILL at the hard limit, is not a crash),
``outside`` (opened a file outside the case's folder, or printed a canary's bytes).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dnnpart._isolate import die_with_parent

__all__ = ["Outcome", "run_cli", "warm", "FAILURES"]

FAILURES = ("internal", "signal", "hang", "outside")


@dataclass
class Outcome:
    """One CLI run: its ``kind``, its exit ``code`` (minus the signal's number when a
    signal ended it, None when the wall-time limit did), the wall ``seconds``, the tail of
    its stderr, the files it read outside its case, and the ``limit`` a hang ran into."""

    kind: str
    code: int | None
    seconds: float
    stderr: str = ""
    outside: list[str] = field(default_factory=list)
    limit: str | None = None

    @property
    def label(self) -> str:
        """How the run ended, for per-code counts: ``"exit 3"``, ``"SIGABRT"``, ``"wall"``."""
        if self.code is None:
            return self.limit or "none"
        if self.code < 0:
            return _signal_name(-self.code)
        return f"exit {self.code}"

    @property
    def failed(self) -> bool:
        return self.kind in FAILURES


def warm() -> None:
    """Import everything a CLI run may need, once, so that forked runs start warm."""
    import onnx.reference  # noqa: F401
    import onnxruntime  # noqa: F401

    import dnnpart._partition  # noqa: F401
    import dnnpart.cli  # noqa: F401
    import dnnpart.exporters  # noqa: F401
    import dnnpart.runtime  # noqa: F401
    from dnnpart.plugins import get_registry

    get_registry()


def _child(args: list[str], case: Path, memory: int, cpu: int, log_fd: int, parent: int) -> None:
    """The forked child: set up, run the CLI, and leave with its exit code (never return)."""
    code = 1
    try:
        die_with_parent(parent)  # a parent killed outright (SIGKILL, SIGTERM) takes it along
        os.setpgid(0, 0)  # the parent kills this group: the child and what it forks
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        out = os.open(case / "stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(case / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        # the parent's sys.stdout may be a capture (pytest): write to the files instead
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        os.chdir(case)
        limit = _address_space() + memory  # on top of what the fork inherits
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        os.environ.pop("DNNPART_DEBUG", None)

        def hook(event, event_args):
            if event == "open" and event_args and isinstance(event_args[0], (str, bytes)):
                path = os.fsdecode(event_args[0])
                os.write(log_fd, (os.path.abspath(path) + "\n").encode("utf-8", "replace"))

        sys.addaudithook(hook)
        from dnnpart.cli import main

        try:
            main(args, prog_name="dnnpart", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - escaped the CLI's own handler: a bug
            code = 99
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_cli(
    args: list[str],
    case: Path,
    *,
    allowed: list[Path],
    watched: list[Path] = (),
    canaries: list[Path] = (),
    timeout: float = 60.0,
    memory: int = 3 << 30,
    cpu: float | None = None,
) -> Outcome:
    """Run ``dnnpart ARGS`` in ``case`` in a forked child and classify what happened.

    ``allowed`` are the folders the run may open files under (the case); opening a file
    under a ``watched`` folder but outside ``allowed``, or any of ``canaries``, or printing
    a canary's first bytes, is an outside read. ``timeout`` is the wall-time limit and
    ``cpu`` the CPU-seconds limit (default: the wall-time limit plus one second).
    """
    case = Path(case)
    cpu_limit = max(1, math.ceil(timeout + 1 if cpu is None else cpu))
    log_path = case / "opens.txt"
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    start = time.monotonic()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _child(args, case, memory, cpu_limit, log_fd, parent)
    os.close(log_fd)
    with contextlib.suppress(OSError):  # the child does it too; whichever runs first
        os.setpgid(pid, pid)
    status, usage, over_time = _wait(pid, start + timeout)
    seconds = time.monotonic() - start
    stderr = _read(case / "stderr.txt")
    outside = _outside_reads(log_path, allowed, watched, canaries)
    text = _read(case / "stdout.txt") + stderr
    outside += [str(c) for c in canaries if _canary_text(c) and _canary_text(c) in text]
    limit = None
    if over_time:
        kind, code, limit = "hang", None, "wall"
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = -sig
        # SIGXCPU at the soft CPU limit, SIGKILL at the hard one: a limit, not a crash
        if sig == signal.SIGXCPU or (
            sig == signal.SIGKILL and usage.ru_utime + usage.ru_stime >= cpu_limit
        ):
            kind, limit = "hang", "cpu"
        else:
            kind = "signal"
    else:
        code = os.WEXITSTATUS(status)
        if code == 0:
            kind = "ok"
        elif code == 5 and "dnnpart: error: out of memory" in stderr:
            kind = "oom"
        elif 2 <= code <= 7:
            kind = "typed"
        else:
            kind = "internal"
    if outside:
        kind = "outside"
    return Outcome(kind, code, seconds, stderr[-2000:], outside, limit)


def _wait(pid: int, deadline: float):
    """Wait for the child until ``deadline`` (monotonic); kill its group if it is not done
    by then, or if waiting is interrupted. Its wait status, resource usage, and whether
    the deadline passed."""
    over_time = True
    try:
        while time.monotonic() < deadline:
            # WNOWAIT: an exited child stays a zombie, so its group's id stays its own
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                over_time = False
                break
            time.sleep(0.01)
    finally:  # done, over time, or interrupted (Ctrl-C): nothing of the run is left
        _kill_group(pid)
        _, status, usage = os.wait4(pid, 0)
    return status, usage, over_time


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):  # gone already
        os.killpg(pid, signal.SIGKILL)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _address_space() -> int:
    """This process's virtual memory size in bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _canary_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(24).decode("latin-1")
    except OSError:
        return ""


def _outside_reads(log: Path, allowed, watched, canaries) -> list[str]:
    roots = {os.path.realpath(w) for w in watched}
    marks = {os.path.realpath(c) for c in canaries}
    keep = [os.path.realpath(a) for a in allowed]
    bad = []
    for line in _read(log).splitlines():
        real = os.path.realpath(line)
        if real in marks or (
            any(_under(real, r) for r in roots) and not any(_under(real, a) for a in keep)
        ):
            bad.append(real)
    return sorted(set(bad))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
