"""Field-by-field check of a ``manifest.json`` document (untrusted: any field may be
missing, of another type, out of range or absurdly large).

Every field the runtime reads is checked here, before any of it is used: indices and
devices in range, names strings, element lists lists of non-negative integers, sizes
non-negative integers. A bad field raises :class:`ValueError` naming it; the reader
(:func:`~dnnpart.exporters._manifest.read_manifest`) turns that into an invalid export.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_document"]

MAX_K = 1 << 20
_BIG = 1 << 62
_MAX_RANK = 64


def _int(value: Any, what: str, lo: int = 0, hi: int = _BIG) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
        raise ValueError(f"{what} = {str(value)[:40]!r} must be an integer in [{lo}, {hi})")
    return value


def _opt_int(value: Any, what: str, lo: int = 0, hi: int = _BIG) -> None:
    if value is not None:
        _int(value, what, lo, hi)


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    return value


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list")
    return value


def _strings(value: Any, what: str) -> None:
    for x in _list(value, what):
        _str(x, what)


def _elements(d: dict, key: str, what: str) -> None:
    """``d[key]`` is None or a list of non-negative integers, and then ``axis`` is given."""
    value = d.get(key)
    if value is None:
        return
    for x in _list(value, f"{what}.{key}"):
        _int(x, f"{what}.{key}[]")
    _int(d.get("axis"), f"{what}.axis", 0, _MAX_RANK)


def _dict(value: Any, what: str, keys: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object")
    missing = [key for key in keys if key not in value]
    if missing:
        raise ValueError(f"{what} has no {missing[0]!r}")
    return value


_STAGE = ("id", "device", "stage", "file", "data", "inputs", "outputs", "layers")
_TRANSFER = (
    "from",
    "to",
    "tensor",
    "value",
    "as",
    "after",
    "bytes",
    "axis",
    "indices",
    "positions",
)
_PIECE = ("tensor", "device", "value", "axis", "indices")


def check_document(doc: Any) -> None:
    """Raise :class:`ValueError` naming the first bad field of manifest ``doc``."""
    doc = _dict(doc, "the manifest")
    k = _int(doc.get("k"), "k", 1, MAX_K)
    stages = _list(doc.get("stages"), "stages")
    for i, s in enumerate(stages):
        s = _dict(s, f"stages[{i}]", _STAGE)
        _int(s.get("id"), f"stages[{i}].id", i, i + 1)
        _int(s.get("device"), f"stages[{i}].device", 0, k)
        _int(s.get("stage"), f"stages[{i}].stage")
        for key in ("inputs", "outputs", "layers"):
            _strings(s.get(key), f"stages[{i}].{key}")
        _opt_int(s.get("macs"), f"stages[{i}].macs")
    order = _list(doc.get("order"), "order")
    if sorted(_int(x, "order[]", 0, len(stages)) for x in order) != list(range(len(stages))):
        raise ValueError("the execution order must list every stage once")
    for i, t in enumerate(_list(doc.get("transfers"), "transfers")):
        what = f"transfers[{i}]"
        t = _dict(t, what, _TRANSFER)
        _int(t.get("from"), f"{what}.from", 0, k)
        _int(t.get("to"), f"{what}.to", 0, k)
        for key in ("tensor", "value", "as"):
            _str(t.get(key), f"{what}.{key}")
        _opt_int(t.get("after"), f"{what}.after", 0, len(stages))
        _opt_int(t.get("bytes"), f"{what}.bytes")
        _opt_int(t.get("axis"), f"{what}.axis", 0, _MAX_RANK)
        _elements(t, "positions", what)
        _opt_elements_list(t, "indices", what)
    pieces: dict[str, int] = {}
    for p in doc.get("outputs") if isinstance(doc.get("outputs"), list) else []:
        if isinstance(p, dict) and isinstance(p.get("tensor"), str):
            pieces[p["tensor"]] = pieces.get(p["tensor"], 0) + 1
    for key in ("inputs", "outputs"):
        for i, p in enumerate(_list(doc.get(key), key)):
            what = f"{key}[{i}]"
            p = _dict(p, what, _PIECE)
            _str(p.get("tensor"), f"{what}.tensor")
            _str(p.get("value"), f"{what}.value")
            _int(p.get("device"), f"{what}.device", 0, k)
            _opt_int(p.get("axis"), f"{what}.axis", 0, _MAX_RANK)
            _elements(p, "indices", what)
            if key == "outputs" and pieces[p["tensor"]] > 1 and p.get("indices") is None:
                raise ValueError(f"{what}: a tensor in several pieces needs their indices")
    model = _dict(doc.get("model"), "model", ("sha256",))
    prune = model.get("prune")
    if prune is not None and (
        isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0 <= prune < 1
    ):
        raise ValueError("model.prune must be a number in [0, 1)")
    _opt_int(model.get("dead_neurons"), "model.dead_neurons")
    for key in ("volume_bytes_planned", "transfer_bytes"):
        _opt_int(doc.get(key), key)


def _opt_elements_list(d: dict, key: str, what: str) -> None:
    value = d.get(key)
    if value is not None:
        for x in _list(value, f"{what}.{key}"):
            _int(x, f"{what}.{key}[]")
