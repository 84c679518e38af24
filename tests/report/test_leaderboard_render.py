"""Rendering leaderboards: Markdown, JSON, CSV, terminal and the self-contained HTML page."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from lb_rows import make_row, network_references
from rich.console import Console

from dnnpart.errors import UsageError
from dnnpart.report import Row, print_table, to_csv, to_html, to_json, to_markdown, write_report


@pytest.fixture
def rows():
    return [
        make_row("slow", 2, latency=3e-3, volume=100),
        make_row("fast", 2, latency=1e-3, volume=400),
        make_row("broken", 2, status="failed", reason="ValueError: boom | pipe"),
        make_row("fast", 4, latency=2e-3, volume=900),
        make_row("hung", 4, status="timeout", reason="no answer within 5 s"),
        make_row("pipe", 2, granularity="layer", latency=1e-3, tps=5e-4),
    ]


def test_tables_on_measured_times_are_titled_and_shown_by_max_load(rows):
    profiled = [
        make_row("a", 2, granularity="layer", tps=1e-3, max_load=4e-3, model="p.json"),
        make_row("b", 2, granularity="layer", tps=2e-3, max_load=3e-3, model="p.json"),
    ]
    md = to_markdown(rows + profiled)
    assert "## p.json, layer granularity, ranked by max-load" in md.splitlines()
    tables = md.split("## ")
    measured = next(t for t in tables if t.startswith("p.json"))
    other = next(t for t in tables if t.startswith("m.onnx, layer"))
    header = next(line for line in measured.splitlines() if line.startswith("| k"))
    assert "max-load" in header and "max-load ×vert" in header
    assert "max-load" not in other  # no measured times: no such column
    first = next(line for line in measured.splitlines() if line.startswith("| 2 |"))
    assert first.split("|")[3].strip() == "b"
    console = Console(width=100, record=True)
    print_table(profiled, console=console)
    text = console.export_text()
    assert "ranked by max-load" in text and "max-load" in text
    assert "t/sample" not in text  # narrow: the ranking time once, as max-load


def test_markdown_ranks_highlights_and_explains_failures(rows):
    md = to_markdown(rows)
    lines = md.splitlines()
    assert "## m.onnx, neuron granularity, ranked by latency" in lines
    assert "## m.onnx, layer granularity, ranked by time/sample" in lines
    table = [line for line in lines if line.startswith("| 2 |") or line.startswith("| 4 |")]
    # ranked: fast before slow at k = 2, failures after
    assert [line.split("|")[3].strip() for line in table[:5]] == [
        "fast", "slow", "broken", "fast", "hung"
    ]  # fmt: skip
    fast, slow = table[0], table[1]
    assert "**1.00 ms**" in fast and "**1.00 ms**" not in slow  # best latency
    assert "**100 B**" in slow and "**400 B**" not in fast  # best volume
    assert "failed: ValueError: boom \\| pipe" in table[2]  # the pipe cannot break the table
    assert "timeout: no answer within 5 s" in table[4]
    # every table line has the same number of cells as its header
    header = next(line for line in lines if line.startswith("| k |"))

    def cells(line):
        return len(re.split(r"(?<!\\)\|", line))

    assert all(cells(line) == cells(header) for line in table[:5])


def test_json_is_the_contract(rows):
    doc = json.loads(to_json(rows))
    assert list(doc) == ["rows"]
    assert len(doc["rows"]) == len(rows)
    for r in doc["rows"]:
        for key in ("model", "k", "partitioner", "status", "scores", "seconds"):
            assert key in r
    first = doc["rows"][0]
    assert (first["partitioner"], first["rank"], first["status"]) == ("fast", 1, "ok")
    assert first["scores"]["latency_s"] == 1e-3
    back = Row.from_dict(first)
    assert back.scores == first["scores"]


def test_csv_round_trips_the_figures(rows):
    records = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(records) == len(rows)
    fast2 = next(r for r in records if r["partitioner"] == "fast" and r["k"] == "2")
    assert float(fast2["latency_s"]) == 1e-3
    assert int(fast2["volume_bytes"]) == 400 and fast2["rank"] == "1"
    assert float(fast2["latency_ratio"]) == pytest.approx(0.5)
    broken = next(r for r in records if r["partitioner"] == "broken")
    assert broken["status"] == "failed" and broken["latency_s"] == "" and broken["rank"] == ""
    assert broken["reason"] == "ValueError: boom | pipe"


def test_html_is_self_contained_with_plots(rows):
    page = to_html(rows, meta={"k": "2, 4"})
    assert page.startswith("<!DOCTYPE html>")
    # three plots per (model, granularity) with a successful row
    assert page.count('<img alt="') == 6
    assert page.count('src="data:image/png;base64,') == 6
    assert network_references(page) == []
    assert "<script" not in page.lower()
    assert "<td class='best'>1.00 ms</td>" in page


def test_html_escapes_hostile_names():
    evil = "<script>alert(1)</script>"
    page = to_html([make_row(evil), make_row("x", status="failed", reason="<img src=x>")])
    assert evil not in page and "&lt;script&gt;" in page
    assert "<img src=x>" not in page
    assert network_references(page) == []


def test_terminal_table_narrow_and_wide(rows):
    narrow = Console(record=True, width=80)
    print_table(rows, console=narrow)
    text = narrow.export_text()
    assert "fast" in text and "failed" in text and "timeout" in text
    assert "k=2 broken: failed: ValueError: boom | pipe" in text  # reasons under the table
    assert max(len(line) for line in text.splitlines()) <= 80
    wide = Console(record=True, width=220)
    print_table(rows, console=wide)
    assert "activations sent" in wide.export_text()


@pytest.mark.parametrize("suffix, check", [
    (".md", lambda t: t.startswith("# dnnpart leaderboard")),
    (".json", lambda t: json.loads(t)["rows"]),
    (".csv", lambda t: t.startswith("model,granularity,k,rank,")),
    (".html", lambda t: "data:image/png;base64," in t),
])  # fmt: skip
def test_write_report_by_suffix(tmp_path, rows, suffix, check):
    path = tmp_path / f"board{suffix}"
    write_report(rows, path)
    assert check(path.read_text(encoding="utf-8"))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_write_report_refuses_unknown_suffix(tmp_path, rows):
    with pytest.raises(UsageError, match="report format"):
        write_report(rows, tmp_path / "board.txt")
    assert list(tmp_path.iterdir()) == []
