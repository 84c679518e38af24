"""Writing outputs safely (BAD_INPUTS.md, "Writing outputs"): conflicts, faults mid-export,
deterministic bytes, names from the model never reaching a path."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import dnnpart
import dnnpart.exporters._export as export_module
from dnnpart.cli import main
from dnnpart.errors import InvalidModelError, OutputConflictError
from dnnpart.exporters import export
from dnnpart.runtime import verify

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
# names come from the device names (dev0 ... for -k) or device indices, never from the model
FILE_NAMES = re.compile(r"manifest\.json|(dev|device)\d+_stage\d+\.(onnx|data)")


@pytest.fixture(scope="module")
def mlp_plan():
    graph = dnnpart.load(MLP)
    return dnnpart.partition(graph, k=3, method="metis", granularity="neuron", prune=0.5)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# -- conflicts ------------------------------------------------------------------------


def test_existing_output_is_refused_without_force(tmp_path, mlp_plan):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputConflictError, match="out"):
        export(MLP, mlp_plan, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_the_folder_whole(tmp_path, mlp_plan):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dev0_stage0.data").write_bytes(b"old external data, never appended to")
    export(MLP, mlp_plan, out, force=True)
    names = {p.name for p in out.iterdir()}
    assert "dev0_stage0.data" not in names and "manifest.json" in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left aside


def test_cli_exit_codes_for_conflict_and_success(tmp_path, mlp_plan):
    plan_path = tmp_path / "plan.json"
    mlp_plan.save(plan_path)
    runner = CliRunner()
    out = str(tmp_path / "out")
    ok = runner.invoke(main, ["export", str(MLP), str(plan_path), "-o", out, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["stages"] == len(
        json.loads(Path(out, "manifest.json").read_text())["stages"]
    )
    again = runner.invoke(main, ["export", str(MLP), str(plan_path), "-o", out])
    assert again.exit_code == 6
    assert "exists" in again.stderr


# -- faults mid-export ----------------------------------------------------------------


def _failing_save(monkeypatch, after: int, exc: BaseException):
    real = export_module.save_model
    calls = {"n": 0}

    def save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "save_model", save)
    return calls


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_fault_mid_export_leaves_nothing_under_the_final_name(tmp_path, monkeypatch, mlp_plan, exc):
    calls = _failing_save(monkeypatch, 2, exc)
    with pytest.raises(type(exc)):
        export(MLP, mlp_plan, tmp_path / "out")
    assert calls["n"] == 3  # two sub-models were written before the fault
    assert list(tmp_path.iterdir()) == []  # no final folder, no temporary left behind


def test_fault_during_forced_export_keeps_the_old_output(tmp_path, monkeypatch, mlp_plan):
    out = tmp_path / "out"
    export(MLP, mlp_plan, out)
    before = digests(out)
    _failing_save(monkeypatch, 1, OSError(5, "I/O error"))
    with pytest.raises(OSError):
        export(MLP, mlp_plan, out, force=True)
    assert digests(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_fault_in_manifest_write_leaves_nothing(tmp_path, monkeypatch, mlp_plan):
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "write_json", boom)
    with pytest.raises(OSError):
        export(MLP, mlp_plan, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# -- determinism ----------------------------------------------------------------------


def test_exporting_twice_gives_identical_bytes(tmp_path, mlp_plan):
    export(MLP, mlp_plan, tmp_path / "a")
    plan_path = tmp_path / "plan.json"
    mlp_plan.save(plan_path)
    export(MLP, plan_path, tmp_path / "b")  # from the saved plan, a fresh import
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_external_data_export_is_deterministic(tmp_path):
    path = models.save(models.external_mlp(), tmp_path / "m", external_data=True)
    plan = dnnpart.partition(dnnpart.load(path), k=2, method="metis", granularity="neuron")
    export(path, plan, tmp_path / "a", external_min_bytes=1)
    export(path, plan, tmp_path / "b", external_min_bytes=1)
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a == b and any(name.endswith(".data") for name in a)


# -- names from a hostile model ---------------------------------------------------------

HOSTILE = [
    "../../../evil",
    "/etc/passwd",
    "..\\..\\windows",
    "C:\\boot.ini",
    "..",
    ".",
    "manifest.json",
    "device0_stage0.onnx",
    "a/b/../c:d*e?f",
    "名前 with spaces\t",
    "x" * 300,
]


def hostile_mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    n = HOSTILE
    w1 = rng.standard_normal((4, 5)).astype(np.float32)
    w2 = rng.standard_normal((5, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", [n[0], n[1]], [n[2]], name=n[3]),
        helper.make_node("Relu", [n[2]], [n[4]], name=n[5]),
        helper.make_node("MatMul", [n[4], n[6]], [n[7]], name=n[8]),
        helper.make_node("Softmax", [n[7]], [n[9]], name=n[10]),
    ]
    graph = helper.make_graph(
        nodes,
        "../../graph",
        [helper.make_tensor_value_info(n[0], TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info(n[9], TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w1, n[1]), numpy_helper.from_array(w2, n[6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("granularity", ["layer", "neuron"])
def test_names_from_the_model_never_reach_a_path(tmp_path, granularity):
    models_dir = tmp_path / "model"
    path = models.save(hostile_mlp(), models_dir, "m.onnx")
    plan = dnnpart.partition(dnnpart.load(path), k=3, method="vertical", granularity=granularity)
    work = tmp_path / "work"
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)  # relative names would land here
    try:
        doc = export(path, plan, tmp_path / "out", external_min_bytes=1)
    finally:
        os.chdir(cwd)
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out", "work"]
    assert sorted(p.name for p in models_dir.iterdir()) == ["m.onnx"]
    names = [p.name for p in (tmp_path / "out").iterdir()]
    assert all(FILE_NAMES.fullmatch(name) for name in names), names
    assert all(p.is_file() for p in (tmp_path / "out").iterdir())
    assert len(doc["stages"]) >= 2
    report = verify(tmp_path / "out", samples=2)
    assert report.ok, report.problems


# -- a tampered export is refused by the runtime ------------------------------------------


def _tamper(folder: Path, edit) -> None:
    doc = json.loads((folder / "manifest.json").read_text())
    edit(doc)
    (folder / "manifest.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["stages"][0].update(file="../../m.onnx"),
        lambda d: d["stages"][0].update(file="/etc/passwd"),
        lambda d: d["stages"][0].update(data="device9_stage9.data"),
        lambda d: d.update(order=[0] * len(d["order"])),
        lambda d: d["transfers"][0].update(to=99),
        # a device renamed to something unsafe: its files must then be device<d>_stage<s>
        lambda d: d["devices"]["device"][0].update(name="../evil"),
        lambda d: d["devices"]["device"].pop(),
        # devices are checked by the device file's rules, as a plan's are
        lambda d: d["devices"]["device"][0].update(speed=-1),
        lambda d: d["devices"]["device"][0].update(memory="lots"),
        lambda d: d["devices"]["device"][1].update(name=d["devices"]["device"][0]["name"]),
        lambda d: d["devices"]["device"][0].update(surprise=1),
        lambda d: d["devices"].update(device={"name": "a"}),
    ],
)
def test_tampered_manifest_is_refused(tmp_path, mlp_plan, edit):
    out = tmp_path / "out"
    export(MLP, mlp_plan, out)
    _tamper(out, edit)
    with pytest.raises(InvalidModelError, match="not a valid dnnpart export"):
        verify(out)


def test_sub_model_pointing_outside_its_data_file_is_refused(tmp_path, mlp_plan):
    out = tmp_path / "out"
    doc = export(MLP, mlp_plan, out)
    first = out / doc["stages"][0]["file"]
    proto = onnx.load(str(first))
    t = proto.graph.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    t.external_data.add(key="location", value="../../secret")
    onnx.save(proto, str(first))
    with pytest.raises(InvalidModelError, match="secret"):
        verify(out)


def test_mismatch_exits_7_with_json(tmp_path, mlp_plan):
    out = tmp_path / "out"
    export(MLP, mlp_plan, out)
    _tamper(out, lambda d: d.update(volume_bytes_planned=d["volume_bytes_planned"] + 4))
    result = CliRunner().invoke(
        main, ["verify", str(out), "--json", "--samples", "1", "--model", str(MLP)]
    )
    assert result.exit_code == 7
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["bytes_measured"] + 4 == doc["bytes_planned"]
    assert {"ok", "max_abs_err", "bytes_measured", "bytes_planned"} <= set(doc)


def test_wrong_weights_are_caught(tmp_path, mlp_plan):
    out = tmp_path / "out"
    doc = export(MLP, mlp_plan, out)
    for s in doc["stages"]:
        proto = onnx.load(str(out / s["file"]))
        for t in proto.graph.initializer:
            arr = numpy_helper.to_array(t)
            if arr.dtype == np.float32 and arr.ndim == 2:
                t.CopyFrom(numpy_helper.from_array(arr * 1.01, t.name))
                onnx.save(proto, str(out / s["file"]))
                break
        else:
            continue
        break
    report = verify(out, samples=2, model=MLP)
    assert not report.ok
    assert any("over tolerance" in p for p in report.problems)
