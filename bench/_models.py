"""The real models the benchmarks time, in one place: the light ResNet-50 that the onnx
wheel ships (its test data; absent from some builds of the wheel) and SqueezeNet 1.0 of
the same wheel, kept in examples/corpus."""

from __future__ import annotations

from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
RESNET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
SQUEEZENET = ROOT / "examples" / "corpus" / "wheel_squeezenet.onnx"
CNNS = [("squeezenet", SQUEEZENET), ("resnet50", RESNET)]
