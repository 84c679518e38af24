"""Tests of dnnpart.devices: device sets, the TOML device file, its units and its errors."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from dnnpart.devices import Device, DeviceSet, Link
from dnnpart.errors import UsageError

EXAMPLE = """
[link]                      # default for all pairs
bandwidth = "10Gbit/s"
latency = "50us"

[[device]]
name = "jetson"
speed = 1.3e12
memory = "8GiB"

[[device]]
name = "phone"
speed = "400GFLOPS"
memory = 4294967296

[[device]]
name = "server"
speed = "5.2 TFLOP/s"

[[link.pair]]
between = ["jetson", "phone"]
bandwidth = 2.5e8

[[link.pair]]
from = "server"
to = "phone"
bandwidth = "100MB/s"
latency = "2ms"
"""


def _spec(**device_fields) -> dict:
    """A one-device spec with the given device fields (name 'a' unless given)."""
    return {"device": [{"name": "a", **device_fields}]}


def test_identical_defaults():
    ds = DeviceSet.identical(4)
    assert ds.k == 4
    assert ds.names == ("dev0", "dev1", "dev2", "dev3")
    assert np.all(ds.speeds == 1e12)
    assert np.all(np.isinf(ds.memories))
    np.testing.assert_allclose(ds.targets, [0.25] * 4)
    link = ds.link(0, 3)
    assert (link.bandwidth, link.latency) == (1.25e9, 50e-6)
    assert ds.link(2, 2).time(1e9) == 0.0  # a device does not talk to itself over a link


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "4"])
def test_identical_rejects_bad_k(k):
    with pytest.raises(UsageError, match="k must be a positive integer"):
        DeviceSet.identical(k)


def test_example_file(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text(EXAMPLE)
    ds = DeviceSet.from_toml(path)
    assert ds.names == ("jetson", "phone", "server")
    np.testing.assert_allclose(ds.speeds, [1.3e12, 4e11, 5.2e12])
    assert list(ds.memories[:2]) == [8 * 2**30, 2**32] and math.isinf(ds.memories[2])
    np.testing.assert_allclose(ds.targets, np.array([1.3, 0.4, 5.2]) / 6.9)
    assert ds.default_link == Link(1.25e9, 50e-6)
    # `between` sets both directions and keeps the default latency.
    assert ds.link(0, 1) == ds.link(1, 0) == Link(2.5e8, 50e-6)
    # `from`/`to` sets one direction only.
    assert ds.link(2, 1) == Link(1e8, 2e-3)
    assert ds.link(1, 2) == ds.default_link
    bw, lat = ds.link_arrays()
    assert bw[2, 1] == 1e8 and lat[2, 1] == 2e-3 and bw[1, 2] == 1.25e9
    assert np.all(np.isinf(np.diag(bw))) and np.all(np.diag(lat) == 0)


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("speed", "1.3TFLOPS", 1.3e12),
        ("speed", "500 GFLOP/s", 5e11),
        ("speed", "2", 2.0),
        ("memory", "512MB", 512e6),
        ("memory", "1KiB", 1024.0),
        ("memory", "3 TiB", 3 * 2.0**40),
        ("memory", "unlimited", math.inf),
        ("memory", "inf", math.inf),
        ("call_overhead", "1ms", 1e-3),
        ("call_overhead", "1087us", 1.087e-3),
        ("call_overhead", 0, 0.0),
        ("call_overhead", 2e-3, 2e-3),
    ],
)
def test_device_units(field, text, value):
    ds = DeviceSet.from_dict(_spec(**{field: text}))
    assert getattr(ds.devices[0], field) == pytest.approx(value)


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("bandwidth", "1Gbps", 1.25e8),
        ("bandwidth", "8 Mbit/s", 1e6),
        ("bandwidth", "100MB/s", 1e8),
        ("bandwidth", "1GiB/s", 2.0**30),
        ("bandwidth", 3e6, 3e6),
        ("bandwidth", "inf", math.inf),
        ("latency", "2ms", 2e-3),
        ("latency", "50µs", 50e-6),
        ("latency", "100ns", 1e-7),
        ("latency", 0, 0.0),
        ("latency", "1.5 s", 1.5),
    ],
)
def test_link_units(field, text, value):
    ds = DeviceSet.from_dict({"link": {field: text}, **_spec()})
    assert getattr(ds.default_link, field) == pytest.approx(value)


def test_missing_link_fields_take_defaults():
    ds = DeviceSet.from_dict(_spec())
    assert ds.default_link == Link(1.25e9, 50e-6)
    assert ds.devices[0] == Device("a", 1e12, math.inf)


def test_to_dict_round_trips(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text(EXAMPLE)
    ds = DeviceSet.from_toml(path)
    d = ds.to_dict()
    json.dumps(d, allow_nan=False)  # strict JSON: no inf/nan sneaks in
    assert DeviceSet.from_dict(json.loads(json.dumps(d))) == ds
    ideal = DeviceSet.identical(2, link=Link(math.inf, 0.0))
    assert DeviceSet.from_dict(json.loads(json.dumps(ideal.to_dict()))) == ideal


BASE = {
    "link": {"bandwidth": 1e9, "pair": [{"between": ["a", "b"], "latency": 1e-3}]},
    "device": [{"name": "a", "speed": 1.0}, {"name": "b", "speed": 2.0}],
}


def _broken(path: str, value) -> dict:
    """BASE with the value at ``path`` (dotted, list indices as numbers) replaced."""
    d = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return d


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("device.0.speed", 0, r"device\[0\]\.speed: must be > 0"),
        ("device.1.speed", -2.0, r"device\[1\]\.speed: must be > 0"),
        ("device.0.speed", math.inf, r"device\[0\]\.speed: must be a finite"),
        ("device.0.speed", math.nan, r"device\[0\]\.speed: must be a finite"),
        ("device.0.speed", True, r"device\[0\]\.speed: must be a number"),
        ("device.0.speed", "fast", r"device\[0\]\.speed: cannot read 'fast'"),
        ("device.0.speed", "1TB", r"device\[0\]\.speed: cannot read"),
        ("device.0.memory", 0, r"device\[0\]\.memory: must be > 0"),
        ("device.0.memory", "-1GB", r"device\[0\]\.memory: must be > 0"),
        ("device.0.memory", "8 gigs", r"device\[0\]\.memory: cannot read"),
        ("device.0.memory", [8], r"device\[0\]\.memory: must be a number"),
        ("device.0.call_overhead", -1e-3, r"device\[0\]\.call_overhead: must be >= 0"),
        ("device.0.call_overhead", math.inf, r"device\[0\]\.call_overhead: must be a finite"),
        ("device.0.call_overhead", math.nan, r"device\[0\]\.call_overhead: must be a finite"),
        ("device.0.call_overhead", "inf", r"device\[0\]\.call_overhead: cannot read"),
        ("device.0.call_overhead", "1 MB", r"device\[0\]\.call_overhead: cannot read"),
        ("device.0.call_overhead", False, r"device\[0\]\.call_overhead: must be a number"),
        ("link.bandwidth", 0, r"link\.bandwidth: must be > 0"),
        ("link.bandwidth", "10Gbit", r"link\.bandwidth: cannot read"),
        ("link.latency", -1e-6, r"link\.latency: must be >= 0"),
        ("link.latency", "50 parsecs", r"link\.latency: cannot read"),
        ("link.latency", "inf", r"link\.latency: cannot read"),
        ("extra", 1, r"^extra: unknown key"),
        ("device.0.sped", 1.0, r"device\[0\]\.sped: unknown key"),
        ("link.bw", 1.0, r"link\.bw: unknown key"),
        ("link.pair.0.speed", 1.0, r"link\.pair\[0\]\.speed: unknown key"),
        ("device.1.name", "a", r"device\[1\]\.name: duplicate device name 'a'"),
        ("device.0.name", "", r"device\[0\]\.name: a non-empty string"),
        ("device.0.name", _DELETE, r"device\[0\]\.name: a non-empty string"),
        ("device", [], r"device: at least one"),
        ("device", _DELETE, r"device: at least one"),
        ("device.0", "a", r"device\[0\]: must be a table"),
        ("link", 3, r"link: must be a table"),
        ("link.pair", {"between": ["a", "b"]}, r"link\.pair: must be an array"),
        ("link.pair.0.between", ["a", "c"], r"link\.pair\[0\]\.between: unknown device 'c'"),
        ("link.pair.0.between", ["a", "a"], r"link\.pair\[0\]: a link must join two different"),
        ("link.pair.0.between", ["a", "b", "c"], r"between: must list exactly two"),
        ("link.pair.0.from", "a", r"link\.pair\[0\]: give either between or from/to"),
        ("link.pair.0.between", _DELETE, r"link\.pair\[0\]: needs between"),
        ("link.pair.0.bandwidth", "fast", r"link\.pair\[0\]\.bandwidth: cannot read"),
    ],
)
def test_from_dict_errors_name_the_field(path, value, message):
    with pytest.raises(UsageError, match=message):
        DeviceSet.from_dict(_broken(path, value))


def test_link_given_twice():
    d = copy.deepcopy(BASE)
    d["link"]["pair"].append({"from": "b", "to": "a", "bandwidth": 1.0})
    with pytest.raises(UsageError, match=r"link\.pair\[1\]: link 'b' -> 'a' given twice"):
        DeviceSet.from_dict(d)
    d["link"]["pair"][1]["to"] = "x"
    with pytest.raises(UsageError, match=r"link\.pair\[1\]\.to: unknown device 'x'"):
        DeviceSet.from_dict(d)


def test_from_toml_errors(tmp_path):
    with pytest.raises(UsageError, match="is not a file"):
        DeviceSet.from_toml(tmp_path / "missing.toml")
    with pytest.raises(UsageError, match="is not a file"):
        DeviceSet.from_toml(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[device]]\nname = jetson\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        DeviceSet.from_toml(bad)
    zero = tmp_path / "zero.toml"
    zero.write_text('[[device]]\nname = "x"\nspeed = 0\n')
    with pytest.raises(UsageError, match=r"zero\.toml: device\[0\]\.speed: must be > 0"):
        DeviceSet.from_toml(zero)


def test_constructor_checks():
    with pytest.raises(UsageError, match="at least one device"):
        DeviceSet(())
    with pytest.raises(UsageError, match="duplicate device name"):
        DeviceSet((Device("x"), Device("x")))
    with pytest.raises(UsageError, match="does not join two different devices"):
        DeviceSet((Device("x"), Device("y")), links={(0, 2): Link()})
    with pytest.raises(UsageError, match="does not join two different devices"):
        DeviceSet((Device("x"), Device("y")), links={(1, 1): Link()})
    with pytest.raises(UsageError, match="speed must be > 0"):
        Device("x", speed=0)
    with pytest.raises(UsageError, match="bandwidth must be > 0"):
        Link(bandwidth=-1)
    with pytest.raises(UsageError, match="no device pair"):
        DeviceSet.identical(2).link(0, 2)


def test_call_overhead_unset_is_zero_and_a_profile_fills_only_unset_devices():
    ds = DeviceSet.from_dict(
        {"device": [{"name": "a"}, {"name": "b", "call_overhead": "2ms"}, {"name": "c"}]}
    )
    assert ds.devices[0].call_overhead is None
    np.testing.assert_allclose(ds.call_overheads, [0.0, 2e-3, 0.0])
    filled = ds.with_call_overhead(1e-3)
    np.testing.assert_allclose(filled.call_overheads, [1e-3, 2e-3, 1e-3])
    assert filled.names == ds.names and filled.default_link == ds.default_link
    again = DeviceSet.from_dict(json.loads(json.dumps(filled.to_dict())))
    assert again == filled and ds.to_dict()["device"][0].keys() == {"name", "speed"}
    with pytest.raises(UsageError, match="call_overhead must be >= 0"):
        ds.with_call_overhead(-1.0)
    with pytest.raises(UsageError, match="call_overhead must be a finite"):
        Device("x", call_overhead=math.inf)
