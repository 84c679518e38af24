"""The split of a model as data: stages, transfers, where inputs enter and outputs leave;
and ``manifest.json``, its on-disk form, written by the exporter and read by the runtime.

A *value* is a name in one device's store: a whole tensor keeps the model's tensor name, a
slice of a neuron-split tensor gets a fresh name. A transfer copies a value (or the
elements ``positions`` of it along ``axis``) from one device's store to another's, right
after the stage that produced it has run (``after`` is None for model inputs). ``indices``
are the same elements as neuron indices of the model's tensor ``tensor``. ``bytes`` is what
the transfer carries per sample (the model's inputs with symbolic dimensions set to 1,
the convention of the plan's scores), None where a shape is unknown.

File names are ``{device}_stage{s}.onnx``: the device's name from the device file
(``jetson_stage0.onnx``) when it is a safe file name (a letter, then up to 31 letters,
digits, ``_`` or ``-``; unique ignoring case; not a reserved Windows name), else
``device{d}``. Names found in the model never reach a path, and :func:`read_manifest`
refuses any name but the one these rules give.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from dnnpart._files import load_json, read_regular
from dnnpart.devices import DeviceSet
from dnnpart.errors import InvalidModelError, UsageError
from dnnpart.exporters._labels import read_labels
from dnnpart.exporters._manifest_schema import check_document

__all__ = [
    "MANIFEST",
    "FORMAT",
    "Stage",
    "Transfer",
    "Piece",
    "Split",
    "stage_file",
    "file_prefixes",
    "read_manifest",
    "manifest_passes",
]

MANIFEST = "manifest.json"
FORMAT = 1
MAX_MANIFEST_BYTES = 256 << 20
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_RESERVED = re.compile(r"(con|prn|aux|nul|com\d|lpt\d|device\d+)", re.IGNORECASE)


def file_prefixes(names: list[str]) -> list[str]:
    """Per device, the start of its file names: its name if safe (see the module
    docstring), else ``device{d}``."""
    lower = [str(n).lower() for n in names]
    return [
        n
        if isinstance(n, str)
        and _NAME_RE.fullmatch(n)
        and not _RESERVED.fullmatch(n)
        and lower.count(n.lower()) == 1
        else f"device{d}"
        for d, n in enumerate(names)
    ]


def stage_file(prefix: str, index: int, ext: str = "onnx") -> str:
    """The file name of a stage: ``{prefix}_stage{index}.{ext}`` (see :func:`file_prefixes`)."""
    return f"{prefix}_stage{int(index)}.{ext}"


@dataclass
class Stage:
    """One sub-model: part of one device's work that runs once its inputs are there."""

    device: int
    index: int
    graph: Any  # onnx_ir.Graph (exporter side); None when read back
    inputs: list[str]
    outputs: list[str]
    layers: list[str]
    macs: int
    file: str = ""
    data: str | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.device, self.index)


@dataclass
class Transfer:
    src: int
    dst: int
    tensor: str
    value: str
    to_value: str
    after: tuple[int, int] | None
    nbytes: int | None
    axis: int | None = None
    indices: list[int] | None = None
    positions: list[int] | None = None


@dataclass
class Piece:
    """Where (part of) a model input is fed or a model output is read."""

    tensor: str
    device: int
    value: str
    axis: int | None = None
    indices: list[int] | None = None


