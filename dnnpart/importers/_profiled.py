"""Profiled graphs (Tarnawski et al. 2020 JSON) -> LayerGraph.

Each profiled node becomes a layer (op ``profiled``) whose output is one tensor of the
node's transfer size; the per-node times, memory, colour class and device support stay
available as ``graph.profile`` (a :class:`ProfiledGraph`) for the pipeline partitioner and
the ``max_load`` score. The file's ``maxFPGAs``/``maxCPUs``/``maxSizePerFPGA`` give the
default devices (:func:`profile_devices`).
"""

from __future__ import annotations

import math
import os

import numpy as np

from dnnpart.devices import Device, DeviceSet
from dnnpart.graph import Layer, LayerGraph, LayerKind, TensorInfo
from dnnpart.graph._toposort import stable_topological_order
from dnnpart.importers._tarnawski import ProfiledGraph, read_profiled_graph

__all__ = ["load_profiled", "profile_devices"]


def load_profiled(path: str | os.PathLike) -> LayerGraph:
    prof = read_profiled_graph(path)
    n = prof.num_nodes
    out_size = np.zeros(n)
    np.maximum.at(out_size, prof.src, prof.edge_size)
    outputs = [
        TensorInfo(f"out{int(prof.ids[i])}", (int(out_size[i]),), "UINT8", 8) for i in range(n)
    ]
    preds: list[list[int]] = [[] for _ in range(n)]
    for s, d in zip(prof.src.tolist(), prof.dst.tolist(), strict=True):
        if s not in preds[d]:
            preds[d].append(s)
    order, _ = stable_topological_order(n, ((p, v) for v, ps in enumerate(preds) for p in ps))
    names: set[str] = set()
    layers = []
    for i in order:
        name = prof.names[i] or f"node{int(prof.ids[i])}"
        if name in names:
            name = f"{name}#{int(prof.ids[i])}"
        names.add(name)
        attrs = {
            "id": int(prof.ids[i]),
            "fpga_time": float(prof.fpga_time[i]),
            "cpu_time": float(prof.cpu_time[i]),
            "size": float(prof.size[i]),
            "supported_on_fpga": bool(prof.supported_on_fpga[i]),
            "color_class": int(prof.color_class[i]),
            "is_backward": bool(prof.is_backward[i]),
            "out_cost": float(prof.out_cost[i]),
        }
        layers.append(
            Layer(
                name=name,
                op_type="profiled",
                domain="",
                kind=LayerKind.OTHER,
                attributes=attrs,
                inputs=tuple(outputs[p] for p in preds[i]),
                outputs=(outputs[i],),
            )
        )
    graph = LayerGraph(layers, [], [], path=os.fspath(path))
    graph.profile = prof
    graph.profile_order = np.asarray(order, dtype=np.int64)  # layer index -> profiled node
    return graph


def profile_devices(prof: ProfiledGraph, accelerators: int | None = None) -> DeviceSet:
    """The file's devices: ``maxFPGAs`` accelerators (``maxSizePerFPGA`` bytes each), then
    ``maxCPUs`` CPU cores. ``accelerators`` overrides the accelerator count (``-k``)."""
    a = prof.max_fpgas if accelerators is None else accelerators
    mem = prof.max_size_per_fpga if prof.max_size_per_fpga > 0 else math.inf
    devs = [Device(f"accelerator{i}", 1.0, mem) for i in range(a)]
    devs += [Device(f"cpu{i}", 1.0, math.inf) for i in range(prof.max_cpus)]
    return DeviceSet(tuple(devs))
