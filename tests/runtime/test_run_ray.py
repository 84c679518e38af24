"""``dnnpart run`` on one local Ray (started once for this module, shut down at its end):
outputs equal the whole model's, bytes per link equal the manifest's, samples stream in
order, and a lost device (``--fail``, or its process killed) costs no output."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import models
import numpy as np
import pytest
from click.testing import CliRunner

import dnnpart
from dnnpart.cli import main
from dnnpart.errors import InvalidModelError, UsageError
from dnnpart.exporters import export
from dnnpart.runtime import Executor, RunSession, run

pytest.importorskip("onnxruntime")
ray = pytest.importorskip("ray", reason="dnnpart run needs Ray (pip install 'dnnpart[ray]')")

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"
DIGITS = ROOT / "examples" / "mlp" / "digits_test.npz"


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for every test here, started the way ``dnnpart run`` starts it
    (logical CPUs: at least one per actor of the k = 3 splits)."""
    from dnnpart.runtime._cluster import connect

    assert not ray.is_initialized()
    connect(num_cpus=3)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """Layer and neuron splits of the example MLP and of a residual conv net, k = 2 and 3."""
    tmp = tmp_path_factory.mktemp("run")
    res = models.save(models.residual_net(), tmp)
    mlp = tmp / "mlp.onnx"  # beside the splits, where verify and run find it by themselves
    shutil.copyfile(MLP, mlp)
    out = {}
    for name, model, gran, k in [
        ("mlp-layer-2", mlp, "layer", 2),
        ("mlp-neuron-3", mlp, "neuron", 3),
        ("res-layer-3", res, "layer", 3),
        ("res-neuron-2", res, "neuron", 2),
    ]:
        plan = dnnpart.partition(dnnpart.load(model), k=k, method="metis", granularity=gran)
        export(model, plan, tmp / name)
        out[name] = tmp / name
    return out


def _per_link(folder) -> dict[tuple[str, str], int]:
    m = json.loads((Path(folder) / "manifest.json").read_text())
    names = [d["name"] for d in m["devices"]["device"]]
    links: dict[tuple[str, str], int] = {}
    for t in m["transfers"]:
        key = (names[t["from"]], names[t["to"]])
        links[key] = links.get(key, 0) + t["bytes"]
    return links


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp-layer-2", "mlp-neuron-3", "res-layer-3", "res-neuron-2"])
def test_outputs_equal_the_whole_model_and_bytes_the_manifest(cluster, splits, name):
    folder = splits[name]
    n = 6
    report = run(folder, samples=n, compare=True, in_flight=3)
    assert report.ok, report.problems
    out = report.outputs["output" if "res" in name else "probabilities"]
    assert report.samples == n and out.shape[0] == n
    assert report.bytes_measured == report.bytes_planned
    assert report.reference_throughput_per_s > 0 and report.max_abs_err is not None
    measured = {(x["from"], x["to"]): x["bytes"] for x in report.links if x["bytes"]}
    assert measured == {key: b * n for key, b in _per_link(folder).items()}
    assert all(d["samples"] in (0, n) for d in report.devices)


