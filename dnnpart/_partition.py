"""``dnnpart.partition``: a model and devices in, a scored :class:`Plan` out."""

from __future__ import annotations

import time
from typing import Any

from dnnpart._plan import Plan, file_sha256
from dnnpart.devices import DeviceSet
from dnnpart.errors import UsageError
from dnnpart.graph import LayerGraph
from dnnpart.plugins import get_registry
from dnnpart.problem._build import build_problem
from dnnpart.scoring import ratios, score

__all__ = ["partition"]

BASELINE = "vertical"


def partition(
    graph: LayerGraph,
    *,
    k: int | None = None,
    method: str = "metis",
    devices: DeviceSet | None = None,
    granularity: str | None = None,
    prune: float | None = None,
    refine: bool = False,
    imbalance: float = 0.03,
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> Plan:
    """Partition ``graph`` for ``k`` identical devices or a :class:`DeviceSet`.

    The partitioner's answer is validated, scored, and compared with the vertical
    baseline on the same problem. ``prune`` zeroes that fraction of the smallest weights
    of each splittable layer first, then removes the neurons that pruning left without an
    outgoing synapse (see :func:`dnnpart.compress.remove_dead_neurons`); ``refine`` runs
    Kernighan-Lin/FM after the method.
    """
    profile = getattr(graph, "profile", None)
    if devices is None and profile is not None:
        from dnnpart.importers._profiled import profile_devices

        # the file's accelerators and CPU cores; -k K sets the number of accelerators
        devices = profile_devices(profile, None if k is None else k)
        k = None
    if devices is None:
        if k is None:
            raise UsageError("give k or devices")
        devices = DeviceSet.identical(k)
    elif k is not None and k != devices.k:
        raise UsageError(f"k = {k} but the device file lists {devices.k} devices")
    registry = get_registry()
    cls = registry.get(method)
    supported = getattr(cls, "granularities", ("neuron", "layer"))
    if granularity is None:  # neurons where the model and the method allow it
        granularity = "layer" if profile is not None or "neuron" not in supported else "neuron"
    if granularity not in supported:
        raise UsageError(f"partitioner {method!r} does not support {granularity!r} granularity")
    dead = None
    if prune:
        from dnnpart.compress import magnitude_prune, remove_dead_neurons

        graph, dead = remove_dead_neurons(magnitude_prune(graph, prune))
    problem = build_problem(
        graph, granularity, k=devices.k, targets=devices.targets, imbalance=imbalance, seed=seed
    )
    problem.devices = devices
    options = dict(options or {})
    own_refine = getattr(cls, "refines_itself", False)
    if refine and own_refine:
        options["refine"] = True
    partitioner = cls(**options)
    start = time.perf_counter()
    labels = problem.validate(partitioner.partition(problem), who=f"partitioner {method!r}")
    if refine and not own_refine:
        from dnnpart.partitioners.kl import kl_refine

        labels = problem.validate(kl_refine(problem, labels), who="kl refinement")
    seconds = time.perf_counter() - start
    scores = score(problem, labels, devices)
    base_labels = registry.get(BASELINE)().partition(problem)
    baseline = score(problem, problem.validate(base_labels, who=BASELINE), devices)
    return Plan(
        method=method,
        k=devices.k,
        granularity=granularity,
        labels=labels,
        groups=list(problem.layer_names),
        offsets=[int(x) for x in problem.layer_offsets],
        scores=scores.to_dict(),
        baseline=baseline.to_dict(),
        ratios=ratios(scores, baseline),
        devices=devices.to_dict(),
        parameters={
            "seed": seed,
            "imbalance": imbalance,
            "prune": prune,
            # neurons pruning left without an outgoing synapse, their inputs removed too
            # (export repeats this only for plans that record it)
            **({"dead_neurons": dead.neurons} if dead is not None else {}),
            "refine": refine,
            "options": partitioner.get_params(),
        },
        model=graph.path,
        model_sha256=file_sha256(graph.path) if graph.path else None,
        seconds=seconds,
        messages=[
            *([_dead_message(prune, dead)] if dead is not None and dead.neurons else []),
            *(str(m) for m in getattr(partitioner, "messages_", [])),
        ],
    )


def _dead_message(prune: float, dead) -> str:
    where = ", ".join(f"{n} in {name}" for name, n in dead.per_layer.items())
    return (
        f"pruning at {prune:g} left {dead.neurons} neurons with no outgoing synapse ({where}); "
        f"their {dead.synapses} incoming synapses are removed (outputs unchanged)"
    )
