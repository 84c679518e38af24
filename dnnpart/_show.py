"""The split itself, per device and layer: what ``dnnpart show`` prints and the HTML shows.

For each layer (the plan's groups, in execution order) and device: how many vertices
(neurons or channels at neuron granularity, whole layers at layer granularity) it holds and
its share of the layer's work against the device's target share (its speed over the sum of
speeds; the GraphDNN thesis' Table 4.6 adds the shares). Per device: the layers it
computes, its share of the whole model's work against its target, and its memory against
the device's memory. Everything comes from the plan's scores (``neurons``, ``loads``,
``memory_bytes``) and devices; nothing is recomputed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["split_view", "layer_table", "MAX_DEVICE_COLUMNS"]

MAX_DEVICE_COLUMNS = 8  # beyond, a layer row sums its devices up (min, max, devices used)


def _devices(devices: dict[str, Any] | None, scores: dict[str, Any], k: int) -> list[dict]:
    listed = (devices or {}).get("device") or []
    if len(listed) != k:
        names = scores.get("device_names") or [f"dev{d}" for d in range(k)]
        listed = [{"name": str(n), "speed": 1.0} for n in names]
    return [
        {
            "name": str(d["name"]),
            "speed": float(d.get("speed", 1.0)),
            "memory": float(d["memory"]) if d.get("memory") is not None else math.inf,
        }
        for d in listed
    ]


def _runs(index: np.ndarray) -> list[list[int]]:
    """Sorted indices as inclusive runs: [0, 1, 2, 5] -> [[0, 2], [5, 5]]."""
    if index.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1)
    starts = np.concatenate([[index[0]], index[breaks + 1]])
    stops = np.concatenate([index[breaks], [index[-1]]])
    return [[int(a), int(b)] for a, b in zip(starts, stops, strict=True)]


def split_view(
    groups: list[str],
    scores: dict[str, Any],
    devices: dict[str, Any] | None = None,
    *,
    labels: np.ndarray | None = None,
    offsets: list[int] | None = None,
) -> dict[str, Any]:
    """The split per device and layer, as plain data.

    Parameters
    ----------
    groups : list of str
        Layer names, one per row of ``scores["neurons"]`` (``Plan.groups``).
    scores : dict
        A plan's (or leaderboard row's) scores: ``neurons``, ``loads``, ``memory_bytes``.
    devices : dict, optional
        The plan's devices (the device file format, ``DeviceSet.to_dict``); default: the
        scores' device names with equal speeds and unlimited memory.
    labels, offsets : optional
        The plan's labels and group offsets: each device then also lists, per group,
        the runs of vertex positions it holds (``positions``; at layer granularity the
        positions are the layers' indices in execution order).

    Returns
    -------
    dict
        ``devices``: per device ``name``, ``speed``, ``memory`` (None = unlimited),
        ``target`` (speed share), ``share`` (of all the work), ``vertices``, ``layers``
        (names of the layers it computes a part of), ``memory_bytes``, ``memory_ok``.
        ``layers``: per layer ``name``, ``vertices``, ``counts`` and ``shares`` (of the
        layer's work; None when the layer has no work) per device, ``imbalance`` (worst
        share over target; None when the layer has no work).
    """
    counts = np.asarray(scores["neurons"], dtype=np.int64)
    loads = np.asarray(scores["loads"], dtype=float)
    k = counts.shape[1]
    devs = _devices(devices, scores, k)
    speeds = np.array([d["speed"] for d in devs])
    targets = speeds / speeds.sum()
    memory = scores.get("memory_bytes") or [0] * k
    total = loads.sum()
    out_devices = []
    for d, dev in enumerate(devs):
        out_devices.append(
            {
                "name": dev["name"],
                "speed": dev["speed"],
                "memory": None if math.isinf(dev["memory"]) else dev["memory"],
                "target": float(targets[d]),
                "share": float(loads[:, d].sum() / total) if total > 0 else None,
                "vertices": int(counts[:, d].sum()),
                "layers": [groups[g] for g in np.flatnonzero(counts[:, d])],
                "memory_bytes": int(memory[d]),
                "memory_ok": bool(memory[d] <= dev["memory"]),
            }
        )
        if labels is not None and offsets is not None:
            out_devices[-1]["positions"] = {
                name: _runs(np.flatnonzero(np.asarray(labels[lo:hi]) == d))
                for name, lo, hi in zip(groups, offsets[:-1], offsets[1:], strict=True)
                if np.any(np.asarray(labels[lo:hi]) == d)
            }
    out_layers = []
    for g, name in enumerate(groups):
        work = loads[g].sum()
        shares = loads[g] / work if work > 0 else None
        out_layers.append(
            {
                "name": name,
                "vertices": int(counts[g].sum()),
                "counts": [int(c) for c in counts[g]],
                "shares": None if shares is None else [float(s) for s in shares],
                "imbalance": None if shares is None else float(np.max(shares / targets)),
            }
        )
    return {"devices": out_devices, "layers": out_layers}


def layer_table(view: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-layer part of ``view`` as text: column names and rows.

    Up to :data:`MAX_DEVICE_COLUMNS` devices, one column per device with ``count (share
    of the layer's work)``; more devices are summed up per layer (fewest and most
    vertices on a device, devices used), so the table stays readable at k = 64.
    """
    names = [d["name"] for d in view["devices"]]
    wide = len(names) <= MAX_DEVICE_COLUMNS
    head = ["layer", "total", *(names if wide else ["fewest", "most", "devices used"])]
    rows = []
    for layer in view["layers"]:
        counts = layer["counts"]
        if wide:
            shares = layer["shares"] or [None] * len(counts)
            cells = [
                str(c) if share is None or not c else f"{c} ({share:.0%})"
                for c, share in zip(counts, shares, strict=True)
            ]
        else:
            cells = [str(min(counts)), str(max(counts)), str(sum(1 for c in counts if c))]
        imb = "-" if layer["imbalance"] is None else f"{layer['imbalance']:.3f}"
        rows.append([layer["name"], str(layer["vertices"]), *cells, imb])
    return [*head, "imbalance"], rows
