"""The plugin registry on throw-away plugin distributions (a .dist-info on sys.path).

A directory with ``NAME-VERSION.dist-info/{METADATA,entry_points.txt}`` next to a module is
what an installed package looks like to ``importlib.metadata``: these tests build one per
case instead of pip-installing, and pick it with ``DNNPART_LOAD_PLUGINS`` so that whatever
else is installed does not interfere.
"""

from __future__ import annotations

import os
import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dnnpart
from dnnpart.cli import main
from dnnpart.errors import PartitionerAnswerError
from dnnpart.plugins import (
    PartitionerFailedError,
    PluginConflictError,
    PluginLoadError,
    clear_cache,
    get_registry,
    no_plugins,
)

REPO = Path(__file__).resolve().parents[2]
MLP = REPO / "examples" / "mlp" / "mlp.onnx"

HEAD = """
import numpy as np
from dnnpart.partitioners import Partitioner
from dnnpart.plugins import hookimpl
"""


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """Factory: make_plugin(package, body, ep=...) -> entry-point name; loads only those."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    made: list[str] = []
    modules: list[str] = []

    def make(package: str, body: str, ep: str | None = None, version: str = "1.0") -> str:
        ep = ep or package.removeprefix("dnnpart-")
        module = f"_fake_{package.replace('-', '_')}_{len(made)}_{os.getpid()}"
        (site / f"{module}.py").write_text(HEAD + textwrap.dedent(body))
        info = site / f"{package.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        (info / "entry_points.txt").write_text(f"[dnnpart]\n{ep} = {module}\n")
        made.append(ep)
        modules.append(module)
        monkeypatch.setenv("DNNPART_LOAD_PLUGINS", ",".join(made))
        clear_cache()
        return ep

    monkeypatch.delenv("DNNPART_STRICT_PLUGINS", raising=False)
    yield make
    for module in modules:
        sys.modules.pop(module, None)
    clear_cache()


def _partitioner(name: str, body: str) -> str:
    return f"""
class P(Partitioner):
    name = {name!r}
    granularities = ("neuron", "layer")

    def partition(self, problem):
{textwrap.indent(textwrap.dedent(body), " " * 8)}

@hookimpl
def register_partitioners(register):
    register(P)
