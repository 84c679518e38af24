"""The Graph Challenge layers as an ONNX model, built by the example converter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
from _problems import REPO, shared_data


def converter():
    """``examples/graph_challenge/make_onnx.py`` as a module (examples is not a package)."""
    path = REPO / "examples" / "graph_challenge" / "make_onnx.py"
    spec = importlib.util.spec_from_file_location("gc_make_onnx", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_gc_model(directory: Path, layers: int = 4) -> Path:
    """Write the model into ``directory`` (a temporary folder: it is derived data)."""
    model = converter().build_model(shared_data() / "graph-challenge", layers)
    path = Path(directory) / "gc.onnx"
    onnx.save(model, str(path))
    return path
