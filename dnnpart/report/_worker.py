"""The worker process of a leaderboard: loads models, runs tasks, reports back.

:func:`worker_main` is the target of every worker process (see :mod:`dnnpart.report._run`
for why workers are reused and how they are killed). Protocol on its pipe: the worker sends
``("hello", pid)`` once started; for each :class:`~dnnpart.report._rows.Task` received it
sends ``("ready", None)`` when the model is loaded, then ``("ok", payload)`` or
``("failed", reason, exit_code)`` (the CLI exit code of the error); ``None`` from the
parent stops it. A worker ignores Ctrl-C (the parent stops it) and leaves quietly when the
parent is gone: a closed pipe, or a new parent process id (the parent was killed).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from dnnpart.errors import UsageError
from dnnpart.report._rows import Task, load_partitioner

__all__ = ["worker_main", "verify_plan"]

_GRAPH_CACHE = 2  # graphs kept per worker (models are run one after the other)


def _install_extra(specs: Sequence[str]) -> dict[str, type]:
    """Import the extra partitioners and add them to this process's registry."""
    from dnnpart.plugins import get_registry

    reg = get_registry()
    extra = {}
    for spec in specs:
        cls = load_partitioner(spec)
        if cls.name in reg.partitioners and reg.partitioners[cls.name] is not cls:
            raise UsageError(
                f"partitioner {cls.name!r} from {spec!r} clashes with the one of plugin "
                f"{reg.owner[cls.name]!r}"
            )
        reg.partitioners[cls.name] = cls
        reg.owner[cls.name] = spec.partition(":")[0]
        extra[cls.name] = cls
    return extra


def worker_main(conn, extra_specs: Sequence[str]) -> None:
    """Serve tasks from ``conn`` until told to stop (``None``) or the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent acts
    _watch_parent(os.getppid())
    try:
        _serve(conn, extra_specs)
    except (EOFError, OSError):  # BrokenPipeError included: the parent is gone
        os._exit(0)


def _watch_parent(parent: int) -> None:
    """Exit at once when the parent dies (killed, it cannot stop its workers)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="dnnpart-lb-parent", daemon=True).start()


def _serve(conn, extra_specs: Sequence[str]) -> None:
    # Data goes to the parent's stdout (e.g. --json): a chatty plugin must not pollute it.
    try:
        os.dup2(2, 1)
    except OSError:  # pragma: no cover - no usable stderr
        pass
    sys.stdout = sys.stderr
    conn.send(("hello", os.getpid()))  # bootstrapped: the parent's main module imported fine
    from dnnpart.importers import load

    cache: dict[tuple, Any] = {}
    extra_error = None
    try:
        _install_extra(extra_specs)
    except Exception as exc:  # noqa: BLE001 - reported on every row instead
        extra_error = f"{type(exc).__name__}: {exc}"
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            stat = os.stat(task.model)
            options = task.load_options or {}
            key = (os.path.abspath(task.model), stat.st_size, stat.st_mtime_ns, repr(options))
            if key not in cache:
                while len(cache) >= _GRAPH_CACHE:
                    cache.pop(next(iter(cache)))
                cache[key] = load(task.model, **options)
            graph = cache[key]
        except Exception as exc:  # noqa: BLE001
            conn.send(("failed", f"loading the model: {_reason(exc)}", _exit_code(exc)))
            continue
        conn.send(("ready", None))
        if extra_error:
            conn.send(("failed", f"extra partitioners: {extra_error}", 2))
            continue
        try:
            result = ("ok", _run_task(task, graph))
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a plugin fails its row
            if isinstance(exc, KeyboardInterrupt):
                return
            result = ("failed", _reason(exc), _exit_code(exc))
        conn.send(result)


def _exit_code(exc: BaseException) -> int:
    from dnnpart.errors import DnnpartError

    if isinstance(exc, DnnpartError):
        return exc.exit_code
    return 5 if isinstance(exc, MemoryError) else 1


def _reason(exc: BaseException) -> str:
    from dnnpart.errors import DnnpartError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, DnnpartError):
        return text or type(exc).__name__
    if isinstance(exc, SystemExit):
        return f"partitioner called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run_task(task: Task, graph) -> dict[str, Any]:
    from dnnpart._partition import partition

    start = time.perf_counter()
    plans = []
    for _ in range(task.repeat):
        plans.append(
            partition(
                graph,
                k=None if task.devices is not None else task.k,
                devices=task.devices,
                method=task.partitioner,
                granularity=task.granularity,
                prune=task.prune,
                imbalance=task.imbalance,
                seed=task.seed,
                options=task.options,
                objective=task.objective,
                **(task.measure or {}),
            )
        )
    plan = plans[0]
    out = {
        "scores": plan.scores,
        "baseline": plan.baseline,
        "ratios": plan.ratios,
        "seconds_all": [float(p.seconds or 0.0) for p in plans],
        "groups": list(plan.groups),
        "devices": plan.devices,
        "messages": list(plan.messages),
    }
    if task.verify:
        out["verify"] = verify_plan(task.model, plan)
    out["wall_seconds"] = time.perf_counter() - start
    return out


def verify_plan(model: str, plan) -> dict[str, Any]:
    """Export ``plan`` to a temporary folder and verify it, if this dnnpart can.

    Uses ``dnnpart.exporters.export(model, plan, out_dir)`` and
    ``dnnpart.runtime.verify(out_dir, model=model)`` (random seeded samples) and keeps the
    design's verify record: ``ok``, ``max_abs_err``, ``bytes_measured``, ``bytes_planned``,
    plus ``reason`` when not ok. Without export/verify the record says
    ``"export/verify not available"``; an error while exporting or verifying is reported on
    the row (``ok`` false), not raised.
    """
    import tempfile

    try:
        export = importlib.import_module("dnnpart.exporters").export
        verify = importlib.import_module("dnnpart.runtime").verify
    except (ImportError, AttributeError):
        return {"ok": None, "reason": "export/verify not available"}
    try:
        with tempfile.TemporaryDirectory(prefix="dnnpart-lb-") as tmp:
            out = os.path.join(tmp, "split")
            export(model, plan, out)
            result = verify(out, model=model)
            doc = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    except Exception as exc:  # noqa: BLE001 - one row's verification must not stop the board
        return {"ok": False, "reason": _reason(exc)}
    keys = ("ok", "max_abs_err", "bytes_measured", "bytes_planned")
    record = {key: doc.get(key) for key in keys}
    if not record["ok"]:
        record["reason"] = "; ".join(doc.get("problems") or []) or "verification failed"
    return record
