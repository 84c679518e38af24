"""Run every (model, k, partitioner) of a leaderboard, each isolated from the others.

Isolation and cost
------------------
A run executes in a worker *process* (``multiprocessing``, start method ``spawn``: the
same on every platform, and safe with the threads NumPy's BLAS and METIS may start), so
that a partitioner that raises, crashes the interpreter or hangs fails only its own row:

* an exception (including ``SystemExit`` and a wrong answer caught by
  :meth:`~dnnpart.partitioners.Problem.validate`) is reported by the worker as ``failed``
  with the reason, and the worker goes on;
* a worker that dies (segfault, ``os._exit``) fails its row with its exit code and is
  replaced;
* a run still going after its time limit is ``timeout``: its worker is terminated
  (SIGTERM, then SIGKILL after a grace period) and replaced.

Spawning costs about half a second to a second of imports per process, more than most
runs on small models take. Workers are therefore *reused* from run to run (``jobs`` of
them; ``max_tasks_per_worker=1`` gives a fresh process per run instead). What is shared
between runs of one worker is the imported modules and the loaded
:class:`~dnnpart.graph.LayerGraph` of the model (cached per worker, keyed by path, size and
mtime): every run builds its own :class:`~dnnpart.partitioners.Problem` from it through
:func:`dnnpart.partition`, so a partitioner that scribbles on its problem cannot affect the
next run. A plugin that mutates module-level state or the graph itself could; use
``max_tasks_per_worker=1`` (CLI ``--isolate``) to rule that out.

The time limit covers the partitioning, scoring and (with ``verify``) the export and
verification of one run, ``timeout`` seconds per repetition; loading the model into a
worker has its own limit (``load_timeout``), so a slow import is not charged to the
partitioner that happens to come first.

Timings: ``seconds`` is the partitioner's own time (``Plan.seconds``: the ``partition``
call, without scoring), the best (default) or the median of ``repeat`` runs; the first
run's scores are reported (partitioners are deterministic for a seed). With more than one
job the runs share the cores, so timings are noisier; use ``jobs=1`` to compare them.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from dnnpart.errors import DnnpartError, UsageError
from dnnpart.problem._objective import check_objective
from dnnpart.report._rows import Row, Task, load_partitioner, partitioner_spec, plan_tasks
from dnnpart.report._worker import worker_main

__all__ = ["run_leaderboard", "Interrupted"]

_GRACE_S = 2.0  # between SIGTERM and SIGKILL for a worker past its time limit


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM turned into it) during :func:`run_leaderboard`.

    ``rows`` holds every row, those that finished and the others as ``"interrupted"``, so
    that a caller can still write what was done.
    """

    def __init__(self, rows: list):
        super().__init__("interrupted")
        self.rows = rows


class _Worker:
    def __init__(self, ctx, extra_specs: Sequence[str]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=worker_main, args=(child, list(extra_specs)), name="dnnpart-lb", daemon=True
        )
        self.proc.start()
        child.close()
        self.task: Task | None = None
        self.greeted = False  # sent "hello": got through the spawn bootstrap
        self.phase = "idle"  # idle | loading | running
        self.deadline = float("inf")
        self.done = 0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(_GRACE_S)
            if self.proc.is_alive():
                self.proc.kill()
        self.proc.join(_GRACE_S)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(_GRACE_S)
        self.kill()


def _death_reason(proc) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        import signal

        try:
            return f"worker process killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker process killed by signal {-code}"
    return f"worker process exited with code {code}"


