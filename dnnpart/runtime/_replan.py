"""Re-partition a split over the devices that are left (``dnnpart run`` after a loss).

One small function on the partition API (:func:`dnnpart.partition`) and the exporter, so
that it survives changes to how problems are built: the plan's partitioner, granularity
and options (seed, imbalance, pruning, refinement) are run again on the surviving
devices (the device file without the lost ones, links re-indexed), and the new split is
exported to a folder of its own.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["replan", "moves"]


def replan(model: str | os.PathLike, manifest: dict[str, Any], lost, out_dir) -> dict[str, Any]:
    """Export a new split of ``model`` over the devices of ``manifest`` but ``lost``.

    Parameters
    ----------
    model : path-like
        The original model (checked against the manifest's hash by the caller).
    manifest : dict
        The split that was running.
    lost : iterable of int
        Device indices of ``manifest`` that are gone.
    out_dir : path-like
        Where the new split is written (must not exist).

    Returns
    -------
    dict
        The new manifest.
    """
    from dnnpart._partition import partition
    from dnnpart.devices import DeviceSet
    from dnnpart.exporters import export
    from dnnpart.importers import load

    devices = DeviceSet.from_dict(manifest["devices"]).without(lost)
    p = manifest["plan"]
    params = p.get("parameters") or {}
    shapes = (manifest.get("model") or {}).get("input_shapes") or None
    plan = partition(
        load(model, input_shapes=shapes),  # the shapes the split was made for
        devices=devices,
        method=p["method"] if devices.k > 1 else "vertical",
        granularity=p["granularity"],
        prune=params.get("prune"),
        refine=bool(params.get("refine")) and devices.k > 1,
        imbalance=params.get("imbalance", 0.03),
        seed=params.get("seed", 0),
        options=(params.get("options") or None) if devices.k > 1 else None,
        objective=params.get("objective", "throughput"),
    )
    return export(model, plan, out_dir)


def moves(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What moved between two splits of the same model: MACs per surviving device, before
    and after, and (layer placement) how many layers changed device."""
    names_old = [d["name"] for d in old["devices"]["device"]]
    names_new = [d["name"] for d in new["devices"]["device"]]

    def macs(doc, names):
        out = dict.fromkeys(names, 0)
        for s in doc["stages"]:
            out[names[int(s["device"])]] += int(s["macs"])
        return out

    before, after = macs(old, names_old), macs(new, names_new)
    parts = [f"{n}: {before.get(n, 0)} -> {after[n]} MACs" for n in names_new]
    if old.get("granularity") == "layer":

        def where(doc, names):
            return {layer: names[int(s["device"])] for s in doc["stages"] for layer in s["layers"]}

        w_old, w_new = where(old, names_old), where(new, names_new)
        moved = sum(1 for layer, dev in w_new.items() if w_old.get(layer) != dev)
        parts.append(f"{moved} of {len(w_new)} layers changed device")
    return "; ".join(parts)
