"""The passes a plan applies to the model before partitioning, recorded as data.

A plan records every pass it ran on the imported model as a list of plain dicts
(``{"name": "magnitude_prune", "ratio": 0.9}``, ``{"name": "remove_dead_neurons",
"neurons": 60, "synapses": 513}``). Partition runs the list, export and verify (and later
run) replay the same list through :func:`apply_passes`, so every command computes with the
same model. What a pass found (counts) is recorded beside its parameters; a replay that
finds something else is refused, since the model is then not the one the plan was made for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dnnpart._notes import note
from dnnpart.compress._store import load_arrays
from dnnpart.errors import InvalidModelError, UsageError
from dnnpart.graph import LayerGraph

__all__ = [
    "PASS_NAMES",
    "apply_passes",
    "prune_passes",
    "passes_from_parameters",
    "share_passes",
]

PRUNE, DEAD, SHARE = "magnitude_prune", "remove_dead_neurons", "share_weights"
CROSS = "cross_prune"
PASS_NAMES = (PRUNE, DEAD, SHARE, CROSS)


def prune_passes(prune: float | None) -> list[dict[str, Any]]:
    """The passes ``--prune R`` stands for: magnitude pruning, then dead-neuron removal."""
    if not prune:
        return []
    return [{"name": PRUNE, "ratio": float(prune)}, {"name": DEAD}]


def share_passes(bits: int | None, *, seed: int = 0) -> list[dict[str, Any]]:
    """The pass ``--share-bits B`` stands for: k-means weight sharing per layer."""
    if bits is None:
        return []
    return [{"name": SHARE, "bits": bits, "seed": int(seed)}]


def passes_from_parameters(parameters: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The passes of a plan or manifest written before passes were recorded.

    Those recorded ``prune`` and, from the dead-neuron pass on, ``dead_neurons``; a plan
    without ``dead_neurons`` was made without that pass and is replayed without it.
    """
    parameters = parameters or {}
    passes = []
    if parameters.get("prune"):
        passes.append({"name": PRUNE, "ratio": float(parameters["prune"])})
        if "dead_neurons" in parameters:
            passes.append({"name": DEAD, "neurons": int(parameters["dead_neurons"])})
    return passes


def apply_passes(
    graph: LayerGraph, passes: Iterable[dict[str, Any]], *, store=None
) -> tuple[LayerGraph, list[dict[str, Any]]]:
    """Run ``passes`` on ``graph`` in order.

    Returns the new graph and the records to store in a plan: each pass's parameters and
    what it found. Where a pass's input record already holds a finding (a replay), the
    finding must come out the same, else :class:`~dnnpart.errors.InvalidModelError`.
    ``store`` (a folder, or a mapping from content hash to arrays) holds the weights of
    passes that stored theirs (``cross_prune``, see :mod:`dnnpart.compress._store`).
    """
    # looked up at call time: the module attributes are the one implementation
    import dnnpart.compress as compress

    records = []
    ratio = None
    for spec in passes:
        if not isinstance(spec, dict) or spec.get("name") not in PASS_NAMES:
            raise UsageError(f"unknown model pass {spec!r}; known: {', '.join(PASS_NAMES)}")
        name = spec["name"]
        if name == PRUNE:
            ratio = spec.get("ratio")
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
                raise InvalidModelError(f"model pass {PRUNE}: ratio {ratio!r} is not a number")
            ratio = float(ratio)
            graph = compress.magnitude_prune(graph, ratio)
            records.append({"name": PRUNE, "ratio": ratio})
            continue
        if name == SHARE:
            graph, record = _share(graph, spec)
            records.append(record)
            continue
        if name == CROSS:
            graph = replace_weights(graph, load_arrays(store, spec.get("sha256")))
            records.append(dict(spec))
            continue
        found = spec.get("neurons", 0)
        if isinstance(found, bool) or not isinstance(found, int):
            raise InvalidModelError(f"model pass {DEAD}: neurons {found!r} is not a count")
        graph, dead = compress.remove_dead_neurons(graph)
        if "neurons" in spec and int(spec["neurons"]) != dead.neurons:
            raise InvalidModelError(
                f"the plan's dead-neuron pass removed {spec['neurons']} neurons, here it "
                f"removes {dead.neurons}: this is not the model the plan was made for"
            )
        records.append({"name": DEAD, "neurons": dead.neurons, "synapses": dead.synapses})
        if dead.neurons and "neurons" not in spec:  # said when first run, not on replays
            where = ", ".join(f"{n} in {layer}" for layer, n in dead.per_layer.items())
            at = f" at {ratio:g}" if ratio is not None else ""
            note(
                f"pruning{at} left {dead.neurons} neurons with no outgoing synapse ({where}); "
                f"their {dead.synapses} incoming synapses are removed (outputs unchanged)"
            )
    return graph, records


def _share(graph: LayerGraph, spec: dict[str, Any]) -> tuple[LayerGraph, dict[str, Any]]:
    """Weight sharing; the record holds the content hash of the weights it computed, and
    a replay must compute the very same weights."""
    import dnnpart.compress as compress

    seed = int(spec.get("seed", 0))
    graph = compress.share_weights(graph, spec["bits"], seed=seed)
    digest = compress.weights_digest(graph)
    if "sha256" in spec and spec["sha256"] != digest:
        raise InvalidModelError(
            "weight sharing gives other weights than when the plan was made (content hash "
            f"{digest[:12]}..., the plan has {str(spec['sha256'])[:12]}...): this is not "
            "the model the plan was made for, or another scikit-learn computed them"
        )
    return graph, {"name": SHARE, "bits": spec["bits"], "seed": seed, "sha256": digest}


def replace_weights(graph: LayerGraph, arrays: dict[str, Any]) -> LayerGraph:
    """A new graph whose weights named in ``arrays`` (by value name) hold those values;
    each must exist with the same shape and dtype, else InvalidModelError."""
    import dataclasses

    import numpy as np

    from dnnpart.graph import Weight

    left = dict(arrays)
    layers = []
    for layer in graph.layers:
        changed = {}
        for role, w in layer.weights.items():
            if w.name not in arrays:
                continue
            value = np.asarray(arrays[w.name])
            if tuple(value.shape) != tuple(w.shape) or value.dtype != w.numpy().dtype:
                raise InvalidModelError(
                    f"stored weight {w.name!r} is {value.dtype}{list(value.shape)}, the "
                    f"model's is {w.numpy().dtype}{list(w.shape)}"
                )
            changed[role] = Weight(
                w.name, w.shape, w.dtype, w.bits, value.dtype, compute=lambda v=value: v
            )
            left.pop(w.name, None)
        layers.append(
            dataclasses.replace(layer, weights={**layer.weights, **changed}) if changed else layer
        )
    if left:
        raise InvalidModelError(
            f"stored weights for values the model does not have: {sorted(left)[:4]}"
        )
    return graph.with_layers(layers)
