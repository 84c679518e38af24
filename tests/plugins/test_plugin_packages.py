"""The example plugin packages, pip-installed into the running environment, seen by the CLI.

``examples/plugin-striped`` (a working plugin) and ``examples/plugin-broken`` (its module
raises ImportError) are installed for the session and uninstalled at its end. The CLI runs
in subprocesses: an editable install is only importable by a fresh interpreter (its .pth
file is read at start-up), and each process discovers entry points afresh.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from dnnpart import load
from dnnpart.problem._build import build_problem

pytestmark = pytest.mark.slow  # pip installs and a dozen interpreter start-ups

REPO = Path(__file__).resolve().parents[2]
MLP = REPO / "examples" / "mlp" / "mlp.onnx"
STRIPED_SRC = REPO / "examples" / "plugin-striped" / "src" / "dnnpart_striped" / "__init__.py"
PACKAGES = {
    "dnnpart-striped": REPO / "examples" / "plugin-striped",
    "dnnpart-broken": REPO / "examples" / "plugin-broken",
}
BUILTINS = {"vertical", "metis", "kl", "munkres"}


def _pip(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="session")
def plugin_packages():
    """Install both example plugins (editable, no deps); uninstall the ones we installed."""
    ours = [d for d in PACKAGES if not _installed(d)]
    try:
        for dist, path in PACKAGES.items():
            res = _pip("install", "--no-deps", "--no-build-isolation", "-e", str(path))
            if res.returncode != 0:
                # setuptools < 70.1 without the `wheel` package cannot build an editable
                # wheel in this environment; let pip fetch a backend in isolation instead.
                res = _pip("install", "--no-deps", "-e", str(path))
            if res.returncode != 0:
                pytest.fail(f"could not install {dist}:\n{res.stdout}\n{res.stderr}")
        yield
    finally:
        if ours:
            _pip("uninstall", "-y", *ours)


def dnnpart(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, without inherited plugin settings."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DNNPART_LOAD_PLUGINS", "DNNPART_STRICT_PLUGINS", "DNNPART_DEBUG")
    }
    base.update(env, COLUMNS="200", NO_COLOR="1")
    cmd = [sys.executable, "-m", "dnnpart.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=base, timeout=300)


def test_striped_is_listed_and_broken_reports_its_error(plugin_packages):
    res = dnnpart("partitioners", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert BUILTINS <= set(rows)
    assert rows["striped"]["plugin"] == "striped"
    assert rows["striped"]["granularities"] == ["neuron", "layer"]
    assert "broken" in res.stderr and "libbroken.so" in res.stderr  # a warning, not a failure

    res = dnnpart("plugins", "--json")
    assert res.returncode == 0, res.stderr
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    assert plugins["striped"]["package"] == "dnnpart-striped"
    assert plugins["striped"]["version"] == "0.1.0"
    assert plugins["striped"]["partitioners"] == ["striped"]
    assert plugins["striped"]["error"] is None
    assert plugins["broken"]["package"] == "dnnpart-broken"
    assert plugins["broken"]["partitioners"] == []
    assert plugins["broken"]["error"].startswith("ImportError: dnnpart-broken needs libbroken.so")
    assert plugins["dnnpart"]["error"] is None


def test_partition_runs_the_plugin_while_the_broken_one_is_installed(plugin_packages, tmp_path):
    out = tmp_path / "plan.json"
    k = 3
    res = dnnpart("partition", str(MLP), "-k", str(k), "-p", "striped", "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["method"] == "striped" and doc["k"] == k
    assert doc["scores"]["volume"] > 0 and doc["baseline"]["volume"] > 0
    plan = json.loads(out.read_text())
    labels = np.asarray(plan["labels"])
    # The answer really came from the plugin, not from a built-in: every group is dealt
    # as the plugin's own `stripe` deals it (i mod k by count for the inputs; by weight in
    # the dense layers, whose neurons differ a little since some weights are exactly 0).
    spec = importlib.util.spec_from_file_location("striped_src", STRIPED_SRC)
    striped = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(striped)
    problem = build_problem(load(MLP), "neuron", k=k)
    for g, group in enumerate(plan["groups"]):
        got = labels[group["start"] : group["stop"]]
        if problem.balanced[g]:
            weights = problem.vertex_weight[problem.layer_slice(g)]
            np.testing.assert_array_equal(got, striped.stripe(weights, problem.targets))
        else:
            assert got.tolist() == [i % k for i in range(len(got))]
    res = dnnpart("import", str(MLP), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["layers"] > 0


def test_strict_mode_fails_loudly(plugin_packages):
    for args in (("plugins",), ("partition", str(MLP), "-k", "2", "-p", "vertical")):
        res = dnnpart(*args, DNNPART_STRICT_PLUGINS="1")
        assert res.returncode == 2, (args, res.stdout, res.stderr)  # configuration, not a bug
        assert "plugin 'broken' (dnnpart-broken 0.0.1) failed to load" in res.stderr
        assert "ImportError: dnnpart-broken needs libbroken.so" in res.stderr


def test_load_plugins_env_and_no_plugins_flag_choose_what_loads(plugin_packages):
    res = dnnpart("partitioners", "--json", DNNPART_LOAD_PLUGINS="")
    assert res.returncode == 0, res.stderr
    names = {r["name"] for r in json.loads(res.stdout)}
    assert BUILTINS <= names and "striped" not in names
    assert "broken" not in res.stderr

    res = dnnpart("--no-plugins", "plugins", "--json")
    assert [p["name"] for p in json.loads(res.stdout)] == ["dnnpart"]
    res = dnnpart("--no-plugins", "partition", str(MLP), "-k", "2", "-p", "striped")
    assert res.returncode == 2 and "unknown partitioner 'striped'" in res.stderr

    res = dnnpart("plugins", "--json", DNNPART_LOAD_PLUGINS="striped")
    plugins = {p["name"]: p["error"] for p in json.loads(res.stdout)}
    assert plugins == {"dnnpart": None, "striped": None}  # broken not even imported


def test_leaderboard_ranks_the_plugin_next_to_the_builtins(plugin_packages):
    if dnnpart("leaderboard", "--help").returncode != 0:
        pytest.skip("`dnnpart leaderboard` is not available")
    res = dnnpart("leaderboard", str(MLP), "-k", "2", "-p", "striped,vertical", "-j", "1", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["partitioner"]: r for r in json.loads(res.stdout)["rows"]}
    assert set(rows) == {"striped", "vertical"}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert rows["striped"]["scores"]["volume"] > 0


def test_the_example_plugins_own_tests_pass_against_the_installed_package(plugin_packages):
    path = PACKAGES["dnnpart-striped"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path / "tests")]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert " passed" in res.stdout
