"""The partitioning problem handed to every partitioner, built-in or plugin."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from dnnpart.errors import PartitionerAnswerError, UsageError
from dnnpart.problem._objective import check_objective

if TYPE_CHECKING:
    from dnnpart.problem._profile import Profile

__all__ = ["Problem", "Nets"]

_set = object.__setattr__  # frozen dataclasses: __post_init__ normalises the fields


GRANULARITIES = ("neuron", "layer")


@dataclass(eq=False, frozen=True)
class Problem:
    """A graph to cut into ``k`` parts, with the balance it must respect.

    Vertices are grouped into *layers*: contiguous ranges
    ``layer_offsets[g]:layer_offsets[g+1]``. Where ``balanced[g]`` is true, the compute
    weight of group ``g`` must be shared among devices according to ``targets`` (per-layer
    balance: devices compute a layer together, then exchange). At layer granularity there is
    a single group holding every vertex (whole-model balance).

    A problem is built once and never changed: its fields cannot be rebound (a frozen
    dataclass) and partitioners must not write into its arrays
    (:func:`dnnpart.testing.check_partitioner` catches it), so the derived views
    (:attr:`adjacency`, :attr:`communication`) are computed once and cached.

    Parameters
    ----------
    synapses : scipy.sparse.csr_array, shape (n, n)
        Directed communication structure: ``synapses[u, v] > 0`` when vertex ``v`` consumes
        the output of vertex ``u``; the value is the edge weight (synapse count at neuron
        level, bytes at layer level). Always positive integers-valued floats.
    vertex_weight : ndarray, shape (n,)
        Compute of each vertex (MACs, or seconds for profiled graphs). Non-negative.
    layer_offsets : ndarray, shape (L + 1,)
        Vertex ranges of the groups; ``layer_offsets[0] == 0`` and ``[-1] == n``.
    k : int
        Number of devices.
    targets : ndarray, shape (k,)
        Share of the work each device should get (from device speeds); sums to 1.
    imbalance : float
        Tolerance: a device may take up to ``(1 + imbalance)`` times its share of a group.
    seed : int
        Seed for every random choice; the same seed gives the same answer.
    granularity : {"neuron", "layer"}
    balanced : ndarray of bool, shape (L,)
        Which groups carry a balance constraint (model inputs and layers placed whole do
        not).
    activation_elements : ndarray, shape (n,)
        Elements in each vertex's output per sample (1 for a dense neuron, H*W for a
        conv channel, the whole tensor for a layer); ``volume`` counts these.
    activation_bytes : ndarray, shape (n,)
        Bytes of each vertex's output (elements times dtype size); ``volume_bytes``.
    param_bytes : ndarray, shape (n,)
        Bytes of the parameters (weights, bias) a vertex needs on its device.
    memory_traffic : ndarray, shape (n,)
        Bytes a vertex reads and writes in its device's memory per sample (its inputs,
        parameters and outputs); the time model's memory term (:mod:`._time`). Default 0.
    layer_names : tuple of str
        One name per group, for messages and reports.
    weight_unit : {"macs", "seconds"}
        What ``vertex_weight`` measures: MACs (divide 2x by a device's FLOP/s for time) or
        seconds already (profiled graphs).
    graph : LayerGraph or None
        The model the problem came from, for partitioners that want more.
    devices : DeviceSet or None
        The devices (speeds, memory, links), for partitioners that model time.
    profile : Profile or None
        For a layer problem built from a profiled graph (Tarnawski et al. 2020): the file's
        per-node data and devices (:class:`~dnnpart.problem._profile.Profile`); None else.
    nets : Nets or None
        What really travels, when it differs from "each vertex's output, whole, to every
        device with a consumer" (see :class:`Nets`); scoring counts ``volume`` over these.
        None: one net per vertex, its pins the vertex's consumers in ``synapses``.
    objective : {"throughput", "latency", "volume"} or None
        What layer placement minimises (:mod:`dnnpart.problem._objective`); built-in
        layer partitioners then return a split no worse than vertical on it. None (a bare
        problem): each partitioner's own objective. :func:`dnnpart.partition` sets it.
    """

    synapses: sp.csr_array
    vertex_weight: np.ndarray
    layer_offsets: np.ndarray
    k: int
    targets: np.ndarray | None = None
    imbalance: float = 0.03
    seed: int = 0
    granularity: str = "neuron"
    balanced: np.ndarray | None = None
    activation_elements: np.ndarray | None = None
    activation_bytes: np.ndarray | None = None
    param_bytes: np.ndarray | None = None
    layer_names: tuple[str, ...] = ()
    weight_unit: str = "macs"
    graph: Any = None
    devices: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    nets: Nets | None = None
    profile: Profile | None = None
    memory_traffic: np.ndarray | None = None
    objective: str | None = None

    def __post_init__(self) -> None:
        n = self.synapses.shape[0]
        if self.synapses.shape != (n, n):
            raise UsageError(f"synapses must be square, got shape {self.synapses.shape}")
        _set(self, "synapses", sp.csr_array(self.synapses))
        _set(self, "vertex_weight", np.asarray(self.vertex_weight, dtype=np.float64))
        _set(self, "layer_offsets", np.asarray(self.layer_offsets, dtype=np.int64))
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise UsageError(f"k must be a positive integer, got {self.k!r}")
        _set(self, "k", int(self.k))
        if self.k > max(n, 1):
            raise UsageError(f"k = {self.k} is larger than the number of vertices ({n})")
        if self.targets is None:
            _set(self, "targets", np.full(self.k, 1.0 / self.k))
        _set(self, "targets", np.asarray(self.targets, dtype=np.float64))
        if self.targets.shape != (self.k,) or np.any(self.targets <= 0):
            raise UsageError("targets must hold k positive shares")
        _set(self, "targets", self.targets / self.targets.sum())
        if not (self.imbalance >= 0):
            raise UsageError(f"imbalance must be >= 0, got {self.imbalance!r}")
        if self.granularity not in GRANULARITIES:
            raise UsageError(f"granularity must be one of {GRANULARITIES}")
        if self.objective is not None:
            check_objective(self.objective)
        if self.vertex_weight.shape != (n,):
            raise UsageError("vertex_weight must hold one value per vertex")
        offs = self.layer_offsets
        if offs.ndim != 1 or offs[0] != 0 or offs[-1] != n or np.any(np.diff(offs) < 0):
            raise UsageError("layer_offsets must rise from 0 to the number of vertices")
        num_layers = len(offs) - 1
        if self.balanced is None:
            _set(self, "balanced", np.ones(num_layers, dtype=bool))
        _set(self, "balanced", np.asarray(self.balanced, dtype=bool))
        if self.activation_elements is None:
            _set(self, "activation_elements", np.ones(n, dtype=np.int64))
        _set(self, "activation_elements", np.asarray(self.activation_elements, dtype=np.int64))
        if self.activation_bytes is None:
            _set(self, "activation_bytes", 4 * self.activation_elements)
        _set(self, "activation_bytes", np.asarray(self.activation_bytes, dtype=np.int64))
        if self.param_bytes is None:
            _set(self, "param_bytes", np.zeros(n, dtype=np.int64))
        _set(self, "param_bytes", np.asarray(self.param_bytes, dtype=np.int64))
        if self.memory_traffic is None:
            _set(self, "memory_traffic", np.zeros(n))
        _set(self, "memory_traffic", np.asarray(self.memory_traffic, dtype=np.float64))
        if self.memory_traffic.shape != (n,) or not np.all(self.memory_traffic >= 0):
            raise UsageError("memory_traffic must hold one non-negative value per vertex")
        if not self.layer_names:
            _set(self, "layer_names", tuple(f"layer{g}" for g in range(num_layers)))
        if self.nets is not None:
            self.nets.check(n)

    # -- derived views -------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return self.synapses.shape[0]

    @property
    def num_layers(self) -> int:
        return len(self.layer_offsets) - 1

    @property
    def layer_of(self) -> np.ndarray:
        """Group index of every vertex."""
        return np.repeat(np.arange(self.num_layers), np.diff(self.layer_offsets))

    @functools.cached_property
    def communication(self) -> Nets:
        """The nets scoring counts: :attr:`nets`, or one per vertex from ``synapses``."""
        if self.nets is not None:
            return self.nets
        return Nets(
            pins=self.synapses,
            source=np.arange(self.num_vertices, dtype=np.int64),
            elements=self.activation_elements,
            nbytes=self.activation_bytes,
        )

    @functools.cached_property
    def adjacency(self) -> sp.csr_array:
        """Symmetric communication graph ``synapses + synapses.T`` (no self loops)."""
        a = self.synapses + self.synapses.T
        a.setdiag(0)
        a.eliminate_zeros()
        return sp.csr_array(a)

    @property
    def vertex_weights(self) -> np.ndarray:
        """Multi-constraint weights, shape (n, c): one column per balanced group."""
        cols = np.flatnonzero(self.balanced)
        w = np.zeros((self.num_vertices, max(len(cols), 1)))
        for c, g in enumerate(cols):
            lo, hi = self.layer_offsets[g], self.layer_offsets[g + 1]
            w[lo:hi, c] = self.vertex_weight[lo:hi]
        return w

    def layer_slice(self, g: int) -> slice:
        return slice(int(self.layer_offsets[g]), int(self.layer_offsets[g + 1]))

    def capacities(self, g: int, tight: bool = False) -> np.ndarray:
        """Largest load each device may take in group ``g`` and still count as balanced.

        ``(1 + imbalance) * share``, but never less than ``share + heaviest vertex``: with
        indivisible vertices the exact share may be out of reach (the thesis asks for at
        most ``ceil(n / k)`` neurons per device, which this allows). This loose bound is
        the contract every answer is checked against; any contiguous slicing meets it.

        ``tight=True`` gives the least bound, at or above ``(1 + imbalance) * share`` and
        never above the loose one, that an assignment of the group's weights is known to
        meet (greedy packing, then an exact MILP on small groups; see
        :mod:`dnnpart.problem._capacity`). It differs only where one vertex weighs
        more than ``imbalance * share`` (small layers of uneven neurons), and is what
        partitioners aim for to keep the scored per-layer imbalance near ``1 + imbalance``.
        """
        if tight:
            from dnnpart.problem._capacity import group_tight_capacities

            return group_tight_capacities(self, g)
        w = self.vertex_weight[self.layer_slice(g)]
        total = float(w.sum())
        share = self.targets * total
        heaviest = float(w.max()) if len(w) else 0.0
        return np.maximum((1.0 + self.imbalance) * share, share + heaviest)

    def validate(self, labels: Any, who: str = "partitioner") -> np.ndarray:
        """Check an answer: one integer label in ``[0, k)`` per vertex. Returns it as int64."""
        try:
            arr = np.asarray(labels)
        except Exception as exc:  # noqa: BLE001 - any junk a plugin returns
            raise PartitionerAnswerError(
                f"{who} returned something that is not an array: {exc}"
            ) from exc
        if arr.ndim != 1 or arr.shape[0] != self.num_vertices:
            raise PartitionerAnswerError(
                f"{who} returned {arr.shape} labels, expected ({self.num_vertices},)"
            )
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise PartitionerAnswerError(f"{who} returned non-integer labels ({arr.dtype})")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.k):
            raise PartitionerAnswerError(
                f"{who} returned labels in [{arr.min()}, {arr.max()}], expected [0, {self.k - 1}]"
            )
        return arr


@dataclass(eq=False, frozen=True)
class Nets:
    """Messages a partition may cause: which vertex sends what to whom.

    A net is one piece of data produced by one vertex -- a tensor of a layer, or one
    neuron's slice of a tensor -- with the vertices that consume it (its *pins*). A device
    receives a net once if it holds at least one pin and not the source (hypergraph
    connectivity - 1). A vertex can have several nets: a convolution channel whose
    pre-pooling and post-pooling values feed different layers sends a different number of
    bytes to each, and a channel read through two tensors (a residual) travels twice.

    Parameters
    ----------
    pins : scipy.sparse.csr_array, shape (m, n)
        ``pins[j, v] != 0`` when vertex ``v`` consumes net ``j``.
    source : ndarray of int, shape (m,)
        Vertex producing each net.
    elements, nbytes : ndarray of int, shape (m,)
        Size of each net (elements; bytes).
    tensors : dict, optional
        Tensor name -> its first net (one net per neuron of the tensor, in neuron order),
        for readers that need the values a net carries (zero skipping).
    """

    pins: sp.csr_array
    source: np.ndarray
    elements: np.ndarray
    nbytes: np.ndarray
    tensors: dict[str, int] | None = None

    def __post_init__(self) -> None:
        _set(self, "pins", sp.csr_array(self.pins))
        _set(self, "source", np.asarray(self.source, dtype=np.int64))
        _set(self, "elements", np.asarray(self.elements, dtype=np.int64))
        _set(self, "nbytes", np.asarray(self.nbytes, dtype=np.int64))

    @property
    def num_nets(self) -> int:
        return self.pins.shape[0]

    def check(self, n: int) -> None:
        m = self.pins.shape[0]
        if self.pins.shape[1] != n:
            raise UsageError(f"nets: pins has {self.pins.shape[1]} columns for {n} vertices")
        for name in ("source", "elements", "nbytes"):
            if getattr(self, name).shape != (m,):
                raise UsageError(f"nets: {name} must hold one value per net ({m})")
        if m and (self.source.min() < 0 or self.source.max() >= n):
            raise UsageError("nets: a source is not a vertex")
