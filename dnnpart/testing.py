"""Conformance checks for partitioners: the kit for plugin authors.

:func:`check_partitioner` runs a partitioner class on a set of small named problems —
neuron and layer granularity (as the class declares), k = 1..4, equal and heterogeneous
device shares, several seeds — and asserts what the host relies on (see "Contracts" in
the design notes and ``docs/writing-a-plugin.md``):

* the answer is a one-dimensional numpy array of integers, one label per vertex;
* every label is a device index in ``[0, k)``;
* the same seed gives the same answer (fresh instance, fresh copy of the problem);
* every balanced group is within :meth:`Problem.capacities` (per-layer balance: devices
  compute a layer together, then exchange — the GraphDNN thesis' ``ceil(n / k)`` rule,
  weighted by compute and device speed);
* the problem is left as it was given (it is shared with the scorer and other runs);
* the class has a name, valid granularities and JSON-able parameters (plans record them).

Failures raise :class:`AssertionError` with the problem, k, targets and seed of the run,
so that a plugin's own pytest shows what broke::

    from dnnpart.testing import check_partitioner

    def test_conformance():
        check_partitioner(MyPartitioner)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from dnnpart.problem._problem import GRANULARITIES, Problem

__all__ = ["check_partitioner", "conformance_problems"]

KS = (1, 2, 3, 4)
SEEDS = (0, 1)
# Device speeds of the heterogeneous cases (the first k are used): one fast, one medium,
# two slow — shares far from equal, as with a GPU next to phones.
SPEEDS = (4.0, 2.0, 1.0, 1.0)


def _chain(sizes, k, *, rng, density, heavy=None, whole=(), **kwargs) -> Problem:
    """Neuron-level problem of a chain of layers with random sparse synapses.

    Group 0 holds the model's input features (zero compute, unbalanced); a neuron's compute
    is its fan-in (its MACs), times ``heavy[g]`` if given (a conv channel's H*W).
    ``whole`` lists groups placed whole (a single unbalanced vertex, like a Softmax).
    """
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    rows, cols = [], []
    for g in range(len(sizes) - 1):
        a, b = sizes[g], sizes[g + 1]
        mask = rng.random((a, b)) < (1.0 if g + 1 in whole else density)
        r, c = np.nonzero(mask)
        rows.append(r + offsets[g])
        cols.append(c + offsets[g + 1])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    synapses = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    weight = np.asarray(synapses.sum(axis=0)).ravel()
    elements = np.ones(n, dtype=np.int64)
    for g, factor in (heavy or {}).items():
        weight[offsets[g] : offsets[g + 1]] *= factor
        elements[offsets[g] : offsets[g + 1]] = factor
    balanced = np.array([g > 0 and g not in whole for g in range(len(sizes))])
    return Problem(
        synapses=synapses,
        vertex_weight=weight,
        layer_offsets=offsets,
        k=k,
        balanced=balanced,
        activation_elements=elements,
        granularity="neuron",
        layer_names=tuple(["input"] + [f"layer{g}" for g in range(1, len(sizes))]),
        **kwargs,
    )


def _neuron_problems(k: int, **kw) -> list[tuple[str, Problem]]:
    rng = np.random.default_rng(20240601)  # fixed: the same problems on every run
    out = [
        ("mlp", _chain([5, 8, 7, 4], k, rng=rng, density=0.5, **kw)),
        # A narrow layer (2 neurons, fewer than k) and a Softmax-like vertex placed whole.
        ("mlp-narrow-head", _chain([6, 9, 2, 6, 1], k, rng=rng, density=0.6, whole=(4,), **kw)),
        # Conv-like channels: heavy, unequal neurons that send H*W elements each.
        ("conv", _chain([3, 6, 8, 5], k, rng=rng, density=0.7, heavy={1: 16, 2: 9}, **kw)),
    ]
    # Two components and a neuron with neither producers nor consumers.
    a = _chain([4, 6, 6], k, rng=rng, density=0.4, **kw)
    syn = a.synapses.tolil()
    syn[:, 4] = 0
    syn[4, :] = 0
    weight = a.vertex_weight.copy()
    weight[4] = 0.0  # a neuron whose every weight was pruned
    out.append(
        (
            "sparse-with-isolated",
            Problem(
                synapses=syn.tocsr(),
                vertex_weight=weight,
                layer_offsets=a.layer_offsets,
                k=k,
                balanced=a.balanced,
                granularity="neuron",
                **kw,
            ),
        )
    )
    return out


def _layer_problems(k: int, **kw) -> list[tuple[str, Problem]]:
    # Vertex 0 is the input tensor (unbalanced); then layers in topological order with a
    # skip connection, a zero-compute Reshape and one layer heavier than a device's share.
    macs = [0, 300, 40, 0, 500, 2000, 60, 300, 10, 80, 5]
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8), (8, 9), (9, 10)]
    edges += [(2, 5), (4, 7), (1, 9)]
    nbytes = np.array([4096, 8192, 8192, 8192, 4096, 4096, 2048, 2048, 1024, 512, 40])
    n = len(macs)
    src, dst = np.array(edges).T
    synapses = sp.csr_array((nbytes[src].astype(float), (src, dst)), shape=(n, n))
    dag = Problem(
        synapses=synapses,
        vertex_weight=np.array(macs, dtype=float),
        layer_offsets=np.array([0, 1, n]),
        k=k,
        balanced=np.array([False, True]),
        activation_elements=nbytes // 4,
        activation_bytes=nbytes,
        granularity="layer",
        layer_names=("input:x", "layers"),
        **kw,
    )
    m = 8
    chain = Problem(
        synapses=sp.csr_array(
            (np.full(m - 1, 64.0), (np.arange(m - 1), np.arange(1, m))), shape=(m, m)
        ),
        vertex_weight=np.array([0.0] + [100.0] * (m - 1)),
        layer_offsets=np.array([0, 1, m]),
        k=k,
        balanced=np.array([False, True]),
        granularity="layer",
        layer_names=("input:x", "layers"),
        **kw,
    )
    return [("layer-dag", dag), ("layer-chain", chain)]


def conformance_problems(
    granularity: str, k: int, *, targets=None, imbalance: float = 0.03, seed: int = 0
) -> list[tuple[str, Problem]]:
    """The small named problems :func:`check_partitioner` runs on, as ``(name, problem)``.

    Neuron granularity: a sparse MLP, one with a layer narrower than k and a Softmax-like
    vertex placed whole, conv-like heavy channels, and a graph with an isolated neuron of
    zero compute. Layer granularity: a DAG with a skip connection, a zero-compute layer and
    a layer heavier than a device's share; a plain chain. Every problem has at least 4
    vertices per balanced group, so k = 1..4 is valid.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    kw = {"targets": targets, "imbalance": imbalance, "seed": seed}
    if granularity == "neuron":
        return _neuron_problems(k, **kw)
    return _layer_problems(k, **kw)


def _snapshot(problem: Problem) -> dict[str, Any]:
    s = problem.synapses
    state = {name: copy.deepcopy(value) for name, value in vars(problem).items()}
    state["synapses"] = (s.shape, s.data.copy(), s.indices.copy(), s.indptr.copy())
    state.pop("graph", None)  # may be large; partitioners read it, tests rarely set it
    return state


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _check_answer(problem: Problem, labels: Any, balance: bool, where: str) -> np.ndarray:
    n, k = problem.num_vertices, problem.k
    assert isinstance(labels, np.ndarray), (
        f"{where}: partition() returned {type(labels).__name__}, expected a numpy array"
    )
    assert labels.shape == (n,), (
        f"{where}: partition() returned shape {labels.shape}, expected ({n},): one device "
        "index per vertex"
    )
    assert labels.dtype.kind in "iu", (
        f"{where}: partition() returned dtype {labels.dtype}, expected an integer dtype"
    )
    if n:
        lo, hi = int(labels.min()), int(labels.max())
        assert lo >= 0 and hi < k, (
            f"{where}: labels span [{lo}, {hi}], expected device indices in [0, {k - 1}]"
        )
    if balance:
        for g in np.flatnonzero(problem.balanced):
            sl = problem.layer_slice(g)
            loads = np.bincount(labels[sl], weights=problem.vertex_weight[sl], minlength=k)
            caps = problem.capacities(g)
            tol = 1e-9 * max(1.0, float(loads.sum()))
            over = np.flatnonzero(loads > caps + tol)
            assert not over.size, (
                f"{where}: group {problem.layer_names[g]!r} is unbalanced: device "
                f"{over[0]} holds load {loads[over[0]]:g} > capacity {caps[over[0]]:g} "
                f"(loads {np.round(loads, 3).tolist()}, capacities {np.round(caps, 3).tolist()})"
            )
    return labels


def _check_class(cls: type, params: dict) -> None:
    name = getattr(cls, "name", None)
    assert isinstance(name, str) and name.strip(), f"{cls!r} needs a non-empty `name`"
    gran = getattr(cls, "granularities", None)
    assert isinstance(gran, tuple | list) and gran and set(gran) <= set(GRANULARITIES), (
        f"{cls.__name__}.granularities must be a non-empty subset of {GRANULARITIES}, got {gran!r}"
    )
    assert callable(getattr(cls, "partition", None)), f"{cls.__name__} has no partition()"
    inst = cls(**params)
    if hasattr(inst, "get_params"):
        got = inst.get_params()
        try:
            json.dumps(got)
        except (TypeError, ValueError) as exc:
            raise AssertionError(
                f"{cls.__name__}.get_params() is not JSON-able ({exc}); plans record it"
            ) from exc


def check_partitioner(
    cls: type,
    *,
    params: dict | None = None,
    ks: Iterable[int] = KS,
    seeds: Iterable[int] = SEEDS,
    granularities: Iterable[str] | None = None,
    balance: bool | None = None,
    problems: Iterable[Problem] = (),
) -> int:
    """Assert that a partitioner class honours the contract dnnpart relies on.

    Parameters
    ----------
    cls : type
        The partitioner class (a :class:`dnnpart.partitioners.Partitioner` subclass). A
        class handed out by the plugin registry is unwrapped to the plugin's own class.
    params : dict, optional
        Keyword arguments for ``cls(**params)``; a fresh instance is made for every run.
    ks : iterable of int
        Device counts to try (default 1, 2, 3, 4).
    seeds : iterable of int
        ``problem.seed`` values; each is run twice to check determinism.
    granularities : iterable of str, optional
        Which of the class' ``granularities`` to check (default: all it declares).
    balance : bool, optional
        Check per-layer balance (every balanced group within ``problem.capacities(g)``).
        Default: the class' ``balances`` attribute (True unless the partitioner declares
        that its objective is not balance, like ``pipeline``).
    problems : iterable of Problem
        Extra problems of your own, checked like the built-in ones (at their own k).

    Returns
    -------
    int
        The number of partition() calls checked (so a test can assert it is not zero).

    Raises
    ------
    AssertionError
        On the first violation, naming the problem, k, targets and seed.
    """
    cls = getattr(cls, "__wrapped__", cls)
    if balance is None:
        balance = bool(getattr(cls, "balances", True))
    params = dict(params or {})
    _check_class(cls, params)
    wanted = tuple(cls.granularities if granularities is None else granularities)
    unknown = set(wanted) - set(cls.granularities)
    assert not unknown, f"{cls.__name__} does not declare granularities {sorted(unknown)}"
    cases: list[tuple[str, Problem]] = []
    for gran in wanted:
        for k in ks:
            shares = [None] if k == 1 else [None, np.array(SPEEDS[:k])]
            for targets in shares:
                for seed in seeds:
                    cases += conformance_problems(gran, k, targets=targets, seed=seed)
    cases += [(f"yours[{i}]", p) for i, p in enumerate(problems)]
    runs = 0
    for pname, problem in cases:
        where = (
            f"{cls.__name__} ({cls.name!r}) on {pname!r} ({problem.granularity}, "
            f"k={problem.k}, targets={np.round(problem.targets, 3).tolist()}, "
            f"seed={problem.seed})"
        )
        twin = copy.deepcopy(problem)
        before = _snapshot(problem)
        first = _check_answer(problem, cls(**params).partition(problem), balance, where)
        after = _snapshot(problem)
        changed = [f for f in before if not _same(before[f], after[f])]
        assert not changed, f"{where}: partition() modified the problem ({', '.join(changed)})"
        second = _check_answer(twin, cls(**params).partition(twin), balance, where)
        assert np.array_equal(first, second), (
            f"{where}: two runs with the same seed gave different answers "
            f"({int(np.sum(first != second))} of {len(first)} labels differ)"
        )
        runs += 2
    return runs
