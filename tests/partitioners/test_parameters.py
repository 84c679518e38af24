"""Partitioner parameters: declared once in ``__init__``, reachable from the function API,
the registry and the CLI (``-O name=value``), validated in one place."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from _problems import layered_problem
from click.testing import CliRunner

import dnnpart
from dnnpart.cli import main
from dnnpart.errors import UsageError
from dnnpart.partitioners._base import Partitioner, instantiate, options_for, params_of
from dnnpart.partitioners.kl import KLPartitioner, kl_refine
from dnnpart.partitioners.metis import MetisPartitioner, metis_partition
from dnnpart.partitioners.munkres import MunkresPartitioner, munkres_partition
from dnnpart.partitioners.pipeline import PipelinePartitioner, pipeline_partition
from dnnpart.partitioners.spectral import SpectralPartitioner, spectral_partition
from dnnpart.partitioners.vertical import VerticalPartitioner, vertical_partition
from dnnpart.plugins import get_registry

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx"


def _chain(sizes, k, seed=0):
    """A random sparse chain of layers of the given widths."""
    rng = np.random.default_rng(seed)
    weights = [
        sp.random(a, b, density=0.3, random_state=rng, format="csr") + sp.eye(a, b, format="csr")
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    return layered_problem(weights, k)


PAIRS = [
    (MetisPartitioner, metis_partition, ()),
    (MunkresPartitioner, munkres_partition, ()),
    (SpectralPartitioner, spectral_partition, ()),
    (VerticalPartitioner, vertical_partition, ()),
    (PipelinePartitioner, pipeline_partition, ()),
    (KLPartitioner, kl_refine, ("start",)),
]


@pytest.mark.parametrize(("cls", "fn", "skip"), PAIRS)
def test_function_api_shows_the_class_parameters(cls, fn, skip):
    own = [(p.name, p.default) for p in params_of(cls) if p.name not in skip]
    sig = inspect.signature(fn).parameters.values()
    shown = [(p.name, p.default) for p in sig if p.kind is p.KEYWORD_ONLY]
    assert shown == own


def test_get_params_is_the_signature_not_the_attributes():
    part = PipelinePartitioner(max_ideals=7)
    part.messages_ = ["a fitted attribute"]
    part.cache_ = object()
    assert part.get_params() == {"refine": False, "max_ideals": 7}
    assert VerticalPartitioner().get_params() == {}


def test_spectral_per_group_and_kl_tight_are_reachable():
    problem = _chain([12, 16, 16, 8], 2, seed=3)
    rows = {r["name"]: r for r in get_registry().describe()}
    assert rows["spectral"]["parameters"]["per_group"] is True
    assert rows["kl"]["parameters"]["tight"] is True
    whole = SpectralPartitioner(per_group=False).partition(problem)
    assert np.array_equal(whole, spectral_partition(problem, per_group=False))
    loose = KLPartitioner(tight=False).partition(problem)
    assert np.array_equal(loose, kl_refine(problem, vertical_partition(problem), tight=False))


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (MetisPartitioner, {"ncuts": 0}, "ncuts must be a positive integer"),
        (MetisPartitioner, {"objective": "x"}, "objective must be one of"),
        (KLPartitioner, {"tight": "yes"}, "tight must be true or false"),
        (KLPartitioner, {"start": "spectral"}, "start must be"),
        (SpectralPartitioner, {"per_group": 1}, "per_group must be true or false"),
        (SpectralPartitioner, {"tol": 2.0}, r"tol must be in \(0, 1\)"),
        (MunkresPartitioner, {"sweeps": -1}, "sweeps must be a non-negative integer"),
        (PipelinePartitioner, {"max_ideals": 0}, "max_ideals must be a positive integer"),
    ],
)
def test_values_are_checked_when_used(cls, params, message):
    problem = _chain([6, 8, 4], 2)
    part = cls(**params)  # stored as given, as in scikit-learn
    with pytest.raises(UsageError, match=message):
        part.partition(problem)


def test_options_for_and_instantiate():
    opts = {"ncuts": 3, "metis.objective": "volume", "kl.tight": False, "tight": True}
    assert options_for(MetisPartitioner, opts) == {"ncuts": 3, "objective": "volume"}
    assert options_for(KLPartitioner, opts) == {"tight": False}  # the qualified one wins
    assert instantiate(MetisPartitioner, {"metis.ncuts": 2}).ncuts == 2
    with pytest.raises(UsageError, match="has no parameter 'bogus'"):
        instantiate(MetisPartitioner, {"bogus": 1})
    with pytest.raises(UsageError, match="has no parameter 'kl.tight'"):
        instantiate(MetisPartitioner, {"kl.tight": True})


def test_partition_api_takes_options_and_records_only_parameters():
    graph = dnnpart.load(MLP)
    plan = dnnpart.partition(graph, k=2, method="spectral", options={"per_group": False})
    assert plan.parameters["options"]["per_group"] is False
    assert set(plan.parameters["options"]) == {p.name for p in params_of(SpectralPartitioner)}
    with pytest.raises(UsageError, match="no parameter"):
        dnnpart.partition(graph, k=2, method="vertical", options={"seed": 1})


def test_cli_partition_with_options(tmp_path):
    runner = CliRunner()
    out = tmp_path / "plan.json"
    args = ["partition", str(MLP), "-k", "2", "-p", "kl", "-O", "tight=false"]
    res = runner.invoke(main, [*args, "-O", "max_passes=2", "-O", "objective=cut", "-o", str(out)])
    assert res.exit_code == 0, res.output
    opts = json.loads(out.read_text())["parameters"]["options"]
    assert (opts["tight"], opts["max_passes"], opts["objective"]) == (False, 2, "cut")
    bad = runner.invoke(main, ["partition", str(MLP), "-k", "2", "-O", "nope=1"])
    assert bad.exit_code == 2 and "no parameter 'nope'" in bad.output
    bad = runner.invoke(main, ["partition", str(MLP), "-k", "2", "-O", "ncuts"])
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.output


def test_cli_partitioners_lists_parameters_with_defaults():
    res = CliRunner().invoke(main, ["partitioners", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["spectral"]["parameters"]["per_group"] is True
    assert rows["kl"]["parameters"]["tight"] is True
    assert rows["metis"]["parameters"]["ncuts"] == 1
    text = CliRunner().invoke(main, ["partitioners"]).output
    assert "per_group=true" in text and "tight=true" in text


def test_leaderboard_routes_options_to_the_partitioners_that_take_them():
    from dnnpart.report._rows import plan_tasks

    classes = dict(get_registry().partitioners)
    tasks, _ = plan_tasks(
        [str(MLP)],
        [2],
        ["metis", "kl", "vertical"],
        registry_classes=classes,
        options={"seed": 5, "kl.tight": False},
    )
    got = {t.partitioner: t.options for t in tasks}
    assert got == {"metis": {"seed": 5}, "kl": {"seed": 5, "tight": False}, "vertical": {}}
    with pytest.raises(UsageError, match="not a parameter of any partitioner"):
        plan_tasks([str(MLP)], [2], ["vertical"], registry_classes=classes, options={"x": 1})


def test_a_partitioner_without_init_has_no_parameters():
    class Bare(Partitioner):
        name = "bare"

        def partition(self, problem):
            return np.zeros(problem.num_vertices, dtype=np.int64)

    assert Bare().get_params() == {} and params_of(Bare) == []
