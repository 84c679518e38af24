"""``dnnpart profile``: per-layer times from onnxruntime's node profiling, written as a
profiled graph that partition reads (dnnpart.importers._ort_profile)."""

from __future__ import annotations

import json
import statistics
import time

import pytest
from click.testing import CliRunner

import dnnpart
from dnnpart.cli import main
from dnnpart.devices import Device, DeviceSet
from dnnpart.errors import UsageError
from dnnpart.importers._ort_profile import _feeds, _session, profile_layers, profiled_json
from tests import models


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("profile")
    return str(models.save(models.residual_net(channels=48, inputs=8, image=48), tmp, "res.onnx"))


@pytest.fixture(scope="module")
def times(resnet):
    return profile_layers(resnet, runs=5, warmup=1)


def test_every_layer_gets_its_kernels_time(times):
    names = [layer.name for layer in times.graph.layers]
    assert names[:3] == ["conv0", "relu0", "conv1"]
    by_name = dict(zip(names, times.seconds, strict=True))
    # graph optimisations on, as in the split's sessions: each Relu (and the residual Add)
    # is fused into the convolution before it, which pays the fused kernel's time
    assert all(by_name[n] > 0 for n in ("conv0", "conv1", "conv2", "fc"))
    assert all(by_name[n] == 0 for n in ("relu0", "relu1", "residual", "relu2"))
    # the convolutions do nearly all the work
    conv = [
        s
        for layer, s in zip(times.graph.layers, times.seconds, strict=True)
        if layer.op_type == "Conv"
    ]
    assert sum(conv) > 0.5 * times.seconds.sum()


def test_fused_kernels_are_paid_by_the_node_they_start_from(tmp_path):
    import onnx
    import onnxruntime as ort

    from dnnpart._ort import session_options
    from dnnpart.importers._ort_fused import kernel_owners

    cases = {
        # NCHWc convolutions under new names, Relu and the residual Add fused in
        "res": (models.residual_net(channels=48, inputs=8, image=48), {"conv0", "conv2", "fc"}),
        # Gemm + Relu -> "fused gemm0"
        "mlp": (models.mlp_gemm((6, 5, 3)), {"gemm0", "gemm1"}),
        # MatMul + Add -> "q/MatMulAddFusion" (q, k and v read the same tensor)
        "block": (models.transformer_block(), {"q", "k", "v", "residual2"}),
    }
    for name, (model, must) in cases.items():
        path = str(models.save(model, tmp_path, f"{name}.onnx"))
        optimized = str(tmp_path / f"{name}.opt.onnx")
        opts = session_options(1, optimized_model=optimized)
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        opt = onnx.load(optimized)
        owners = kernel_owners(onnx.load(path), opt)
        originals = {n.name for n in onnx.load(path).graph.node}
        assert set(owners) == {n.name for n in opt.graph.node}, name  # every kernel is paid
        assert set(owners.values()) <= originals, name
        assert must <= set(owners.values()), name
        for kernel, node in owners.items():  # a kernel that kept a node's name is that node
            if kernel in originals:
                assert node == kernel
            if "/" in kernel:
                assert node == kernel.split("/")[0]


def test_layer_times_add_up_to_each_profiled_run(times):
    # per run, from the same trace: the layers' kernels are the run but for the executor
    # (a model of a few ms per run, so that the executor's fixed cost stays small)
    assert 0.9 <= times.kernel_share <= 1.0


def test_unnamed_nodes_are_profiled_too(tmp_path):
    model = models.mlp_gemm((6, 5, 3))
    for node in model.graph.node:
        node.name = ""
    path = models.save(model, tmp_path)
    t = profile_layers(path, runs=2, warmup=0)
    assert len(t.seconds) == len(t.graph.layers)
    gemms = [
        s for layer, s in zip(t.graph.layers, t.seconds, strict=True) if layer.op_type == "Gemm"
    ]
    assert len(gemms) == 2 and all(s > 0 for s in gemms)


def test_bad_counts_are_usage_errors(resnet):
    with pytest.raises(UsageError, match="runs"):
        profile_layers(resnet, runs=0)
    with pytest.raises(UsageError, match="threads"):
        profile_layers(resnet, threads=0)


