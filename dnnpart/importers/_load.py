"""Pick the importer for a model file."""

from __future__ import annotations

import os

__all__ = ["load"]


def load(
    path: str | os.PathLike,
    *,
    strict: bool = False,
    progress=None,
    input_shapes=None,
    dims=None,
    inputs=None,
):
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
    input_shapes : dict of str to sequence of int, optional
        Concrete shapes of model inputs, by name (``--input-shape NAME=D0,D1,...``).
    dims : dict of str to int, optional
        Sizes of named symbolic dimensions wherever they appear (``--dim SYMBOL=VALUE``).
    inputs : path-like (``.npz``) or dict of arrays, optional
        A real sample whose arrays' shapes are the input shapes (``--inputs FILE.npz``);
        its first sample is what onnxruntime measures shapes and Loop trip counts on.

    A leading batch axis left open is set to 1 (with a warning saying so); any other
    open input dimension raises :class:`~dnnpart.errors.UsageError`. Every cost and byte
    count of the graph is for these shapes (``graph.input_shapes``).
    """
    if os.fspath(path).lower().endswith(".json"):
        from dnnpart.importers._profiled import load_profiled

        return load_profiled(path)
    from dnnpart.importers._onnx import load_onnx

    sample_shapes = arrays = None
    if inputs is not None:
        from dnnpart.importers._input_shapes import read_npz

        arrays = inputs if isinstance(inputs, dict) else read_npz(inputs)
        sample_shapes = {name: tuple(getattr(a, "shape", ())) for name, a in arrays.items()}
    return load_onnx(
        path,
        strict=strict,
        progress=progress,
        input_shapes=input_shapes,
        dims=dims,
        sample_shapes=sample_shapes,
        sample=arrays,
    )