def test_a_local_ray_passes_activations_inline_not_through_its_object_store(cluster):
    """A local Ray started by ``connect`` keeps results up to INLINE_BYTES out of the
    shared-memory store (no node holds them: they travel in Ray's messages; Ray's own
    default would store anything over 100 KiB); larger ones go to the store."""
    from dnnpart.runtime._cluster import INLINE_BYTES

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self, n):
            return np.ones(n, np.float32)

    maker = Maker.remote()
    floats = [1 << 18, INLINE_BYTES // 4 - 1024, INLINE_BYTES // 4 + 1024]
    mib, under, over = refs = [maker.make.remote(n) for n in floats]
    assert [a.nbytes for a in ray.get(refs)] == [4 * n for n in floats]
    where = ray.experimental.get_object_locations(refs)
    assert where[mib]["node_ids"] == [] and where[mib]["object_size"] > 1 << 20
    assert where[under]["node_ids"] == []
    assert where[over]["node_ids"] != []
    ray.kill(maker)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Splits of a residual net whose activations (64 KiB, 16 KiB inputs) are large enough
    to travel through shared memory."""
    tmp = tmp_path_factory.mktemp("wide")
    res = models.save(models.residual_net(16, image=32), tmp)
    out = {}
    for gran, k in (("layer", 2), ("neuron", 3)):
        plan = dnnpart.partition(dnnpart.load(res), k=k, method="metis", granularity=gran)
        export(res, plan, tmp / f"{gran}-{k}")
        out[f"{gran}-{k}"] = tmp / f"{gran}-{k}"
    return out


def _shm_leftovers() -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith("dnnpart-links-")]


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
@pytest.mark.parametrize("name", ["layer-2", "neuron-3"])
def test_a_local_run_passes_large_activations_through_shared_memory(cluster, wide, name):
    """More samples than slots (in flight), in batches, some of them through a loss:
    outputs equal the whole model's, bytes the plan's, and no file is left in /dev/shm."""
    folder = wide[name]
    before = _shm_leftovers()
    report = run(folder, samples=11, compare=True, in_flight=4, batch=2)
    assert report.ok, report.problems
    assert report.samples == 11 and report.bytes_measured == report.bytes_planned
    links = [e["detail"] for e in report.events if e["kind"] == "links"]
    assert len(links) == 1 and links[0].startswith("activations through shared memory")
    lossy = run(folder, samples=11, compare=True, in_flight=4, fail=("dev1", 3))
    assert lossy.ok, lossy.problems
    np.testing.assert_allclose(
        lossy.outputs["output"], report.outputs["output"], rtol=1e-5, atol=1e-5
    )
    kinds = [e["kind"] for e in lossy.events]
    assert kinds.count("links") == 2 and kinds.index("lost") < len(kinds) - kinds[::-1].index(
        "links"
    )
    assert _shm_leftovers() == before


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_large_model_outputs_come_back_through_shared_memory_and_are_the_callers(cluster, tmp_path):
    """A transformer block's (1, 64, 64) output (16 KiB) comes back through the links; the
    outputs a caller holds stay right after their slots are written again (3 rounds of
    in_flight samples)."""
    from dnnpart.runtime._shared import SharedArray

    block = models.save(models.transformer_block(64, 64, 4, 128), tmp_path)
    plan = dnnpart.partition(dnnpart.load(block), k=2, method="metis", granularity="layer")
    export(block, plan, tmp_path / "split")
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((1, 64, 64)).astype(np.float32)} for _ in range(12)]
    with RunSession(tmp_path / "split", in_flight=4) as session:
        session.submit_many(feeds)
        got = list(session)
        shared = [
            type(v) is SharedArray
            for _, _, records in session.records
            for r in records
            for v in r.get("outputs", {}).values()
        ]
    assert len(shared) == 12 and all(shared)
    ex = Executor(tmp_path / "split")
    assert [index for index, _ in got] == list(range(12))
    for (_, out), feed in zip(got, feeds, strict=True):
        (name,) = out
        assert out[name].flags.writeable
        np.testing.assert_allclose(out[name], ex.run(feed)[0][name], rtol=1e-5, atol=1e-5)


def test_samples_stream_in_input_order(cluster, splits):
    folder = splits["mlp-neuron-3"]
    x = np.load(DIGITS)["x"][:12].astype(np.float32)
    ex = Executor(folder)
    name = ex.input_names[0]
    with RunSession(folder, in_flight=4) as session:
        first = [session.submit({name: x[i : i + 1]}) for i in range(5)]
        got = []
        for index, out in session:
            got.append(index)
            if index == 2:  # submit while earlier samples are still in flight
                first += [session.submit({name: x[i : i + 1]}) for i in range(5, 12)]
            want, _ = ex.run({name: x[index : index + 1]})
            for key in want:
                np.testing.assert_allclose(out[key], want[key], rtol=1e-6, atol=1e-6)
        assert session.pending() == 0
    assert got == first == list(range(12))


def test_run_prints_the_measured_time_per_sample_beside_the_plans(cluster, splits):
    folder = splits["mlp-layer-2"]
    plan = json.loads((Path(folder) / "manifest.json").read_text())["plan"]
    predicted = plan["scores"]["time_per_sample_s"]
    assert predicted > 0
    result = CliRunner().invoke(main, ["run", str(folder), "--samples", "6"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # the console may wrap the line
    found = re.search(
        r"time per sample ([\d.]+) ms; the plan predicted ([\d.]+) ms "
        r"\(measured / predicted ([\d.]+)\)",
        text,
    )
    assert found, text
    measured, shown, ratio = map(float, found.groups())
    assert shown == pytest.approx(predicted * 1e3, abs=1e-3)
    assert ratio == pytest.approx(measured / (predicted * 1e3), rel=0.01, abs=0.01)
    report = run(folder, samples=4)
    assert report.predicted_time_per_sample_s == predicted


def test_fail_option_loses_a_device_and_every_input_gets_one_correct_output(
    cluster, splits, tmp_path
):
    out = tmp_path / "outputs.npz"
    x = np.load(DIGITS)["x"][:60].astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    args = ["run", str(splits["mlp-neuron-3"]), "--inputs", str(tmp_path / "x.npz"), "--compare"]
    args += ["--fail", "dev1:20", "-o", str(out), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["samples"] == 60 and doc["max_abs_err"] < 1e-4
    lost = [e for e in doc["events"] if e["kind"] == "lost"]
    assert [e["device"] for e in lost] == ["dev1"]
    replanned = next(e for e in doc["events"] if e["kind"] == "replanned")
    assert "dev0:" in replanned["detail"]
    moves = replanned["moves"]  # survivors kept their parts: only dev1's vertices moved
    assert moves["how"] == "kept" and moves["moved"] == moves["from_lost"] > 0
    assert {f["from"] for f in moves["flows"]} == {"dev1"}
    assert f"{moves['moved']} of {moves['vertices']} vertices moved" in replanned["detail"]
    import onnxruntime as ort

    probs = np.load(out)["probabilities"]  # in input order
    whole = ort.InferenceSession(str(MLP), providers=["CPUExecutionProvider"])
    want = whole.run(["probabilities"], {"input": x})[0]
    assert probs.shape == want.shape == (60, 10)
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-6)


def test_batches_give_every_input_one_correct_output_in_order_through_a_loss(cluster, splits):
    """Samples travel in batches of 3 (one Ray call per call of the plan), the tail batch
    shorter; a device lost mid-stream: every input still gets one output, in order, equal
    to the whole model's, and every sample moved the planned bytes."""
    folder = splits["res-layer-3"]
    n = 17
    report = run(folder, samples=n, compare=True, in_flight=6, batch=3, fail=("dev1", 7))
    assert report.ok, report.problems
    assert report.samples == n and report.outputs["output"].shape[0] == n
    assert report.bytes_measured == report.bytes_planned
    assert [e["device"] for e in report.events if e["kind"] == "lost"] == ["dev1"]
    plain = run(folder, samples=n, in_flight=6, batch=3)
    np.testing.assert_allclose(plain.outputs["output"], report.outputs["output"], rtol=1e-6)
    measured = {(x["from"], x["to"]): x["bytes"] for x in plain.links if x["bytes"]}
    assert measured == {key: b * n for key, b in _per_link(folder).items()}
    with pytest.raises(UsageError, match="batch"):
        RunSession(folder, batch=0)


def test_a_sample_the_model_cannot_take_is_an_error_naming_the_stage(cluster, splits):
    """onnxruntime's failure inside an actor reaches the caller as dnnpart's typed error
    (exit 3 in the CLI), not as Ray's wrapper."""
    bad = {"input": np.zeros((1, 5, 8, 8), np.float32)}  # 5 channels, the net takes 4
    with RunSession(splits["res-layer-3"], in_flight=2) as session:
        session.submit(bad)
        with pytest.raises(
            InvalidModelError,
            match=r"_stage\d+\.onnx does not run on sample 0 \(inputs input \[1, 5, 8, 8\]; "
            r"onnxruntime: ",
        ):
            list(session)


def _stream_and_hurt(folder, n, hurt, **options):
    """Stream ``n`` random samples of the residual net through a session, calling
    ``hurt(session)`` after output 3; check every output against the local executor, in
    input order; return the session's events."""
    rng = np.random.default_rng(n)
    feeds = [{"input": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(n)]
    ex = Executor(folder)
    got = []
    with RunSession(folder, **options) as session:
        for f in feeds:
            session.submit(f)
        for index, out in session:
            got.append(index)
            want, _ = ex.run(feeds[index])
            np.testing.assert_allclose(out["output"], want["output"], rtol=1e-5, atol=1e-5)
            if index == 3:
                hurt(session)
        events = session.events
    assert got == list(range(n))
    return events


def _actor_pid(session, device: int) -> int:
    return ray.get(session._split.actors[device].ping.remote())


@pytest.mark.slow
def test_killing_an_actor_process_mid_stream_is_survived(cluster, splits):
    folder = splits["res-layer-3"]
    device = json.loads((folder / "manifest.json").read_text())["stages"][0]["device"]
    events = _stream_and_hurt(
        folder, 16, lambda s: os.kill(_actor_pid(s, device), signal.SIGKILL), in_flight=4
    )
    kinds = [e["kind"] for e in events]
    assert kinds.index("lost") < kinds.index("replanned") < kinds.index("resumed")


def test_losing_every_device_exits_7_and_writes_nothing(cluster, tmp_path):
    res = models.save(models.residual_net(), tmp_path)
    plan = dnnpart.partition(dnnpart.load(res), k=1, method="vertical", granularity="layer")
    export(res, plan, tmp_path / "one")
    out = tmp_path / "out.npz"
    args = ["run", str(tmp_path / "one"), "--samples", "8", "--fail", "0:2", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 7, result.output
    assert "every device is lost" in result.output and "completed" in result.output
    assert not out.exists() and not list(tmp_path.glob(".outputs-*"))


def test_unreachable_address_fails_fast_naming_it(splits):
    t = time.perf_counter()
    args = ["run", str(splits["mlp-layer-2"]), "--address", "127.0.0.1:9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "127.0.0.1:9" in result.output and time.perf_counter() - t < 10


def test_a_tampered_manifest_is_refused_before_ray_starts(tmp_path, splits):
    bad = tmp_path / "bad"
    bad.mkdir()
    m = json.loads((splits["mlp-layer-2"] / "manifest.json").read_text())
    m["stages"][0]["file"] = "../../etc/passwd"
    (bad / "manifest.json").write_text(json.dumps(m))
    result = CliRunner().invoke(main, ["run", str(bad)])
    assert result.exit_code == 3 and "file name '../../etc/passwd'" in result.output


@pytest.mark.slow
def test_a_hung_device_is_caught_by_the_heartbeat(cluster, splits):
    events = _stream_and_hurt(
        splits["res-neuron-2"],
        8,
        lambda s: os.kill(_actor_pid(s, 1), signal.SIGSTOP),
        in_flight=2,
        heartbeat=3.0,
    )
    lost = [e for e in events if e["kind"] == "lost"]
    assert [e["device"] for e in lost] == ["dev1"]
    assert "no answer within 3 s" in lost[0]["detail"]


def test_a_split_runs_without_its_model_and_a_rehearsed_loss_asks_for_it(cluster, tmp_path):
    """Random samples come from the split itself (types from the sub-models, shapes from
    the plan); only re-planning needs the original model, refused before Ray starts."""
    plan = dnnpart.partition(dnnpart.load(MLP), k=2, method="metis", granularity="layer")
    export(MLP, plan, tmp_path / "split")  # far from the model: the manifest names none
    report = run(tmp_path / "split", samples=3)
    assert report.ok and report.outputs["probabilities"].shape == (3, 10)
    assert np.allclose(report.outputs["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "split"), "--fail", "0:1"])
    assert result.exit_code == 2 and "--model" in result.output
