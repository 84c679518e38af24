"""Pick the importer for a model file."""

from __future__ import annotations

import os

__all__ = ["load"]


def load(path: str | os.PathLike, *, strict: bool = False, progress=None):
    """Import a model file into a :class:`~dnnpart.graph.LayerGraph`.

    Parameters
    ----------
    path : path-like
        An ONNX model (``.onnx``), its external data beside it, or a profiled graph in
        the JSON format of Tarnawski et al. (2020) (``.json``).
    strict : bool
        Fail on anything imported only approximately (unknown ops, custom domains)
        instead of warning.
    progress : callable or None
        ``progress(done, total, what)`` is called on long work.
    """
    if os.fspath(path).lower().endswith(".json"):
        from dnnpart.importers._profiled import load_profiled

        return load_profiled(path)
    from dnnpart.importers._onnx import load_onnx

    return load_onnx(path, strict=strict, progress=progress)
