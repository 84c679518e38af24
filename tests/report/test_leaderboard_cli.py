"""``dnnpart leaderboard``: arguments, JSON on stdout, report files, exit codes."""

from __future__ import annotations

import json
import sys

import pytest
from _problems import REPO
from click.testing import CliRunner

from dnnpart.cli import _leaderboard_ks, main

MLP = str(REPO / "examples" / "mlp" / "mlp.onnx")


def run(*args):
    return CliRunner().invoke(main, ["leaderboard", *args])


def test_k_values_in_every_spelling(tmp_path):
    assert _leaderboard_ks(("2,4",), (MLP,)) == ([2, 4], [MLP])
    assert _leaderboard_ks(("2", "4"), (MLP,)) == ([2, 4], [MLP])
    # -k 2 4 8: click leaves 4 and 8 among the models
    assert _leaderboard_ks(("2",), (MLP, "4", "8")) == ([2, 4, 8], [MLP])
    # a model file whose name is a number stays a model
    (tmp_path / "4").write_bytes(b"")
    name = str(tmp_path / "4")
    assert _leaderboard_ks(("2",), (name,)) == ([2], [name])


def test_json_rows_and_report_files(tmp_path):
    md, csv_ = tmp_path / "b.md", tmp_path / "b.csv"
    result = run(MLP, "-k", "2", "3", "-p", "vertical,metis", "--json", "-o", str(md),
                 "-o", str(csv_))  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted((r["k"], r["partitioner"]) for r in doc["rows"]) == [
        (2, "metis"), (2, "vertical"), (3, "metis"), (3, "vertical")
    ]  # fmt: skip
    assert all(r["status"] == "ok" for r in doc["rows"])
    assert md.read_text().startswith("# dnnpart leaderboard")
    assert csv_.read_text().count("\n") == 5
    assert f"wrote {md}" in result.stderr


def test_table_and_verify_column():
    result = run(MLP, "-k", "2", "-p", "vertical", "--granularity", "layer", "--verify")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("k "))
    assert "t/sample" in header and header.split()[-1] == "verify"
    row = next(line for line in lines if " vertical " in line)
    assert row.split()[-1] in ("ok", "failed", "n/a")


def test_verify_hook_without_runtime(monkeypatch):
    import types

    from dnnpart.report import verify_plan

    monkeypatch.setitem(sys.modules, "dnnpart.runtime", types.ModuleType("dnnpart.runtime"))
    assert verify_plan(MLP, plan=None) == {"ok": None, "reason": "export/verify not available"}


@pytest.mark.parametrize(
    "args, message",
    [
        ((MLP,), "give -k"),
        ((MLP, "-k", "2", "-p", "no-such-partitioner"), "unknown partitioner"),
        ((MLP, "-k", "2", "-o", "board.txt"), ".html, .md, .json or .csv"),
        (("/no/such.onnx", "-k", "2"), "model not found"),
        ((MLP, "-k", "two"), "integers"),
        ((MLP, "-k", "2", "--repeat", "0"), "repeat"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