def run_leaderboard(
    models: Sequence[str],
    ks: Sequence[int] = (),
    partitioners: str | Sequence[str] = "all",
    *,
    granularity: str | Sequence[str] = "neuron",
    devices: Any = None,
    prune: float | None = None,
    objective: str = "throughput",
    imbalance: float = 0.03,
    seed: int = 0,
    timeout: float = 300.0,
    options: dict[str, Any] | None = None,
    load_timeout: float | None = None,
    repeat: int = 1,
    statistic: str = "best",
    jobs: int | None = None,
    max_tasks_per_worker: int | None = None,
    verify: bool = False,
    extra_partitioners: Sequence[str | type] = (),
    progress: bool | Callable[[Row, int, int], None] = False,
    input_shapes: dict | None = None,
    dims: dict | None = None,
    inputs: str | None = None,
    measure: dict[str, Any] | None = None,
) -> list[Row]:
    """Run every (model, granularity, k, partitioner), each in a worker process.

    Parameters
    ----------
    models : sequence of str
        ONNX model paths (anything :func:`dnnpart.load` reads).
    ks : sequence of int
        Device counts; may be empty with ``devices`` (then ``devices.k``).
    partitioners : "all" or sequence of str
        Registry names (built-ins, plugins and ``extra_partitioners``).
    granularity : str or sequence of str
        ``"neuron"`` and/or ``"layer"``.
    devices : DeviceSet, optional
        Heterogeneous devices (every k must equal ``devices.k``); default identical ones.
    prune, objective, imbalance, seed
        As in :func:`dnnpart.partition`; rows are ranked by ``objective``.
    timeout : float
        Seconds per repetition of one run (partition, score, verify) before it is killed.
    options : dict, optional
        Partitioner parameters: ``name`` goes to every partitioner that takes it,
        ``"<partitioner>.name"`` to that one only; one no partitioner takes is an error.
    load_timeout : float, optional
        Seconds a worker may take to import a model (default ``max(timeout, 120)``).
    repeat : int
        Runs per row; ``seconds`` is their ``statistic`` (``"best"`` or ``"median"``).
    jobs : int, optional
        Worker processes (default: half the cores, at least 1).
    max_tasks_per_worker : int, optional
        Replace a worker after this many runs (1 = a fresh process per run).
    verify : bool
        Export and verify each ok row's split (see :func:`verify_plan`).
    extra_partitioners : sequence of "module:Class" or classes
        Partitioners that are not installed plugins, imported by path in every worker
        (the hook tests and scripts use).
    progress : bool or callable
        ``True`` shows a rich progress bar on stderr; a callable gets
        ``(row, done, total)`` after every row.
    input_shapes, dims, inputs
        The concrete input shapes, as in :func:`dnnpart.load` (``inputs``: an ``.npz``
        path); the same for every model.
    measure : dict, optional
        :func:`dnnpart.partition`'s ``data``, ``holdout``, ``cross_prune``,
        ``accuracy_budget`` for every run: the rows gain the accuracy scores.

    Returns
    -------
    list of Row
        In task order (model, granularity, k, partitioner); rank them with
        :func:`dnnpart.report.rank`.
    """
    from dnnpart.plugins import get_registry

    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise UsageError(f"repeat must be a positive integer, got {repeat!r}")
    if statistic not in ("best", "median"):
        raise UsageError(f"statistic must be 'best' or 'median', got {statistic!r}")
    if not (timeout > 0):
        raise UsageError(f"timeout must be positive, got {timeout!r}")
    jobs = jobs if jobs is not None else max(1, (os.cpu_count() or 1) // 2)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs must be a positive integer, got {jobs!r}")
    specs = [partitioner_spec(s) for s in extra_partitioners]
    classes = dict(get_registry().partitioners)
    owners = dict(get_registry().owner)
    for spec in specs:
        cls = load_partitioner(spec)
        if cls.name in classes and classes[cls.name] is not cls:
            raise UsageError(f"partitioner {cls.name!r} from {spec!r} is already registered")
        classes[cls.name] = cls
        owners[cls.name] = spec.partition(":")[0]
    tasks, settled = plan_tasks(
        models,
        list(ks),
        partitioners,
        granularity=granularity,
        devices=devices,
        registry_classes=classes,
        prune=prune,
        objective=check_objective(objective),
        imbalance=imbalance,
        seed=seed,
        options=options,
        repeat=repeat,
        verify=verify,
        measure=measure,
        load_options={
            key: value
            for key, value in (("input_shapes", input_shapes), ("dims", dims), ("inputs", inputs))
            if value
        },
    )
    total = len(tasks) + len(settled)
    results: dict[int, Row] = {}
    bar = _ProgressBar(total) if progress is True else None
    done = 0

    def finish(task: Task, status: str, reason=None, payload=None, code=None) -> None:
        nonlocal done
        row = Row(task.model, task.k, task.partitioner, task.granularity, status, reason)
        row.plugin, row.objective = owners.get(task.partitioner), task.objective
        row.exit_code = code if code is not None else {"timeout": 5, "failed": 1}.get(status)
        if payload is not None:
            row.scores, row.baseline = payload["scores"], payload["baseline"]
            row.ratios, row.seconds_all = payload["ratios"], payload["seconds_all"]
            row.wall_seconds, row.verify = payload["wall_seconds"], payload.get("verify")
            row.groups, row.devices = payload["groups"], payload.get("devices")
            row.messages = payload.get("messages", [])
            pick = min if statistic == "best" else statistics.median
            row.seconds = float(pick(row.seconds_all))
        results[task.index] = row
        done += 1
        if bar is not None:
            bar.advance(row)
        elif callable(progress):
            progress(row, done, total)

    for row in settled:
        row.plugin, row.objective = owners.get(row.partitioner), objective
        done += 1
        if bar is not None:
            bar.advance(row)
        elif callable(progress):
            progress(row, done, total)
    try:
        _schedule(
            tasks,
            jobs=jobs,
            timeout=timeout,
            load_timeout=load_timeout if load_timeout is not None else max(timeout, 120.0),
            max_tasks=max_tasks_per_worker,
            specs=specs,
            finish=finish,
            on_start=bar.start_task if bar is not None else None,
        )
    except KeyboardInterrupt:
        for t in tasks:
            if t.index not in results:
                results[t.index] = Row(
                    t.model, t.k, t.partitioner, t.granularity, "interrupted", "not finished"
                )
        raise Interrupted([results[t.index] for t in tasks] + settled) from None
    finally:
        if bar is not None:
            bar.close()
    return [results[t.index] for t in tasks] + settled


def _schedule(tasks, *, jobs, timeout, load_timeout, max_tasks, specs, finish, on_start):
    """Feed ``tasks`` to at most ``jobs`` workers, enforcing the time limits."""
    ctx = multiprocessing.get_context("spawn")
    pending = list(reversed(tasks))
    slots: list[_Worker | None] = [None] * min(jobs, max(len(tasks), 1))
    try:
        while pending or any(w is not None and w.task is not None for w in slots):
            for i, w in enumerate(slots):
                if pending and (w is None or w.task is None):
                    if w is not None and not w.proc.is_alive():  # died while idle
                        w.kill()
                        w = None
                    if w is None:
                        w = slots[i] = _Worker(ctx, specs)
                    task = pending.pop()
                    w.task, w.phase = task, "loading"
                    w.deadline = time.monotonic() + load_timeout
                    try:
                        w.conn.send(task)
                    except OSError:  # it died just now: the sentinel reports it below
                        pass
                    if on_start is not None:
                        on_start(task)
            busy = [w for w in slots if w is not None and w.task is not None]
            if not busy:
                continue
            nearest = min(w.deadline for w in busy)
            waitables = [w.conn for w in busy] + [w.proc.sentinel for w in busy]
            ready = wait(waitables, timeout=max(0.0, nearest - time.monotonic()))
            for i, w in enumerate(slots):
                if w is None or w.task is None:
                    continue
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        message = w.conn.recv() if w.conn.poll() else (None, None)
                    except (EOFError, OSError):
                        message = (None, None)
                    kind, payload = message[0], message[1]
                    code = message[2] if len(message) > 2 else None
                    if kind == "hello":
                        w.greeted = True
                        continue
                    if kind is None:  # died without a word
                        w.proc.join(_GRACE_S)
                        if not w.greeted:
                            raise DnnpartError(
                                f"leaderboard worker processes cannot start "
                                f"({_death_reason(w.proc)} while starting). Scripts that call "
                                "run_leaderboard must guard it with "
                                "`if __name__ == '__main__':` (multiprocessing 'spawn')"
                            )
                        finish(w.task, "failed", _death_reason(w.proc))
                        w.kill()
                        slots[i] = None
                    elif kind == "ready":
                        w.phase = "running"
                        w.deadline = time.monotonic() + timeout * (w.task.repeat + w.task.verify)
                    else:
                        finish(
                            w.task,
                            kind,
                            payload if kind == "failed" else None,
                            payload if kind == "ok" else None,
                            code,
                        )
                        w.task, w.phase, w.deadline = None, "idle", float("inf")
                        w.done += 1
                        if max_tasks is not None and w.done >= max_tasks:
                            w.stop()
                            slots[i] = None
                elif time.monotonic() >= w.deadline:
                    if w.phase == "loading":
                        finish(w.task, "failed", f"loading the model took over {load_timeout:g} s")
                    else:
                        limit = timeout * (w.task.repeat + w.task.verify)
                        finish(w.task, "timeout", f"no answer within {limit:g} s")
                    w.kill()
                    slots[i] = None
    finally:
        for w in slots:
            if w is None:
                continue
            if w.task is None:
                w.stop()
            else:
                w.kill()


class _ProgressBar:
    """A rich progress bar on stderr: rows done, and what is running now."""

    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]leaderboard"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True, soft_wrap=True),
            transient=False,
        )
        self.task = self.progress.add_task("", total=total)
        self.progress.start()

    def start_task(self, task: Task) -> None:
        name = Path(task.model).name
        self.progress.update(self.task, description=f"{name} k={task.k} {task.partitioner}")

    def advance(self, row: Row) -> None:
        if row.status not in ("ok", "skipped"):
            self.progress.console.print(
                f"[yellow]{row.status}:[/yellow] {Path(row.model).name} k={row.k} "
                f"{row.partitioner}: {row.reason}",
                highlight=False,
            )
        self.progress.advance(self.task)

    def close(self) -> None:
        self.progress.update(self.task, description="")
        self.progress.stop()
