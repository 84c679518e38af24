"""Reader of the profiled-graph JSON of Tarnawski et al. (NeurIPS 2020)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

from dnnpart.errors import InvalidModelError, ResourceLimitError
from dnnpart.importers._tarnawski import parse_profiled_graph, read_profiled_graph


def _shared_tarnawski() -> Path:
    env = os.environ.get("DNNPART_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return root / "tarnawski"


def _doc() -> dict:
    """Three nodes a(1) -> b(2) -> c(3), a -> c; b and c share colour class 7."""
    return {
        "maxSizePerFPGA": 100.0,
        "maxFPGAs": 2,
        "maxCPUs": 1,
        "nodes": [
            {
                "id": 1,
                "name": "a",
                "supportedOnFpga": 1,
                "cpuLatency": 10.0,
                "fpgaLatency": 1.0,
                "isBackwardNode": 0,
                "size": 5.0,
            },
            {
                "id": 2,
                "name": "b",
                "supportedOnFpga": True,
                "cpuLatency": 20,
                "fpgaLatency": 2.5,
                "isBackwardNode": False,
                "colorClass": 7,
                "size": 6,
            },
            {
                "id": 3,
                "name": "c",
                "supportedOnFpga": 0,
                "cpuLatency": 30.0,
                "fpgaLatency": 3.0,
                "isBackwardNode": 1,
                "colorClass": 7,
            },
        ],
        "edges": [
            {"sourceId": 1, "destId": 2, "cost": 0.5, "size": 8.0},
            {"sourceId": 2, "destId": 3, "cost": 0.25, "size": 4.0},
            {"sourceId": 1, "destId": 3, "cost": 0.5},
        ],
    }


def _parse(doc) -> object:
    return parse_profiled_graph(json.dumps(doc), source="t.json")


def test_fields_of_a_small_graph():
    g = _parse(_doc())
    assert g.ids.tolist() == [1, 2, 3]
    assert g.names == ("a", "b", "c")
    assert g.fpga_time.tolist() == [1.0, 2.5, 3.0]
    assert g.cpu_time.tolist() == [10.0, 20.0, 30.0]
    assert g.size.tolist() == [5.0, 6.0, 0.0]  # missing size -> 0
    assert g.supported_on_fpga.tolist() == [True, True, False]
    assert g.is_backward.tolist() == [False, False, True]
    assert g.color_class.tolist() == [-1, 7, 7]  # missing colour class -> -1
    assert g.src.tolist() == [0, 1, 0] and g.dst.tolist() == [1, 2, 2]
    assert g.edge_cost.tolist() == [0.5, 0.25, 0.5]
    assert g.edge_size.tolist() == [8.0, 4.0, 0.0]
    assert g.out_cost.tolist() == [0.5, 0.25, 0.0]  # sink: no output to send
    assert (g.max_fpgas, g.max_cpus, g.max_size_per_fpga) == (2, 1, 100.0)
    with pytest.raises(ValueError):
        g.fpga_time[0] = 9.0  # arrays are read-only


def test_call_overhead_of_dnnpart_profile():
    assert _parse(_doc()).call_overhead == 0.0  # the paper's files have none
    assert _parse({**_doc(), "dnnpart": {"unit": "seconds"}}).call_overhead == 0.0
    doc = {**_doc(), "dnnpart": {"call_overhead_s": 1.087e-3}}
    assert _parse(doc).call_overhead == 1.087e-3


def test_integral_float_counts_are_accepted():
    doc = _doc()
    doc["maxFPGAs"] = 2.0
    assert _parse(doc).max_fpgas == 2


def _mutated(path, value):
    """Copy of the small document with ``value`` set at ``path`` (None deletes)."""
    doc = copy.deepcopy(_doc())
    obj = doc
    for key in path[:-1]:
        obj = obj[key]
    if value is _DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("maxFPGAs",), _DELETE, "missing field 'maxFPGAs'"),
        (("maxFPGAs",), "6", "'maxFPGAs' must be an integer"),
        (("maxFPGAs",), -1, "'maxFPGAs' must be >= 0"),
        (("maxCPUs",), 1.5, "'maxCPUs' must be an integer"),
        (("maxSizePerFPGA",), True, "'maxSizePerFPGA' must be a number"),
        (("nodes",), {"id": 1}, "'nodes' must be an array"),
        (("edges",), _DELETE, "missing field 'edges'"),
        (("nodes", 1), "b", "node #1 must be a JSON object"),
        (("nodes", 1, "id"), _DELETE, "node #1: missing field 'id'"),
        (("nodes", 1, "id"), 1, "duplicate id"),
        (("nodes", 1, "fpgaLatency"), -2.5, "node #1 (id 2, 'b'): field 'fpgaLatency' must be"),
        (("nodes", 1, "cpuLatency"), "fast", "'cpuLatency' must be a number, got a string"),
        (("nodes", 0, "cpuLatency"), _DELETE, "node #0 (id 1, 'a'): missing field 'cpuLatency'"),
        (("nodes", 0, "size"), None, "'size' must be a number, got null"),
        (("nodes", 0, "size"), 10**400, "'size' must be finite"),
        (("nodes", 2, "supportedOnFpga"), 2, "'supportedOnFpga' must be 0, 1"),
        (("nodes", 2, "isBackwardNode"), _DELETE, "missing field 'isBackwardNode'"),
        (("nodes", 2, "colorClass"), -3, "'colorClass' must be >= 0"),
        (("nodes", 2, "name"), 5, "'name' must be a string"),
        (("edges", 0, "destId"), 99, "edge #0 (1 -> 99): field 'destId' names unknown node"),
        (("edges", 0, "sourceId"), "1", "edge #0: field 'sourceId' must be an integer"),
        (("edges", 1, "cost"), -1.0, "edge #1 (2 -> 3): field 'cost' must be"),
        (("edges", 1, "destId"), 2, "self-loop on node 2"),
        (("edges", 2, "cost"), 0.75, "node 1 ('a') has out-edges with different costs"),
        (("dnnpart",), [1], "field 'dnnpart' must be an object"),
        (("dnnpart",), {"call_overhead_s": -1e-3}, "dnnpart: field 'call_overhead_s' must be"),
        (("dnnpart",), {"call_overhead_s": "1ms"}, "'call_overhead_s' must be a number"),
    ],
)
def test_bad_fields_are_named(path, value, needle):
    with pytest.raises(InvalidModelError) as info:
        _parse(_mutated(path, value))
    assert needle in str(info.value)


def test_cycle_is_refused_naming_its_nodes():
    doc = _doc()
    doc["edges"].append({"sourceId": 3, "destId": 1, "cost": 0.1})
    with pytest.raises(InvalidModelError, match=r"cycle through nodes 1 \('a'\), 2"):
        _parse(doc)


@pytest.mark.parametrize(
    "text",
    ["", "{", "[1, 2]", '{"maxFPGAs": NaN}', "[" * 100_000 + "]" * 100_000],
)
def test_not_json_or_not_an_object(text):
    with pytest.raises(InvalidModelError):
        parse_profiled_graph(text)


def test_file_errors(tmp_path):
    with pytest.raises(InvalidModelError, match="cannot read"):
        read_profiled_graph(tmp_path / "missing.json")
    with pytest.raises(InvalidModelError, match="not a regular file"):
        read_profiled_graph(tmp_path)
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"name": "\xe9"}')
    with pytest.raises(InvalidModelError, match="not UTF-8"):
        read_profiled_graph(bad)
    big = tmp_path / "big.json"
    big.write_text(json.dumps(_doc()))
    with pytest.raises(ResourceLimitError, match="exceeds"):
        read_profiled_graph(big, max_bytes=100)
    assert read_profiled_graph(big).num_nodes == 3


@pytest.mark.parametrize(
    ("name", "nodes", "edges"),
    [("layer_bert24_inference.json", 32, 55), ("operator_resnet50_inference.json", 604, 619)],
)
def test_shared_files_parse(name, nodes, edges):
    path = _shared_tarnawski() / name
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (set DNNPART_SHARED_DATA)")
    g = read_profiled_graph(path)
    raw = json.loads(path.read_text())
    assert (g.num_nodes, g.num_edges) == (nodes, edges)
    assert (g.max_fpgas, g.max_cpus) == (6, 1)
    assert g.fpga_time.sum() == pytest.approx(sum(n["fpgaLatency"] for n in raw["nodes"]))
    # out_cost is the cost on every out-edge of its source
    np.testing.assert_array_equal(g.out_cost[g.src], g.edge_cost)
