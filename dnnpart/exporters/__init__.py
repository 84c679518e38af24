"""Per-device sub-ONNX models and ``manifest.json`` from a plan (``dnnpart export``)."""

from dnnpart.exporters._export import EXTERNAL_MIN_BYTES, build_split, export
from dnnpart.exporters._manifest import MANIFEST, read_manifest

__all__ = ["export", "build_split", "read_manifest", "MANIFEST", "EXTERNAL_MIN_BYTES"]
