"""Re-partition a split over the devices that are left (``dnnpart run`` after a loss).

The plan's partitioner, granularity and options (seed, imbalance, pruning, refinement,
objective) are run again on the surviving devices (the device file without the lost
ones, links re-indexed), through the partition API (:func:`dnnpart.partition`), whose
``choose`` hook then keeps each survivor's part where balance allows: starting from the
labels the split records (:mod:`dnnpart.exporters._labels`), the survivors' vertices stay
on their device, the lost devices' vertices are placed and refined alone
(:func:`dnnpart.partitioners._keep.keep_parts`). When that split's objective or balance
is more than :data:`KEEP_TOLERANCE` worse than the partitioner's own (from scratch), the
same refinement is run with every vertex free; when that is still too far off, the
from-scratch split is used. :class:`Replanned` says what moved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["replan", "work_shift", "Replanned", "KEEP_TOLERANCE", "vertices_moved"]

# how much worse (objective, balance) a split that keeps survivors' parts may be than a
# re-plan from scratch before the re-plan from scratch is used
KEEP_TOLERANCE = 0.10


@dataclass
class Replanned:
    """The result of :func:`replan`.

    ``moves`` (JSON-ready): ``how`` ("kept": survivors kept their vertices; "refined":
    kept, then refined with every vertex free; "fresh": the from-scratch split),
    ``vertices`` (of the problem), ``moved`` (vertices whose device changed, devices
    matched by name), ``from_lost`` (the lost devices' vertices, which must move),
    ``fresh_moved`` (what the from-scratch split would have moved), ``flows`` (per pair
    of devices, vertices moved ``from`` -> ``to``). None entries where the split records
    no labels.
    """

    manifest: dict[str, Any]
    moves: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The moves in words (``survivors kept their parts, 175 of 475 vertices moved
        (175 from the lost devices; from scratch: 266)``)."""
        m = self.moves
        how = {
            "kept": "survivors kept their parts",
            "refined": "survivors' parts kept, then refined",
            "fresh": "from scratch",
        }[m["how"]]
        if m["moved"] is None:
            return how
        text = f"{how}, {m['moved']} of {m['vertices']} vertices moved"
        text += f" ({m['from_lost']} from the lost devices"
        if m["fresh_moved"] is not None and m["how"] != "fresh":
            text += f"; from scratch: {m['fresh_moved']}"
        return text + ")"


def vertices_moved(old_names, old, new_names, new) -> tuple[int, list[dict[str, Any]]]:
    """Vertices whose device (by name) differs between labels ``old`` and ``new``, and
    the flows ``[{"from", "to", "vertices"}]`` between pairs of devices."""
    a = np.asarray(old_names, dtype=object)[np.asarray(old)]
    b = np.asarray(new_names, dtype=object)[np.asarray(new)]
    diff = a != b
    pairs: dict[tuple[str, str], int] = {}
    for x, y in zip(a[diff].tolist(), b[diff].tolist(), strict=True):
        pairs[x, y] = pairs.get((x, y), 0) + 1
    flows = [{"from": x, "to": y, "vertices": n} for (x, y), n in sorted(pairs.items())]
    return int(diff.sum()), flows


def replan(
    model: str | os.PathLike,
    manifest: dict[str, Any],
    lost,
    out_dir,
    *,
    folder=None,
    keep: bool = True,
    assign: str = "greedy",
    tolerance: float = KEEP_TOLERANCE,
) -> Replanned:
    """Export a new split of ``model`` over the devices of ``manifest`` but ``lost``.

    Parameters
    ----------
    model : path-like
        The original model (checked against the manifest's hash by the caller).
    manifest : dict
        The split that was running (read by
        :func:`~dnnpart.exporters._manifest.read_manifest`, which checked its labels).
    lost : iterable of int
        Device indices of ``manifest`` that are gone.
    out_dir : path-like
        Where the new split is written (must not exist).
    folder : path-like, optional
        The running split's folder (where a long labels record lies).
    keep : bool
        Keep each survivor's part where the tolerance allows (else from scratch).
    assign : {"greedy", "fresh"}
        How the lost devices' vertices are placed before refinement: by synapse weight
        within balance, or where the from-scratch split puts them.
    tolerance : float
        How much worse than from scratch (objective, balance) a kept split may be.

    Returns
    -------
    Replanned
    """
    from dnnpart._partition import partition
    from dnnpart.devices import DeviceSet
    from dnnpart.exporters import export
    from dnnpart.exporters._labels import groups_digest, read_labels
    from dnnpart.importers import load

    lost = sorted({int(d) for d in lost})
    devices = DeviceSet.from_dict(manifest["devices"]).without(lost)
    old_names = [d["name"] for d in manifest["devices"]["device"]]
    new_names = list(devices.names)
    p = manifest["plan"]
    params = p.get("parameters") or {}
    objective = params.get("objective", "throughput")
    record = manifest.get("labels") or {}
    readable = folder is not None or "runs" in record  # a labels file lies in the folder
    old = read_labels(folder, manifest) if readable else None
    result: dict[str, Any] = {"how": "fresh", "notes": [], "same": False}

    def choose(problem, fresh):
        notes = result["notes"]
        if old is None:
            if keep:
                notes.append("the split records no labels: re-planned from scratch")
            return fresh
        digest = groups_digest(problem.layer_names, problem.layer_offsets)
        if old.size != problem.num_vertices or record.get("groups_sha256") != digest:
            notes.append("the split's labels are for another problem: re-planned from scratch")
            return fresh
        result["same"] = True
        result["fresh_moved"] = vertices_moved(old_names, old, new_names, fresh)[0]
        if not keep:
            return fresh
        labels = _kept(problem, fresh, old, lost, devices, objective, tolerance, assign, notes)
        if labels is None:
            return fresh
        result["how"] = labels[1]
        return labels[0]

    plan = partition(
        load(model, input_shapes=(manifest.get("model") or {}).get("input_shapes") or None),
        devices=devices,
        method=p["method"] if devices.k > 1 else "vertical",
        granularity=p["granularity"],
        prune=params.get("prune"),
        refine=bool(params.get("refine")) and devices.k > 1,
        imbalance=params.get("imbalance", 0.03),
        seed=params.get("seed", 0),
        options=(params.get("options") or None) if devices.k > 1 else None,
        objective=objective,
        choose=choose,
    )
    doc = export(model, plan, out_dir)
    moves: dict[str, Any] = {
        "how": result["how"],
        "vertices": int(plan.labels.size),
        "moved": None,
        "from_lost": None,
        "fresh_moved": result.get("fresh_moved"),
        "flows": None,
    }
    if result["same"]:
        moves["moved"], moves["flows"] = vertices_moved(old_names, old, new_names, plan.labels)
        moves["from_lost"] = int(np.isin(old, lost).sum())
    return Replanned(doc, moves, result["notes"])


def _kept(problem, fresh, old, lost, devices, objective, tolerance, assign, notes):
    """(labels, how) keeping survivors' parts within ``tolerance`` of ``fresh``; else
    ``fresh`` with interchangeable devices matched to the survivors' parts and, at layer
    granularity, survivors' vertices moved back while within ``tolerance``."""
    from dnnpart.partitioners._keep import keep_parts, match_devices, refine_all, restore_kept
    from dnnpart.scoring import score

    index = np.full(len(devices.names) + len(lost), -1, dtype=np.int64)
    survivors = [d for d in range(len(index)) if d not in set(lost)]
    index[survivors] = np.arange(len(survivors))
    start = index[old]
    orphans = start < 0
    labels = keep_parts(problem, np.where(orphans, 0, start), orphans, assign=assign, fresh=fresh)
    reference = score(problem, fresh, devices)
    why = _worse(score(problem, labels, devices), reference, problem, objective, tolerance)
    if why is None:
        return labels, "kept"
    notes.append(f"keeping survivors' parts: {why}; refined with every vertex free")
    labels = refine_all(problem, labels)
    why = _worse(score(problem, labels, devices), reference, problem, objective, tolerance)
    if why is None:
        return labels, "refined"
    notes.append(f"then {why}: re-planned from scratch")
    kept = ~orphans
    fresh = match_devices(fresh, start, kept, _interchangeable(devices))
    fresh = restore_kept(problem, fresh, start, kept, tolerance)
    return fresh, "fresh"


def _interchangeable(devices) -> list[list[int]]:
    """Classes of devices that can swap parts without changing any score: equal specs,
    and no link that differs from the default."""
    if devices.links:
        return []
    classes: dict[Any, list[int]] = {}
    for d, device in enumerate(devices.devices):
        key = (device.speed, device.memory, device.memory_bandwidth)  # what scores read
        classes.setdefault(key, []).append(d)
    return [c for c in classes.values() if len(c) > 1]


def _worse(a, b, problem, objective: str, tolerance: float) -> str | None:
    """Why scores ``a`` are more than ``tolerance`` worse than ``b`` (None if they are not):
    memory that no longer fits, the plan's objective, or the worst group's imbalance where
    balance is a constraint (neuron granularity, or the volume objective: the time
    objectives of layer placement already charge each device's compute)."""
    from dnnpart.problem._objective import objective_score

    if b.memory_ok and not a.memory_ok:
        return "a device's memory overflows"
    fa, fb = objective_score(a.to_dict(), objective), objective_score(b.to_dict(), objective)
    if fa is not None and fb is not None and fa > (1 + tolerance) * fb:
        return f"{objective} {fa / fb:.2f}x from scratch's"
    if problem.granularity == "layer" and objective != "volume":
        return None
    limit = max((1 + tolerance) * b.imbalance, 1 + problem.imbalance)
    if a.imbalance > limit:
        return f"imbalance {a.imbalance:.3f} against {b.imbalance:.3f} from scratch"
    return None


def work_shift(old: dict[str, Any], new: dict[str, Any]) -> str:
    """MACs per surviving device before and after a re-plan (``dev0: 10 -> 15 MACs``)."""
    names_old = [d["name"] for d in old["devices"]["device"]]
    names_new = [d["name"] for d in new["devices"]["device"]]

    def macs(doc, names):
        out = dict.fromkeys(names, 0)
        for s in doc["stages"]:
            out[names[int(s["device"])]] += int(s["macs"])
        return out

    before, after = macs(old, names_old), macs(new, names_new)
    return "; ".join(f"{n}: {before.get(n, 0)} -> {after[n]} MACs" for n in names_new)
