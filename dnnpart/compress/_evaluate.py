"""Run an imported model with some of its weights replaced, on batches of samples.

Cross-device pruning measures many candidate models: the same graph with other weights.
The model is serialised once; each candidate replaces initializers by name and runs in
onnxruntime on all samples at once (one sample at a time when the model has a fixed
batch axis), returning the outputs and any inner tensors asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dnnpart.errors import UnsupportedModelError
from dnnpart.graph import LayerGraph

__all__ = ["ModelRunner", "stack_feeds"]


def stack_feeds(feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-sample feeds (``dnnpart._accuracy.load_data``) as one batch per input."""
    return {name: np.concatenate([np.asarray(f[name]) for f in feeds]) for name in feeds[0]}


class ModelRunner:
    """``graph``'s ONNX model with replaceable initializers and extra outputs.

    Parameters
    ----------
    graph : LayerGraph
        An imported ONNX model (its onnx-ir model is serialised once).
    extra : sequence of str
        Inner tensors to return beside the model's outputs.

    ``base`` holds weights every run replaces (those earlier passes changed); a run's own
    weights go on top.
    """

    def __init__(self, graph: LayerGraph, extra: Sequence[str] = ()):
        import onnx
        import onnx_ir as ir

        if graph.model is None:
            raise UnsupportedModelError("cross-device pruning needs an ONNX model")
        proto = ir.serde.serialize_model(graph.model)
        names = [o.name for o in proto.graph.output]
        self.outputs = list(names)
        self.inputs = {i.name for i in proto.graph.input}
        for name in dict.fromkeys(extra):
            if name in names or name in self.inputs:
                continue
            info = graph.tensors.get(name)
            dtype = (
                onnx.TensorProto.FLOAT
                if info is None or not info.dtype
                else getattr(onnx.TensorProto, info.dtype, onnx.TensorProto.FLOAT)
            )
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, dtype, None))
            names.append(name)
        self.names = names
        self.base: dict[str, np.ndarray] = {}
        self._proto = proto
        self._index = {t.name: i for i, t in enumerate(proto.graph.initializer)}

    def specs(self) -> list[tuple[str, np.dtype, list]]:
        """``(name, numpy dtype, dims)`` of the model's inputs (None: a symbolic dim)."""
        from onnx.helper import tensor_dtype_to_np_dtype

        init = set(self._index)
        out = []
        for v in self._proto.graph.input:
            if v.name in init:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            out.append((v.name, tensor_dtype_to_np_dtype(t.elem_type), dims))
        return out

    def session(self, weights: Mapping[str, np.ndarray]):
        """An onnxruntime session of the model with ``weights`` (by initializer name)."""
        import onnxruntime as ort
        from onnx import numpy_helper

        proto = self._proto
        saved = {}
        for name, value in weights.items():
            i = self._index.get(name)
            if i is None:
                raise UnsupportedModelError(f"weight {name!r} is not an initializer of the model")
            saved[i] = type(proto.graph.initializer[i])()
            saved[i].CopyFrom(proto.graph.initializer[i])
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(value), name))
        try:
            data = proto.SerializeToString()
        finally:
            for i, old in saved.items():
                proto.graph.initializer[i].CopyFrom(old)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def run(
        self, weights: Mapping[str, np.ndarray], feeds: Sequence[dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """Every output and extra tensor on every sample, concatenated along axis 0."""
        session = self.session({**self.base, **weights})
        batch = stack_feeds(feeds)
        try:
            got = session.run(self.names, batch)
        except Exception:  # noqa: BLE001 - a fixed batch axis: one sample at a time
            parts = [session.run(self.names, feed) for feed in feeds]
            got = [np.concatenate([p[i] for p in parts]) for i in range(len(self.names))]
        return {**batch, **dict(zip(self.names, got, strict=True))}
