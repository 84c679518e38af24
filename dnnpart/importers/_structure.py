"""Structural checks and topological sorting of ONNX graphs, on the protobuf.

Strangers' graphs may list nodes out of order, contain cycles, produce a tensor twice,
read a tensor nobody produces, repeat initializer names, or call local functions that call
themselves. Each is found here by explicit checks (never ``assert``) and named in the
error; nodes out of order are sorted. Names that are not UTF-8, sparse tensors (which
onnx-ir cannot hold) and nodes known to crash onnx's shape inference are refused here too,
before anything downstream sees them. Subgraphs (If/Loop/Scan bodies) are handled with an
explicit stack: nesting depth never becomes Python recursion depth.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx

from dnnpart.errors import InvalidModelError, ResourceLimitError, UnsupportedModelError
from dnnpart.graph._toposort import stable_topological_order

__all__ = ["check_and_sort", "subgraphs_of", "outer_names_used", "check_functions", "MAX_DEPTH"]

MAX_DEPTH = 24
MAX_SPLIT_OUTPUTS = 1 << 16


def subgraphs_of(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return (
        f"node {node.name!r} ({node.op_type})" if node.name else f"node #{index} ({node.op_type})"
    )


def outer_names_used(node: onnx.NodeProto) -> list[str]:
    """Names the subgraphs of ``node`` read from enclosing scopes (in first-use order)."""
    used: dict[str, None] = {}
    # (graph, names defined by the scopes between it and the node)
    stack: list[tuple[onnx.GraphProto, frozenset[str]]] = [
        (g, frozenset()) for g in subgraphs_of(node)
    ]
    while stack:
        graph, defined = stack.pop()
        local = set(defined)
        local.update(i.name for i in graph.input)
        local.update(t.name for t in graph.initializer)
        local.update(s.values.name for s in graph.sparse_initializer)
        for n in graph.node:
            local.update(o for o in n.output if o)
        frozen = frozenset(local)
        for n in graph.node:
            for name in n.input:
                if name and name not in frozen:
                    used.setdefault(name)
            for g in subgraphs_of(n):
                stack.append((g, frozen))
        for o in graph.output:
            if o.name not in frozen:
                used.setdefault(o.name)
    return list(used)


def check_and_sort(model: onnx.ModelProto) -> None:
    """Check every graph of the model and sort its nodes topologically, in place."""
    # (graph, names visible from enclosing scopes, depth, where)
    stack: list[tuple[onnx.GraphProto, frozenset[str], int, str]] = [
        (model.graph, frozenset(), 0, "main graph")
    ]
    while stack:
        graph, outer, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise ResourceLimitError(f"subgraphs nested deeper than {MAX_DEPTH} levels ({where})")
        if graph.sparse_initializer:  # onnx-ir cannot represent them
            name = graph.sparse_initializer[0].values.name
            raise UnsupportedModelError(
                f"{where}: sparse initializer {name!r} is not supported; "
                "store it as a dense initializer"
            )
        visible = _sort_graph(graph, outer, where)
        for i, node in enumerate(graph.node):
            _refuse_sparse_attributes(node, f"{where}: {_node_label(node, i)}")
            _check_split(node, f"{where}: {_node_label(node, i)}")
            for g in subgraphs_of(node):
                stack.append((g, visible, depth + 1, f"body of {_node_label(node, i)}"))


def _refuse_sparse_attributes(node: onnx.NodeProto, label: str) -> None:
    # onnx-ir cannot represent sparse tensors: say so here rather than fail inside it
    for attr in node.attribute:
        if attr.HasField("sparse_tensor") or attr.sparse_tensors:
            raise UnsupportedModelError(
                f"{label}: sparse tensor attribute {attr.name!r} is not supported; "
                "store it as a dense tensor"
            )


def _require_text(values, what: str) -> None:
    # proto2 string fields come back as bytes when they are not valid UTF-8
    for value in values:
        if not isinstance(value, str):
            raise InvalidModelError(f"{what}: name {value!r} is not valid UTF-8")


def _require_text_node(node: onnx.NodeProto, label: str) -> None:
    _require_text([node.name, node.op_type, node.domain], label)
    _require_text(node.input, label)
    _require_text(node.output, label)
    _require_text([a.name for a in node.attribute], label)


def _check_split(node: onnx.NodeProto, label: str) -> None:
    """Refuse a Split whose ``num_outputs`` would crash or bloat onnx's shape inference.

    onnx 1.23's inference aborts the whole process (an out-of-range vector index) when
    ``num_outputs`` is below the number of outputs (fixed upstream in onnx PR 8255), and
    allocates ``num_outputs`` entries however large it is.
    """
    if node.op_type != "Split" or node.domain not in ("", "ai.onnx"):
        return
    for attr in node.attribute:
        if attr.name == "num_outputs":
            if not len(node.output) <= attr.i <= MAX_SPLIT_OUTPUTS:
                raise InvalidModelError(
                    f"{label}: num_outputs {attr.i} does not fit its {len(node.output)} outputs"
                )


def _sort_graph(graph: onnx.GraphProto, outer: frozenset[str], where: str) -> frozenset[str]:
    """Validate one graph's names, sort its nodes; return the names visible inside it."""
    for values in (graph.input, graph.output, graph.value_info, graph.initializer):
        _require_text([v.name for v in values], where)
    for idx, node in enumerate(graph.node):
        _require_text_node(node, f"{where}: node #{idx}")
    defined: dict[str, str] = {}

    def define(name: str, what: str) -> None:
        if not name:
            return
        if name in defined:
            raise InvalidModelError(
                f"{where}: tensor {name!r} is produced twice ({defined[name]} and {what})"
            )
        defined[name] = what

    inits: set[str] = set()
    for t in list(graph.initializer) + [s.values for s in graph.sparse_initializer]:
        if t.name in inits:
            raise InvalidModelError(f"{where}: duplicate initializer name {t.name!r}")
        inits.add(t.name)
    for i in graph.input:
        define(i.name, "a graph input")
    for name in inits:
        if name not in defined:  # initializers repeated as graph inputs (old IR) are fine
            define(name, "an initializer")
    producer: dict[str, int] = {}
    nodes = list(graph.node)
    for idx, node in enumerate(nodes):
        for o in node.output:
            if o:
                define(o, _node_label(node, idx))
                producer[o] = idx
    visible = outer | frozenset(defined)

    deps: list[set[int]] = []
    for idx, node in enumerate(nodes):
        needed = [n for n in node.input if n] + outer_names_used(node)
        mine: set[int] = set()
        for name in needed:
            if name in producer:
                if producer[name] != idx:
                    mine.add(producer[name])
                else:
                    raise InvalidModelError(
                        f"{where}: {_node_label(node, idx)} reads its own output {name!r}"
                    )
            elif name not in visible:
                raise InvalidModelError(
                    f"{where}: {_node_label(node, idx)} reads tensor {name!r}, "
                    "which nothing produces"
                )
        deps.append(mine)
    for o in graph.output:
        if o.name not in visible:
            raise InvalidModelError(f"{where}: graph output {o.name!r} is not produced by any node")

    # stable: among ready nodes the one listed first goes first
    order, stuck = stable_topological_order(
        len(nodes), ((p, idx) for idx, d in enumerate(deps) for p in d)
    )
    if stuck:
        names = ", ".join(_node_label(nodes[i], i) for i in stuck[:5])
        more = f" and {len(stuck) - 5} more" if len(stuck) > 5 else ""
        raise InvalidModelError(f"{where}: the graph has a cycle through {names}{more}")
    if order != list(range(len(nodes))):
        sorted_nodes = [nodes[i] for i in order]
        del graph.node[:]
        graph.node.extend(sorted_nodes)
    return visible


