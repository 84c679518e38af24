"""``dnnpart.exporters.export``: a model and a plan in, a folder of sub-models out."""

from __future__ import annotations

import os
from typing import Any

from dnnpart._plan import Plan
from dnnpart.errors import OutputConflictError, UsageError
from dnnpart.exporters._labels import labels_entry
from dnnpart.exporters._manifest import MANIFEST, Split, file_prefixes, stage_file
from dnnpart.exporters._source import Source, prepare, stage_model
from dnnpart.exporters._write import save_model, staged_folder, write_json

__all__ = ["export", "build_split", "model_file", "EXTERNAL_MIN_BYTES"]

# A sub-model whose initializers reach this size keeps them in a data file beside it
# (protobuf cannot hold 2 GiB; big files also load faster memory-mapped).
EXTERNAL_MIN_BYTES = 64 << 20


def model_file(model_path: str | None, out_dir: str | os.PathLike) -> str | None:
    """Where ``dnnpart verify`` finds the model by itself: its path relative to the folder
    that holds ``out_dir`` (checked there like external data), or None when the model lies
    elsewhere (verify then needs ``--model``). Never an absolute path."""
    if not model_path:
        return None
    base = os.path.dirname(os.path.abspath(out_dir))
    model_path = os.path.abspath(model_path)
    try:
        if os.path.commonpath([base, model_path]) != base:
            return None
    except ValueError:  # another drive
        return None
    return os.path.relpath(model_path, base).replace(os.sep, "/")


def stored_weights(passes, store, folder) -> None:
    """Copy the weights the passes stored (by content hash) into ``folder``, so that the
    split carries the very weights verify and run must replay."""
    from dnnpart.compress._store import load_arrays, save_arrays

    for spec in passes:
        if "sha256" in spec and spec.get("name") == "cross_prune":
            save_arrays(folder, load_arrays(store, spec["sha256"]))


def build_split(model, plan: Plan | str | os.PathLike) -> tuple[Source, Plan, Split]:
    """Load the model, check it against the plan and cut it (nothing is written)."""
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    source = prepare(
        model, plan.passes, plan.model_sha256, plan.input_shapes, store=plan.weights_store
    )
    if plan.granularity == "layer":
        from dnnpart.exporters._layer_export import export_layers

        split = export_layers(source, plan)
    elif plan.granularity == "neuron":
        from dnnpart.exporters._neuron_export import export_neurons

        split = export_neurons(source, plan)
    else:
        raise UsageError(f"unknown granularity {plan.granularity!r} in the plan")
    return source, plan, split


def export(
    model,
    plan: Plan | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
    external_min_bytes: int = EXTERNAL_MIN_BYTES,
) -> dict[str, Any]:
    """Write the plan's split of ``model`` as one ONNX file per device and stage plus
    ``manifest.json`` (DESIGN.md, "Export and verification").

    Parameters
    ----------
    model : path-like or LayerGraph
        The model the plan was made for (unpruned: the plan's pruning is applied here).
        A LayerGraph is modified in place (value types are inferred on its onnx-ir model).
    plan : Plan or path-like
        From :func:`dnnpart.partition` / ``dnnpart partition -o``.
    out_dir : path-like
        Created; an existing one raises :class:`~dnnpart.errors.OutputConflictError`
        (exit 6) unless ``force``, which replaces it whole.
    external_min_bytes : int
        Sub-models with at least this many bytes of initializers keep them in
        ``{device}_stage{s}.data`` beside ``{device}_stage{s}.onnx``.

    Returns
    -------
    dict
        The manifest, as written.

    Notes
    -----
    Layer placement cuts each device's layers into stages (Tarnawski et al. 2020 style
    pipeline placement); neuron placement slices dense layers' weights by output neuron
    (GraphDNN thesis, RePurpose) and sends each device only the activations its neurons
    have a synapse from. The plan's labels are recorded (:mod:`._labels`), for a re-plan
    that keeps each surviving device's part. Files are staged in a temporary folder
    beside ``out_dir`` and renamed into place, the manifest last; their bytes depend only
    on the model, the plan and the options.
    """
    if os.path.lexists(out_dir) and not force:  # fail before the expensive work
        raise OutputConflictError(f"output folder exists: {out_dir} (use --force to replace it)")
    source, plan, split = build_split(model, plan)
    header = {
        "model": {
            "file": model_file(source.path, out_dir),
            "sha256": source.sha256,
            "input_shapes": plan.input_shapes,
            "passes": source.passes,
            # the same facts as passes, for readers of manifests made before them
            "prune": source.prune,
            **({"dead_neurons": source.dead_neurons} if source.dead_neurons is not None else {}),
        },
        "plan": {
            "method": plan.method,
            "k": plan.k,
            "granularity": plan.granularity,
            "parameters": plan.parameters,
            "scores": plan.scores,
        },
        "devices": plan.devices,
        "volume_bytes_planned": (plan.scores or {}).get("volume_bytes"),
    }
    prefixes = file_prefixes([d["name"] for d in plan.devices["device"]])
    with staged_folder(out_dir, force=force) as tmp:
        stored_weights(source.passes, plan.weights_store, tmp)
        for stage in split.stages:
            stage.file = stage_file(prefixes[stage.device], stage.index)
            size = sum(v.const_value.nbytes for v in stage.graph.initializers.values())
            stage.data = (
                stage_file(prefixes[stage.device], stage.index, "data")
                if size >= external_min_bytes
                else None
            )
            save_model(
                stage_model(stage.graph, source),
                os.path.join(tmp, stage.file),
                external_data=stage.data,
                source=source.path,
            )
        header["labels"] = labels_entry(plan.labels, plan.k, plan.groups, plan.offsets, tmp)
        doc = split.to_dict(header)
        write_json(os.path.join(tmp, MANIFEST), doc)  # last: its presence means complete
    return doc