"""


def test_a_name_taken_by_a_builtin_is_an_error_naming_both_packages(make_plugin):
    make_plugin("dnnpart-dup", _partitioner("vertical", "return None"))
    with pytest.raises(PluginConflictError, match="both 'dnnpart' and 'dnnpart-dup'"):
        get_registry()
    res = CliRunner().invoke(main, ["partitioners"])
    assert res.exit_code == 2
    assert "'dnnpart' and 'dnnpart-dup'" in res.stderr and "Traceback" not in res.stderr


def test_two_plugins_with_one_partitioner_name_are_an_error_naming_both(make_plugin):
    make_plugin("dnnpart-alpha", _partitioner("same", "return None"))
    make_plugin("dnnpart-beta", _partitioner("same", "return None"))
    with pytest.raises(PluginConflictError, match="both 'dnnpart-alpha' and 'dnnpart-beta'"):
        get_registry()


def test_a_raising_partitioner_is_a_typed_error_naming_its_plugin(make_plugin):
    make_plugin("dnnpart-faulty", _partitioner("boom", 'raise RuntimeError("no GPU found")'))
    graph = dnnpart.load(MLP)
    with pytest.raises(PartitionerFailedError, match="raised RuntimeError: no GPU found"):
        dnnpart.partition(graph, k=2, method="boom")
    res = CliRunner().invoke(main, ["partition", str(MLP), "-k", "2", "-p", "boom"])
    assert res.exit_code == 1
    assert (
        "partitioner 'boom' (plugin dnnpart-faulty 1.0) raised RuntimeError: no GPU found"
        in res.stderr
    )
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("return np.zeros(problem.num_vertices - 1, dtype=int)", r"returned \(\d+,\) labels"),
        ("return np.full(problem.num_vertices, problem.k)", r"labels in \[2, 2\], expected"),
        ("return np.full(problem.num_vertices, 0.5)", "non-integer labels"),
    ],
)
def test_a_wrong_answer_is_a_typed_error_naming_its_plugin(make_plugin, body, reason):
    make_plugin("dnnpart-sloppy", _partitioner("sloppy", body))
    with pytest.raises(PartitionerAnswerError, match=reason):
        dnnpart.partition(dnnpart.load(MLP), k=2, method="sloppy")
    res = CliRunner().invoke(main, ["partition", str(MLP), "-k", "2", "-p", "sloppy"])
    assert res.exit_code == 1
    assert "partitioner 'sloppy' (plugin dnnpart-sloppy 1.0)" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_plugin_that_fails_to_import_is_listed_or_raised_in_strict_mode(make_plugin, monkeypatch):
    make_plugin("dnnpart-ok", _partitioner("fine", "return np.zeros(problem.num_vertices, int)"))
    make_plugin("dnnpart-bad", "import _no_such_module_for_dnnpart_tests\n")
    reg = get_registry()
    assert "fine" in reg.partitioners and "vertical" in reg.partitioners
    assert reg.errors == {"bad": "ModuleNotFoundError: No module named "
                          "'_no_such_module_for_dnnpart_tests'"}  # fmt: skip
    monkeypatch.setenv("DNNPART_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin 'bad' \\(dnnpart-bad 1.0\\) failed"):
        get_registry()


def test_strict_mode_failure_is_a_configuration_error_not_a_bug(make_plugin, monkeypatch):
    make_plugin("dnnpart-bad", "import _no_such_module_for_dnnpart_tests\n")
    monkeypatch.setenv("DNNPART_STRICT_PLUGINS", "1")
    res = CliRunner().invoke(main, ["partitioners"])
    assert res.exit_code == 2, res.output
    assert "plugin 'bad'" in res.stderr and "internal error" not in res.stderr


def test_a_plugin_without_the_hook_or_with_a_bad_class_contributes_nothing(make_plugin):
    make_plugin("dnnpart-nohook", "def register_partitioners(register):\n    pass\n")
    make_plugin(
        "dnnpart-half",
        _partitioner("first", "return None")
        + "\nclass Q(P):\n    name = 'second'\n    granularities = ('rows',)\n"
        + "\n@hookimpl\ndef register_partitioners(register):\n    register(P)\n    register(Q)\n",
    )
    reg = get_registry()
    assert "no @dnnpart.plugins.hookimpl register_partitioners" in reg.errors["nohook"]
    assert "granularities must be a non-empty subset" in reg.errors["half"]
    assert "first" not in reg.partitioners and "second" not in reg.partitioners


def test_load_plugins_names_a_plugin_that_is_not_installed(make_plugin, monkeypatch):
    make_plugin("dnnpart-real", _partitioner("real", "return None"))
    monkeypatch.setenv("DNNPART_LOAD_PLUGINS", "real, dnnpart, ghost")
    reg = get_registry()
    assert "real" in reg.partitioners
    assert set(reg.errors) == {"ghost"} and "no installed plugin" in reg.errors["ghost"]
    monkeypatch.setenv("DNNPART_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin .ghost. .ghost. failed to load"):
        get_registry()
    monkeypatch.delenv("DNNPART_STRICT_PLUGINS")
    assert get_registry(load_plugins=False).errors == {}


def test_no_plugins_flag_and_context_manager_restore_the_environment(make_plugin):
    make_plugin("dnnpart-extra", _partitioner("extra", "return None"))
    before = os.environ.get("DNNPART_LOAD_PLUGINS")
    assert "extra" in get_registry().partitioners
    with no_plugins():
        assert "extra" not in get_registry().partitioners
    assert os.environ.get("DNNPART_LOAD_PLUGINS") == before
    res = CliRunner().invoke(main, ["--no-plugins", "partitioners", "--json"])
    assert res.exit_code == 0 and '"extra"' not in res.stdout
    assert os.environ.get("DNNPART_LOAD_PLUGINS") == before
    res = CliRunner().invoke(main, ["partitioners", "--json"])
    assert '"extra"' in res.stdout


def test_guarded_classes_keep_their_identity_and_pickle_by_name(make_plugin):
    make_plugin("dnnpart-kind", _partitioner("kind", "return np.zeros(problem.num_vertices, int)"))
    reg = get_registry()
    cls = reg.get("kind")
    own = cls.__wrapped__
    assert issubclass(cls, own) and cls.name == "kind" and cls.__name__ == "P"
    assert pickle.loads(pickle.dumps(cls)) is cls
    again = pickle.loads(pickle.dumps(cls()))
    assert type(again) is cls
    row = next(r for r in reg.describe() if r["name"] == "kind")
    assert row["plugin"] == "kind" and row["parameters"] == {}
    assert reg.get("vertical").__module__ == "dnnpart.partitioners.vertical"  # not wrapped
    labels = dnnpart.partition(dnnpart.load(MLP), k=2, method="kind").labels
    assert np.all(labels == 0)