def check_functions(model: onnx.ModelProto) -> None:
    """Refuse recursive local functions (direct or mutual) and sparse attributes in them."""
    funcs = {(f.domain, f.name): f for f in model.functions}
    for f in model.functions:
        _require_text([f.name, f.domain, *f.input, *f.output], f"local function {f.name!r}")
        for i, node in enumerate(f.node):
            _require_text_node(node, f"local function {f.name!r}: node #{i}")
            label = f"local function {f.name!r}: {_node_label(node, i)}"
            _refuse_sparse_attributes(node, label)
            _check_split(node, label)
    calls = {
        key: {(n.domain, n.op_type) for n in f.node if (n.domain, n.op_type) in funcs}
        for key, f in funcs.items()
    }
    # iterative DFS with colours: 0 new, 1 on the path, 2 done
    colour = dict.fromkeys(funcs, 0)
    for start in funcs:
        if colour[start]:
            continue
        path = [(start, iter(sorted(calls[start])))]
        colour[start] = 1
        while path:
            key, it = path[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[key] = 2
                path.pop()
            elif colour[nxt] == 1:
                raise InvalidModelError(
                    f"local function {nxt[1]!r} (domain {nxt[0]!r}) is recursive"
                )
            elif colour[nxt] == 0:
                colour[nxt] = 1
                path.append((nxt, iter(sorted(calls[nxt]))))
