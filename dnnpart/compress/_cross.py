"""Cross-device pruning after partitioning, under an accuracy budget.

After a neuron split, every input a neuron reads from another device crosses the
network. Only a whole *net* -- one source neuron's activation sent to one receiving
device -- costs bytes, so the unit of every decision here is a (source neuron, receiving
device) pair of a dense layer: dropping it zeroes every synapse from that source into
the layer's neurons on that device, and the device no longer needs the activation.

Three methods rank and drop nets:

- ``lsq`` (Abdi, Rashidi, Fekri, Krishna, "Restructuring, Pruning, and Adjustment of
  Deep Models for Parallel Distributed Inference" (RePurpose), arXiv 2008.08289): the
  receiving neurons re-fit the weights they keep by least squares on calibration
  activations (:func:`~dnnpart.compress.lsq_refit`), layer by layer, against the
  pre-activations of the model before the drop. Nets are ranked by the error the re-fit
  cannot remove: the part of the source's activation that the receiving device's own
  inputs do not explain linearly, times the squared weights it carried.
- ``dynamic`` (GraphDNN thesis, Alg. 4, "dynamic pruning"): cross-device synapses below a
  magnitude threshold are cut, no re-fit. Applied per net, a net goes when every synapse
  it carries is below the threshold: nets are ranked by their largest ``|w|``.
- ``greedy`` (GraphDNN thesis, Alg. 5, "greedy cross-weight fixing"): rounds of cutting a
  batch of cross-device nets spread as far apart as possible in the thesis' synapse
  distance (Eq. 5-1, the position in the output-major weight order), each round followed
  by compensation in the weights the neurons keep (the thesis retrains; here the
  least-squares re-fit stands for the retraining), until the accuracy budget is reached;
  a batch that breaks the budget is undone and halved.

``lsq`` and ``dynamic`` drop the longest prefix of their ranking whose accuracy, measured
on held-out data, stays within the budget (binary search on the prefix length), then go
on down the ranking past the net that broke it, in halving batches, for a bounded number
of measurements. Every choice returned has been measured within the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dnnpart.compress._refit import cross_device_keep, lsq_refit, min_norm_solve
from dnnpart.errors import UsageError
from dnnpart.graph import LayerGraph

__all__ = ["METHODS", "CrossLayer", "CrossResult", "cross_prune"]

METHODS = ("lsq", "dynamic", "greedy")


@dataclass(frozen=True)
class CrossLayer:
    """Where a dense or conv layer's inputs and neurons live.

    ``layer`` indexes ``graph.layers``; ``tensor`` is the input it reads; ``source`` the
    neuron (of the input's vertex group) each input feature belongs to (a conv layer's
    features are its input channels times the kernel positions); ``source_devices`` the
    device of each such neuron; ``neuron_devices`` the device of each output neuron.
    ``conv`` is None for a dense layer, else ``(kernel, pads, strides, dilations)`` of a
    2-D convolution (pads as ONNX: top, left, bottom, right).
    """

    layer: int
    tensor: str
    source: np.ndarray
    source_devices: np.ndarray
    neuron_devices: np.ndarray
    conv: tuple | None = None


@dataclass
class CrossResult:
    """What :func:`cross_prune` chose: the new weights by value name, the nets dropped
    (per layer name), the held-out accuracy, and how many candidates there were."""

    weights: dict[str, np.ndarray]
    dropped: dict[str, int]
    accuracy: float
    candidates: int
    evaluations: int = 0
    before: float = math.nan  # held-out accuracy with no net dropped
    notes: list[str] = field(default_factory=list)

    @property
    def nets(self) -> int:
        return sum(self.dropped.values())


def _matrix(graph: LayerGraph, entry: CrossLayer) -> np.ndarray:
    """The layer's weight as an (input features, neurons) array."""
    layer = graph.layers[entry.layer]
    w = np.asarray(layer.weights["weight"].numpy())
    if entry.conv is not None:  # (out, in, kh, kw): features in (in, kh, kw) order
        return w.reshape(w.shape[0], -1).T
    return w.T if layer._weight_in_out()[2] else w


