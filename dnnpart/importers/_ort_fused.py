"""Which node of the model pays for each kernel of onnxruntime's optimised graph.

With graph optimisations on, onnxruntime folds constants, fuses a Conv with the
BatchNormalization, activation and residual Add that follow it, and rewrites convolutions
and pools into its NCHWc layout under new names (``<tensor>_nchwc``) with reorder nodes
between layouts. The profile of such a session names the optimised graph's nodes;
:func:`kernel_owners` maps each of them to the node of the original model whose layer
pays its time:

1. a kernel that kept an original node's name is that node (fusions keep the name of the
   node they start from, as it is or as ``<name>/<fusion>`` or ``fused <name>``);
2. an NCHWc kernel ``<t>_nchwc`` ends where the original tensor ``t`` is produced: its
   node is found walking back from ``t``'s producer over fusable element-wise nodes to
   the first one of the kernel's own op;
3. any other kernel is matched by data flow: among the original nodes that read what its
   input stands for (or write its output), the first not yet taken of its op (for
   convolutions, preferably of the same kernel shape and output channels);
4. a kernel matched to nothing (a layout reorder, a reshape the optimiser inserted, a
   rewrite into another op) is paid by the node that pays for its input's kernel, else by
   the node that pays for the first kernel reading its output.

What an original node fused into a kernel (a BatchNormalization, a Relu, an Add) gets no
time of its own: its cost is in the kernel's, paid by the node the kernel starts from.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

__all__ = ["kernel_owners"]

# element-wise nodes onnxruntime fuses into the kernel before them
FUSABLE = frozenset(
    {
        "BatchNormalization",
        "Relu",
        "LeakyRelu",
        "Clip",
        "Sigmoid",
        "HardSigmoid",
        "Tanh",
        "Elu",
        "Selu",
        "Softplus",
        "HardSwish",
        "Gelu",
        "Add",
        "Sum",
        "Sub",
        "Mul",
        "Div",
        "Identity",
        "Dropout",
    }
)
_NCHWC = "_nchwc"


def _base_op(op_type: str) -> str:
    """``FusedConv`` -> ``Conv``; other ops as they are."""
    return op_type[len("Fused") :] if op_type.startswith("Fused") else op_type


def _shape(node: onnx.NodeProto, dims: dict[str, list[int]]):
    """(kernel shape, output channels) of a convolution, None where unknown."""
    kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), None)
    w = dims.get(node.input[1]) if len(node.input) > 1 else None
    if kernel is None and w is not None and len(w) > 2:
        kernel = list(w[2:])
    return kernel, (w[0] if w else None)


class _Original:
    """The original graph: producers, consumers, and each node's conv signature."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.nodes = list(g.node)
        self.index = {n.name: i for i, n in enumerate(self.nodes) if n.name}
        dims = {t.name: list(t.dims) for t in g.initializer}
        self.consts = set(dims)
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.nodes):
            for t in n.output:
                if t:
                    self.producer[t] = i
            for t in n.input:
                if t and t not in self.consts:
                    self.consumers[t].append(i)
        self.signature = [_shape(n, dims) if n.op_type == "Conv" else None for n in self.nodes]

    def closure(self, i: int) -> set[str]:
        """The outputs of node ``i`` and of the fusable nodes that follow it (what a kernel
        starting at ``i`` may have computed)."""
        seen, out, stack = {i}, set(), [i]
        while stack:
            for t in self.nodes[stack.pop()].output:
                out.add(t)
                for c in self.consumers.get(t, ()):
                    if c not in seen and self.nodes[c].op_type in FUSABLE:
                        seen.add(c)
                        stack.append(c)
        return out

    def start_of(self, tensor: str, op: str, taken: set[int]) -> int | None:
        """Walking back from ``tensor``'s producer over fusable nodes: the first node of
        ``op`` not taken yet."""
        first = self.producer.get(tensor)
        stack, seen = ([first] if first is not None else []), set()
        while stack:
            i = stack.pop(0)
            if i in seen:
                continue
            seen.add(i)
            node = self.nodes[i]
            if node.op_type == op and i not in taken:
                return i
            if node.op_type in FUSABLE:
                stack += [self.producer[t] for t in node.input if t in self.producer]
        return None


