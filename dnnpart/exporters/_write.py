"""Safe, deterministic writing of an export folder (BAD_INPUTS.md, "Writing outputs").

Everything is written into a temporary folder beside the destination (same filesystem),
the manifest last, and the folder is renamed into place only once complete: a crash,
Ctrl-C or full disk leaves nothing under the final name. An existing destination is
refused unless ``force``; with it the old folder is moved aside, the new one renamed in,
and the old one removed, so nothing is ever appended to an old external-data file. File
contents carry no timestamps and no random names, so the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dnnpart._isolate import IsolatedCrash, call_isolated
from dnnpart._output import _umask
from dnnpart.errors import InvalidModelError, OutputConflictError, UsageError

__all__ = ["staged_folder", "write_json", "save_model", "save_model_file", "json_bytes"]


def json_bytes(doc: Any) -> bytes:
    """Canonical JSON: sorted keys, fixed indentation, a final newline, UTF-8."""
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
        _fsync_file(path)


def write_json(path: str | os.PathLike, doc: Any) -> None:
    """Write ``doc`` as canonical JSON and flush it to disk."""
    with open(path, "wb") as f:
        f.write(json_bytes(doc))
        f.flush()
        os.fsync(f.fileno())


def save_model(
    model,
    path: str | os.PathLike,
    *,
    external_data: str | None = None,
    source: str | None = None,
) -> None:
    """Save an onnx-ir model, with its big tensors in ``external_data`` (a bare file name
    beside ``path``) when given, then check it with ``onnx.checker`` (``full_check=True``).

    Raises
    ------
    InvalidModelError
        If the written model fails the checker and so does the model it was cut from,
        ``source`` (the fault is the input's).
    RuntimeError
        If the written model fails the checker (a bug of the exporter, not of the input).
    """
    import onnx
    import onnx_ir as ir

    if external_data is not None:
        ir.save(model, path, external_data=external_data, size_threshold_bytes=1024)
        _fsync_file(os.path.join(os.path.dirname(path), external_data))
    else:
        ir.save(model, path)
    _fsync_file(path)
    try:
        # the path form checks external data in place and works past protobuf's 2 GiB;
        # in a child process, as its shape inference can abort on a hostile model
        call_isolated(lambda: onnx.checker.check_model(os.fspath(path), full_check=True))
    except IsolatedCrash as exc:
        raise InvalidModelError(
            f"onnx's checker crashed on sub-model {os.path.basename(path)} ({exc}): "
            "the model's shapes are inconsistent"
        ) from None
    except Exception as exc:  # noqa: BLE001 - ValidationError, InferenceError, ...
        fault = _checker_fault(source) if source else None
        if fault:
            raise InvalidModelError(f"{source} fails the ONNX checker: {fault}") from None
        raise RuntimeError(
            f"exported sub-model {os.path.basename(path)} fails the ONNX checker: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from exc


def save_model_file(
    model, path: str | os.PathLike, *, force: bool = False, external_bytes: int = 64 << 20
) -> list[str]:
    """Save an onnx-ir model as the single file ``path``, atomically.

    The model is written and checked (:func:`save_model`) in a temporary folder beside
    ``path``, then renamed into place; its weights go to ``<name>.data`` beside it when
    they exceed ``external_bytes``. An existing ``path`` (or data file) is refused with
    :class:`~dnnpart.errors.OutputConflictError` unless ``force``. Returns the files written.
    """
    out = Path(os.path.abspath(path))
    data = out.name + ".data"
    size = sum(v.const_value.nbytes for v in model.graph.initializers.values())
    external = data if size > external_bytes else None
    targets = [out] + ([out.parent / data] if external else [])
    for t in targets:
        if os.path.isdir(t) and not os.path.islink(t):
            raise OutputConflictError(f"{t} is a folder")
        if os.path.lexists(t) and not force:
            raise OutputConflictError(f"output exists: {t} (use --force to replace it)")
    tmp = _temporary_beside(out, path)
    try:
        save_model(model, tmp / out.name, external_data=external)
        for t in targets[::-1]:  # the data before the model that refers to it
            os.chmod(tmp / t.name, 0o666 & ~_umask())
            os.replace(tmp / t.name, t)
        _fsync_dir(out.parent)
    finally:
        _remove(tmp)
    return [os.fspath(t) for t in targets]


def _checker_fault(path: str) -> str | None:
    """The first line of what ``onnx.checker`` (full check, in a child process) finds
    wrong with the model at ``path``, or None."""
    import onnx

    try:
        call_isolated(lambda: onnx.checker.check_model(path, full_check=True))
    except IsolatedCrash as exc:
        return f"the checker crashed ({exc})"
    except Exception as exc:  # noqa: BLE001 - ValidationError, InferenceError, ...
        return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
    return None


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on normal exit rename it to ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        The destination folder. Its parent is created if missing.
    force : bool
        Replace an existing ``out_dir`` (file, folder or symlink; a symlink is replaced,
        never followed). Without it an existing ``out_dir`` raises
        :class:`~dnnpart.errors.OutputConflictError` (exit code 6) before anything is written.

    On an exception (or KeyboardInterrupt) the temporary folder is removed and ``out_dir``
    is left as it was.
    """
    out = Path(os.path.abspath(out_dir))
    if out.name in ("", ".", ".."):
        raise UsageError(f"not a usable output folder: {out_dir}")
    if os.path.lexists(out) and not force:
        raise OutputConflictError(f"output folder exists: {out_dir} (use --force to replace it)")
    tmp = _temporary_beside(out, out_dir)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
    try:
        yield tmp
        _fsync_dir(tmp)
        if os.path.lexists(out):
            if not force:  # appeared while we were writing
                raise OutputConflictError(
                    f"output folder exists: {out_dir} (use --force to replace it)"
                )
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "x")  # moves a folder, file or symlink without following it
            os.rename(tmp, out)
            _remove(old)
        else:
            os.rename(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        _remove(tmp)
        raise


def _temporary_beside(out: Path, shown) -> Path:
    """A new empty folder beside ``out`` (same filesystem: renames are atomic); the
    parent is created if missing."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the parent of {shown}: {exc.strerror}") from None
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))


def _remove(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
