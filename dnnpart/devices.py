"""Device specs: how fast each device computes, how much it holds, how fast links carry data.

A :class:`DeviceSet` is what the scorer (:mod:`dnnpart.scoring`) and the partitioners'
balance targets are computed from. ``-k 4`` alone means :meth:`DeviceSet.identical`;
otherwise the devices come from a TOML file (:meth:`DeviceSet.from_toml`).

Device file format
------------------
::

    [link]                      # the link between every pair of devices (optional)
    bandwidth = "10Gbit/s"      # bytes/s as a number, or a string with a unit
    latency = "50us"            # seconds as a number, or a string with a unit

    [[device]]                  # one table per device, in device-index order
    name = "jetson"             # unique, non-empty
    speed = 1.3e12              # FLOP/s as a number, or "1.3TFLOPS"
    memory = "8GiB"             # bytes as a number, or a string; omit (or inf) = unlimited
    memory_bandwidth = "51GB/s" # bytes/s its memory reads and writes (optional)
    threads = 4                 # onnxruntime threads of its actor in `dnnpart run` (optional)
    call_overhead = "1ms"       # fixed seconds per sample of a device that holds work (optional)
    node = "10.0.0.7"           # `dnnpart run`: the Ray node (IP address) to run on (optional)
    resources = {jetson = 1}    # `dnnpart run`: custom Ray resources its actor needs (optional)

    [[device]]
    name = "phone"
    speed = "400GFLOPS"

    [[link.pair]]               # overrides for some pairs (optional)
    between = ["jetson", "phone"]   # both directions; or  from = "jetson"  to = "phone"
    bandwidth = 2.5e8               # a field left out is taken from [link]

    [host]                      # the devices share one machine's cores (optional)
    cores = 2                   # its CPU cores
    call_cpu = "1.25ms"         # CPU seconds per device call spent beside the layers
    byte_cpu = "3ns"            # CPU seconds per byte carried between processes

Units (case-sensitive prefixes, ``k``/``M``/``G``/``T`` decimal, ``Ki``/``Mi``/``Gi``/``Ti``
binary; an optional space between number and unit):

- ``speed``: ``FLOPS`` or ``FLOP/s`` (``1.3TFLOPS``). Only the ratios of speeds matter for
  balance; the latency model divides FLOPs by speed, so give absolute FLOP/s for latencies
  in seconds (relative speeds such as ``1``, ``2``, ``4`` make latencies arbitrary units).
- ``memory``: ``B`` (``8GiB``, ``512MB``), or ``"inf"`` / ``"unlimited"``.
- ``bandwidth``: bytes (``B/s``, ``MB/s``, ``GiB/s``) or bits (``bit/s``, ``Gbit/s``,
  ``bps``, ``Mbps``, ``Gbps``) per second; ``"inf"`` for an ideal network.
- ``latency``: ``s``, ``ms``, ``us`` (or ``µs``), ``ns``; zero is allowed.
- ``memory_bandwidth``: like ``bandwidth``. A layer takes the longer of its compute time
  and its memory time, bytes read and written over this (:mod:`dnnpart.problem._time`).
- ``call_overhead``: like ``latency`` (seconds, >= 0). What a device pays once per sample
  when it holds any layer, whatever the layers cost: in ``dnnpart run`` the round trip of
  one Ray actor call (``dnnpart profile --runtime-overhead`` measures it, about 1 ms).
  Pipelined loads add it to every device that is used; unset, it is 0, or the profile's
  ``dnnpart.call_overhead_s`` when planning on a profile.
- ``[host]``: the devices are processes of one machine (a local ``dnnpart run``: one Ray
  actor per device, beside the driver and Ray's own processes), so they share its
  ``cores`` (a positive integer) with each other and with the work of moving samples:
  ``call_cpu`` CPU seconds per device call (submitting, scheduling, unpacking; like
  ``latency``, >= 0) and ``byte_cpu`` CPU seconds per byte of inputs, outputs and
  transfers carried (a number of seconds or ``"3ns"``). Plans then take at least the
  host's time per sample (:class:`Host`). Unset, devices share nothing, or on a profile
  made with ``--runtime-overhead`` they take the profile's measured host
  (``dnnpart.host``) when none of them is placed on a Ray ``node`` or ``resources``.

Defaults (also those of :meth:`DeviceSet.identical`): speed 1e12 FLOP/s, unlimited memory,
memory bandwidth 1e11 B/s (100 GB/s), bandwidth 1.25e9 B/s (10 Gbit/s Ethernet), latency
50e-6 s. Every mistake (unknown key,
missing or duplicate name, zero or negative value, bad unit, a link naming an unknown
device or the same pair twice, no device at all) raises :class:`~dnnpart.errors.UsageError`
naming the field, e.g. ``device[1].speed``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from dnnpart.errors import UsageError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Device",
    "Host",
    "Link",
    "DeviceSet",
    "DEFAULT_SPEED",
    "DEFAULT_MEMORY_BANDWIDTH",
    "DEFAULT_LINK",
]

DEFAULT_SPEED = 1e12
"""FLOP/s of a default device."""
DEFAULT_MEMORY_BANDWIDTH = 1e11
"""Bytes/s a default device's memory moves: 100 GB/s, between an edge board's LPDDR5
(~50-200 GB/s) and a desktop CPU's DDR5 (~60-100 GB/s); 10 bytes per FLOP/s of the default
speed's 1e12 puts the roofline's ridge at 20 FLOPs per byte."""

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
# Divisors, not factors: 50 / 1e6 is exactly the float 5e-05, 50 * 1e-6 is not.
_TIME_DIV = {"s": 1.0, "ms": 1e3, "us": 1e6, "µs": 1e6, "ns": 1e9}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")


def _check_number(x: Any, what: str, finite: bool, zero_ok: bool = False) -> None:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise UsageError(f"{what} must be a number, got {x!r}")
    if math.isnan(x) or (finite and math.isinf(x)):
        raise UsageError(f"{what} must be a finite number, got {x!r}")
    if x < 0 or (x == 0 and not zero_ok):
        raise UsageError(f"{what} must be {'>= 0' if zero_ok else '> 0'}, got {x!r}")


@dataclass(frozen=True)
class Device:
    """One device: ``speed`` in FLOP/s (> 0, finite), ``memory`` in bytes (> 0, may be inf).

    ``memory_bandwidth`` in bytes/s (> 0, may be inf) bounds memory-bound layers from below
    (:mod:`dnnpart.problem._time`). ``threads``, ``node`` and ``resources`` only place the
    device's actor in
    ``dnnpart run`` (onnxruntime threads, Ray node IP, custom Ray resources as
    ``(name, amount)`` pairs); scoring ignores them. ``call_overhead`` (seconds, >= 0,
    finite) is paid once per sample by a device that holds work; None means unset: 0, or
    a profile's measured figure (:meth:`DeviceSet.with_call_overhead`).
    """

    name: str
    speed: float = DEFAULT_SPEED
    memory: float = math.inf
    threads: int | None = None
    node: str | None = None
    resources: tuple[tuple[str, float], ...] = ()
    memory_bandwidth: float = DEFAULT_MEMORY_BANDWIDTH
    call_overhead: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UsageError(f"device name must be a non-empty string, got {self.name!r}")
        _check_number(self.speed, f"device {self.name!r} speed", finite=True)
        _check_number(self.memory, f"device {self.name!r} memory", finite=False)
        what = f"device {self.name!r} memory_bandwidth"
        _check_number(self.memory_bandwidth, what, finite=False)
        if self.call_overhead is not None:
            what = f"device {self.name!r} call_overhead"
            _check_number(self.call_overhead, what, finite=True, zero_ok=True)
        t = self.threads
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise UsageError(f"device {self.name!r} threads must be a positive integer, got {t!r}")
        if self.node is not None and (not isinstance(self.node, str) or not self.node):
            raise UsageError(f"device {self.name!r} node must be a non-empty string")
        for key, amount in self.resources:
            if not isinstance(key, str) or not key:
                raise UsageError(f"device {self.name!r} resources: names must be strings")
            _check_number(amount, f"device {self.name!r} resource {key!r}", finite=True)


@dataclass(frozen=True)
class Link:
    """A one-way link: ``bandwidth`` in bytes/s (> 0, may be inf), ``latency`` in s (>= 0)."""

    bandwidth: float = 1.25e9
    latency: float = 50e-6

    def __post_init__(self) -> None:
        _check_number(self.bandwidth, "link bandwidth", finite=False)
        _check_number(self.latency, "link latency", finite=True, zero_ok=True)

    def time(self, nbytes: float) -> float:
        """Seconds to move one message of ``nbytes``: ``latency + nbytes / bandwidth``."""
        return self.latency + nbytes / self.bandwidth


DEFAULT_LINK = Link()


@dataclass(frozen=True)
class Host:
    """One machine whose ``cores`` every device of a set shares, with the CPU work of
    moving samples between them: ``call_cpu`` seconds per device call, ``byte_cpu``
    seconds per byte carried (both finite, >= 0).

    A local ``dnnpart run`` is such a machine: each device is a Ray actor, and the driver
    and Ray's processes spend CPU on every call and every byte they pass (measured by
    :func:`dnnpart.runtime.runtime_overhead`). However the layers are placed, a sample then
    needs at least ``(layer time + calls x call_cpu + bytes x byte_cpu) / cores`` of the
    machine (:func:`dnnpart.problem.host_time`).
    """

    cores: int
    call_cpu: float = 0.0
    byte_cpu: float = 0.0

    def __post_init__(self) -> None:
        c = self.cores
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
            raise UsageError(f"host cores must be a positive integer, got {c!r}")
        _check_number(self.call_cpu, "host call_cpu", finite=True, zero_ok=True)
        _check_number(self.byte_cpu, "host byte_cpu", finite=True, zero_ok=True)

    def to_dict(self) -> dict[str, Any]:
        """The ``[host]`` table of the device file format."""
        return {
            "cores": int(self.cores),
            "call_cpu": float(self.call_cpu),
            "byte_cpu": float(self.byte_cpu),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "host") -> Host:
        """Read a ``[host]`` table (units as ``latency``); errors name ``where``."""
        if not isinstance(d, dict):
            raise UsageError(f"{where}: must be a table")
        _no_unknown(d, {"cores", "call_cpu", "byte_cpu"}, f"{where}.")
        if "cores" not in d:
            raise UsageError(f"{where}.cores: the number of cores is required")
        cpu = {
            key: _quantity(d.get(key, 0.0), "latency", f"{where}.{key}")
            for key in ("call_cpu", "byte_cpu")
        }
        try:
            return cls(d["cores"], **cpu)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None


@dataclass
class DeviceSet:
    """The ``k`` devices a model is split over, and the links between them.

    Parameters
    ----------
    devices : sequence of Device
        In device-index order (label ``i`` of a partition means ``devices[i]``).
    default_link : Link
        The link between any two devices not listed in ``links``.
    links : dict of (int, int) -> Link
        One-way overrides: ``links[i, j]`` carries data from device ``i`` to device ``j``.
    host : Host, optional
        The machine all the devices share (its cores and the CPU cost of moving samples);
        None when they share nothing.
    """

    devices: tuple[Device, ...]
    default_link: Link = DEFAULT_LINK
    links: dict[tuple[int, int], Link] = field(default_factory=dict)
    host: Host | None = None

    def __post_init__(self) -> None:
        self.devices = tuple(self.devices)
        if not self.devices:
            raise UsageError("a device set needs at least one device (k >= 1)")
        for d in self.devices:
            if not isinstance(d, Device):
                raise UsageError(f"devices must be Device objects, got {type(d).__name__}")
        names = [d.name for d in self.devices]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise UsageError(f"duplicate device name(s): {', '.join(dup)}")
        if not isinstance(self.default_link, Link):
            raise UsageError("default_link must be a Link")
        if self.host is not None and not isinstance(self.host, Host):
            raise UsageError(f"host must be a Host, got {type(self.host).__name__}")
        self.links = dict(self.links)
        for (i, j), link in self.links.items():
            if not (0 <= i < self.k and 0 <= j < self.k) or i == j:
                raise UsageError(f"link ({i}, {j}) does not join two different devices of k")
            if not isinstance(link, Link):
                raise UsageError(f"link ({i}, {j}) must be a Link")

    # -- views -------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Number of devices."""
        return len(self.devices)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.devices)

    @property
    def speeds(self) -> np.ndarray:
        """FLOP/s per device, shape (k,)."""
        return np.array([d.speed for d in self.devices], dtype=np.float64)

    @property
    def memory_bandwidths(self) -> np.ndarray:
        """Bytes/s each device's memory moves, shape (k,)."""
        return np.array([d.memory_bandwidth for d in self.devices], dtype=np.float64)

    @property
    def call_overheads(self) -> np.ndarray:
        """Seconds each device pays per sample when it holds work, shape (k,); unset is 0."""
        return np.array([d.call_overhead or 0.0 for d in self.devices], dtype=np.float64)

    def with_call_overhead(self, seconds: float) -> DeviceSet:
        """The same devices, those without a ``call_overhead`` of their own taking
        ``seconds`` (a profile's measured round trip)."""
        _check_number(seconds, "call_overhead", finite=True, zero_ok=True)
        devices = tuple(
            d if d.call_overhead is not None else replace(d, call_overhead=float(seconds))
            for d in self.devices
        )
        return DeviceSet(devices, self.default_link, self.links, self.host)

    @property
    def placed(self) -> bool:
        """Whether any device names a Ray ``node`` or ``resources`` (runs elsewhere)."""
        return any(d.node is not None or d.resources for d in self.devices)

    def with_host(self, host: Host | None) -> DeviceSet:
        """The same devices sharing ``host`` (a profile's measured machine), unless they
        have a host of their own, ``host`` is None, or some device is placed on a Ray node
        or resources (then they are not all on the machine the profile measured)."""
        if host is None or self.host is not None or self.placed:
            return self
        return replace(self, host=host)

    @property
    def memories(self) -> np.ndarray:
        """Bytes per device, shape (k,); ``inf`` when unlimited."""
        return np.array([d.memory for d in self.devices], dtype=np.float64)

    @property
    def targets(self) -> np.ndarray:
        """Each device's share of the work: speeds normalised to sum 1 (METIS ``tpwgts``)."""
        s = self.speeds
        return s / s.sum()

    def link(self, i: int, j: int) -> Link:
        """The link carrying data from device ``i`` to device ``j`` (free when ``i == j``)."""
        if not (0 <= i < self.k and 0 <= j < self.k):
            raise UsageError(f"no device pair ({i}, {j}) among {self.k} devices")
        if i == j:
            return Link(bandwidth=math.inf, latency=0.0)
        return self.links.get((i, j), self.default_link)

    def link_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(bandwidth, latency)`` as (k, k) arrays; the diagonal is free (inf, 0)."""
        bw = np.full((self.k, self.k), self.default_link.bandwidth)
        lat = np.full((self.k, self.k), self.default_link.latency)
        for (i, j), link in self.links.items():
            bw[i, j], lat[i, j] = link.bandwidth, link.latency
        np.fill_diagonal(bw, math.inf)
        np.fill_diagonal(lat, 0.0)
        return bw, lat

    def without(self, lost) -> DeviceSet:
        """The devices left when those at indices ``lost`` are gone (links re-indexed)."""
        gone = {int(i) for i in lost}
        keep = [i for i in range(self.k) if i not in gone]
        if not keep:
            raise UsageError("no device would be left")
        new = {old: new for new, old in enumerate(keep)}
        links = {
            (new[i], new[j]): link for (i, j), link in self.links.items() if i in new and j in new
        }
        return DeviceSet(tuple(self.devices[i] for i in keep), self.default_link, links, self.host)

    # -- constructors ------------------------------------------------------------
    @classmethod
    def identical(
        cls,
        k: int,
        speed: float = DEFAULT_SPEED,
        memory: float = math.inf,
        link: Link = DEFAULT_LINK,
    ) -> DeviceSet:
        """``k`` equal devices named ``dev0`` ... (defaults: 1e12 FLOP/s, unlimited memory,
        1.25e9 B/s and 50 µs links)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise UsageError(f"k must be a positive integer, got {k!r}")
        devices = tuple(Device(f"dev{i}", speed, memory) for i in range(int(k)))
        return cls(devices, link)

    @classmethod
    def from_toml(cls, path: str | PathLike) -> DeviceSet:
        """Read a device file (format in the module docstring)."""
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"device file {str(p)!r} is not a file")
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"device file {str(p)!r} is not valid TOML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"device file {str(p)!r} cannot be read: {exc}") from exc
        try:
            return cls.from_dict(data)
        except UsageError as exc:
            raise UsageError(f"{p}: {exc}") from exc

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceSet:
        """Build from the parsed TOML (or JSON) mapping of the device file format."""
        if not isinstance(d, dict):
            raise UsageError("device spec must be a table/mapping")
        _no_unknown(d, {"device", "link", "host"}, "")
        link_table = d.get("link", {})
        if not isinstance(link_table, dict):
            raise UsageError("link: must be a table")
        _no_unknown(link_table, {"bandwidth", "latency", "pair"}, "link.")
        default = _link(link_table, DEFAULT_LINK, "link")

        entries = d.get("device")
        if not isinstance(entries, list) or not entries:
            raise UsageError("device: at least one [[device]] table is needed (k >= 1)")
        devices, index = [], {}
        for i, e in enumerate(entries):
            where = f"device[{i}]"
            if not isinstance(e, dict):
                raise UsageError(f"{where}: must be a table")
            keys = {"name", "speed", "memory", "memory_bandwidth", "call_overhead", "threads"}
            keys |= {"node", "resources"}
            _no_unknown(e, keys, f"{where}.")
            name = e.get("name")
            if not isinstance(name, str) or not name.strip():
                raise UsageError(f"{where}.name: a non-empty string is required")
            if name in index:
                raise UsageError(f"{where}.name: duplicate device name {name!r}")
            index[name] = i
            speed = _quantity(e.get("speed", DEFAULT_SPEED), "speed", f"{where}.speed")
            memory = _quantity(e.get("memory", math.inf), "memory", f"{where}.memory")
            mem_bw = e.get("memory_bandwidth", DEFAULT_MEMORY_BANDWIDTH)
            mem_bw = _quantity(mem_bw, "bandwidth", f"{where}.memory_bandwidth")
            call = e.get("call_overhead")
            if call is not None:
                call = _quantity(call, "latency", f"{where}.call_overhead")
            resources = e.get("resources", {})
            if not isinstance(resources, dict):
                raise UsageError(f"{where}.resources: must be a table of name = amount")
            try:
                devices.append(
                    Device(
                        name,
                        speed,
                        memory,
                        threads=e.get("threads"),
                        node=e.get("node"),
                        resources=tuple(sorted(resources.items())),
                        memory_bandwidth=mem_bw,
                        call_overhead=call,
                    )
                )
            except UsageError as exc:
                raise UsageError(f"{where}: {exc}") from None

        pairs = link_table.get("pair", [])
        if not isinstance(pairs, list):
            raise UsageError("link.pair: must be an array of tables ([[link.pair]])")
        links: dict[tuple[int, int], Link] = {}
        for i, e in enumerate(pairs):
            where = f"link.pair[{i}]"
            if not isinstance(e, dict):
                raise UsageError(f"{where}: must be a table")
            _no_unknown(e, {"between", "from", "to", "bandwidth", "latency"}, f"{where}.")
            link = _link(e, default, where)
            for a, b in _pair_ends(e, index, where):
                if (a, b) in links:
                    raise UsageError(
                        f"{where}: link {devices[a].name!r} -> {devices[b].name!r} given twice"
                    )
                links[a, b] = link
        host = None if d.get("host") is None else Host.from_dict(d["host"])
        return cls(tuple(devices), default, links, host)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping in the device file format; ``from_dict`` reads it back.

        Unlimited memory is left out (the default); an infinite bandwidth is ``"inf"``.
        Pairs with the same link both ways are written as ``between``.
        """
        out_devices = []
        for dev in self.devices:
            entry: dict[str, Any] = {"name": dev.name, "speed": float(dev.speed)}
            if math.isfinite(dev.memory):
                entry["memory"] = float(dev.memory)
            if dev.memory_bandwidth != DEFAULT_MEMORY_BANDWIDTH:
                bw = dev.memory_bandwidth
                entry["memory_bandwidth"] = float(bw) if math.isfinite(bw) else "inf"
            if dev.call_overhead is not None:
                entry["call_overhead"] = float(dev.call_overhead)
            if dev.threads is not None:
                entry["threads"] = dev.threads
            if dev.node is not None:
                entry["node"] = dev.node
            if dev.resources:
                entry["resources"] = dict(dev.resources)
            out_devices.append(entry)
        pairs, done = [], set()
        for (i, j), link in sorted(self.links.items()):
            if (i, j) in done:
                continue
            entry = _link_dict(link)
            if self.links.get((j, i)) == link:
                entry = {"between": [self.devices[i].name, self.devices[j].name], **entry}
                done.add((j, i))
            else:
                entry = {"from": self.devices[i].name, "to": self.devices[j].name, **entry}
            pairs.append(entry)
        link_out: dict[str, Any] = _link_dict(self.default_link)
        if pairs:
            link_out["pair"] = pairs
        out: dict[str, Any] = {"link": link_out, "device": out_devices}
        if self.host is not None:
            out["host"] = self.host.to_dict()
        return out


# -- parsing helpers ----------------------------------------------------------------
def _no_unknown(d: dict, allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise UsageError(
            f"{prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})"
        )


def _unit_scale(unit: str, kind: str) -> tuple[float, float] | None:
    """``(factor, divisor)`` of ``unit`` for a quantity of ``kind``; None if the unit is wrong."""
    if unit == "":
        return 1.0, 1.0
    if kind == "latency":
        div = _TIME_DIV.get(unit)
        return None if div is None else (1.0, div)
    bases = {
        "speed": {"FLOPS": 1.0, "FLOP/s": 1.0, "flops": 1.0},
        "memory": {"B": 1.0},
        "bandwidth": {"B/s": 1.0, "bit/s": 8.0, "bps": 8.0, "b/s": 8.0},
    }[kind]
    for base, div in bases.items():
        if unit.endswith(base):
            prefix = unit[: -len(base)]
            mult = _PREFIX.get(prefix, _BINARY.get(prefix))
            if mult is not None:
                return mult, div
    return None


def _quantity(x: Any, kind: str, where: str) -> float:
    """A number in SI base units, or a string ``"<number><unit>"``; validated."""
    finite = kind in ("speed", "latency")
    zero_ok = kind == "latency"
    if isinstance(x, str):
        s = x.strip()
        if s.lower() in ("inf", "unlimited") and not finite:
            return math.inf
        m = _QUANTITY.match(s)
        scale = _unit_scale(m.group(2), kind) if m else None
        if scale is None:
            raise UsageError(f"{where}: cannot read {x!r} as a {kind} ({_UNIT_HELP[kind]})")
        x = float(m.group(1)) * scale[0] / scale[1]
    try:
        _check_number(x, where, finite=finite, zero_ok=zero_ok)
    except UsageError as exc:
        raise UsageError(f"{where}: {str(exc).removeprefix(where + ' ')}") from None
    return float(x)


_UNIT_HELP = {
    "speed": "e.g. 1.3e12 or '1.3TFLOPS'",
    "memory": "e.g. 8589934592, '8GiB' or 'unlimited'",
    "bandwidth": "bytes/s, e.g. 1.25e9, '10Gbit/s' or '1.25GB/s'",
    "latency": "seconds, e.g. 5e-5, '50us' or '0.05ms'",
}


def _link(e: dict, default: Link, where: str) -> Link:
    bw = e.get("bandwidth")
    lat = e.get("latency")
    bw = default.bandwidth if bw is None else _quantity(bw, "bandwidth", f"{where}.bandwidth")
    lat = default.latency if lat is None else _quantity(lat, "latency", f"{where}.latency")
    return Link(bw, lat)


def _pair_ends(e: dict, index: dict[str, int], where: str) -> list[tuple[int, int]]:
    def dev(name: Any, key: str) -> int:
        if not isinstance(name, str) or name not in index:
            raise UsageError(f"{where}.{key}: unknown device {name!r}")
        return index[name]

    if "between" in e:
        if "from" in e or "to" in e:
            raise UsageError(f"{where}: give either between or from/to, not both")
        ends = e["between"]
        if not isinstance(ends, list) or len(ends) != 2:
            raise UsageError(f"{where}.between: must list exactly two device names")
        a, b = dev(ends[0], "between"), dev(ends[1], "between")
        result = [(a, b), (b, a)]
    elif "from" in e and "to" in e:
        a, b = dev(e["from"], "from"), dev(e["to"], "to")
        result = [(a, b)]
    else:
        raise UsageError(f"{where}: needs between = [a, b] or both from and to")
    if a == b:
        raise UsageError(f"{where}: a link must join two different devices")
    return result


def _link_dict(link: Link) -> dict[str, Any]:
    bw = float(link.bandwidth) if math.isfinite(link.bandwidth) else "inf"
    return {"bandwidth": bw, "latency": float(link.latency)}