def _names(kernel: str) -> list[str]:
    """The original node names a kernel's name may keep: itself, what comes before a
    ``/`` (``k/MatMulAddFusion``), after ``fused `` (``fused gemm0``)."""
    return [kernel, kernel.split("/")[0], kernel.removeprefix("fused ")]


def _topological(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every node comes after the producers of its inputs."""
    producer = {t: i for i, n in enumerate(nodes) for t in n.output if t}
    pending = [sum(1 for t in set(n.input) if t in producer) for n in nodes]
    readers: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        for t in set(n.input):
            if t in producer:
                readers[producer[t]].append(i)
    ready = [i for i, p in enumerate(pending) if p == 0]
    order = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in readers[i]:
            pending[j] -= 1
            if pending[j] == 0:
                ready.append(j)
    order += [i for i in range(len(nodes)) if i not in set(order)]  # a cycle: keep the rest
    return [nodes[i] for i in order]


def kernel_owners(original: onnx.ModelProto, optimized: onnx.ModelProto) -> dict[str, str]:
    """Map every node name of ``optimized`` (onnxruntime's optimised graph of
    ``original``, saved with ``optimized_model_filepath``) to the name of the original
    node that pays its time (see the module). Both graphs must name their nodes; a kernel
    with no owner at all (an empty graph around it) is left out."""
    orig = _Original(original)
    opt_consts = {t.name for t in optimized.graph.initializer}
    stands_for: dict[str, set[str]] = {}  # optimised tensor -> original tensors it carries
    owner_of_tensor: dict[str, int] = {}  # optimised tensor -> original node of its kernel
    taken: set[int] = set()
    owners: dict[str, int] = {}
    orphans: list[onnx.NodeProto] = []
    for node in _topological(list(optimized.graph.node)):
        data = [t for t in node.input if t and t not in opt_consts]
        carried = set().union(*(stands_for.get(t, {t}) for t in data)) if data else set()
        op = _base_op(node.op_type)
        u = next(
            (orig.index[n] for n in _names(node.name) if orig.index.get(n) not in (None, *taken)),
            None,
        )
        if u is None and node.name.endswith(_NCHWC):
            u = orig.start_of(node.name[: -len(_NCHWC)], op, taken)
        if u is None and not node.op_type.startswith("Reorder"):
            u = _by_data_flow(orig, node, op, carried, taken, optimized)
        if u is None:
            producers = [owner_of_tensor[t] for t in data if t in owner_of_tensor]
            if producers:
                owners[node.name] = producers[0]
            else:
                orphans.append(node)
            for t in node.output:
                stands_for[t] = {t} if t in orig.producer else carried
                if producers:
                    owner_of_tensor[t] = producers[0]
            continue
        taken.add(u)
        owners[node.name] = u
        reach = orig.closure(u)
        for t in node.output:
            stands_for[t] = {t} if t in orig.producer else reach
            owner_of_tensor[t] = u
    for node in orphans:  # no producer: paid by the first node that reads its output
        readers = [
            owners[n.name]
            for n in optimized.graph.node
            if n.name in owners and set(n.input) & set(node.output)
        ]
        if readers:
            owners[node.name] = readers[0]
    return {k: orig.nodes[v].name for k, v in owners.items()}


def _by_data_flow(orig: _Original, node, op: str, carried: set[str], taken: set[int], optimized):
    """Rule 3 of the module: the original node this kernel stands for, or None."""
    readers = sorted({c for t in carried for c in orig.consumers.get(t, ()) if c not in taken})
    makers = sorted({orig.producer[t] for t in node.output if t in orig.producer} - taken)
    same = [c for c in readers + makers if orig.nodes[c].op_type == op]
    if op == "Conv" and len(same) > 1:
        dims = {t.name: list(t.dims) for t in optimized.graph.initializer if t.name in node.input}
        sig = _shape(node, dims)
        exact = [c for c in same if orig.signature[c] == sig]
        same = exact or same
    return same[0] if same else None
