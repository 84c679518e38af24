"""Ctrl-C during ``dnnpart run``: exit 130, and the Ray it started is gone (a process of
its own, since the signal goes to the whole command)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dnnpart
from dnnpart.exporters import export

pytest.importorskip("onnxruntime")
pytest.importorskip("ray", reason="dnnpart run needs Ray (pip install 'dnnpart[ray]')")

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx"


def _ray_daemons() -> set[int]:
    """gcs_server and raylet processes of this environment's Ray."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        exe = args.split(" ", 1)[0]
        if exe.startswith(sys.prefix) and exe.endswith(("gcs_server", "raylet")):
            found.add(int(pid))
    return found


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_its_ray(tmp_path):
    plan = dnnpart.partition(dnnpart.load(MLP), k=2, method="metis", granularity="layer")
    export(MLP, plan, tmp_path / "split")
    before = _ray_daemons()
    cmd = [sys.executable, "-m", "dnnpart.cli", "run", str(tmp_path / "split")]
    proc = subprocess.Popen(
        [*cmd, "--samples", "1000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background commands with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not (_ray_daemons() - before) and time.monotonic() < deadline:
            time.sleep(0.5)
        # ps -ww: without it, args are cut at 80 columns and no daemon is ever seen
        assert _ray_daemons() - before, "the run's Ray never started"
        time.sleep(3)  # Ray up; the actors start (an interrupt then must stop them too)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    deadline = time.monotonic() + 20
    while _ray_daemons() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not (_ray_daemons() - before), "Ray processes were left behind"
