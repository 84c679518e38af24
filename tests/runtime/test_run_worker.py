"""``dnnpart run`` without Ray: the calls of a sample and the device worker, chained in
this process, against the local executor; device-file placement fields; re-planning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import models
import numpy as np
import pytest

import dnnpart
from dnnpart.devices import DeviceSet
from dnnpart.errors import UsageError
from dnnpart.exporters import export
from dnnpart.runtime import Executor
from dnnpart.runtime._replan import replan, work_shift
from dnnpart.runtime._routes import Routes
from dnnpart.runtime._worker import FEED, DeviceWorker, plan_calls

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """MLP (neuron, k = 3) and the residual net (layer, k = 2) exported."""
    tmp = tmp_path_factory.mktemp("splits")
    res = models.save(models.residual_net(), tmp)
    mlp = tmp / "mlp.onnx"  # beside the splits, where verify and run find it by themselves
    shutil.copyfile(MLP, mlp)
    out = {}
    for name, model, gran, k in [("mlp", mlp, "neuron", 3), ("res", res, "layer", 2)]:
        plan = dnnpart.partition(dnnpart.load(model), k=k, method="metis", granularity=gran)
        export(model, plan, tmp / name)
        out[name] = (tmp / name, model)
    return out


def _chain(folder: Path, feed):
    """Run every call of one sample through in-process workers, passing outboxes the way
    the Ray driver does; returns the outputs and the bytes per link."""
    m = json.loads((folder / "manifest.json").read_text())
    routes = Routes(m)
    calls = plan_calls(m, routes)
    workers = []
    for d in range(routes.k):
        files = {}
        for s in m["stages"]:
            if s["device"] == d:
                files[s["file"]] = (folder / s["file"]).read_bytes()
        workers.append(DeviceWorker(m, d, files, 1))
    fed = [{} for _ in range(routes.k)]
    routes.place_inputs(feed, fed)
    inbox = [[] for _ in calls]
    values, link = {}, np.zeros((routes.k, routes.k), np.int64)
    for i, c in enumerate(calls):
        got = workers[c.device].step(0, i, fed[c.device] if c.first else None, *inbox[i])
        got = got if isinstance(got, tuple) else (got,)
        for box, dst in zip(got[:-1], c.dests, strict=True):
            inbox[c.consumer[dst]].append(box)
        record = got[-1]
        for dst, n in record["sent"].items():
            link[c.device, dst] += n
        if "outputs" in record:
            values[c.device] = record["outputs"]
    assert all(not w.stores for w in workers), "a device kept a finished sample"
    return routes.gather(values), link


def test_calls_send_every_outbox_to_a_later_call_of_its_receiver(splits):
    folder, _ = splits["mlp"]
    m = json.loads((folder / "manifest.json").read_text())
    calls = plan_calls(m, Routes(m))
    assert [c.stage for c in calls if c.stage != FEED] == m["order"]
    for i, c in enumerate(calls):
        for dst, j in c.consumer.items():
            assert j > i and calls[j].device == dst
            assert not any(calls[x].device == dst for x in range(i + 1, j))
    for d in {c.device for c in calls}:
        mine = [c for c in calls if c.device == d]
        assert mine[0].first and mine[-1].last
        assert sum(c.first for c in mine) == sum(c.last for c in mine) == 1


@pytest.mark.parametrize("name", ["mlp", "res"])
def test_workers_chained_compute_what_the_executor_does_and_send_its_bytes(splits, name):
    folder, _ = splits[name]
    ex = Executor(folder)
    rng = np.random.default_rng(1)
    shape = {"mlp": [1, 64], "res": [1, 4, 8, 8]}[name]
    feed = {ex.input_names[0]: rng.standard_normal(shape).astype(np.float32)}
    want, stats = ex.run(feed)
    got, link = _chain(folder, feed)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    np.testing.assert_array_equal(link, stats.link_bytes)
    m = ex.manifest
    per_link = np.zeros_like(link)
    for t in m["transfers"]:
        per_link[t["from"], t["to"]] += t["bytes"]
    np.testing.assert_array_equal(link, per_link)
    assert link.sum() == m["volume_bytes_planned"]


def test_link_seconds_are_the_receivers_wait_not_the_queue(splits):
    """A value sent while its receiver was busy with other samples costs the link nothing;
    one the idle receiver waited for costs the wait."""
    import time

    folder, _ = splits["res"]
    m = json.loads((folder / "manifest.json").read_text())
    routes = Routes(m)
    calls = plan_calls(m, routes)
    workers = [
        DeviceWorker(
            m,
            d,
            {s["file"]: (folder / s["file"]).read_bytes() for s in m["stages"] if s["device"] == d},
            1,
        )
        for d in range(routes.k)
    ]
    feed = {routes.input_names[0]: np.zeros((1, 4, 8, 8), np.float32)}
    fed = [{} for _ in range(routes.k)]
    routes.place_inputs(feed, fed)
    i = next(i for i, c in enumerate(calls) if c.dests)
    src = calls[i]
    dst, j = next(iter(src.consumer.items()))
    # run the receiver's calls before j (if any) and the sender's call
    for x in range(j):
        c = calls[x]
        if c.device == dst or x == i:
            workers[c.device].step(0, x, fed[c.device] if c.first else None)
    got = workers[src.device].step(0, i, fed[src.device] if src.first else None)
    box = got[list(src.dests).index(dst)]
    receiver = workers[dst]
    before = dict(receiver.stores.get(0, {}))  # the receiver's sample store before call j
    now = time.time()
    for free, sent, want in [(now, now - 10.0, 0.0), (now - 10.0, now - 4.0, 4.0)]:
        receiver.free_since = free
        receiver.stores[0] = dict(before)
        rec = receiver.step(0, j, fed[dst] if calls[j].first else None, (sent, box[1], box[2]))
        rec = rec[-1] if isinstance(rec, tuple) else rec
        assert rec["waited"][src.device] == pytest.approx(want, abs=0.5)


def test_manifest_names_the_model_relative_to_the_split(splits):
    folder, model = splits["res"]
    m = json.loads((folder / "manifest.json").read_text())
    assert not Path(m["model"]["file"]).is_absolute()
    assert (folder.parent / m["model"]["file"]).resolve() == Path(model).resolve()


def test_device_file_places_actors_and_survivors_keep_their_links():
    spec = {
        "device": [
            {"name": "a", "threads": 2, "node": "10.0.0.7"},
            {"name": "b", "resources": {"jetson": 1}},
            {"name": "c"},
        ],
        "link": {"pair": [{"between": ["b", "c"], "bandwidth": 5.0}]},
    }
    devs = DeviceSet.from_dict(spec)
    assert devs.devices[0].threads == 2 and devs.devices[1].resources == (("jetson", 1),)
    assert DeviceSet.from_dict(devs.to_dict()) == devs
    left = devs.without([0])
    assert left.names == ("b", "c") and left.link(0, 1).bandwidth == 5.0
    with pytest.raises(UsageError, match=r"device\[0\].*threads"):
        DeviceSet.from_dict({"device": [{"name": "a", "threads": 0}]})
    with pytest.raises(UsageError, match="no device would be left"):
        devs.without([0, 1, 2])


def test_replan_splits_over_the_survivors_and_says_what_moved(splits, tmp_path):
    folder, model = splits["res"]
    m = json.loads((folder / "manifest.json").read_text())
    done = replan(model, m, [1], tmp_path / "new")
    new = done.manifest
    assert new["k"] == 1 and [d["name"] for d in new["devices"]["device"]] == ["dev0"]
    assert sum(s["macs"] for s in new["stages"]) == sum(s["macs"] for s in m["stages"])
    assert "dev0:" in work_shift(m, new)
    # one survivor: it keeps its vertices and takes every one of the lost device's
    assert done.moves["how"] == "kept" and done.moves["moved"] == done.moves["from_lost"] > 0
    assert [(f["from"], f["to"]) for f in done.moves["flows"]] == [("dev1", "dev0")]


def test_replan_keeps_the_input_shapes_the_split_was_made_for(tmp_path):
    """A model with open height and width (examples/corpus/cnn) re-planned after a loss:
    the new split is made at the plan's shapes (it could not be made without them)."""
    model = ROOT / "examples" / "corpus" / "cnn.onnx"
    graph = dnnpart.load(model, input_shapes={"x": [1, 3, 32, 32]})
    plan = dnnpart.partition(graph, k=3, method="metis", granularity="layer")
    old = export(model, plan, tmp_path / "old")
    new = replan(model, old, [2], tmp_path / "new").manifest
    assert new["k"] == 2 and new["model"]["input_shapes"] == {"x": [1, 3, 32, 32]}
    assert sum(s["macs"] for s in new["stages"]) == sum(s["macs"] for s in old["stages"])
    x = np.load(ROOT / "examples" / "corpus" / "cnn.npz")["x"]
    out, _ = Executor(tmp_path / "new").run({"x": x})
    assert next(iter(out.values())).shape == (1, 10)


def test_declared_output_bytes_count_an_open_dimension_as_one():
    from types import SimpleNamespace as Arg

    from dnnpart.runtime._worker import _declared_bytes

    assert _declared_bytes(Arg(shape=["batch", 2, 64, 64], type="tensor(float)")) == 32768
    assert _declared_bytes(Arg(shape=[3, None], type="tensor(int64)")) == 24
    assert _declared_bytes(Arg(shape=[4], type="tensor(string)")) == 0  # no fixed size
    assert _declared_bytes(None) == 0
