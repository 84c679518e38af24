"""The leaderboard runner: isolation of faulty partitioners, time limits, repeats, options."""

from __future__ import annotations

import time

import lb_faulty_partitioners as faulty
import models
import pytest

from dnnpart.devices import DeviceSet
from dnnpart.errors import UsageError
from dnnpart.plugins import get_registry
from dnnpart.report import run_leaderboard
from dnnpart.report._rows import load_partitioner, plan_tasks

TIMEOUT = 3.0


@pytest.fixture(scope="module")
def tiny_mlp(tmp_path_factory):
    return str(models.save(models.mlp_matmul((6, 5, 4, 3)), tmp_path_factory.mktemp("lb")))


def by_name(rows):
    return {r.partitioner: r for r in rows}


@pytest.mark.slow
def test_faulty_partitioners_fail_only_their_rows(tiny_mlp, capfd):
    # Good partitioners come after every kind of fault, on one worker (jobs=1): each must
    # still run, on a replacement worker where the fault killed the previous one.
    names = ["lb-raise", "vertical", "lb-hang", "lb-short", "lb-crash", "lb-exit", "metis"]
    names.append("lb-stripes")
    start = time.monotonic()
    rows = run_leaderboard(
        [tiny_mlp], [2], names, timeout=TIMEOUT, jobs=1, extra_partitioners=faulty.SPECS
    )
    elapsed = time.monotonic() - start
    assert [r.partitioner for r in rows] == names  # one row each, in task order
    got = by_name(rows)

    assert got["lb-raise"].status == "failed"
    assert got["lb-raise"].reason == "ValueError: lb-raise always fails"
    assert got["lb-hang"].status == "timeout"
    assert f"{TIMEOUT:g} s" in got["lb-hang"].reason
    assert got["lb-short"].status == "failed"
    assert "expected (" in got["lb-short"].reason and "lb-short" in got["lb-short"].reason
    assert got["lb-crash"].status == "failed"
    assert got["lb-crash"].reason == "worker process exited with code 7"
    assert got["lb-exit"].status == "failed" and "sys.exit(3)" in got["lb-exit"].reason
    for bad in ("lb-raise", "lb-hang", "lb-short", "lb-crash", "lb-exit"):
        assert got[bad].scores is None and got[bad].seconds is None

    for good in ("vertical", "metis", "lb-stripes"):
        row = got[good]
        assert row.status == "ok", row.reason
        assert row.reason is None
        assert row.scores["k"] == 2 and row.baseline is not None
        assert row.seconds is not None and row.seconds >= 0
    # vertical is its own baseline
    assert got["vertical"].ratios["volume"] in (1.0, None)
    assert got["vertical"].scores == got["vertical"].baseline
    assert got["lb-stripes"].plugin == "lb_faulty_partitioners"
    assert got["vertical"].plugin == "dnnpart"
    # the hang was cut at its limit, not waited out (it never ends by itself, so any
    # finite bound shows the cut; the margin is for the other rows on a loaded machine)
    assert elapsed < TIMEOUT + 180

    out, err = capfd.readouterr()
    assert "lb-stripes chatter" not in out  # stdout is kept for data (--json)
    assert "lb-stripes chatter" in err


def test_reused_workers_match_fresh_processes(tiny_mlp):
    names = ["metis", "lb-stripes"]
    kw = dict(extra_partitioners=faulty.SPECS, jobs=1)
    reused = run_leaderboard([tiny_mlp], [2], names, **kw)
    fresh = run_leaderboard([tiny_mlp], [2], names, max_tasks_per_worker=1, **kw)
    assert len(reused) == len(fresh) == 2
    for a, b in zip(reused, fresh, strict=True):
        assert (a.partitioner, a.k, a.status) == (b.partitioner, b.k, "ok")
        assert a.scores == b.scores


def test_repeat_reports_best_or_median(tiny_mlp):
    kw = dict(repeat=3, jobs=1)
    best = run_leaderboard([tiny_mlp], [2], ["metis"], **kw)[0]
    median = run_leaderboard([tiny_mlp], [2], ["metis"], statistic="median", **kw)[0]
    assert len(best.seconds_all) == 3 and best.seconds == min(best.seconds_all)
    assert median.seconds == sorted(median.seconds_all)[1]
    assert best.scores == median.scores  # deterministic for a seed


def test_two_jobs_and_layer_granularity(tiny_mlp):
    rows = run_leaderboard(
        [tiny_mlp], [2], ["vertical", "metis"], granularity=("neuron", "layer"), jobs=2
    )
    assert {(r.granularity, r.partitioner) for r in rows} == {
        (g, p) for g in ("neuron", "layer") for p in ("vertical", "metis")
    }
    assert all(r.status == "ok" for r in rows)
    layer = [r for r in rows if r.granularity == "layer"]
    assert all(r.scores["time_per_sample_s"] is not None for r in layer)


