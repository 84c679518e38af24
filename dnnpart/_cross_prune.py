"""Cross-device pruning of a partitioned model on the user's data (``dnnpart partition
--cross-prune``): which dense layers can drop which nets, the calibration and held-out
samples, the accuracy the budget is measured from; the algorithms are in
:mod:`dnnpart.compress._cross`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dnnpart._notes import note
from dnnpart.errors import UsageError
from dnnpart.graph import LayerGraph, LayerKind

__all__ = ["measure", "HOLDOUT_FRACTION"]

HOLDOUT_FRACTION = 0.25  # of the data file held out when no --holdout is given


def _entries(graph: LayerGraph, labels: np.ndarray, k: int):
    """The dense and 2-D conv layers whose inputs the split lets drop: a split input that
    only this layer reads (any other reader would still need the activation)."""
    from dnnpart.compress._cross import CrossLayer
    from dnnpart.problem._layout import SPLIT, neuron_layout

    layout = neuron_layout(graph)
    placed = layout.place(labels, k)
    entries = []
    for i, (layer, action) in enumerate(zip(graph.layers, layout.action, strict=True)):
        if action != SPLIT or not layer.inputs:
            continue
        name = layer.inputs[0].name
        space = layout.spaces.get(name)
        if space is None or space.whole or graph.consumers.get(name, []) != [i]:
            continue
        conv = _conv(layer, space) if layer.kind == LayerKind.CONV else None
        if layer.kind == LayerKind.CONV and conv is None:
            continue
        shape = layer.weights["weight"].shape
        fan_in = int(np.prod(shape[1:])) if conv else layer._weight_in_out()[0]
        if fan_in % space.count:
            continue
        entries.append(
            CrossLayer(
                layer=i,
                tensor=name,
                source=np.arange(fan_in) // (fan_in // space.count),
                source_devices=placed.owners(space),
                neuron_devices=placed.owners(layout.spaces[layer.outputs[0].name]),
                conv=conv,
            )
        )
    return entries


def _conv(layer, space):
    """``(kernel, pads, strides, dilations)`` of a plain 2-D convolution over channels
    (one group, explicit pads), else None."""
    a = layer.attributes
    shape = layer.weights["weight"].shape
    if len(shape) != 4 or int(a.get("group", 1)) != 1 or space.axis != 1:
        return None
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET") or shape[1] != space.count:
        return None
    pads = tuple(int(p) for p in a.get("pads", (0, 0, 0, 0)))
    strides = tuple(int(s) for s in a.get("strides", (1, 1)))
    dilations = tuple(int(d) for d in a.get("dilations", (1, 1)))
    return (tuple(shape[2:]), pads, strides, dilations)


def _split(feeds, labels, fraction: float, seed: int):
    """A deterministic split of samples into calibration and held-out ones."""
    n = len(feeds)
    if n < 2:
        raise UsageError("cross-device pruning needs at least 2 samples to hold some out")
    order = np.random.default_rng(seed).permutation(n)
    held = np.sort(order[: max(1, int(round(n * fraction)))])
    calib = np.sort(order[len(held) :])
    pick = lambda idx: [feeds[i] for i in idx]  # noqa: E731
    return pick(calib), pick(held), (None if labels is None else labels[held])


def measure(
    original: LayerGraph,
    graph: LayerGraph,
    labels: np.ndarray,
    k: int,
    *,
    problem,
    rebuild,
    method: str | None,
    budget: float,
    data: str | os.PathLike | dict,
    holdout: str | os.PathLike | dict | None = None,
    label_name: str | None = None,
    output: str | None = None,
    seed: int = 0,
) -> tuple[LayerGraph, Any, dict[str, Any] | None, dict[str, dict], dict[str, Any]]:
    """Held-out accuracy of ``graph`` (``original`` after the plan's other passes) split
    by ``labels``, after dropping cross-device nets with ``method`` (if given) within
    ``budget`` of ``original``'s accuracy.

    ``data`` calibrates the re-fit; ``holdout`` (labels ``label_name``, default ``y``;
    without labels, agreement with ``original``) measures the budget. Without
    ``holdout``, a seeded quarter of ``data`` is held out when pruning (a note says so);
    with no pruning the whole of ``data`` is measured.

    ``problem`` is the split's problem; ``rebuild`` makes the problem of a changed graph.

    Returns
    -------
    graph, problem, record, arrays, scores
        The model with the adjusted weights and its problem, the pass record (None
        without ``method``), the adjusted weights by content hash, and ``accuracy``,
        ``reference_accuracy``, ``accuracy_drop``, ``volume_bytes_sparse`` and
        ``zero_fraction`` (zero skipping, :mod:`dnnpart._zeros`) on the held-out samples.
    """
    from dnnpart._accuracy import accuracy, load_data, output_name, top1
    from dnnpart._zeros import sparse_volume
    from dnnpart.compress._cross import cross_prune
    from dnnpart.compress._evaluate import ModelRunner
    from dnnpart.compress._passes import replace_weights
    from dnnpart.compress._store import arrays_digest

    entries = _entries(graph, labels, k) if method is not None else []
    sent = list((problem.nets.tensors or {}) if problem.nets is not None else {})
    runner = ModelRunner(original, [e.tensor for e in entries] + sent)
    specs = runner.specs()
    calib = load_data(data, specs, labels=label_name if holdout is None else None)
    if holdout is not None:
        feeds = calib.feeds
        loaded = load_data(holdout, specs, labels=label_name)
        held, truth, label_of = loaded.feeds, loaded.labels, loaded.label_name
    elif method is None:
        feeds, held, truth, label_of = [], calib.feeds, calib.labels, calib.label_name
    else:
        feeds, held, truth = _split(calib.feeds, calib.labels, HOLDOUT_FRACTION, seed)
        label_of = calib.label_name
        note(
            f"no --holdout: {len(held)} of the {len(calib.feeds)} samples of the data file "
            f"(a seeded split, seed {seed}) are held out to measure the accuracy budget; "
            "the other samples calibrate"
        )
    out = output_name(runner.outputs, output)
    reference_top1 = top1(runner.run({}, held)[out])
    truth = reference_top1 if truth is None else truth
    reference = accuracy(reference_top1, truth)
    # the weights the plan's earlier passes changed, under every run
    runner.base = {
        w.name: np.asarray(w.numpy())
        for old, new in zip(original.layers, graph.layers, strict=True)
        for role, w in new.weights.items()
        if w is not old.weights.get(role)
    }

    def score(weights):
        return accuracy(top1(runner.run(weights, held)[out]), truth)

    record, arrays, weights = None, {}, {}
    if method is None:
        acc = score({})
    else:
        result = cross_prune(
            graph, entries, k, method=method, budget=budget, runner=runner,
            calibration=feeds, score=score, reference=reference,
        )  # fmt: skip
        for text in result.notes:
            note(text)
        acc = result.accuracy
        digest = arrays_digest(result.weights)
        record = {
            "name": "cross_prune",
            "method": method,
            "budget": float(budget),
            "nets": result.nets,
            "per_layer": result.dropped,
            "candidates": result.candidates,
            "accuracy_of": "agreement with the original model" if label_of is None else label_of,
            "sha256": digest,
        }
        weights = result.weights
        graph = replace_weights(graph, weights)
        problem = rebuild(graph)
        arrays = {digest: weights}
    sparse, zero_fraction = sparse_volume(problem, labels, runner.run(weights, held))
    scores = {
        "accuracy": acc,
        "reference_accuracy": reference,
        "accuracy_drop": reference - acc,
        "volume_bytes_sparse": sparse,
        "zero_fraction": zero_fraction,
    }
    return graph, problem, record, arrays, scores