def test_profiled_json_scales_to_the_devices_and_is_read_back(times, tmp_path):
    devices = DeviceSet((Device("fast", 4e12), Device("here", 1e12, memory=1e9)))
    doc = profiled_json(times, devices, reference="here")
    assert doc["maxFPGAs"] == 2 and doc["maxCPUs"] == 0 and doc["maxSizePerFPGA"] == 1e9
    # measured here (1 TFLOPS): the file holds the time on the fastest device (4 TFLOPS)
    got = [n["fpgaLatency"] for n in doc["nodes"]]
    assert got == pytest.approx(times.seconds / 4)
    conv0 = times.graph.layers[0]
    assert doc["nodes"][0]["size"] == conv0.param_bytes + conv0.activation_bytes
    edge = next(e for e in doc["edges"] if e["sourceId"] == 0)
    link = devices.default_link
    assert edge["cost"] == pytest.approx(link.latency + edge["size"] / link.bandwidth)
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(doc))
    graph = dnnpart.load(path)
    assert [layer.name for layer in graph.layers] == [layer.name for layer in times.graph.layers]
    plan = dnnpart.partition(graph, devices=devices, method="pipeline")
    # the pipeline's objective is the scorer's: max-load on these speeds
    assert plan.scores["max_load"] == pytest.approx(plan.scores["time_per_sample_s"])
    assert plan.scores["time_per_sample_s"] <= plan.baseline["time_per_sample_s"]
    # the leaderboard's ratio to vertical on measured times
    assert plan.ratios["max_load"] == pytest.approx(
        plan.scores["max_load"] / plan.baseline["max_load"]
    )
    with pytest.raises(UsageError, match="reference"):
        profiled_json(times, devices, reference="nowhere")


def test_cli_profile_writes_a_plannable_file(resnet, tmp_path):
    out = tmp_path / "p.json"
    args = ["profile", resnet, "--runs", "2", "--warmup", "0", "-o", str(out), "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [x["name"] for x in doc["layers"]][:2] == ["conv0", "relu0"]
    assert CliRunner().invoke(main, args).exit_code == 6  # exists: --force
    res = CliRunner().invoke(main, ["partition", str(out), "-k", "2", "-p", "pipeline", "--json"])
    assert res.exit_code == 0, res.output
    assert (
        CliRunner()
        .invoke(main, [*args[:2], "--runs", "0", "-o", str(tmp_path / "x.json")])
        .exit_code
        == 2
    )


@pytest.mark.slow
def test_layer_times_add_up_to_a_whole_model_run(resnet):
    """The sum of the profiled layer times is within 10 % of one unprofiled whole-model run
    (medians; the machine is shared, so the best of three attempts counts)."""
    ratios = []
    for _ in range(3):
        t = profile_layers(resnet, runs=7, warmup=2)
        session = _session(resnet, 1, None)
        feeds = _feeds(resnet, t.graph, 0)
        for _ in range(2):
            session.run(None, feeds)
        runs = []
        for _ in range(7):
            start = time.perf_counter()
            session.run(None, feeds)
            runs.append(time.perf_counter() - start)
        ratios.append(t.seconds.sum() / statistics.median(runs))
        if abs(ratios[-1] - 1) <= 0.10:
            break
    assert min(abs(r - 1) for r in ratios) <= 0.10, ratios


def test_an_onnx_plan_on_measured_times_exports(resnet, times, tmp_path):
    out = tmp_path / "p.json"
    out.write_text(json.dumps(profiled_json(times)))
    plan_file = tmp_path / "plan.json"
    args = ["partition", resnet, "--profile", str(out), "-k", "2", "-p", "pipeline"]
    res = CliRunner().invoke(main, [*args, "-o", str(plan_file), "--json"])
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)["scores"]
    # the plan's time is the measured one: the slower stage of the two
    assert scores["max_load"] <= times.seconds.sum() + 1e-3
    assert scores["max_load"] >= times.seconds.max() - 1e-12
    res = CliRunner().invoke(main, ["export", resnet, str(plan_file), "-o", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    other = tmp_path / "other.json"
    doc = profiled_json(times)
    doc["nodes"] = doc["nodes"][:-1]
    doc["edges"] = [e for e in doc["edges"] if e["destId"] < len(doc["nodes"])]
    other.write_text(json.dumps(doc))
    res = CliRunner().invoke(main, [*args[:2], "--profile", str(other), "-k", "2"])
    assert res.exit_code == 2 and "profile has" in res.output