def test_unreadable_model_fails_its_rows(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    rows = run_leaderboard([str(bad)], [2], ["vertical"], jobs=1)
    assert [r.status for r in rows] == ["failed"]
    assert rows[0].reason.startswith("loading the model:")


def test_heterogeneous_devices_set_k(tiny_mlp, tmp_path):
    f = tmp_path / "dev.toml"
    f.write_text(
        '[[device]]\nname = "big"\nspeed = 3e12\n[[device]]\nname = "small"\nspeed = 1e12\n'
    )
    devices = DeviceSet.from_toml(f)
    rows = run_leaderboard([tiny_mlp], [], ["vertical"], devices=devices, jobs=1)
    assert rows[0].status == "ok", rows[0].reason
    assert rows[0].k == 2 and rows[0].scores["device_names"] == ["big", "small"]
    with pytest.raises(UsageError, match="device file lists 2"):
        run_leaderboard([tiny_mlp], [3], ["vertical"], devices=devices)


def test_plan_tasks_skips_unsupported_granularity(tiny_mlp):
    classes = dict(get_registry().partitioners)
    classes["lb-layer-only"] = faulty.LayerOnly
    tasks, settled = plan_tasks(
        [tiny_mlp], [2, 4], ["vertical", "lb-layer-only"], registry_classes=classes
    )
    assert [(t.k, t.partitioner) for t in tasks] == [(2, "vertical"), (4, "vertical")]
    assert [(r.k, r.status) for r in settled] == [(2, "skipped"), (4, "skipped")]
    assert settled[0].reason == "does not support neuron granularity"
    # with "all" an unsupported partitioner is simply left out
    tasks, settled = plan_tasks([tiny_mlp], [2], "all", registry_classes=classes)
    assert "lb-layer-only" not in {t.partitioner for t in tasks} and not settled
    tasks, _ = plan_tasks([tiny_mlp], [2], "all", granularity="layer", registry_classes=classes)
    assert "lb-layer-only" in {t.partitioner for t in tasks}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ks=[0]), "positive integer"),
        (dict(ks=[]), "at least one k"),
        (dict(partitioners=["nope"]), "unknown partitioner 'nope'"),
        (dict(models=["/no/such/model.onnx"]), "model not found"),
        (dict(granularity="edge"), "granularity"),
        (dict(repeat=0), "repeat"),
        (dict(timeout=0), "timeout"),
        (dict(statistic="mean"), "statistic"),
        (dict(extra_partitioners=["no_colon"]), "package.module:Class"),
        (dict(extra_partitioners=["lb_faulty_partitioners:Nope"]), "cannot import"),
    ],
)
def test_usage_errors_before_any_process(tiny_mlp, kwargs, match):
    args = dict(models=[tiny_mlp], ks=[2], partitioners=["vertical"])
    args.update(kwargs)
    with pytest.raises(UsageError, match=match):
        run_leaderboard(args.pop("models"), args.pop("ks"), args.pop("partitioners"), **args)


def test_load_partitioner_by_path_and_class():
    assert load_partitioner("lb_faulty_partitioners:Stripes") is faulty.Stripes
    assert load_partitioner(faulty.Stripes) is faulty.Stripes
    with pytest.raises(UsageError, match="not a partitioner"):
        load_partitioner("lb_faulty_partitioners:ALL")


@pytest.mark.slow
def test_accuracy_and_cross_pruning_reach_every_row(tmp_path):
    """--data / --cross-prune go to every run; the tables show the accuracy drop and the
    sparse volume only when a row has them."""
    import numpy as np

    from dnnpart.report import to_markdown

    path = str(models.save(models.mlp_matmul((6, 5, 4, 3), batch="N"), tmp_path))
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, input=rng.standard_normal((24, 6)).astype(np.float32), y=rng.integers(0, 3, 24))
    measure = {"data": str(data), "cross_prune": "dynamic", "accuracy_budget": 0.5}
    rows = run_leaderboard([path], [2], ["vertical"], jobs=1, measure=measure)
    assert rows[0].status == "ok", rows[0].reason
    scores = rows[0].scores
    assert scores["accuracy_drop"] <= 0.5 and scores["volume_bytes_sparse"] is not None
    assert "accuracy drop" in to_markdown(rows)
    plain = run_leaderboard([path], [2], ["vertical"], jobs=1)
    assert "accuracy drop" not in to_markdown(plain)
