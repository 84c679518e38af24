"""A newcomer's first hour (issue 16): ordinary mistakes get clear messages and the right
exit codes, no work is lost, results say when they are infeasible or odd, and the split is
visible (``dnnpart show``)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from _problems import REPO
from click.testing import CliRunner

import dnnpart
from dnnpart.cli import main

MLP = REPO / "examples" / "mlp" / "mlp.onnx"

DEVICES = """
[link]
bandwidth = "10Gbit/s"
latency = "50us"

[[device]]
name = "jetson"
speed = "2TFLOPS"
memory = "1MiB"

[[device]]
name = "phone"
speed = "1TFLOPS"
memory = "{phone}"
"""


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def devices(tmp_path) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text(DEVICES.format(phone="4GiB"))
    return path


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plan")
    (folder / "devices.toml").write_text(DEVICES.format(phone="4GiB"))
    out = folder / "plan.json"
    res = cli("partition", MLP, "--devices", folder / "devices.toml", "-p", "metis", "-o", out)
    assert res.exit_code == 0, res.output
    return out


# -- arguments are checked before the model is loaded ---------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "0"], "k must be a positive integer"),
        (["-k", "2", "--prune", "1.5"], "prune ratio must be in [0, 1)"),
        (["-k", "2", "-p", "nosuch"], "unknown partitioner 'nosuch'"),
        (["-k", "2", "--imbalance", "-1"], "imbalance must be >= 0"),
        (["-k", "2", "-p", "pipeline", "--granularity", "neuron"], "does not support"),
        (["-k", "2", "-o", "missing/dir/plan.json"], "folder"),
    ],
)
def test_arguments_are_checked_before_the_model_is_loaded(monkeypatch, args, message):
    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr("dnnpart.importers.load", no_load)
    res = cli("partition", MLP, *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "internal error" not in res.stderr


def test_partition_output_policy(tmp_path):
    out = tmp_path / "plan.json"
    missing = cli("partition", MLP, "-k", "2", "-o", tmp_path / "missing" / "plan.json")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    old = os.umask(0o022)
    try:
        assert cli("partition", MLP, "-k", "2", "-o", out).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's private 0600
    again = cli("partition", MLP, "-k", "2", "-o", out)
    assert again.exit_code == 6 and "--force" in again.stderr
    assert cli("partition", MLP, "-k", "2", "-o", out, "--force").exit_code == 0
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary left


def test_plan_keeps_parameters_not_run_state_and_json_has_the_labels(tmp_path):
    res = cli("partition", MLP, "-k", "2", "-p", "metis", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    plan = doc["plan"]
    assert plan is not None and len(plan["labels"]) == plan["groups"][-1]["stop"]
    assert "messages_" not in plan["parameters"]["options"]
    assert doc["plan_file"] is None


def test_export_names_swapped_and_missing_plans(tmp_path, plan_file):
    swapped = cli("export", plan_file, MLP, "-o", tmp_path / "x")
    assert swapped.exit_code == 3
    assert "the order is MODEL PLAN" in swapped.stderr and "utf-8" not in swapped.stderr
    missing = cli("export", MLP, tmp_path / "nope.json", "-o", tmp_path / "y")
    assert missing.exit_code == 2 and "plan file not found" in missing.stderr


def test_help_explains_every_partition_option():
    text = cli("partition", "--help").output
    for flag, words in (("-p", "Partitioner name"), ("--imbalance", "3 %"), ("--seed", "Seed")):
        assert flag in text and words in text, flag


# -- results that are infeasible or odd say so -------------------------------------------------


def test_help_texts_print_percent_signs_once():
    # click does not %-format help texts: a "%%" written for argparse reaches the user
    for name in main.commands:
        out = cli(name, "--help")
        assert out.exit_code == 0, (name, out.output)
        assert "%%" not in out.output, name
    assert "3 % more" in cli("partition", "--help").output


def test_a_split_that_does_not_fit_in_memory_is_shown_and_exits_5(tmp_path):
    small = tmp_path / "small.toml"
    small.write_text(DEVICES.format(phone="64KiB"))
    res = cli("partition", MLP, "--devices", small, "-p", "metis", "-o", tmp_path / "p.json")
    assert res.exit_code == 5, res.output
    row = next(line for line in res.stdout.splitlines() if "fits in device memory" in line)
    assert "no: phone" in row
    assert "phone needs" in res.stderr and "has 64.0 KiB" in res.stderr
    assert (tmp_path / "p.json").is_file()  # the plan is still written


def test_memory_row_stays_one_line_at_large_k():
    small, large = (cli("partition", MLP, "-k", k, "-p", "vertical") for k in (2, 32))
    assert small.exit_code == large.exit_code == 0, large.output
    assert len(large.stdout.splitlines()) == len(small.stdout.splitlines())


def test_pipeline_on_one_device_says_why():
    res = cli("partition", MLP, "-k", "2", "-p", "pipeline")
    assert res.exit_code == 0, res.output
    assert "0.000 ms" not in res.stdout and "µs" in res.stdout
    line = next(w for w in res.stderr.splitlines() if "idle" in w)
    assert "left 1 of 2 devices idle" in line
    assert "less than one message between devices" in line  # one line: not wrapped at 80


def test_metis_diagnostics_become_one_note(monkeypatch):
    from dnnpart.partitioners.metis import _printed_note

    note = _printed_note(["***Cannot bisect a graph with 0 vertices!"] * 14 + ["x"])
    assert note == "METIS said: Cannot bisect a graph with 0 vertices! (14 times); x"
    # 7 devices for the MLP's 7 vertices: METIS cannot bisect empty parts and says so
    res = cli("partition", MLP, "-k", "7", "-p", "metis", "--granularity", "layer")
    assert res.exit_code == 0, res.output
    assert "***" not in res.stderr and "***" not in res.stdout
    assert res.stderr.count("METIS said: Cannot bisect a graph with 0 vertices!") == 1


def test_partition_reports_its_steps():
    steps = []
    dnnpart.partition(dnnpart.load(MLP), k=2, method="vertical", prune=0.5, progress=steps.append)
    assert steps == [
        "pruning 0.5 of the weights",
        "building the neuron problem",
        "partitioning with vertical",
        "scoring",
    ]


# -- dnnpart show ----------------------------------------------------------------------------


def test_show_prints_the_split_per_device_and_layer(plan_file):
    res = cli("show", plan_file, "--json")
    assert res.exit_code == 0, res.output
    view = json.loads(res.stdout)
    plan = json.loads(plan_file.read_text())
    labels = np.asarray(plan["labels"])
    assert [d["name"] for d in view["devices"]] == ["jetson", "phone"]
    assert [d["target"] for d in view["devices"]] == pytest.approx([2 / 3, 1 / 3])
    assert all(d["memory_ok"] for d in view["devices"])
    assert view["devices"][0]["memory"] == 1 << 20
    for layer, group in zip(view["layers"], plan["groups"], strict=True):
        part = labels[group["start"] : group["stop"]]
        assert layer["name"] == group["name"]
        assert layer["counts"] == np.bincount(part, minlength=2).tolist()
    fc1 = next(layer for layer in view["layers"] if layer["name"] == "fc1")
    assert sum(fc1["shares"]) == pytest.approx(1.0)
    assert fc1["shares"][0] == pytest.approx(2 / 3, abs=0.05)  # jetson is twice as fast
    text = cli("show", plan_file)
    assert text.exit_code == 0
    assert "jetson" in text.stdout and "fc1" in text.stdout and "66.7%" in text.stdout


def test_show_lists_the_layers_of_each_device_at_layer_granularity(tmp_path):
    out = tmp_path / "layer.json"
    res = cli("partition", MLP, "-k", "2", "-p", "vertical", "--granularity", "layer", "-o", out)
    assert res.exit_code == 0, res.output
    view = json.loads(cli("show", out, "--json").stdout)
    runs = [d["positions"].get("layers", []) for d in view["devices"]]
    held = sorted(i for r in runs for a, b in r for i in range(a, b + 1))
    assert held == list(range(6))  # the six layers of the MLP, each on one device
    assert "layers 0-" in cli("show", out).stdout


# -- export and verify -------------------------------------------------------------------------


def test_export_and_verify_use_device_names_in_execution_order(tmp_path, plan_file):
    out = tmp_path / "split"
    res = cli("export", MLP, plan_file, "-o", out)
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in out.iterdir())
    assert "jetson_stage0.onnx" in files and "phone_stage0.onnx" in files
    manifest = json.loads((out / "manifest.json").read_text())
    order = [manifest["stages"][i]["file"] for i in manifest["order"]]
    rows = [line for line in res.stdout.splitlines() if "_stage" in line]
    assert [next(w for w in r.split() if w.endswith(".onnx")) for r in rows] == order
    ver = cli("verify", out, "--samples", "1", "--model", MLP)
    assert ver.exit_code == 0, ver.output
    assert "jetson" in ver.stdout and "phone" in ver.stdout


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory, plan_file) -> Path:
    out = tmp_path_factory.mktemp("split") / "split"
    assert cli("export", MLP, plan_file, "-o", out).exit_code == 0
    return out


def test_verify_inputs_must_be_an_npz(split_dir, devices):
    res = cli("verify", split_dir, "--model", MLP, "--inputs", devices)
    assert res.exit_code == 2
    assert "not an .npz file" in res.stderr
    assert "pickle" not in res.stderr


def test_verify_refuses_nan_inputs(split_dir, tmp_path):
    x = np.ones((2, 64), dtype=np.float32)
    x[1, 3] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    res = cli("verify", split_dir, "--model", MLP, "--inputs", tmp_path / "nan.npz")
    assert res.exit_code == 2 and "NaN" in res.stderr


def test_verify_tells_rounding_after_the_last_transfer_from_a_routing_error(split_dir, tmp_path):
    # rtol far below float32 precision: the outputs "differ", but every transfer matches
    tight = cli(
        "verify", split_dir, "--model", MLP, "--samples", "2", "--rtol", "1e-12", "--atol", "0"
    )
    assert tight.exit_code == 7
    assert "tensors that crossed devices match the whole model" in tight.stderr
    assert "not a routing error" in tight.stderr
    # wrong weights in a sub-model: the first transfer it sends departs
    import shutil

    import onnx
    from onnx import numpy_helper

    bad = tmp_path / "bad"
    shutil.copytree(split_dir, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    first = manifest["stages"][manifest["order"][0]]["file"]
    proto = onnx.load(str(bad / first))
    t = next(t for t in proto.graph.initializer if len(t.dims) == 2)
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.5, t.name))
    onnx.save(proto, str(bad / first))
    res = cli("verify", bad, "--model", MLP, "--samples", "2")
    assert res.exit_code == 7
    assert "first departs from the whole model at tensor" in res.stderr
    assert "routing or export error" in res.stderr


# -- README and docs -------------------------------------------------------------------------


def test_readme_setup_creates_the_environment_once_and_docs_cover_the_formats():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("## Usage", 1)[0]
    assert setup.count("-m venv") == 1
    assert "dnnpart show" in readme and "[[link.pair]]" in readme
    formats = (REPO / "docs" / "formats.md").read_text()
    for words in ("[[link.pair]]", "between", "1 TFLOPS", "10 Gbit/s", "50 µs", "fpgaLatency",
                  "cpuLatency", "sourceId", "maxSizePerFPGA", "labels"):  # fmt: skip
        assert words in formats, words


def test_show_sums_layers_up_beyond_eight_devices(tmp_path):
    out = tmp_path / "p16.json"
    assert cli("partition", MLP, "-k", "16", "-p", "vertical", "-o", out).exit_code == 0
    text = cli("show", out).stdout
    head = next(line for line in text.splitlines() if "fewest" in line)
    assert "devices used" in head and "dev15" not in head
    fc1 = next(line for line in text.splitlines() if line.strip("│ ").startswith("fc1"))
    assert fc1.split("│")[3].strip() == "18" and fc1.split("│")[5].strip() == "16"