@dataclass
class Split:
    granularity: str
    k: int
    stages: list[Stage]
    order: list[tuple[int, int]]
    transfers: list[Transfer]
    inputs: list[Piece]
    outputs: list[Piece]
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def transfer_bytes(self) -> int | None:
        sizes = [t.nbytes for t in self.transfers]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]

    def to_dict(self, header: dict[str, Any]) -> dict[str, Any]:
        """The manifest document (``header`` adds model, plan, devices and scores)."""
        stage_id = {s.key: i for i, s in enumerate(self.stages)}
        doc = dict(header)
        doc.update(
            {
                "format": FORMAT,
                "granularity": self.granularity,
                "k": self.k,
                "stages": [
                    {
                        "id": stage_id[s.key],
                        "device": s.device,
                        "stage": s.index,
                        "file": s.file,
                        "data": s.data,
                        "inputs": s.inputs,
                        "outputs": s.outputs,
                        "layers": s.layers,
                        "macs": s.macs,
                    }
                    for s in self.stages
                ],
                "order": [stage_id[key] for key in self.order],
                "transfers": [
                    {
                        "from": t.src,
                        "to": t.dst,
                        "tensor": t.tensor,
                        "value": t.value,
                        "as": t.to_value,
                        "after": stage_id[t.after] if t.after is not None else None,
                        "bytes": t.nbytes,
                        "axis": t.axis,
                        "indices": t.indices,
                        "positions": t.positions,
                    }
                    for t in self.transfers
                ],
                "inputs": [_piece_dict(p) for p in self.inputs],
                "outputs": [_piece_dict(p) for p in self.outputs],
                "transfer_bytes": self.transfer_bytes,
                "notes": self.notes,
            }
        )
        return doc


def _piece_dict(p: Piece) -> dict[str, Any]:
    return {
        "tensor": p.tensor,
        "device": p.device,
        "value": p.value,
        "axis": p.axis,
        "indices": p.indices,
    }


def _fail(folder, what: str):
    raise InvalidModelError(f"not a valid dnnpart export: {folder} ({what})")


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``folder/manifest.json``; the folder is untrusted input.

    Checks the structure, that every file name is the one :func:`file_prefixes` and
    :func:`stage_file` give for its device and stage and is a regular file (not a
    symlink) directly inside ``folder``, that indices are in range
    and that the execution order lists each stage once, and the plan's labels
    (:func:`~dnnpart.exporters._labels.read_labels`). Raises
    :class:`~dnnpart.errors.InvalidModelError` (exit code 3) otherwise.
    """
    folder = os.fspath(folder)
    path = os.path.join(folder, MANIFEST)
    if not os.path.isdir(folder):
        _fail(folder, "not a folder")
    if not os.path.lexists(path):
        _fail(folder, f"no {MANIFEST}")
    if os.path.islink(path):
        _fail(folder, f"{MANIFEST} is a symbolic link")
    where = f"not a valid dnnpart export: {folder} ({MANIFEST})"
    data = read_regular(path, limit=MAX_MANIFEST_BYTES, what=MANIFEST, error=InvalidModelError)
    doc = load_json(data, where, InvalidModelError)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        _fail(folder, f"unknown format {doc.get('format') if isinstance(doc, dict) else doc!r}")
    try:
        check_document(doc)
        # the device file's own rules (one place), as for a plan's devices
        names = list(DeviceSet.from_dict(doc["devices"]).names)
    except UsageError as exc:
        _fail(folder, f"{MANIFEST}: devices: {exc}")
    except ValueError as exc:
        _fail(folder, f"{MANIFEST}: {exc}")
    except (KeyError, TypeError) as exc:
        _fail(folder, f"{MANIFEST}: missing or bad field devices ({exc})")
    if len(names) != doc["k"]:
        _fail(folder, f"{len(names)} devices listed for k = {doc['k']}")
    prefixes = file_prefixes(names)
    for i, s in enumerate(doc["stages"]):
        for key in ("file", "data"):
            name = s.get(key)
            if name is None and key == "data":
                continue
            ext = "onnx" if key == "file" else "data"
            want = stage_file(prefixes[s["device"]], s["stage"], ext)
            if name != want:
                _fail(folder, f"stage {i}: file name {name!r} is not {want!r}")
            full = os.path.join(folder, name)
            if os.path.islink(full) or not os.path.isfile(full):
                _fail(folder, f"{name} is missing or not a regular file")
    read_labels(folder, doc)  # the plan's labels, when recorded: count, range, hash
    return doc


def manifest_passes(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The model passes a split was exported with (manifests made before passes were
    recorded name them as ``model.prune`` / ``model.dead_neurons``)."""
    from dnnpart.compress import passes_from_parameters

    model = manifest.get("model") or {}
    if "passes" in model:
        if not isinstance(model["passes"], list):
            raise InvalidModelError("manifest: model.passes must be a list")
        return list(model["passes"])
    return passes_from_parameters(model)
