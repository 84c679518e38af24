"""Read the profiled operator/layer graphs of Tarnawski et al. (NeurIPS 2020).

Tarnawski, Phanishayee, Devanur, Mahajan, Nina Paravecino, "Efficient Algorithms for Device
Placement of DNN Graph Operators", NeurIPS 2020 (repository msr-fiddle/dnn-partitioning)
publishes its inputs as JSON::

    {"maxSizePerFPGA": bytes, "maxFPGAs": k, "maxCPUs": c,
     "nodes": [{"id", "name", "supportedOnFpga", "cpuLatency", "fpgaLatency",
                "isBackwardNode", "colorClass"?, "size"?}, ...],
     "edges": [{"sourceId", "destId", "cost", "size"?}, ...]}

``cost`` is the time to move the source's output to another device; the paper charges it
once per source node, so it must be the same on every out-edge of one source. The file
comes from strangers: every field is checked and any problem raises
:class:`~dnnpart.errors.InvalidModelError` naming the node, edge or field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from dnnpart.devices import Host
from dnnpart.errors import InvalidModelError, ResourceLimitError, UsageError

__all__ = ["ProfiledGraph", "read_profiled_graph", "parse_profiled_graph", "MAX_PROFILE_BYTES"]

# The paper's largest file (BERT-24 training, operator level) is a few MB; 64 MiB leaves
# room for graphs 100x larger while refusing to parse something absurd into memory.
MAX_PROFILE_BYTES = 64 << 20

# Same tolerance idea as the paper's reader (1e-6 absolute), plus a relative part so that
# costs given in large units are not rejected over rounding.
_COST_ABS_TOL = 1e-6
_COST_REL_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class ProfiledGraph:
    """A profiled DNN graph in the format of Tarnawski et al. (2020).

    Node arrays are indexed ``0..n-1`` in file order; ``ids[i]`` is the file's id of node
    ``i``. Edge arrays hold node *indices*. Arrays are read-only.

    Attributes
    ----------
    ids : ndarray of int64, shape (n,)
    names : tuple of str
    fpga_time, cpu_time : ndarray of float64, shape (n,)
        Run time of each node on one accelerator ("FPGA" in the paper) / one CPU core.
    size : ndarray of float64, shape (n,)
        Bytes a node needs on an accelerator (0 when the file omits it).
    supported_on_fpga, is_backward : ndarray of bool, shape (n,)
    color_class : ndarray of int64, shape (n,)
        Colocation class (nodes of one class share a device); -1 when the node has none.
    src, dst : ndarray of int64, shape (m,)
    edge_cost, edge_size : ndarray of float64, shape (m,)
        Per-edge transfer cost and bytes (``size`` is optional in the file: 0 when omitted).
    out_cost : ndarray of float64, shape (n,)
        Cost of sending a node's output to another device (0 for nodes without out-edges).
    max_fpgas, max_cpus : int
    max_size_per_fpga : float
    call_overhead : float
        Seconds a device pays once per sample when it holds any node: the file's optional
        ``dnnpart.call_overhead_s`` (``dnnpart profile --runtime-overhead``), else 0.
    host : Host or None
        The machine the profile was measured on, as devices sharing it see it (its cores
        and the CPU cost of a device call and of a byte carried): the file's optional
        ``dnnpart.host`` (``dnnpart profile --runtime-overhead``), else None.
    io_bytes : int
        Bytes of the model's inputs and outputs per sample: the file's optional
        ``dnnpart.io_bytes`` (``dnnpart profile`` writes it), else 0.
    """

    ids: np.ndarray
    names: tuple[str, ...]
    fpga_time: np.ndarray
    cpu_time: np.ndarray
    size: np.ndarray
    supported_on_fpga: np.ndarray
    color_class: np.ndarray
    is_backward: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    edge_cost: np.ndarray
    edge_size: np.ndarray
    out_cost: np.ndarray
    max_fpgas: int
    max_cpus: int
    max_size_per_fpga: float
    call_overhead: float = 0.0
    host: Host | None = None
    io_bytes: int = 0

    @property
    def num_nodes(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])


def read_profiled_graph(path: str | os.PathLike, *, max_bytes: int = MAX_PROFILE_BYTES):
    """Read a profiled graph JSON file of Tarnawski et al. (2020).

    Parameters
    ----------
    path : path-like
    max_bytes : int
        Files larger than this are refused before parsing.

    Returns
    -------
    ProfiledGraph

    Raises
    ------
    ResourceLimitError
        The file is larger than ``max_bytes``.
    InvalidModelError
        The file is missing, not JSON, or any field is missing, mistyped or inconsistent
        (negative times, unknown or duplicate ids, differing out-edge costs, cycles).
    """
    p = Path(path)
    try:
        nbytes = p.stat().st_size
    except OSError as exc:
        raise InvalidModelError(f"{p}: cannot read profiled graph ({exc.strerror})") from exc
    if not p.is_file():
        raise InvalidModelError(f"{p}: not a regular file")
    if nbytes > max_bytes:
        raise ResourceLimitError(
            f"{p}: {nbytes} bytes exceeds the profiled-graph limit of {max_bytes} bytes"
        )
    try:
        with p.open("rb") as fh:
            text = fh.read(max_bytes + 1).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidModelError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InvalidModelError(f"{p}: cannot read profiled graph ({exc.strerror})") from exc
    if len(text) > max_bytes:  # the file grew between stat and read
        raise ResourceLimitError(f"{p}: more than {max_bytes} bytes")
    return parse_profiled_graph(text, source=str(p))


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def parse_profiled_graph(text: str, *, source: str = "<string>") -> ProfiledGraph:
    """Parse the JSON text of a profiled graph (see :func:`read_profiled_graph`)."""
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise InvalidModelError(f"{source}: JSON nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and the NaN/Infinity refusal
        raise InvalidModelError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InvalidModelError(f"{source}: top level must be a JSON object")
    r = _Reader(source)
    max_size = r.number(doc, "maxSizePerFPGA", "top level")
    max_fpgas = r.integer(doc, "maxFPGAs", "top level")
    max_cpus = r.integer(doc, "maxCPUs", "top level")
    nodes = r.array(doc, "nodes", "top level")
    edges = r.array(doc, "edges", "top level")
    ours = doc.get("dnnpart", {})
    if not isinstance(ours, dict):
        raise InvalidModelError(f"{source}: top level: field 'dnnpart' must be an object")
    call_overhead = r.number(ours, "call_overhead_s", "dnnpart", default=0.0)
    host = None
    if ours.get("host") is not None:
        try:
            host = Host.from_dict(ours["host"], "dnnpart.host")
        except UsageError as exc:
            raise InvalidModelError(f"{source}: {exc}") from None
    io_bytes = r.number(ours, "io_bytes", "dnnpart", default=0.0)

    ids, names, fpga, cpu, size, supported, backward, color, index_of = _read_nodes(r, nodes)
    n = len(nodes)
    src, dst, ecost, esize, out_cost = _read_edges(r, edges, index_of, names)
    _check_acyclic(src, dst, n, ids, names, source)
    arrays = (ids, fpga, cpu, size, supported, color, backward, src, dst, ecost, esize, out_cost)
    for a in arrays:
        a.flags.writeable = False
    return ProfiledGraph(
        ids=ids,
        names=tuple(names),
        fpga_time=fpga,
        cpu_time=cpu,
        size=size,
        supported_on_fpga=supported,
        color_class=color,
        is_backward=backward,
        src=src,
        dst=dst,
        edge_cost=ecost,
        edge_size=esize,
        out_cost=out_cost,
        max_fpgas=max_fpgas,
        max_cpus=max_cpus,
        max_size_per_fpga=max_size,
        call_overhead=call_overhead,
        host=host,
        io_bytes=int(io_bytes),
    )


def _read_nodes(r: _Reader, nodes: list):
    """The node arrays of a profiled graph, in file order, and the index of every id."""
    source = r.source
    n = len(nodes)
    ids = np.empty(n, dtype=np.int64)
    names: list[str] = []
    fpga = np.empty(n)
    cpu = np.empty(n)
    size = np.empty(n)
    supported = np.empty(n, dtype=bool)
    backward = np.empty(n, dtype=bool)
    color = np.empty(n, dtype=np.int64)
    index_of: dict[int, int] = {}
    for i, node in enumerate(nodes):
        where = f"node #{i}"
        if not isinstance(node, dict):
            raise InvalidModelError(f"{source}: {where} must be a JSON object")
        nid = r.integer(node, "id", where, minimum=None)
        where = f"node #{i} (id {nid})"
        if nid in index_of:
            raise InvalidModelError(f"{source}: {where}: duplicate id (also node #{index_of[nid]})")
        index_of[nid] = i
        ids[i] = nid
        name = node.get("name", str(nid))
        if not isinstance(name, str):
            raise InvalidModelError(f"{source}: {where}: field 'name' must be a string")
        names.append(name)
        where = f"node #{i} (id {nid}, {name!r})"
        fpga[i] = r.number(node, "fpgaLatency", where)
        cpu[i] = r.number(node, "cpuLatency", where)
        size[i] = r.number(node, "size", where, default=0.0)
        supported[i] = r.flag(node, "supportedOnFpga", where)
        backward[i] = r.flag(node, "isBackwardNode", where)
        cc = node.get("colorClass")
        color[i] = -1 if cc is None else r.integer(node, "colorClass", where)
    return ids, names, fpga, cpu, size, supported, backward, color, index_of


def _read_edges(r: _Reader, edges: list, index_of: dict[int, int], names: list[str]):
    """Edge arrays (node indices) and each node's out-cost, the same on all its out-edges."""
    source = r.source
    n = len(index_of)
    m = len(edges)
    src = np.empty(m, dtype=np.int64)
    dst = np.empty(m, dtype=np.int64)
    ecost = np.empty(m)
    esize = np.empty(m)
    out_cost = np.zeros(n)
    cost_from: dict[int, int] = {}  # source index -> edge that fixed its out_cost
    for j, edge in enumerate(edges):
        where = f"edge #{j}"
        if not isinstance(edge, dict):
            raise InvalidModelError(f"{source}: {where} must be a JSON object")
        s_id = r.integer(edge, "sourceId", where, minimum=None)
        d_id = r.integer(edge, "destId", where, minimum=None)
        where = f"edge #{j} ({s_id} -> {d_id})"
        for key, nid in (("sourceId", s_id), ("destId", d_id)):
            if nid not in index_of:
                raise InvalidModelError(f"{source}: {where}: field {key!r} names unknown node")
        if s_id == d_id:
            raise InvalidModelError(f"{source}: {where}: self-loop on node {s_id}")
        s, d = index_of[s_id], index_of[d_id]
        src[j], dst[j] = s, d
        ecost[j] = r.number(edge, "cost", where)
        esize[j] = r.number(edge, "size", where, default=0.0)
        if s in cost_from:
            first = cost_from[s]
            if not math.isclose(
                ecost[j], ecost[first], rel_tol=_COST_REL_TOL, abs_tol=_COST_ABS_TOL
            ):
                raise InvalidModelError(
                    f"{source}: node {s_id} ({names[s]!r}) has out-edges with different "
                    f"costs: {ecost[first]!r} (edge #{first}) and {ecost[j]!r} (edge #{j}); "
                    "the cost of sending a node's output must be the same on all its out-edges"
                )
        else:
            cost_from[s] = j
            out_cost[s] = ecost[j]
    return src, dst, ecost, esize, out_cost