def _stored(graph: LayerGraph, entry: CrossLayer, matrix: np.ndarray) -> np.ndarray:
    """An (input features, neurons) array back in the layer's weight layout."""
    layer = graph.layers[entry.layer]
    shape = layer.weights["weight"].shape
    if entry.conv is not None:
        return np.ascontiguousarray(matrix.T.reshape(shape))
    return np.ascontiguousarray(matrix.T if layer._weight_in_out()[2] else matrix)


def _as_rows(x: np.ndarray, entry: CrossLayer) -> np.ndarray:
    """A layer's input activations as (rows, input features): samples for a dense layer,
    samples times output positions (im2col) for a convolution."""
    x = np.asarray(x)
    if entry.conv is None:
        return x.reshape(-1, len(entry.source))
    (kh, kw), (pt, pl, pb, pr), (sh, sw), (dh, dw) = entry.conv
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, cols_ = slice(i * dh, i * dh + sh * ho, sh), slice(j * dw, j * dw + sw * wo, sw)
            cols[:, :, i, j] = xp[:, :, rows, cols_]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * ho * wo, c * kh * kw)


class _Candidates:
    """The droppable nets of every layer: entry, source neuron, device, and a cost."""

    def __init__(self, graph: LayerGraph, entries: Sequence[CrossLayer], k: int):
        self.k = k
        rows_e, rows_s, rows_d = [], [], []
        self.w = []
        for e, entry in enumerate(entries):
            w = _matrix(graph, entry)
            self.w.append(w)
            onehot = np.eye(k, dtype=np.float64)[entry.neuron_devices]  # (neurons, k)
            per_input = (w != 0).astype(np.float64) @ onehot  # synapses into each device
            reads = np.zeros((len(entry.source_devices), k))
            np.add.at(reads, entry.source, per_input)
            local = reads[np.arange(len(entry.source_devices)), entry.source_devices].copy()
            reads[np.arange(len(entry.source_devices)), entry.source_devices] = 0
            for dev in np.unique(entry.neuron_devices):
                # a device's part of the layer reads at least one input (its sub-model
                # needs one): with none of its own, it keeps its busiest incoming net
                if not local[entry.source_devices == dev].any() and reads[:, dev].any():
                    reads[np.argmax(reads[:, dev]), dev] = 0
            s, d = np.nonzero(reads)
            rows_e.append(np.full(len(s), e))
            rows_s.append(s)
            rows_d.append(d)
        cat = np.concatenate
        self.entry = cat(rows_e) if rows_e else np.zeros(0, np.int64)
        self.source = cat(rows_s) if rows_s else np.zeros(0, np.int64)
        self.device = cat(rows_d) if rows_d else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.entry)

    def dropped(self, chosen: np.ndarray, entries: Sequence[CrossLayer]) -> list[np.ndarray]:
        """Per layer, ``(inputs, k)`` bool: input feature no longer sent to device."""
        out = []
        for e, entry in enumerate(entries):
            mine = chosen[self.entry[chosen] == e]
            net = np.zeros((len(entry.source_devices), self.k), dtype=bool)
            net[self.source[mine], self.device[mine]] = True
            out.append(net[entry.source])
        return out

    def max_abs(self, entries) -> np.ndarray:
        """Thesis Alg. 4: a net's largest cross-device ``|w|``."""
        cost = np.zeros(len(self))
        for e, entry in enumerate(entries):
            mine = np.flatnonzero(self.entry == e)
            a = np.abs(self.w[e])
            for i in mine:
                rows = entry.source == self.source[i]
                cols = entry.neuron_devices == self.device[i]
                cost[i] = a[np.ix_(rows, cols)].max()
        return cost

    def distance(self, entries) -> np.ndarray:
        """Thesis Eq. 5-1: the output-major position of a net's first synapse, layers in
        order."""
        pos = np.zeros(len(self))
        base = 0.0
        for e, entry in enumerate(entries):
            w = self.w[e]
            mine = np.flatnonzero(self.entry == e)
            for i in mine:
                rows = np.flatnonzero(entry.source == self.source[i])
                cols = np.flatnonzero(entry.neuron_devices == self.device[i])
                r, c = np.nonzero(w[np.ix_(rows, cols)])
                pos[i] = base + np.min(cols[c] * w.shape[0] + rows[r])
            base += w.size
        return pos

    def residual(self, entries, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """RePurpose ranking: what a re-fit from the receiving device's own inputs cannot
        recover of the source's activation, times the weights it carried, relative to the
        layer's pre-activation energy."""
        cost = np.zeros(len(self))
        for e, entry in enumerate(entries):
            x = inputs[e].astype(np.float64)
            w = self.w[e].astype(np.float64)
            x_dev = entry.source_devices[entry.source]
            energy = float(np.var(x @ w, axis=0).sum()) or 1.0
            mine = np.flatnonzero(self.entry == e)
            for d in np.unique(self.device[mine]):
                a = np.hstack([x[:, x_dev == d], np.ones((len(x), 1))])
                fit = a @ min_norm_solve(a.T @ a, a.T @ x)
                unexplained = np.mean((x - fit) ** 2, axis=0)  # per input feature
                carried = (w[:, entry.neuron_devices == d] ** 2).sum(axis=1)
                per_input = unexplained * carried
                at = mine[self.device[mine] == d]
                per_source = np.zeros(len(entry.source_devices))
                np.add.at(per_source, entry.source, per_input)
                cost[at] = per_source[self.source[at]] / energy
        return cost


def cross_prune(
    graph: LayerGraph,
    entries: Sequence[CrossLayer],
    k: int,
    *,
    method: str,
    budget: float,
    runner,
    calibration: Sequence[dict[str, np.ndarray]],
    score: Callable[[dict[str, np.ndarray]], float],
    reference: float,
    steps: int = 8,
    scan: int = 32,
) -> CrossResult:
    """Drop cross-device nets of ``graph``'s dense layers, cheapest first, within budget.

    Parameters
    ----------
    graph : LayerGraph
        The partitioned model (after the plan's other passes).
    entries : sequence of CrossLayer
        The dense layers whose inputs may be dropped, in layer order, with the devices.
    k : int
        Number of devices.
    method : {"lsq", "dynamic", "greedy"}
        See the module docstring.
    budget : float
        Largest allowed ``reference - score(weights)`` (0.01: one point of accuracy).
    runner : ModelRunner
        Runs the model with replaced weights; must return each entry's input tensor.
    calibration : sequence of feeds
        Samples for the re-fit (never the held-out ones).
    score : callable
        Held-out accuracy of the model with the given replaced weights.
    reference : float
        The accuracy the budget is measured from (the original model's).
    steps : int
        ``greedy``: the first batch cuts ``1/steps`` of the candidate nets.
    scan : int
        ``lsq``, ``dynamic``: measurements spent after the longest prefix on the nets
        ranked behind the first one that broke the budget (it is skipped).

    Returns
    -------
    CrossResult
    """
    if method not in METHODS:
        raise UsageError(f"unknown cross-prune method {method!r}; known: {', '.join(METHODS)}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget <= 1:
        raise UsageError(f"the accuracy budget must be in [0, 1], got {budget!r}")
    from threadpoolctl import threadpool_limits

    # many small factorisations: one BLAS thread each is several times faster than many
    with threadpool_limits(limits=1):
        return _cross_prune(graph, entries, k, method, budget, runner, calibration, score,
                            reference, steps, scan)  # fmt: skip


def _cross_prune(
    graph, entries, k, method, budget, runner, calibration, score, reference, steps, scan
):
    cands = _Candidates(graph, entries, k)
    base = runner.run({}, calibration)
    inputs = [_as_rows(base[entry.tensor], entry) for entry in entries]
    evaluations = 0

    def weights_for(chosen: np.ndarray) -> dict[str, np.ndarray]:
        return _adjusted(graph, entries, cands.dropped(chosen, entries), cands, method,
                         runner, calibration, inputs)  # fmt: skip

    def within(chosen: np.ndarray) -> tuple[bool, float, dict]:
        nonlocal evaluations
        evaluations += 1
        weights = weights_for(chosen)
        acc = score(weights)
        return reference - acc <= budget + 1e-12, acc, weights

    ok, before, weights = within(np.zeros(0, np.int64))
    best = (np.zeros(0, np.int64), before, weights)
    notes = []
    if not ok:
        notes.append(
            f"the model before cross-device pruning is already {reference - before:.4f} "
            f"below the reference accuracy, over the budget {budget:g}: no net dropped"
        )
    elif len(cands) and method == "greedy":
        best = _greedy(cands.distance(entries), within, best, steps)
    elif len(cands):
        cost = cands.max_abs(entries) if method == "dynamic" else cands.residual(entries, inputs)
        order = np.argsort(cost, kind="stable")
        best = _longest_prefix(order, within, best)
        best = _skip_scan(order, within, best, scan)
    chosen, acc, weights = best
    names = [graph.layers[e.layer].name for e in entries]
    dropped = {n: int(np.sum(cands.entry[chosen] == e)) for e, n in enumerate(names)}
    return CrossResult(
        weights=weights,
        dropped={n: c for n, c in dropped.items() if c},
        accuracy=acc,
        candidates=len(cands),
        evaluations=evaluations,
        before=before,
        notes=notes,
    )


def _longest_prefix(order, within, best):
    """The longest prefix of ``order`` within budget (binary search; prefix 0 is)."""
    ok, acc, weights = within(order)
    if ok:
        return order, acc, weights
    lo, hi = 0, len(order)  # within(lo) holds, within(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok, acc, weights = within(order[:mid])
        if ok:
            lo, best = mid, (order[:mid], acc, weights)
        else:
            hi = mid
    return best


def _skip_scan(order, within, best, evaluations):
    """After the longest prefix, go on down ``order`` skipping the nets that break the
    budget: the next nets in batches (halved when one fails; a single failing net is
    skipped), for at most ``evaluations`` measurements."""
    chosen = best[0]
    pos = len(chosen) + 1  # order[len(chosen)] broke the budget
    batch = max(1, (len(order) - pos) // 8)
    while pos < len(order) and evaluations > 0:
        evaluations -= 1
        trial = np.concatenate([chosen, order[pos : pos + batch]])
        ok, acc, weights = within(trial)
        if ok:
            chosen, best, pos = trial, (trial, acc, weights), pos + batch
        elif batch > 1:
            batch //= 2
        else:
            pos += 1
    return best


def _greedy(distance, within, best, steps):
    """Thesis Alg. 5 rounds: cut a batch of nets spread evenly over the distance order,
    keep it if the budget holds, else halve the batch."""
    remaining = np.argsort(distance, kind="stable")
    chosen = best[0]
    batch = max(1, math.ceil(len(remaining) / max(1, int(steps))))
    while len(remaining) and batch >= 1:
        take = min(batch, len(remaining))
        picks = np.unique(np.round(np.linspace(0, len(remaining) - 1, take)).astype(np.int64))
        trial = np.concatenate([chosen, remaining[picks]])
        ok, acc, weights = within(trial)
        if ok:
            chosen, best = trial, (trial, acc, weights)
            remaining = np.delete(remaining, picks)
        else:
            batch //= 2
    return best


def _adjusted(graph, entries, dropped, cands, method, runner, calibration, inputs):
    """The replaced weights (by value name) after dropping ``dropped``; with a re-fit
    (``lsq``, ``greedy``) layer by layer on the activations of the changed model."""
    weights: dict[str, np.ndarray] = {}
    for e, entry in enumerate(entries):
        if not dropped[e].any():
            continue
        layer = graph.layers[entry.layer]
        w = cands.w[e]
        keep = cross_device_keep(entry.source_devices[entry.source], entry.neuron_devices,
                                 dropped[e]) & (w != 0)  # fmt: skip
        bias = layer.weights.get("bias")
        b = None if bias is None else np.asarray(bias.numpy())
        if method == "dynamic":
            new = np.where(keep, w, 0).astype(w.dtype)
        else:
            x = inputs[e]
            if weights and e:  # the model upstream changed: its activations here
                got = runner.run(weights, calibration)[entry.tensor]
                x = _as_rows(got, entry)
            fit_bias = b is not None and b.shape == (w.shape[1],)
            new, shift = lsq_refit(x, w, keep, fit_bias=fit_bias,
                                   target=inputs[e].astype(np.float64) @ w)  # fmt: skip
            if fit_bias:
                weights[bias.name] = (b + shift).astype(b.dtype)
        weights[layer.weights["weight"].name] = _stored(graph, entry, new)
    return weights
