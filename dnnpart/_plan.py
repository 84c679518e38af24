"""A plan: the assignment a partitioner chose, with its scores and how it was made."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnpart.errors import InvalidModelError, UsageError

__all__ = ["Plan", "file_sha256"]

PLAN_FORMAT = 1


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "method": self.method,
            "k": self.k,
            "granularity": self.granularity,
            "model": self.model,
            "model_sha256": self.model_sha256,
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

        write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        d = _read_json(path)
        try:
            groups = d["groups"]
            return cls(
                method=d["method"],
                k=int(d["k"]),
                granularity=d["granularity"],
                labels=np.asarray(d["labels"], dtype=np.int64),
                groups=[g["name"] for g in groups],
                offsets=[g["start"] for g in groups] + [groups[-1]["stop"] if groups else 0],
                scores=d["scores"],
                baseline=d.get("baseline"),
                ratios=d.get("ratios"),
                devices=d["devices"],
                parameters=d.get("parameters", {}),
                model=d.get("model"),
                model_sha256=d.get("model_sha256"),
                seconds=d.get("seconds"),
                messages=list(d.get("messages", [])),
                passes=_passes_of(d),
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise InvalidModelError(f"not a valid dnnpart plan: {path} ({exc})") from None


def _passes_of(d: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan's passes; plans written before passes were recorded name them in parameters."""
    from dnnpart.compress import passes_from_parameters

    if "passes" in d:
        if not isinstance(d["passes"], list):
            raise TypeError("passes must be a list")
        return list(d["passes"])
    return passes_from_parameters(d.get("parameters"))


def _read_json(path: str | os.PathLike) -> Any:
    """The plan file's JSON, with messages for the usual mistakes (no file, a model)."""
    if not os.path.exists(path):
        raise UsageError(f"plan file not found: {os.fspath(path)}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read plan {os.fspath(path)}: {exc.strerror}") from None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        hint = " (it looks like an ONNX model: the order is MODEL PLAN)" if _onnx_like(data) else ""
        raise InvalidModelError(f"{os.fspath(path)} is not a dnnpart plan (JSON){hint}") from None
    except ValueError as exc:
        raise InvalidModelError(f"not a valid dnnpart plan: {os.fspath(path)} ({exc})") from None


def _onnx_like(data: bytes) -> bool:
    # an ONNX ModelProto starts with field 1 (ir_version, varint: 0x08) and names its
    # producer or opsets soon after; JSON starts with "{" or whitespace
    return data[:1] == b"\x08" or b"onnx" in data[:256].lower()
