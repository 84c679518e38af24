"""One layer of the layer graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from dnnpart.graph._costs import CHANNEL_AXIS
from dnnpart.graph._tensor import TensorInfo, Weight

__all__ = ["Layer", "LayerKind"]


class LayerKind:
    """What a layer is, for partitioning (plain strings, so they print and serialise)."""

    DENSE = "dense"  # MatMul/Gemm with a constant weight (+ bias): split by output feature
    CONV = "conv"  # Conv with a constant weight: split by output channel
    NEURONWISE = "neuronwise"  # elementwise/per-channel op that can follow a neuron split
    CONTROL_FLOW = "control_flow"  # If/Loop/Scan: kept whole, bodies never split
    OPAQUE = "opaque"  # unknown op or custom domain: kept whole, cost unknown (0)
    OTHER = "other"  # any other known op: placed whole


@dataclass(eq=False)
class Layer:
    """A layer: one ONNX node, or a fused group (MatMul + Add bias).

    Identity-based: two layers are equal only if they are the same object. ``inputs`` are
    the activations the layer reads (produced by other layers or model inputs), ``weights``
    the constants it reads keyed by role (``"weight"``, ``"bias"``, or the input position
    for other ops). ``captured`` lists the outer-scope values the bodies of a control-flow
    layer read; they are inputs too.
    """

    name: str
    op_type: str
    domain: str
    kind: str
    attributes: dict[str, Any]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    weights: dict[str, Weight] = field(default_factory=dict)
    macs: int = 0
    nodes: tuple[Any, ...] = ()  # the onnx_ir nodes the layer stands for
    captured: tuple[str, ...] = ()
    neurons: int | None = None  # output neurons, for splittable layers
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, {self.op_type}, kind={self.kind})"

    @property
    def splittable(self) -> bool:
        return self.kind in (LayerKind.DENSE, LayerKind.CONV) and bool(self.neurons)

    @property
    def neuronwise(self) -> bool:
        """True for elementwise ops that can follow a neuron split of their input."""
        return self.kind == LayerKind.NEURONWISE

    @property
    def neuron_axis(self) -> int:
        """The output axis a splittable layer's neurons run along: a convolution's
        channels (axis 1), else a dense layer's output features (the last axis)."""
        if self.kind == LayerKind.CONV:
            return 1
        shape = self.outputs[0].shape if self.outputs else None
        return (len(shape or ()) or 1) - 1

    def follows(self, axis: int | None) -> bool:
        """True if this neuron-wise layer can follow a neuron split of its input along
        ``axis``: per-channel ops (pooling, batch and instance norm) only along axis 1."""
        return self.neuronwise and (axis == 1 or self.op_type not in CHANNEL_AXIS)

    @property
    def param_bytes(self) -> int:
        return sum(w.nbytes for w in self.weights.values())

    @property
    def params(self) -> int:
        return sum(w.size for w in self.weights.values())

    @property
    def activation_bytes(self) -> int | None:
        """Bytes of the layer's outputs for one forward pass, ``None`` if a shape is unknown."""
        sizes = [t.nbytes for t in self.outputs]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]

    @property
    def memory_traffic(self) -> int:
        """Bytes the layer reads and writes in memory for one forward pass: its activation
        inputs, its parameters and its outputs, each once (a tensor of unknown shape counts
        0); the memory term of the time model (:mod:`dnnpart.problem._time`)."""
        tensors = (*self.inputs, *self.outputs)
        return self.param_bytes + sum(t.nbytes or 0 for t in tensors)

    # -- neuron view of splittable layers -----------------------------------------
    def _weight_in_out(self) -> tuple[int, int, bool]:
        """(fan-in, neurons, transposed) of a dense layer's weight."""
        w = self.weights["weight"]
        trans = bool(self.attributes.get("transB", 0)) if self.op_type == "Gemm" else False
        rows, cols = w.shape[-2], w.shape[-1]
        return (cols, rows, True) if trans else (rows, cols, False)

    def synapse_count(self) -> int:
        """Non-zero weights (synapses) of a splittable layer, streamed."""
        if not self.splittable:
            return 0
        return self.weights["weight"].count_nonzero()

    def fan_in_counts(self) -> np.ndarray:
        """Synapses into each neuron (its MACs per output element), streamed, shape (neurons,)."""
        if not self.splittable:
            raise ValueError(f"layer {self.name!r} ({self.op_type}) is not splittable")
        w = self.weights["weight"]
        if w._fill is not None:  # a constant fill: every weight or none is a synapse
            per = w.size // self.neurons if w._fill != 0 else 0
            return np.full(self.neurons, per, dtype=np.int64)
        counts = np.zeros(self.neurons, dtype=np.int64)
        by_row = self.kind == LayerKind.CONV or self._weight_in_out()[2]
        for r0, block in w.iter_rows():
            if by_row:  # rows are neurons
                counts[r0 : r0 + block.shape[0]] = np.count_nonzero(block, axis=1)
            else:
                counts += np.count_nonzero(block, axis=0)
        return counts

    def synapse_matrix(self) -> sp.csr_array:
        """Synapses as a sparse ``(inputs, neurons)`` matrix.

        Dense: ``S[i, j]`` is 1 where weight ``W[i, j]`` (input feature ``i`` to output
        feature ``j``) is non-zero. Conv: ``S[c, o]`` counts the non-zero kernel elements
        from input channel ``c`` to output channel ``o``; channels in different groups are
        never connected. Streams the weight, so a big external weight is never whole in
        memory as a dense array.
        """
        if not self.splittable:
            raise ValueError(f"layer {self.name!r} ({self.op_type}) is not splittable")
        w = self.weights["weight"]
        rows_i, cols_i, vals = [], [], []
        if self.kind == LayerKind.DENSE:
            fan_in, neurons, trans = self._weight_in_out()
            if len(w.shape) != 2:
                raise ValueError(f"dense layer {self.name!r} has a weight of rank {len(w.shape)}")
            for r0, block in w.iter_rows():
                r, c = np.nonzero(block)
                rows_i.append(r + r0)
                cols_i.append(c)
            r = np.concatenate(rows_i) if rows_i else np.zeros(0, np.int64)
            c = np.concatenate(cols_i) if cols_i else np.zeros(0, np.int64)
            if trans:
                r, c = c, r
            data = np.ones(len(r), dtype=np.float32)
            return sp.csr_array((data, (r, c)), shape=(fan_in, neurons))
        # conv: weight (C_out, C_in / group, *kernel)
        group = int(self.attributes.get("group", 1))
        c_out, c_in_g = w.shape[0], w.shape[1]
        per_group_out = c_out // group
        for r0, block in w.iter_rows():
            nz = np.count_nonzero(block.reshape(block.shape[0], c_in_g, -1), axis=2)
            o, c = np.nonzero(nz)
            o = o + r0
            rows_i.append((o // per_group_out) * c_in_g + c)
            cols_i.append(o)
            vals.append(nz[o - r0, c])
        r = np.concatenate(rows_i)
        c = np.concatenate(cols_i)
        data = np.concatenate(vals).astype(np.float32)
        return sp.csr_array((data, (r, c)), shape=(c_in_g * group, c_out))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op_type,
            "domain": self.domain,
            "kind": self.kind,
            "macs": self.macs,
            "params": self.params,
            "param_bytes": self.param_bytes,
            "activation_bytes": self.activation_bytes,
            "neurons": self.neurons,
        }
