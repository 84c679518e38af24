"""Layer placement export: each device's whole layers as sub-models, in stages.

Pipeline-parallel deployment (PipeDream, GPipe; Tarnawski et al. 2020): every layer runs
whole on the device the plan gives it. A device's layers are cut into stages
(:mod:`._staging`) and each stage is extracted from the model with onnx-ir
(``onnx_ir.convenience.extract``), which follows the values used inside If/Loop/Scan
bodies and takes the constant-producing nodes and initializers along; a control-flow layer
is one unit, never split. Tensors that cross stages are the sub-models' inputs and
outputs, named after the model's tensors.

Transfers follow the plan's volume convention (DESIGN.md, "Contracts"): each tensor is
sent once to each *other* device that has a consumer of it; a model input arrives on the
device its input vertex is placed on; model outputs stay where they are computed.
"""

from __future__ import annotations

from dnnpart._plan import Plan
from dnnpart.errors import UsageError
from dnnpart.exporters._manifest import Piece, Split, Stage, Transfer
from dnnpart.exporters._source import Source, canonical_initializers
from dnnpart.exporters._staging import assign_stages

__all__ = ["export_layers"]


def _check_plan(source: Source, plan: Plan) -> tuple[list[int], list[int]]:
    """Device of every model input and every layer, after checking the plan's layout."""
    graph = source.graph
    names = [f"input:{t.name}" for t in graph.inputs] + ["layers"]
    n_in = len(graph.inputs)
    offsets = list(range(n_in + 1)) + [n_in + len(graph.layers)]
    if list(plan.groups) != names or [int(x) for x in plan.offsets] != offsets:
        raise UsageError(
            "the plan's layer-granularity layout does not match the model "
            f"({len(plan.groups)} groups, {plan.offsets[-1] if plan.offsets else 0} vertices; "
            f"the model has {n_in} inputs and {len(graph.layers)} layers)"
        )
    labels = [int(x) for x in plan.labels]
    if any(not (0 <= x < plan.k) for x in labels):
        raise UsageError(f"the plan has device labels outside 0..{plan.k - 1}")
    return labels[:n_in], labels[n_in:]


def tensor_bytes(source: Source, name: str) -> int | None:
    """Bytes of tensor ``name`` per sample (symbolic dimensions as 1), None if unknown."""
    info = source.graph.tensors.get(name)
    return info.nbytes if info is not None else None


def export_layers(source: Source, plan: Plan) -> Split:
    """Cut ``source`` by the plan's layer placement (see the module docstring)."""
    graph = source.graph
    in_dev, layer_dev = _check_plan(source, plan)
    n = len(graph.layers)
    deps = [sorted(graph.predecessors(i)) for i in range(n)]
    stage_of, order = assign_stages(layer_dev, deps)

    # where each tensor is produced: ("input", device) or (layer index)
    input_device = {t.name: d for t, d in zip(graph.inputs, in_dev, strict=True)}
    model_outputs = [t.name for t in graph.outputs]
    reads = [
        list(dict.fromkeys([t.name for t in layer.inputs] + list(layer.captured)))
        for layer in graph.layers
    ]

    def home(name: str) -> tuple[int, tuple[int, int] | None]:
        """(device, producing stage) of a tensor; the stage is None for model inputs."""
        if name in graph.producer:
            p = graph.producer[name]
            return layer_dev[p], stage_of[p]
        if name in input_device:
            return input_device[name], None
        raise UsageError(f"tensor {name!r} is read but neither produced nor a model input")

    members: dict[tuple[int, int], list[int]] = {}
    for i in range(n):
        members.setdefault(stage_of[i], []).append(i)

    # -- transfers: once per (tensor, receiving device) -------------------------------
    transfers: list[Transfer] = []
    sent: set[tuple[str, int]] = set()
    for i in range(n):
        for name in reads[i]:
            if name not in graph.producer and name not in input_device:
                continue  # a constant
            src, after = home(name)
            dst = layer_dev[i]
            if src != dst and (name, dst) not in sent:
                sent.add((name, dst))
                transfers.append(
                    Transfer(src, dst, name, name, name, after, tensor_bytes(source, name))
                )
    transfers.sort(key=lambda t: (order.index(t.after) if t.after else -1, t.src, t.dst))

    # -- stages -------------------------------------------------------------------------
    stages: list[Stage] = []
    for key in order:
        idx = members[key]
        mine = set(idx)
        inputs: dict[str, None] = {}
        for i in idx:
            for name in reads[i]:
                if name in graph.producer and graph.producer[name] in mine:
                    continue
                if name in graph.producer or name in input_device:
                    inputs[name] = None
        outputs: dict[str, None] = {}
        for i in idx:
            layer = graph.layers[i]
            used = False
            for t in layer.outputs:
                consumers = graph.consumers.get(t.name, [])
                if t.name in model_outputs or any(c not in mine for c in consumers):
                    outputs[t.name] = None
                used = used or bool(consumers) or t.name in model_outputs
            if not used and layer.outputs:  # a dead layer still runs where the plan put it
                outputs[layer.outputs[0].name] = None
        g = _extract(source, [graph.layers[i] for i in idx], list(inputs), list(outputs))
        g.name = f"device{key[0]}_stage{key[1]}"
        stages.append(
            Stage(
                device=key[0],
                index=key[1],
                graph=g,
                inputs=list(inputs),
                outputs=list(outputs),
                layers=[graph.layers[i].name for i in idx],
                macs=sum(graph.layers[i].macs for i in idx),
            )
        )
    inputs_pieces = [Piece(t.name, input_device[t.name], t.name) for t in graph.inputs]
    output_pieces = []
    for name in model_outputs:
        dev, _ = home(name)
        output_pieces.append(Piece(name, dev, name))
    return Split("layer", plan.k, stages, order, transfers, inputs_pieces, output_pieces)


def _extract(source: Source, layers, inputs: list[str], outputs: list[str]):
    """The stage's layers as a standalone onnx-ir graph (pruned weights as initializers)."""
    import onnx_ir as ir

    from dnnpart.errors import InvalidModelError

    pruned = []
    for layer in layers:
        if layer.splittable:
            name = layer.weights["weight"].name
            if name in source.overrides and name not in pruned:
                pruned.append(name)
    try:
        g = ir.convenience.extract(source.model.graph, inputs + pruned, outputs)
    except ValueError as exc:
        raise InvalidModelError(f"cannot cut the model around {layers[0].name!r}: {exc}") from None
    # extraction stops at the pruned weights: turn those inputs back into initializers
    for v in [v for v in g.inputs if v.name in pruned]:
        g.inputs.remove(v)
        v.const_value = ir.tensor(source.overrides[v.name], name=v.name)
        if v.name not in g.initializers:
            g.register_initializer(v)
    # every node must belong to the stage's layers or be a constant producer the importer
    # folded (nodes are clones: compare by the tensors they produce)
    extracted = {v.name for v in g.inputs}
    produced = {v.name for node in g for v in node.outputs if v.name}
    for layer in layers:
        for t in layer.outputs:
            if t.name in extracted:
                raise RuntimeError(f"layer output {t.name!r} became a stage input")
    foreign = [
        name
        for name in produced
        if name in source.graph.producer
        and source.graph.layers[source.graph.producer[name]] not in layers
    ]
    if foreign:
        raise RuntimeError(f"stage extraction pulled in other devices' tensors: {foreign[:3]}")
    for v in list(g.inputs) + list(g.outputs):
        if v.dtype is None:
            v.dtype = source.dtype(v.name)
        if v.shape is None:
            v.shape = source.shape(v.name)
    canonical_initializers(g, source)
    return g
