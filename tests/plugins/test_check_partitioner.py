"""dnnpart.testing.check_partitioner: the built-ins pass it, and it catches what it promises."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dnnpart.partitioners import Partitioner
from dnnpart.partitioners.vertical import vertical_partition
from dnnpart.plugins import get_registry
from dnnpart.testing import check_partitioner, conformance_problems

# Built-ins that do not promise per-layer balance: pipeline minimises the time per sample
# of a pipelined DAG (Tarnawski et al. 2020), which may put a whole chain on one device.
NOT_BALANCING = {"pipeline"}
SLOW = {"spectral"}  # ~13 s on the conformance set (2 cores)


def _builtins() -> list:
    reg = get_registry(load_plugins=False)
    names = sorted(n for n, owner in reg.owner.items() if owner == "dnnpart")
    out = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]
    try:  # spectral is written by another engineer; check it once it exists
        from dnnpart.partitioners.spectral import SpectralPartitioner  # noqa: F401

        if "spectral" not in names:
            out.append(pytest.param("spectral", marks=pytest.mark.slow))
    except ImportError:
        pass
    return out


def _cls(name: str) -> type:
    reg = get_registry(load_plugins=False)
    if name in reg.partitioners:
        return reg.get(name)
    from dnnpart.partitioners.spectral import SpectralPartitioner

    return SpectralPartitioner


def test_the_expected_builtins_are_registered():
    names = set(get_registry(load_plugins=False).partitioners)
    assert {"vertical", "metis", "kl", "munkres"} <= names


@pytest.mark.parametrize("name", _builtins())
def test_builtin_passes_the_conformance_checks(name):
    cls = _cls(name)
    assert getattr(cls, "balances", True) == (name not in NOT_BALANCING)
    runs = check_partitioner(cls)  # balance checked unless the class declares otherwise
    cases = sum(
        len(conformance_problems(g, k))
        for g, k in itertools.product(cls.granularities, (1, 2, 3, 4))
        for _ in range(1 if k == 1 else 2)  # equal and heterogeneous targets
    )
    assert runs == 4 * cases  # 2 seeds, each run twice


# -- partitioners that break one rule each -----------------------------------------------------


class _Base(Partitioner):
    name = "bad"
    granularities = ("neuron", "layer")


class _List(_Base):
    def partition(self, problem):
        return [0] * problem.num_vertices


class _Short(_Base):
    def partition(self, problem):
        return np.zeros(problem.num_vertices - 1, dtype=np.int64)


class _Float(_Base):
    def partition(self, problem):
        return vertical_partition(problem).astype(float)


class _OutOfRange(_Base):
    def partition(self, problem):
        return vertical_partition(problem) + 1


class _AllOnZero(_Base):
    def partition(self, problem):
        return np.zeros(problem.num_vertices, dtype=np.int64)


class _Random(_Base):
    def partition(self, problem):
        rng = np.random.default_rng()  # ignores problem.seed
        return rng.integers(0, problem.k, problem.num_vertices)


class _Mutating(_Base):
    def partition(self, problem):
        problem.vertex_weight[:] = np.sort(problem.vertex_weight)  # "just sorting"
        return vertical_partition(problem)


class _Unserialisable(_Base):
    def __init__(self, callback=print):
        self.callback = callback

    def partition(self, problem):
        return vertical_partition(problem)


class _Nameless(_Base):
    name = ""

    def partition(self, problem):
        return vertical_partition(problem)


@pytest.mark.parametrize(
    ("cls", "options", "message"),
    [
        (_List, {}, "returned list, expected a numpy array"),
        (_Short, {}, r"returned shape \(\d+,\), expected"),
        (_Float, {}, "dtype float64, expected an integer dtype"),
        (_OutOfRange, {}, r"labels span \[1, 1\], expected device indices in \[0, 0\]"),
        (_AllOnZero, {}, "is unbalanced: device 0 holds load"),
        (_Random, {"balance": False}, "two runs with the same seed gave different answers"),
        (_Mutating, {}, r"modified the problem \(vertex_weight\)"),
        (_Unserialisable, {}, r"get_params\(\) is not JSON-able"),
        (_Nameless, {}, "needs a non-empty `name`"),
    ],
)
def test_check_partitioner_catches_each_violation(cls, options, message):
    with pytest.raises(AssertionError, match=message):
        check_partitioner(cls, **options)


def test_failures_name_the_problem_k_targets_and_seed():
    with pytest.raises(AssertionError) as info:
        check_partitioner(_AllOnZero)
    assert "_AllOnZero ('bad') on 'mlp' (neuron, k=2, targets=[0.5, 0.5], seed=0)" in str(
        info.value
    )


def test_options_narrow_or_extend_the_checks():
    assert check_partitioner(_AllOnZero, balance=False) > 0
    base = check_partitioner(_Ok, ks=(2,), seeds=(3,))
    assert base == 2 * 2 * (len(conformance_problems("neuron", 2)) + 2)  # 2 targets, 1 seed
    only = check_partitioner(_Ok, ks=(2,), seeds=(3,), granularities=["layer"])
    extra = conformance_problems("neuron", 3)[0][1]
    more = check_partitioner(_Ok, ks=(2,), seeds=(3,), granularities=["layer"], problems=[extra])
    assert more == only + 2
    with pytest.raises(AssertionError, match="does not declare granularities"):
        check_partitioner(_LayerOnly, granularities=["neuron"])


class _Ok(_Base):
    def partition(self, problem):
        return vertical_partition(problem)


class _LayerOnly(_Ok):
    granularities = ("layer",)


@pytest.mark.parametrize("granularity", ["neuron", "layer"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_conformance_problems_are_valid_for_every_k(granularity, k):
    for name, p in conformance_problems(granularity, k, targets=np.arange(1, k + 1)):
        assert p.granularity == granularity and p.k == k, name
        assert p.balanced.any() and (~p.balanced).any(), name  # both kinds of group
        assert p.targets[-1] == pytest.approx(k / (k * (k + 1) / 2)), name
        for g in np.flatnonzero(p.balanced):
            assert p.vertex_weight[p.layer_slice(g)].sum() > 0, name
