"""The leaderboard keeps the user's work (issue 16): outputs checked before the runs, rows
kept on Ctrl-C and SIGTERM, no orphaned worker, exit codes when nothing ran; and a report
worth reading (labels, notes, devices, the winner's split, per-device targets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import models
import pytest
from _problems import REPO
from click.testing import CliRunner
from lb_rows import make_row

from dnnpart.cli import main
from dnnpart.report import Interrupted, run_leaderboard, to_html, to_markdown
from dnnpart.report._render import format_value

MLP = str(REPO / "examples" / "mlp" / "mlp.onnx")
HERE = Path(__file__).resolve().parent


def run(*args):
    return CliRunner().invoke(main, ["leaderboard", *map(str, args)])


@pytest.fixture
def never_runs(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the runs started before the outputs were checked")

    monkeypatch.setattr("dnnpart.report.run_leaderboard", fail)


def test_outputs_are_checked_before_any_run(tmp_path, never_runs):
    res = run(MLP, "-k", "2", "-p", "vertical", "-o", tmp_path / "missing" / "x.html")
    assert res.exit_code == 2 and "does not exist" in res.stderr
    (tmp_path / "x.md").write_text("keep me")
    res = run(MLP, "-k", "2", "-p", "vertical", "-o", tmp_path / "x.md")
    assert res.exit_code == 6 and "--force" in res.stderr
    assert (tmp_path / "x.md").read_text() == "keep me"


def test_force_replaces_a_report_and_the_table_comes_first(tmp_path):
    (tmp_path / "x.md").write_text("old")
    res = run(MLP, "-k", "2", "-p", "vertical", "-o", tmp_path / "x.md", "--force")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.md").read_text().startswith("# dnnpart leaderboard")
    assert "vertical" in res.stdout


def test_no_row_ran_is_not_success(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    res = run(bad, "-k", "2", "-p", "vertical", "-j", "1")
    assert res.exit_code == 3, res.output  # the rows' own error: an invalid model
    assert "no run finished" in res.stderr
    assert "failed" in res.stdout  # the table is still shown


def test_ctrl_c_keeps_the_finished_rows(tmp_path):
    tiny = str(models.save(models.mlp_matmul((6, 5, 4, 3)), tmp_path))

    def stop_after_first(row, done, total):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        run_leaderboard([tiny], [2], ["vertical", "metis"], jobs=1, progress=stop_after_first)
    rows = info.value.rows
    assert [(r.partitioner, r.status) for r in rows] == [
        ("vertical", "ok"),
        ("metis", "interrupted"),
    ]
    assert isinstance(info.value, KeyboardInterrupt)  # callers that only know Ctrl-C


_SCRIPT = """
import functools, sys
import dnnpart.report as report

report.run_leaderboard = functools.partial(
    report.run_leaderboard, extra_partitioners=["lb_faulty_partitioners:PidHanging"]
)
from dnnpart.cli import main

if __name__ == "__main__":
    sys.exit(main())
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_writes_the_finished_rows_and_leaves_no_worker(tmp_path):
    script = tmp_path / "lb.py"
    script.write_text(_SCRIPT)
    pidfile = tmp_path / "worker.pid"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(REPO / "tests")]))
    env["LB_PIDFILE"] = str(pidfile)
    args = [sys.executable, str(script), "leaderboard", MLP, "-k", "2", "-j", "1"]
    args += ["-p", "vertical,lb-pid-hang", "--timeout", "120", "-o", str(tmp_path / "r.json")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while not pidfile.exists() or not pidfile.read_text():  # vertical done, the hang started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    worker = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    out, err = out.decode(), err.decode()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert "interrupted after 1 of 2 runs" in err
    assert "vertical" in out
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert {r["partitioner"]: r["status"] for r in rows} == {
        "vertical": "ok",
        "lb-pid-hang": "interrupted",
    }
    for _ in range(50):
        if not _alive(worker):
            break
        time.sleep(0.1)
    assert not _alive(worker), "a worker outlived the leaderboard"


# -- the report ------------------------------------------------------------------------------


def test_small_ratios_keep_their_digits():
    assert format_value(0.00012, "ratio") == "0.00012"
    assert format_value(0.0, "ratio") == "0.000"
    assert format_value(1.5, "ratio") == "1.500"
    assert format_value(2.0e-4, "time") == "200.00 µs"


def test_headings_use_labels_and_notes_carry_messages():
    ok = make_row("metis")
    quiet = make_row("vertical")
    ok.messages = ["metis left 1 of 2 devices idle (dev1)"]
    ok.scores["memory_ok"], ok.scores["memory_overflow"] = False, [0]
    ok.scores["device_names"] = ["jetson", "phone"]
    page = to_html([ok, quiet])
    md = to_markdown([ok, quiet])
    for text in (page, md):
        assert "ranked by latency" in text and "latency_s" not in text
        assert "left 1 of 2 devices idle" in text
        assert "does not fit in memory: jetson" in text
    assert "<th class='name'>note</th>" not in to_html([make_row("vertical")])


def test_report_header_names_the_devices_and_shows_the_winners_split(tmp_path):
    devices = tmp_path / "d.toml"
    devices.write_text(
        '[[device]]\nname = "jetson"\nspeed = "2TFLOPS"\nmemory = "8GiB"\n'
        '[[device]]\nname = "phone"\nspeed = "1TFLOPS"\n'
    )
    out = tmp_path / "r.html"
    res = run(MLP, "--devices", devices, "-p", "vertical,metis", "-o", out)
    assert res.exit_code == 0, res.output
    page = out.read_text()
    meta = page.split('<p class="meta">', 1)[1].split("</p>", 1)[0]
    assert "jetson 2.00 TFLOPS, 8.0 GiB" in meta and "phone 1.00 TFLOPS" in meta
    assert "the split of the winner" in page
    assert "<th>jetson</th>" in page and "66.7%" in page  # target share of the faster device


def test_plots_label_the_ranking_time_and_draw_each_devices_target(monkeypatch):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.axes import Axes

    from dnnpart.report import _plots

    labels, targets = [], []
    real_label, real_hlines = Axes.set_ylabel, Axes.hlines
    monkeypatch.setattr(Axes, "set_ylabel", lambda ax, t, *a, **k: labels.append(t) or
                        real_label(ax, t, *a, **k))  # fmt: skip
    monkeypatch.setattr(Axes, "hlines", lambda ax, y, *a, **k: targets.append(list(y)) or
                        real_hlines(ax, y, *a, **k))  # fmt: skip
    overlaps = []
    real_png = _plots._png

    def png(fig):  # no legend may cover the plotted area of its axes
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:
                box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
                overlaps.append(box.overlaps(area))
        return real_png(fig)

    monkeypatch.setattr(_plots, "_png", png)
    row = make_row("pipeline", granularity="layer", tps=1e-3)
    row.rank = 1
    row.devices = {"device": [{"name": "a", "speed": 3.0}, {"name": "b", "speed": 1.0}]}
    _plots.volume_latency_png([row, make_row("kl", granularity="layer", tps=2e-3)], "t")
    _plots.winner_load_png([row], "t")
    _plots.volume_imbalance_png([row], "t")
    assert overlaps and not any(overlaps)
    assert "time/sample (ms)" in labels and not any("perample" in t for t in labels)
    assert any("share of the model" in t for t in labels)
    assert targets == [pytest.approx([75.0, 25.0])]
