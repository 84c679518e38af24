"""``dnnpart.partition``: a model and devices in, a scored :class:`Plan` out."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dnnpart._notes import collecting
from dnnpart._plan import Plan, file_sha256
from dnnpart.compress import apply_passes, prune_passes
from dnnpart.devices import DeviceSet
from dnnpart.errors import UsageError
from dnnpart.graph import LayerGraph
from dnnpart.partitioners._base import instantiate
from dnnpart.plugins import get_registry
from dnnpart.problem import Problem, build_problem
from dnnpart.problem._objective import check_objective
from dnnpart.scoring import ratios, score

__all__ = ["partition", "check_request"]

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
    objective: str = "throughput",
    progress: Callable[[str], None] | None = None,
    cross_prune: str | None = None,
    accuracy_budget: float | None = None,
    data=None,
    holdout=None,
    label_name: str | None = None,
    output: str | None = None,
    choose: Callable[[Problem, np.ndarray], np.ndarray] | None = None,
) -> Plan:
    """Partition ``graph`` for ``k`` identical devices or a :class:`DeviceSet`.

    Parameters
    ----------
    graph : LayerGraph
        The imported model (:func:`dnnpart.load`), or a profiled graph.
    k : int, optional
        Number of identical devices (or give ``devices``).
    method : str
        A partitioner's name (``dnnpart partitioners`` lists them).
    devices : DeviceSet, optional
        Devices with speeds, memory and links.
    granularity : {"neuron", "layer"}, optional
        Default: neurons where the model and the method allow it.
    prune : float, optional
        Zero that fraction of the smallest weights of each splittable layer, then remove
        the neurons pruning left without an outgoing synapse (recorded in ``plan.passes``;
        see :func:`dnnpart.compress.apply_passes`).
    refine : bool
        Run Kernighan-Lin/FM after the method.
    imbalance : float
        Balance tolerance (0.03: a device may take 3 % above its share of a layer).
    seed : int
        Seed of every random choice.
    options : dict, optional
        The partitioner's own parameters.
    objective : {"throughput", "latency", "volume"}
        What layer placement minimises: the pipelined time per sample, one sample's
        makespan, or the bytes sent (:mod:`dnnpart.problem._objective`); every built-in
        layer partitioner returns a split no worse than vertical on it.
    progress : callable, optional
        Called with the name of each step as it starts (pruning, building the problem,
        partitioning, scoring).
    cross_prune : {"lsq", "dynamic", "greedy"}, optional
        After partitioning, drop cross-device nets of dense layers within
        ``accuracy_budget`` (see :mod:`dnnpart.compress._cross`); recorded as the pass
        ``cross_prune`` with the content hash of the adjusted weights (``plan.arrays``,
        written beside the plan by :meth:`Plan.save`). Needs neuron granularity and
        ``data``.
    accuracy_budget : float, optional
        Largest allowed drop of held-out top-1 accuracy below the original model's
        (0.01: one point). Default 0.01.
    data, holdout : path-like (``.npz``) or dict, optional
        Calibration samples and held-out samples (see :mod:`dnnpart._accuracy`); without
        ``holdout`` a seeded quarter of ``data`` is held out. With ``data``, the scores
        gain ``accuracy``, ``reference_accuracy`` and ``accuracy_drop`` (held out).
    label_name, output : str, optional
        The label array of the data files (default ``y``) and the output scored.
    choose : callable, optional
        ``choose(problem, labels)`` gets the built problem and the partitioner's
        (validated) labels and returns the labels the plan keeps (validated again), e.g.
        a re-plan that keeps what survivors held (:mod:`dnnpart.runtime._replan`).

    Returns
    -------
    Plan
        The validated labels, their scores, the vertical baseline's scores on the same
        problem, and the notes partitioner and passes made (``plan.messages``).
    """
    if isinstance(k, int) and graph.layers and k > _max_vertices(graph):  # before k devices
        raise UsageError(
            f"k = {k} is larger than the number of vertices of any split of this model "
            f"(at most {_max_vertices(graph)})"
        )
    say = progress or (lambda text: None)
    profiled = graph.profile is not None
    check_request(
        k=k, method=method, devices=devices, granularity=granularity, prune=prune,
        imbalance=imbalance, profiled=profiled,
    )  # fmt: skip
    check_objective(objective)
    if cross_prune is not None and data is None:
        raise UsageError("--cross-prune needs --data (calibration samples)")
    if data is None and (holdout is not None or accuracy_budget is not None):
        raise UsageError("--holdout and --accuracy-budget need --data")
    devices = _devices(graph, k, devices)
    registry = get_registry()
    cls = registry.get(method)
    granularity = _granularity(graph, cls, method, granularity)
    if cross_prune is not None and granularity != "neuron":
        raise UsageError("--cross-prune drops neurons' inputs: it needs neuron granularity")
    original = graph
    with collecting() as notes:
        if prune:
            say(f"pruning {prune:g} of the weights")
        graph, passes = apply_passes(graph, prune_passes(prune))
        say(f"building the {granularity} problem")
        problem = build_problem(
            graph,
            granularity,
            k=devices.k,
            targets=devices.targets,
            imbalance=imbalance,
            seed=seed,
            devices=devices,
        )
        problem = dataclasses.replace(problem, objective=objective)
        say(f"partitioning with {method}")
        partitioner, labels, seconds = _run(problem, cls, method, options, refine)
        if choose is not None:
            labels = problem.validate(choose(problem, labels), who="choose")
        base_problem, arrays, measured = problem, {}, {}
        if data is not None:
            from dnnpart._cross_prune import measure

            say(f"cross-device pruning ({cross_prune})" if cross_prune else "measuring accuracy")

            def rebuild(changed):
                return build_problem(
                    changed, granularity, k=devices.k, targets=devices.targets,
                    imbalance=imbalance, seed=seed, devices=devices,
                )  # fmt: skip

            graph, problem, record, arrays, measured = measure(
                original, graph, labels, devices.k, problem=problem, rebuild=rebuild,
                method=cross_prune, budget=0.01 if accuracy_budget is None else accuracy_budget,
                data=data, holdout=holdout, label_name=label_name, output=output, seed=seed,
            )  # fmt: skip
            if record is not None:
                passes.append(record)
    say("scoring")
    scores = score(problem, labels, devices)
    base_labels = registry.get(BASELINE)().partition(base_problem)
    baseline = score(base_problem, base_problem.validate(base_labels, who=BASELINE), devices)
    dead = next((p for p in passes if p["name"] == "remove_dead_neurons"), None)
    return Plan(
        method=method,
        k=devices.k,
        granularity=granularity,
        labels=labels,
        groups=list(problem.layer_names),
        offsets=[int(x) for x in problem.layer_offsets],
        scores={**scores.to_dict(), **measured},
        baseline=baseline.to_dict(),
        ratios=ratios(scores, baseline),
        devices=devices.to_dict(),
        parameters={
            "seed": seed,
            "imbalance": imbalance,
            "prune": prune,
            # what the dead-neuron pass found (also in passes), for readers of old plans
            **({"dead_neurons": dead["neurons"]} if dead is not None else {}),
            "refine": refine,
            "objective": objective,
            "options": partitioner.get_params(),
        },
        model=graph.path,
        input_shapes={k: list(v) for k, v in graph.input_shapes.items()},
        model_sha256=file_sha256(graph.path) if graph.path else None,
        seconds=seconds,
        messages=[*notes, *_idle_message(method, scores, devices)],
        passes=passes,
        arrays=arrays,
    )


def check_request(
    *,
    k: int | None = None,
    method: str = "metis",
    devices: DeviceSet | None = None,
    granularity: str | None = None,
    prune: float | None = None,
    imbalance: float = 0.03,
    profiled: bool = False,
) -> type:
    """Check the arguments of :func:`partition` that do not need the model; return the
    partitioner class.

    The command line calls it before loading the model, so a typo costs no import.

    Raises
    ------
    UsageError
        No k and no devices (unless ``profiled``: the file has its own), k not a positive
        integer or not the device count, an unknown partitioner or a granularity it does
        not handle, a prune ratio outside [0, 1), a negative imbalance.
    """
    from dnnpart.compress._prune import check_ratio

    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise UsageError(f"k must be a positive integer, got {k!r}")  # as DeviceSet.identical
    if devices is None and k is None and not profiled:
        raise UsageError("give k or devices")
    if devices is not None and k is not None and k != devices.k:
        raise UsageError(f"k = {k} but the device file lists {devices.k} devices")
    cls = get_registry().get(method)
    supported = getattr(cls, "granularities", ("neuron", "layer"))
    if granularity is not None and granularity not in supported:
        raise UsageError(f"partitioner {method!r} does not support {granularity!r} granularity")
    if prune is not None:
        check_ratio(prune)
    if (
        isinstance(imbalance, bool)
        or not isinstance(imbalance, (int, float))
        or not (imbalance >= 0)
    ):
        raise UsageError(f"imbalance must be >= 0, got {imbalance!r}")
    return cls


def _idle_message(method: str, scores, devices: DeviceSet) -> list[str]:
    """Say so when the split leaves devices idle, and why when it is one device for all."""
    from dnnpart._format import duration

    used = np.flatnonzero(np.asarray(scores.neurons).sum(axis=0))
    if len(used) == devices.k:
        return []
    idle = [n for d, n in enumerate(devices.names) if d not in set(used.tolist())]
    text = f"{method} left {len(idle)} of {devices.k} devices idle ({', '.join(idle[:4])}"
    text += f" +{len(idle) - 4})" if len(idle) > 4 else ")"
    links = [devices.default_link, *devices.links.values()]
    message = min(link.time(0) for link in links)
    if len(used) == 1 and scores.latency_s <= message:
        text += (
            f": the whole model takes {duration(scores.latency_s)} on "
            f"{devices.names[used[0]]}, less than one message between devices "
            f"({duration(message)} link latency), so splitting it cannot be faster"
        )
    return [text]


def _devices(graph: LayerGraph, k: int | None, devices: DeviceSet | None) -> DeviceSet:
    """The devices to partition for: given, ``k`` identical ones, or a profile's. On a
    profile, devices without a ``call_overhead`` of their own take the profile's measured
    one (``dnnpart.call_overhead_s``, 0 when it has none), and devices without a host take
    the profile's (``dnnpart.host``) unless one is placed on a Ray node
    (:meth:`DeviceSet.with_host`)."""
    profile = graph.profile
    if devices is None and profile is not None:
        from dnnpart.importers._profiled import profile_devices

        # the file's accelerators and CPU cores; -k K sets the number of accelerators
        devices = profile_devices(profile, None if k is None else k)
    elif devices is None:
        if k is None:
            raise UsageError("give k or devices")
        return DeviceSet.identical(k)
    elif k is not None and k != devices.k:
        raise UsageError(f"k = {k} but the device file lists {devices.k} devices")
    if profile is not None:
        return devices.with_call_overhead(profile.call_overhead).with_host(profile.host)
    return devices


def _granularity(graph: LayerGraph, cls, method: str, granularity: str | None) -> str:
    supported = getattr(cls, "granularities", ("neuron", "layer"))
    if granularity is None:  # neurons where the model and the method allow it
        profiled = graph.profile is not None
        granularity = "layer" if profiled or "neuron" not in supported else "neuron"
    if granularity not in supported:
        raise UsageError(f"partitioner {method!r} does not support {granularity!r} granularity")
    return granularity


def _run(problem: Problem, cls, method: str, options, refine: bool):
    """Run the partitioner (and kl refinement); its validated labels and the seconds."""
    options = dict(options or {})
    own_refine = getattr(cls, "refines_itself", False)
    if refine and own_refine:
        options["refine"] = True
    partitioner = instantiate(cls, options)
    start = time.perf_counter()
    labels = problem.validate(partitioner.partition(problem), who=f"partitioner {method!r}")
    if refine and not own_refine:
        from dnnpart.partitioners.kl import kl_refine

        labels = problem.validate(kl_refine(problem, labels), who="kl refinement")
    return partitioner, labels, time.perf_counter() - start


def _max_vertices(graph: LayerGraph) -> int:
    """An upper bound on the vertices of any problem built from ``graph`` (cheap: no
    problem is built): every input's elements, every layer's neurons and output elements."""
    n = len(graph.inputs) + len(graph.layers)
    n += sum(t.num_elements or 1 for t in graph.inputs)
    for layer in graph.layers:
        n += (layer.neurons or 0) + sum(t.num_elements or 1 for t in layer.outputs)
    return n
