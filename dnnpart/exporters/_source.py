"""The model an export starts from: the imported graph after the plan's passes, with the
types of every value (symbolic dimensions kept) and the constants it may write."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from dnnpart._plan import file_sha256
from dnnpart.errors import InvalidModelError, UnsupportedModelError, UsageError
from dnnpart.graph import LayerGraph

__all__ = ["Source", "prepare", "canonical_initializers", "stage_model", "whole_model"]


@dataclass
class Source:
    """A loaded model ready to be cut.

    ``graph`` is the LayerGraph after the plan's passes; ``model`` its onnx-ir model with
    shapes inferred in place; ``overrides`` the weights the passes changed (by value name)
    that replace the model's own; ``path`` and ``sha256`` identify the file; ``passes``
    are the records of the passes as replayed.
    """

    graph: LayerGraph
    model: Any
    values: dict[str, Any]
    overrides: dict[str, np.ndarray]
    path: str | None
    sha256: str | None
    passes: list[dict[str, Any]]

    @property
    def prune(self) -> float | None:
        return next((p["ratio"] for p in self.passes if p["name"] == "magnitude_prune"), None)

    @property
    def dead_neurons(self) -> int | None:
        """Neurons removed after pruning (None: that pass was not run)."""
        dead = (p["neurons"] for p in self.passes if p["name"] == "remove_dead_neurons")
        return next(dead, None)

    def value(self, name: str):
        try:
            return self.values[name]
        except KeyError:
            raise InvalidModelError(f"tensor {name!r} is not a value of the model") from None

    def dtype(self, name: str):
        """The onnx-ir element type of tensor ``name`` (from the model or the importer)."""
        import onnx_ir as ir

        v = self.values.get(name)
        if v is not None and v.dtype is not None:
            return v.dtype
        info = self.graph.tensors.get(name)
        if info is not None and info.dtype:
            return ir.DataType[info.dtype]
        raise UnsupportedModelError(f"the element type of tensor {name!r} is unknown")

    def shape(self, name: str):
        """The onnx-ir shape of tensor ``name`` (symbolic dimensions kept), or None."""
        import onnx_ir as ir

        v = self.values.get(name)
        if v is not None and v.shape is not None:
            return v.shape.copy()
        info = self.graph.tensors.get(name)
        if info is not None and info.shape is not None:
            return ir.Shape([d if d is not None else None for d in info.shape])
        return None

    def constant(self, name: str) -> np.ndarray:
        """A constant's values (pruned where the plan pruned), read through checked paths."""
        if name in self.overrides:
            return self.overrides[name]
        w = self.graph.weights.get(name)
        if w is None:
            raise InvalidModelError(f"constant {name!r} is not a weight of the model")
        return w.numpy()


def prepare(
    model,
    passes: list[dict[str, Any]],
    sha256: str | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    *,
    store=None,
) -> Source:
    """Load ``model`` (a path, or a LayerGraph imported from it) at ``input_shapes`` (the
    plan's), check that its sha256 is ``sha256`` (when given), replay ``passes`` (reading
    stored weights from ``store``) and give every value its type."""
    import onnx_ir as ir

    from dnnpart.compress import apply_passes
    from dnnpart.importers import load

    shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()}
    if isinstance(model, LayerGraph):
        graph = model
        if shapes and graph.input_shapes and graph.input_shapes != shapes:
            raise UsageError(
                f"the graph was imported for input shapes {graph.input_shapes}, "
                f"the plan is for {shapes}"
            )
    else:
        graph = load(os.fspath(model), input_shapes=shapes or None)
    if graph.model is None:
        raise UsageError("export needs an ONNX model (a profiled graph has no operators)")
    sha = file_sha256(graph.path) if graph.path and os.path.isfile(graph.path) else None
    if sha256 and sha and sha256 != sha:
        raise UsageError(
            f"the plan was made for another model (sha256 {sha256[:12]}..., "
            f"{graph.path} has {sha[:12]}...)"
        )
    changed, records = apply_passes(graph, passes, store=store)
    overrides: dict[str, np.ndarray] = {}
    for old, new in zip(graph.layers, changed.layers, strict=True):
        for key, w in new.weights.items():
            if w is not old.weights.get(key):
                overrides[w.name] = np.asarray(w.numpy())
    graph = changed
    # the plan's shapes on the model's inputs; a symbolic leading axis of size 1 (a batch)
    # stays symbolic, so that the sub-models run any batch (no 1 baked in for a symbol)
    for inp in graph.model.graph.inputs:
        info = graph.tensors.get(inp.name)
        if info is None or info.shape is None or None in info.shape:
            continue
        old = list(inp.shape) if inp.shape is not None else [None] * len(info.shape)
        if len(old) != len(info.shape):
            continue
        dims = list(info.shape)
        if len(old) > 1 and dims[0] == 1 and not isinstance(old[0], int):
            dims[0] = old[0]
        inp.shape = ir.Shape(dims)
    _infer_value_types(graph.model)
    # what inference leaves untyped or unshaped gets the importer's type (the checker wants
    # one on every sub-model input and output)
    values = ir.convenience.create_value_mapping(graph.model.graph, include_subgraphs=False)
    for name, info in graph.tensors.items():
        v = values.get(name)
        if v is None:
            continue
        if v.dtype is None and info.dtype:
            v.dtype = ir.DataType[info.dtype]
        if v.shape is None and info.shape is not None and None not in info.shape:
            v.shape = ir.Shape(info.shape)
    return Source(
        graph=graph,
        model=graph.model,
        values=dict(values),
        overrides=overrides,
        path=os.path.abspath(graph.path) if graph.path else None,
        sha256=sha,
        passes=records,
    )


