"""Every finding of issue 17's fuzz run, reproduced through the CLI: a typed error (or a
correct result) now, never a crash, an internal error, a hang or an outside read.

Each run goes through :func:`fuzz.run_cli`: the CLI's entry point in a forked child with
time and memory limits, so a SIGABRT or a hang fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from ._runner import run_cli, warm

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx"


@pytest.fixture(scope="module", autouse=True)
def _warm():
    warm()


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _save(folder: Path, nodes, inputs, outputs, inits=(), value_info=()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits), value_info=value_info)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _run(case: Path, *args, timeout=60.0):
    out = run_cli(list(args), case, allowed=[case], watched=[case.parent], timeout=timeout)
    assert not out.failed, (out.kind, out.stderr, out.outside)
    return out


def _ints(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


# -- crash in shape inference -------------------------------------------------------------
def test_conv_kernel_larger_than_its_input_then_slice_does_not_abort(tmp_path):
    # onnx infers H = 1 - 5 + 1 = -3 for the Conv, then Slice's inference asserts in
    # std::clamp and aborts: inference runs in a child now, and its crash is a warning
    w = numpy_helper.from_array(np.ones((1, 1, 5, 1), np.float32), "W")
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"]),
        helper.make_node("Slice", ["y", "st", "en", "ax"], ["z"]),
    ]
    inits = [w, _ints("st", [0]), _ints("en", [1]), _ints("ax", [2])]
    _save(tmp_path, nodes, [_vi("x", [1, 1, 1, 1])], [_vi("z", None)], inits)
    out = _run(tmp_path, "import", "model.onnx", "--json")
    assert out.kind == "ok" and "shape inference crashed" in out.stderr
    out = _run(tmp_path, "partition", "model.onnx", "-k", "2", "-p", "vertical", "-o", "p.json")
    assert out.kind == "ok"
    out = _run(tmp_path, "export", "model.onnx", "p.json", "-o", "split")
    assert out.code == 3, out.stderr


# -- internal errors at neuron granularity ------------------------------------------------
@pytest.mark.parametrize("group", [0, 3, -1, 2**62])
def test_bad_conv_group_is_an_invalid_model(tmp_path, group):
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "W")
    node = helper.make_node("Conv", ["x", "W"], ["y"], group=group)
    _save(tmp_path, [node], [_vi("x", [1, 4, 2, 2])], [_vi("y", [1, 4, 2, 2])], [w])
    out = _run(tmp_path, "partition", "model.onnx", "-k", "2", "-p", "vertical")
    assert out.code == 3 and "'group'" in out.stderr


@pytest.mark.parametrize("trans_b", [0, 1])
def test_dense_weight_with_no_rows_partitions(tmp_path, trans_b):
    shape = (3, 0) if trans_b else (0, 3)
    w = numpy_helper.from_array(np.ones(shape, np.float32), "W")
    node = helper.make_node("Gemm", ["x", "W"], ["y"], transB=trans_b)
    _save(tmp_path, [node], [_vi("x", [1, 0])], [_vi("y", [1, 3])], [w])
    for gran in ("neuron", "layer"):
        out = _run(
            tmp_path, "partition", "model.onnx", "-k", "2", "-p", "vertical", "--granularity", gran
        )
        assert out.code in (0, 2), out.stderr


def test_graph_without_nodes_is_refused_by_name(tmp_path):
    c = numpy_helper.from_array(np.ones(2, np.float32), "c")
    _save(tmp_path, [], [], [_vi("c", [2])], [c])
    out = _run(tmp_path, "partition", "model.onnx", "-k", "2", "-p", "vertical")
    assert out.code == 3 and "no operators" in out.stderr


# -- silent wrong result: cost overflow -----------------------------------------------------
def test_huge_declared_shape_is_a_resource_limit_not_a_negative_memory(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Relu", ["y"], ["z"])]
    huge = [_vi("y", [2**40, 2**40])]
    _save(tmp_path, nodes, [_vi("x", [1, 4])], [_vi("z", [1, 3])], [w], huge)
    out = _run(tmp_path, "partition", "model.onnx", "-k", "2", "-p", "vertical", "--json")
    assert out.code == 5 and "'y'" in out.stderr


# -- plans --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp_case(tmp_path_factory):
    case = tmp_path_factory.mktemp("mlp")
    shutil.copy(MLP, case / "model.onnx")
    for gran in ("layer", "neuron"):
        out = run_cli(
            [
                "partition",
                "model.onnx",
                "-k",
                "2",
                "-p",
                "vertical",
                "--granularity",
                gran,
                "-o",
                f"plan-{gran}.json",
            ],
            case,
            allowed=[case],
            timeout=300,
        )
        assert out.kind == "ok", out.stderr
    out = run_cli(
        ["export", "model.onnx", "plan-layer.json", "-o", "split"],
        case,
        allowed=[case],
        timeout=300,
    )
    assert out.kind == "ok", out.stderr
    return case


def _plan_case(tmp_path, mlp_case, gran, edit=None, text=None) -> Path:
    shutil.copy(mlp_case / "model.onnx", tmp_path / "model.onnx")
    doc = json.loads((mlp_case / f"plan-{gran}.json").read_text())
    if edit is not None:
        edit(doc)
    (tmp_path / "plan.json").write_text(text if text is not None else json.dumps(doc))
    return tmp_path


def _labels(doc, n):
    doc["labels"] = doc["labels"][:n] if n < 0 else doc["labels"] + [0] * n


PLAN_EDITS = {
    "labels one short": lambda d: _labels(d, -1),
    "labels one long": lambda d: _labels(d, 1),
    "label 2**70": lambda d: d["labels"].__setitem__(0, 2**70),
    "k 10**12": lambda d: d.update(k=10**12),
    "k 1e400": lambda d: d.update(k=float("inf")),
}


@pytest.mark.parametrize("gran", ["layer", "neuron"])
@pytest.mark.parametrize("name", sorted(PLAN_EDITS))
def test_bad_plan_fields_are_refused(tmp_path, mlp_case, gran, name):
    _plan_case(tmp_path, mlp_case, gran, PLAN_EDITS[name])
    out = _run(tmp_path, "export", "model.onnx", "plan.json", "-o", "split")
    assert out.code == 3 and "not a valid dnnpart plan" in out.stderr, out.stderr
    assert not (tmp_path / "split").exists()


def _device(d, **fields):
    d["devices"]["device"][0].update(fields)


DEVICE_EDITS = {
    "no device list": lambda d: d.update(devices={}),  # found by the long fuzz run
    "device list not a list": lambda d: d["devices"].update(device="dev0"),
    "device not a table": lambda d: d["devices"]["device"].__setitem__(0, 7),
    "name not a string": lambda d: _device(d, name=7),
    "speed a string": lambda d: _device(d, speed="fast"),
    "speed NaN": lambda d: _device(d, speed=float("nan")),
    "speed negative": lambda d: _device(d, speed=-1.0),
    "memory NaN": lambda d: _device(d, memory=float("nan")),
    "duplicate names": lambda d: _device(d, name=d["devices"]["device"][1]["name"]),
    "one device fewer than k": lambda d: d["devices"]["device"].pop(),
    "one device more than k": lambda d: d["devices"]["device"].append({"name": "extra"}),
    "link bandwidth negative": lambda d: d["devices"]["link"].update(bandwidth=-1),
}


@pytest.mark.parametrize("name", sorted(DEVICE_EDITS))
def test_bad_plan_devices_are_an_invalid_plan(tmp_path, mlp_case, name):
    _plan_case(tmp_path, mlp_case, "layer", DEVICE_EDITS[name])
    out = _run(tmp_path, "export", "model.onnx", "plan.json", "-o", "split")
    assert out.code == 3 and "not a valid dnnpart plan" in out.stderr, out.stderr
    assert "devices" in out.stderr.splitlines()[-1], out.stderr
    assert not (tmp_path / "split").exists()


def test_plan_devices_that_the_partitioner_wrote_are_accepted(tmp_path, mlp_case):
    _plan_case(tmp_path, mlp_case, "neuron")
    out = _run(tmp_path, "export", "model.onnx", "plan.json", "-o", "split")
    assert out.code == 0, out.stderr


@pytest.mark.parametrize("text", ['{"k": Infinity}', "[" * 100_000 + "]" * 100_000])
def test_plan_text_infinity_and_deep_nesting_are_refused(tmp_path, mlp_case, text):
    _plan_case(tmp_path, mlp_case, "layer", text=text)
    out = _run(tmp_path, "export", "model.onnx", "plan.json", "-o", "split")
    assert out.code == 3, out.stderr


def test_plan_output_to_proc_is_a_usage_error(tmp_path, mlp_case):
    shutil.copy(mlp_case / "model.onnx", tmp_path / "model.onnx")
    out = _run(tmp_path, "partition", "model.onnx", "-k", "2", "-p", "vertical", "-o", "/proc/x")
    assert out.code == 2 and "cannot write the plan" in out.stderr


# -- verify's reference model -------------------------------------------------------------
def _split_case(tmp_path, mlp_case, model_file) -> Path:
    shutil.copy(mlp_case / "model.onnx", tmp_path / "model.onnx")
    shutil.copytree(mlp_case / "split", tmp_path / "split")
    path = tmp_path / "split" / "manifest.json"
    doc = json.loads(path.read_text())
    doc["model"]["file"] = model_file
    path.write_text(json.dumps(doc))
    return tmp_path


def test_manifest_stores_no_absolute_path(mlp_case):
    doc = json.loads((mlp_case / "split" / "manifest.json").read_text())
    assert doc["model"]["file"] == "model.onnx" and "path" not in doc["model"]
    assert str(mlp_case) not in json.dumps(doc)


def test_verify_finds_the_model_beside_the_split(tmp_path, mlp_case):
    sub = tmp_path / "sub"
    sub.mkdir()
    _split_case(sub, mlp_case, "model.onnx")
    # resolved against the split folder's parent, not the working folder (tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"another file")
    out = _run(tmp_path, "verify", "sub/split", "--samples", "1")
    assert out.code == 0, out.stderr


@pytest.mark.parametrize(
    "model_file", ["/etc/passwd", "../../etc/passwd", "/proc/self/mem", "../canary.onnx"]
)
def test_manifest_model_outside_the_folder_is_refused_unread(tmp_path, mlp_case, model_file):
    case = tmp_path / "case"
    case.mkdir()
    shutil.copy(MLP, tmp_path / "canary.onnx")  # a real model, outside the case
    _split_case(case, mlp_case, model_file)
    out = run_cli(
        ["verify", "split", "--samples", "1"],
        case,
        allowed=[case],
        watched=[tmp_path],
        canaries=[Path("/etc/passwd")],
        timeout=60,
    )
    assert out.code == 4 and not out.outside, (out.kind, out.stderr, out.outside)


def test_manifest_model_that_is_a_symlink_out_is_refused(tmp_path, mlp_case):
    case = tmp_path / "case"
    case.mkdir()
    shutil.copy(MLP, tmp_path / "canary.onnx")
    _split_case(case, mlp_case, "link.onnx")
    (case / "link.onnx").symlink_to(tmp_path / "canary.onnx")
    out = run_cli(
        ["verify", "split", "--samples", "1"], case, allowed=[case], watched=[tmp_path], timeout=60
    )
    assert out.code == 4 and not out.outside, (out.kind, out.stderr, out.outside)


def test_verify_checks_the_sha256_first(tmp_path, mlp_case):
    _split_case(tmp_path, mlp_case, "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"not the model")
    out = _run(tmp_path, "verify", "split", "--samples", "1")
    assert out.code == 2 and "sha256" in out.stderr


# -- a verification that could pass falsely ------------------------------------------------
@pytest.mark.parametrize(
    "option", [("--rtol", "nan"), ("--atol", "nan"), ("--rtol", "-1"), ("--atol", "inf")]
)
def test_tolerances_must_be_finite_and_non_negative(tmp_path, mlp_case, option):
    _split_case(tmp_path, mlp_case, "model.onnx")
    out = _run(tmp_path, "verify", "split", "--samples", "1", *option)
    assert out.code == 2 and option[0] in out.stderr


# -- hangs ----------------------------------------------------------------------------------
def test_fifo_as_plan_inputs_or_manifest_is_refused_at_once(tmp_path, mlp_case):
    _split_case(tmp_path, mlp_case, "model.onnx")
    os.mkfifo(tmp_path / "plan.json")
    os.mkfifo(tmp_path / "x.npz")
    out = _run(tmp_path, "export", "model.onnx", "plan.json", "-o", "out", timeout=30)
    assert out.code == 2 and "not a regular file" in out.stderr
    out = _run(tmp_path, "verify", "split", "--inputs", "x.npz", timeout=30)
    assert out.code == 2 and "not a regular file" in out.stderr
    (tmp_path / "split" / "manifest.json").unlink()
    os.mkfifo(tmp_path / "split" / "manifest.json")
    out = _run(tmp_path, "verify", "split", timeout=30)
    assert out.code == 3 and "not a regular file" in out.stderr


@pytest.mark.parametrize("k", [str(10**9), str(2**70)])
def test_huge_k_is_refused_before_allocating(tmp_path, mlp_case, k):
    shutil.copy(MLP, tmp_path / "model.onnx")
    out = run_cli(
        ["partition", "model.onnx", "-k", k, "-p", "vertical"],
        tmp_path,
        allowed=[tmp_path],
        timeout=60,
    )
    assert out.code == 2 and "larger than the number of vertices" in out.stderr, out.stderr


def test_huge_samples_is_refused_before_allocating(tmp_path, mlp_case):
    _split_case(tmp_path, mlp_case, "model.onnx")
    out = run_cli(
        ["verify", "split", "--samples", str(10**9)],
        tmp_path,
        allowed=[tmp_path],
        timeout=60,
    )
    assert out.code == 5 and "--samples" in out.stderr, out.stderr


# -- found by the long fuzz run --------------------------------------------------------------
@pytest.mark.parametrize("value", ["bidirectional", "external"])
def test_constant_of_shape_value_must_be_a_one_element_tensor_in_the_model(tmp_path, value):
    node = helper.make_node("ConstantOfShape", ["s"], ["c"])
    if value == "external":  # onnx would read it relative to the working folder
        t = numpy_helper.from_array(np.ones(1, np.float32), "v")
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value="v.bin")
        (tmp_path / "v.bin").write_bytes(np.ones(1, np.float32).tobytes())
        node.attribute.append(helper.make_attribute("value", t))
    else:
        node.attribute.append(helper.make_attribute("value", value))
    nodes = [node, helper.make_node("Add", ["x", "c"], ["y"])]
    _save(tmp_path, nodes, [_vi("x", [2])], [_vi("y", [2])], [_ints("s", [2])])
    out = _run(tmp_path, "import", "model.onnx", "--json")
    assert out.code == 3 and "ConstantOfShape" in out.stderr, out.stderr


def test_model_input_without_element_type_is_an_invalid_model(tmp_path):
    """Found by the long run (seed 1, mutant 401): ``elem_type 0`` on the MLP's input was an
    internal error (KeyError) in the measuring onnxruntime run."""
    import onnx

    model = onnx.load(str(MLP))
    model.graph.input[0].type.tensor_type.elem_type = 0
    onnx.save(model, str(tmp_path / "model.onnx"))
    for args in (["import", "model.onnx"], ["partition", "model.onnx", "-k", "2"]):
        out = _run(tmp_path, *args)
        assert out.code == 3 and "no valid element type" in out.stderr, out.stderr


def test_input_dimension_beyond_any_memory_is_a_resource_limit(tmp_path):
    """Found by the long run (seed 1, mutant 1126): a 2**62 input dimension made the
    measuring onnxruntime run allocate its sample (ValueError: array is too big)."""
    import onnx

    model = onnx.load(str(MLP))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2**62
    onnx.save(model, str(tmp_path / "model.onnx"))
    out = _run(tmp_path, "import", "model.onnx")
    assert out.code == 5 and "over the limit" in out.stderr, out.stderr


def test_value_info_of_the_wrong_rank_is_refused_at_neuron_export(tmp_path):
    """Found by the long run (seed 1, mutants 1125 and 1231): a value_info declaring
    ``[2]`` for a layer's ``[1, 32]`` output was an IndexError in the neuron exporter."""
    import onnx

    model = onnx.load(str(MLP))
    name = next(n.output[0] for n in model.graph.node if n.op_type == "Relu")
    model.graph.value_info.append(_vi(name, [2]))
    onnx.save(model, str(tmp_path / "model.onnx"))
    args = ["-k", "2", "-p", "vertical", "--granularity", "neuron", "-o", "plan.json"]
    out = _run(tmp_path, "partition", "model.onnx", *args)
    assert out.code == 0, out.stderr
    out = _run(tmp_path, "export", "model.onnx", "plan.json", "-o", "split")
    assert out.code == 3 and "no axis 1 to split" in out.stderr, out.stderr
