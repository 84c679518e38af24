"""What the framework build scripts share: write the models, then check them with
onnxruntime against the framework's own outputs on the samples."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np


def run(build: Callable[[Path], dict[str, np.ndarray]], framework: str) -> None:
    """Build into ``sys.argv[1]`` (default: this folder), then check every model: the
    converted model computes what ``framework`` computed (needs onnxruntime)."""
    import onnxruntime as ort

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    os.makedirs(out, exist_ok=True)
    for name, want in build(out).items():
        session = ort.InferenceSession(str(out / f"{name}.onnx"))
        got = session.run(None, dict(np.load(out / f"{name}.npz")))[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        print(f"{name}: onnxruntime agrees with {framework}", file=sys.stderr)