def _check_acyclic(src, dst, n, ids, names, source) -> None:
    """Raise naming a node on a cycle (strong components; no recursion)."""
    if n == 0:
        return
    adj = sp.csr_array((np.ones(len(src)), (src, dst)), shape=(n, n))
    ncomp, labels = connected_components(adj, directed=True, connection="strong")
    if ncomp == n:
        return
    big = np.flatnonzero(np.bincount(labels) > 1)[0]
    members = np.flatnonzero(labels == big)
    shown = ", ".join(f"{ids[i]} ({names[i]!r})" for i in members[:5])
    more = f" and {len(members) - 5} more" if len(members) > 5 else ""
    raise InvalidModelError(f"{source}: the graph has a cycle through nodes {shown}{more}")


class _Reader:
    """Typed field access with messages naming the file, the item and the field."""

    def __init__(self, source: str):
        self.source = source

    def _get(self, obj: dict, key: str, where: str, default):
        if key not in obj:
            if default is not None:
                return default
            raise InvalidModelError(f"{self.source}: {where}: missing field {key!r}")
        return obj[key]

    def number(self, obj: dict, key: str, where: str, default: float | None = None) -> float:
        v = self._get(obj, key, where, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidModelError(
                f"{self.source}: {where}: field {key!r} must be a number, got {_kind(v)}"
            )
        try:
            v = float(v)
        except OverflowError:  # an integer beyond float range
            v = math.inf
        if not math.isfinite(v) or v < 0:
            raise InvalidModelError(
                f"{self.source}: {where}: field {key!r} must be finite and >= 0, got {v!r}"
            )
        return v

    def integer(self, obj: dict, key: str, where: str, minimum: int | None = 0) -> int:
        v = self._get(obj, key, where, None)
        # integral floats (6.0) occur in files written by other tools; accept them
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidModelError(
                f"{self.source}: {where}: field {key!r} must be an integer, got {_kind(v)}"
            )
        if minimum is not None and v < minimum:
            raise InvalidModelError(
                f"{self.source}: {where}: field {key!r} must be >= {minimum}, got {v}"
            )
        if not -(2**62) <= v <= 2**62:
            raise InvalidModelError(f"{self.source}: {where}: field {key!r} is out of range")
        return v

    def flag(self, obj: dict, key: str, where: str) -> bool:
        v = self._get(obj, key, where, None)
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)) and v in (0, 1):
            return bool(v)
        raise InvalidModelError(
            f"{self.source}: {where}: field {key!r} must be 0, 1, true or false, got {v!r}"
        )

    def array(self, obj: dict, key: str, where: str) -> list:
        v = self._get(obj, key, where, None)
        if not isinstance(v, list):
            raise InvalidModelError(
                f"{self.source}: {where}: field {key!r} must be an array, got {_kind(v)}"
            )
        return v


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return f"a string ({v[:20]!r})"
    return type(v).__name__
