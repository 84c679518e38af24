"""A plan: the assignment a partitioner chose, with its scores and how it was made."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnpart.errors import InvalidModelError

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
    # the concrete input shapes every score is for (name -> dims)
    input_shapes: dict[str, list[int]] = field(default_factory=dict)

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
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".plan-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        try:
            with open(path) as f:
                d = json.load(f)
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
                input_shapes={
                    str(k): [int(x) for x in v] for k, v in d.get("input_shapes", {}).items()
                },
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
