"""A plan: the assignment a partitioner chose, with its scores and how it was made."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnpart._files import load_json, read_regular
from dnnpart.devices import DeviceSet
from dnnpart.errors import InvalidModelError, UsageError

__all__ = ["Plan", "file_sha256"]

PLAN_FORMAT = 1
MAX_PLAN_BYTES = 4 << 30  # labels of 10^9 vertices


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Plan:
    """What ``dnnpart partition`` writes and later commands read.

    ``labels`` holds one device per vertex of the problem; ``groups`` names the vertex
    ranges (``offsets``) so that a reader can map labels back to layers and neurons.
    """

    method: str
    k: int
    granularity: str
    labels: np.ndarray
    groups: list[str]
    offsets: list[int]
    scores: dict[str, Any]
    baseline: dict[str, Any] | None
    ratios: dict[str, Any] | None
    devices: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    model_sha256: str | None = None
    seconds: float | None = None
    messages: list[str] = field(default_factory=list)  # notes from partitioner and passes
    # the passes applied to the model before partitioning, in order (see
    # dnnpart.compress.apply_passes); export, verify and run replay them
    passes: list[dict[str, Any]] = field(default_factory=list)
    # the concrete input shapes every score is for (name -> dims)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    # weights passes stored by content hash (sha256 -> value name -> array), written
    # beside the plan by save(); a loaded plan reads them from its folder (store)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    store: str | None = None

    @property
    def weights_store(self):
        """Where the plan's stored weights are (see :func:`dnnpart.compress.apply_passes`)."""
        return self.arrays or self.store

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "method": self.method,
            "k": self.k,
            "granularity": self.granularity,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "input_shapes": {k: [int(d) for d in v] for k, v in self.input_shapes.items()},
            "parameters": self.parameters,
            "passes": list(self.passes),
            "devices": self.devices,
            "scores": self.scores,
            "baseline": self.baseline,
            "ratios": self.ratios,
            "groups": [
                {"name": name, "start": int(lo), "stop": int(hi)}
                for name, lo, hi in zip(
                    self.groups, self.offsets[:-1], self.offsets[1:], strict=True
                )
            ],
            "labels": [int(x) for x in self.labels],
            "seconds": self.seconds,
            "messages": list(self.messages),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan as JSON atomically (a temporary file renamed into place)."""
        from dnnpart._output import write_text
        from dnnpart.compress._store import save_arrays

        try:
            for arrays in self.arrays.values():  # first: a plan never names missing weights
                save_arrays(os.path.dirname(os.path.abspath(path)), arrays)
            write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write the plan {os.fspath(path)}: {exc.strerror}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """Read a plan written by :meth:`save`; the file is untrusted input.

        Refuses special files, files over :data:`MAX_PLAN_BYTES`, JSON nested deeper than
        a plan is, and any field of the wrong type or out of range: ``k`` a positive
        integer no larger than the number of labels, labels integers in ``0 .. k-1``,
        groups that tile the labels in order, ``k`` devices that a device file could
        hold (:func:`_check_devices`). A missing file is a usage error (exit 2);
        a file that is no plan is invalid input (exit 3), with a hint when it is a model.
        """
        if not os.path.lexists(path):
            raise UsageError(f"plan file not found: {os.fspath(path)}")
        data = read_regular(path, limit=MAX_PLAN_BYTES, what="plan file")
        if _onnx_like(data):
            raise InvalidModelError(
                f"{os.fspath(path)} is not a dnnpart plan (JSON); it looks like an ONNX "
                "model: the order is MODEL PLAN"
            )
        d = load_json(data, f"not a valid dnnpart plan: {path}", InvalidModelError)
        try:
            plan = cls._from_dict(d)
            plan.store = os.path.dirname(os.path.abspath(path))
            return plan
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise InvalidModelError(f"not a valid dnnpart plan: {path} ({exc})") from None

    @classmethod
    def _from_dict(cls, d: Any) -> Plan:
        if not isinstance(d, dict):
            raise TypeError("the plan must be a JSON object")
        labels = np.asarray(_field(d, "labels", list))
        if labels.size and labels.dtype.kind not in "iu":
            raise ValueError("labels must be integers")
        labels = labels.astype(np.int64).reshape(-1)
        k = _field(d, "k", int)
        if not 1 <= k <= max(labels.size, 1):
            raise ValueError(f"k = {k} must be in 1 .. {max(labels.size, 1)} (the labels)")
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"labels must be in 0 .. {k - 1}")
        offsets, names = [0], []
        for g in _field(d, "groups", list):
            if not isinstance(g, dict) or not isinstance(g.get("name"), str):
                raise TypeError("every group needs a name")
            start, stop = _field(g, "start", int), _field(g, "stop", int)
            if start != offsets[-1] or stop < start:
                raise ValueError(f"group {g['name']!r} does not follow the one before it")
            names.append(g["name"])
            offsets.append(stop)
        if offsets[-1] != labels.size:
            raise ValueError(f"{labels.size} labels for {offsets[-1]} vertices in the groups")
        granularity = _field(d, "granularity", str)
        if granularity not in ("neuron", "layer"):
            raise ValueError(f"unknown granularity {granularity!r}")
        parameters = _field(d, "parameters", dict, {})
        prune = parameters.get("prune")
        if prune is not None and (
            isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0 <= prune < 1
        ):
            raise ValueError(f"parameters.prune = {prune!r} must be a number in [0, 1)")
        dead = parameters.get("dead_neurons")
        if dead is not None and (isinstance(dead, bool) or not isinstance(dead, int) or dead < 0):
            raise ValueError(f"parameters.dead_neurons = {dead!r} must be a count")
        sha = _field(d, "model_sha256", str, None)
        if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError("model_sha256 must be 64 hex digits")
        seconds = _field(d, "seconds", (int, float), None)
        return cls(
            method=_field(d, "method", str),
            k=k,
            granularity=granularity,
            labels=labels,
            groups=names,
            offsets=offsets,
            scores=_field(d, "scores", dict),
            baseline=_field(d, "baseline", dict, None),
            ratios=_field(d, "ratios", dict, None),
            devices=_check_devices(_field(d, "devices", dict), k),
            parameters=parameters,
            model=_field(d, "model", str, None),
            model_sha256=sha,
            seconds=None if seconds is None else float(seconds),
            messages=[str(m) for m in _field(d, "messages", list, [])],
            passes=_passes_of(d),
            input_shapes=_input_shapes_of(_field(d, "input_shapes", dict, {})),
        )


def _check_devices(devices: dict[str, Any], k: int) -> dict[str, Any]:
    """``devices`` if it is a valid device spec (the device file's format, checked by
    :meth:`~dnnpart.devices.DeviceSet.from_dict`: a list of tables with unique non-empty
    names, finite positive speeds...) of exactly ``k`` devices; ValueError otherwise."""
    try:
        count = DeviceSet.from_dict(devices).k
    except UsageError as exc:
        raise ValueError(f"devices: {exc}") from None
    if count != k:
        raise ValueError(f"{count} devices listed for k = {k}")
    return devices


def _passes_of(d: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan's passes; plans written before passes were recorded name them in parameters."""
    from dnnpart.compress import passes_from_parameters

    if "passes" in d:
        if not isinstance(d["passes"], list):
            raise TypeError("passes must be a list")
        return list(d["passes"])
    return passes_from_parameters(d.get("parameters"))


def _onnx_like(data: bytes) -> bool:
    # an ONNX ModelProto starts with field 1 (ir_version, varint: 0x08) and names its
    # producer or opsets soon after; JSON starts with "{" or whitespace
    return data[:1] == b"\x08" or (data[:1] not in b"{[ \t\r\n" and b"onnx" in data[:256].lower())


_REQUIRED = object()


def _field(d: dict, key: str, kind, default: Any = _REQUIRED) -> Any:
    """``d[key]`` checked to be of type ``kind`` (bool is no int); ``default`` if absent
    or null (a missing field without a default is an error)."""
    value = d.get(key)
    if value is None:
        if default is _REQUIRED:
            raise KeyError(f"missing field {key!r}")
        return default
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _input_shapes_of(shapes: dict) -> dict[str, list[int]]:
    """The plan's concrete input shapes: names to lists of non-negative integers."""
    out = {}
    for name, dims in shapes.items():
        if not isinstance(dims, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in dims
        ):
            raise ValueError(f"input_shapes[{name!r}] must be a list of non-negative integers")
        out[str(name)] = list(dims)
    return out