def _infer_value_types(model) -> None:
    """Set the type and shape of every value of ``model`` from onnx shape inference, run
    in a child process (a hostile model can make onnx's C++ abort); left as they are if
    inference fails or crashes (the importer's shapes are used then)."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common

    from dnnpart._isolate import call_isolated

    def dims(shape):
        if shape is None:
            return None
        return [d if isinstance(d, int) else getattr(d, "value", None) for d in shape]

    def table():
        common.ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
        return [
            {
                name: (None if v.dtype is None else int(v.dtype), dims(v.shape))
                for name, v in ir.convenience.create_value_mapping(g).items()
            }
            for g in model.graphs()
        ]

    try:
        tables = call_isolated(table)
    except Exception:  # noqa: BLE001 - inference is a hint: crashed, failed or timed out
        return
    for g, types in zip(model.graphs(), tables, strict=False):
        for name, v in ir.convenience.create_value_mapping(g).items():
            dtype, shape = types.get(name, (None, None))
            if dtype is not None:
                v.dtype = ir.DataType(dtype)
            if shape is not None:
                v.shape = ir.Shape(shape)


def _checked_tensor(source: Source, name: str, like):
    """A lazy tensor reading ``name`` through the importer's checked reference."""
    import onnx_ir as ir

    def read(name=name):
        return ir.tensor(np.asarray(source.constant(name), order="C"), name=name)

    return ir.LazyTensor(read, dtype=like.dtype, shape=like.shape.copy(), name=name)


def canonical_initializers(graph, source: Source) -> None:
    """Sort ``graph``'s initializers by name (deterministic files) and make every
    initializer whose model tensor lives in external data, or was pruned, read through the
    source (checked paths, pruned values) instead of onnx-ir's own file access."""
    import onnx_ir as ir

    values = sorted(graph.initializers.values(), key=lambda v: v.name)
    graph.initializers.clear()
    for v in values:
        name = v.name
        if name in source.overrides:
            arr = np.asarray(source.overrides[name], order="C")
            v.const_value = ir.tensor(arr, name=name)
        elif isinstance(v.const_value, ir.ExternalTensor):
            v.const_value = _checked_tensor(source, name, v.const_value)
        graph.register_initializer(v)


def stage_model(graph, source: Source):
    """Wrap a stage graph into a model with the source's IR version and local functions.

    IR versions before 4 require every initializer to be a graph input too (so that a
    caller may override it); stages raise those to 4 rather than expose weights as inputs.
    """
    import onnx_ir as ir

    from dnnpart._version import __version__

    src = source.model
    return ir.Model(
        graph,
        ir_version=max(int(src.ir_version), 4),
        producer_name="dnnpart",
        producer_version=__version__,
        functions=list(src.functions.values()),
    )


def whole_model(source: Source, extra_outputs: list[str] | None = None):
    """The whole model after the plan's passes, as an onnx-ir model: extracted like a
    stage (the changed weights and external data read through the source's checked
    paths), with the model's own inputs and outputs (then ``extra_outputs``, inner
    tensors to return too)."""
    import onnx_ir as ir

    graph = source.graph
    outputs = [t.name for t in graph.outputs]
    outputs += [n for n in dict.fromkeys(extra_outputs or []) if n not in outputs]
    g = ir.convenience.extract(
        source.model.graph, [t.name for t in graph.inputs] + sorted(source.overrides), outputs
    )
    for v in [v for v in g.inputs if v.name in source.overrides]:
        g.inputs.remove(v)
        v.const_value = ir.tensor(source.overrides[v.name], name=v.name)
        if v.name not in g.initializers:
            g.register_initializer(v)
    canonical_initializers(g, source)
    return stage_model(g, source)
