"""One set of onnxruntime session options (dnnpart._ort): the profile measures layer times
in sessions built exactly like the ones that run the split."""

from __future__ import annotations

import json

import models
import pytest

import dnnpart
from dnnpart._ort import option_values, session_options
from dnnpart.exporters import export
from dnnpart.importers._ort_profile import profile_layers, profiled_json
from dnnpart.runtime import Executor
from dnnpart.runtime._worker import DeviceWorker

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def built(monkeypatch):
    """The options of every onnxruntime session made while the fixture is on."""
    seen: list[dict] = []
    real = ort.InferenceSession

    def recording(path, sess_options=None, *args, **kwargs):
        seen.append(option_values(sess_options))
        return real(path, sess_options, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    return seen


def test_profile_and_runtime_build_identical_session_options(built, tmp_path):
    model = models.save(models.residual_net(channels=16, image=16), tmp_path)
    times = profile_layers(model, runs=1, warmup=0, threads=1)
    profiled = list(built)
    assert len(profiled) == 1
    plan = dnnpart.partition(dnnpart.load(model), k=2, method="metis", granularity="layer")
    export(model, plan, tmp_path / "split")
    built.clear()
    Executor(tmp_path / "split", threads=1)  # verify's executor
    manifest = json.loads((tmp_path / "split" / "manifest.json").read_text())
    for d in range(2):  # run's device actors (the worker is the actor's body)
        files = {
            s["file"]: (tmp_path / "split" / s["file"]).read_bytes()
            for s in manifest["stages"]
            if s["device"] == d
        }
        DeviceWorker(manifest, d, files, 1)
    assert len(built) >= 2 * len(manifest["stages"])
    assert all(b == profiled[0] for b in built), (profiled[0], built)
    # graph optimisations on, one intra-op thread each, and recorded in the profile
    want = option_values(session_options(1))
    assert profiled[0] == want
    assert "ENABLE_ALL" in want["graph_optimization_level"]
    assert want["intra_op_num_threads"] == "1" and want["inter_op_num_threads"] == "1"
    assert profiled_json(times)["dnnpart"]["session"] == want


def test_profiling_and_saving_the_optimised_graph_change_nothing_else(tmp_path):
    plain = option_values(session_options(2))
    extra = session_options(2, profile_prefix=str(tmp_path / "t"), optimized_model="x.onnx")
    assert option_values(extra) == plain
    assert extra.enable_profiling and not session_options(2).enable_profiling
    # threads=None leaves onnxruntime's own thread defaults
    assert option_values(session_options(None))["intra_op_num_threads"] == "0"
