"""Spectral partitioning after Hespanha, with a balanced assignment to devices.

J. P. Hespanha, "An efficient MATLAB Algorithm for Graph Partitioning", technical report,
University of California, Santa Barbara (2004), as used by the GraphDNN thesis: the
symmetric edge-weight matrix is made doubly stochastic by scaling it with its largest row
sum and putting each row's missing mass on the diagonal; the ``k`` eigenvectors of the
largest eigenvalues embed the vertices; the rows are clustered (k-means on normalised rows,
i.e. cosine distance, as Hespanha's ``grPartition``, or his pivoted-QR variant).

Hespanha's clusters have no size cap; the thesis asks for at most ``ceil(n / k)`` neurons
per device. Here the clusters are only labels. Every balanced group (layer) is assigned to
devices by a minimum-cost transportation problem (``_assign.transport_assign``) whose
cost is the distance from a vertex's embedding row to each cluster centre and whose
capacities are :meth:`Problem.capacities` (per-layer balance; the tight ones where an
assignment within them is found).
Clusters become devices by a ``k x k`` assignment that gives large clusters to devices
with large shares (heterogeneous targets) and, when each layer is clustered on its own
(the default), each cluster to the device where its already-placed neighbours are.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import qr
from scipy.optimize import linear_sum_assignment
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, lobpcg
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from dnnpart._notes import note
from dnnpart.errors import UsageError
from dnnpart.partitioners._base import (
    Boolean,
    Choice,
    Integer,
    Interval,
    Partitioner,
    with_params_of,
)
from dnnpart.partitioners._objective import layer_objective
from dnnpart.problem._assign import assign_or_none, transport_assign
from dnnpart.problem._helpers import contiguous_slices, loose_note, place_unbalanced
from dnnpart.problem._problem import Problem

__all__ = ["SpectralPartitioner", "spectral_partition", "spectral_embedding"]

CLUSTERINGS = ("kmeans", "qr")
EIGEN_SOLVERS = ("auto", "eigsh", "lobpcg")
# "auto" uses LOBPCG from this many vertices or adjacency non-zeros. Below, ARPACK's
# single-vector Lanczos at tol=1e-6 takes about a second; above, its few hundred sparse
# products dominate (300 products, 31 s for the 40 M non-zeros of bench/partition_scale.py,
# against 43 block products, 5-7 s, for LOBPCG).
_LOBPCG_FROM_VERTICES = 200_000
_LOBPCG_FROM_NNZ = 1_000_000
# LOBPCG iterations at most. Eigenvalues with a gap converge well within this; inside a
# cluster of eigenvalues (the bulk of a random-like layer) no eigenvector is determined
# and further iterations only rotate the block inside the cluster. On the Graph Challenge
# layers 40 iterations cut as well as ARPACK at tol=1e-6 (tests/partitioners/test_spectral.py).
_LOBPCG_MAXITER = 40
# Floor on LOBPCG's tolerance: its products are float32 (rounding 6e-8 per term, summed
# over hundreds of neighbours), so much tighter asks could never be met.
_LOBPCG_MIN_TOL = 1e-4
# The dense work (solver bases, k-means) is on n x k blocks: BLAS / OpenMP threads cost more
# in start-up and spin-waiting than they save, badly so on a shared machine (k-means of
# bench/partition_scale.py: 0.28 s on one thread, 5 s on two with the cores busy). Sparse
# products run on one thread in scipy anyway.
_THREADS = 1


def _doubly_stochastic(adj: sp.csr_array, dtype=np.float64) -> LinearOperator:
    """``C / max_rowsum + diag(1 - rowsum / max_rowsum)`` as an operator.

    One application is one CSR product with ``C``: with a block of vectors (LOBPCG) a
    single pass over the matrix serves every column. For another ``dtype`` than ``adj``'s
    the values are copied once (indices shared); float32 streams fewer bytes per pass.
    """
    rowsum = np.asarray(adj.sum(axis=1)).ravel()
    top = float(rowsum.max())
    diag = (1.0 - rowsum / top).astype(dtype)
    mat = adj
    if adj.dtype != dtype:
        mat = sp.csr_array((adj.data.astype(dtype), adj.indices, adj.indptr), shape=adj.shape)
    top = dtype(top)

    def matmat(x: np.ndarray) -> np.ndarray:
        # A float64 block would make scipy upcast the whole float32 matrix on every call.
        x = np.asarray(x, dtype=dtype)
        return (mat @ x) / top + (diag if x.ndim == 1 else diag[:, None]) * x

    return LinearOperator(adj.shape, matvec=matmat, matmat=matmat, dtype=dtype)


def spectral_embedding(
    adj: sp.csr_array, k: int, *, seed: int = 0, eigen_solver: str = "auto", tol: float = 1e-6
) -> np.ndarray:
    """Eigenvectors of the ``k`` largest eigenvalues of Hespanha's doubly stochastic matrix.

    Parameters
    ----------
    adj : scipy.sparse.csr_array, shape (n, n)
        Symmetric non-negative edge weights (no self loops needed).
    k : int
        Number of eigenvectors.
    seed : int
        Seeds the start vector (ARPACK) or block (LOBPCG).
    eigen_solver : {"auto", "eigsh", "lobpcg"}
        ARPACK Lanczos (:func:`scipy.sparse.linalg.eigsh`, float64) or LOBPCG
        (:func:`scipy.sparse.linalg.lobpcg`: one float32 block product per iteration, at
        most 40 iterations, tolerance at least 1e-4). ``"auto"`` picks LOBPCG from 200 000
        vertices or 1 000 000 adjacency non-zeros.
    tol : float
        Eigen-solver tolerance (clusters need little precision).

    Returns
    -------
    ndarray, shape (n, k)
    """
    if eigen_solver not in EIGEN_SOLVERS:
        raise UsageError(f"eigen_solver must be one of {EIGEN_SOLVERS}, got {eigen_solver!r}")
    n = adj.shape[0]
    rng = np.random.default_rng(seed)
    if adj.nnz == 0:
        return np.zeros((n, k))
    if k + 1 >= n:  # ARPACK needs k < n - 1: small graphs take the dense route
        dense = _doubly_stochastic(adj) @ np.eye(n)
        _, vecs = np.linalg.eigh((dense + dense.T) / 2)
        return vecs[:, ::-1][:, :k]
    if eigen_solver == "auto":
        big = n >= _LOBPCG_FROM_VERTICES or adj.nnz >= _LOBPCG_FROM_NNZ
        eigen_solver = "lobpcg" if big else "eigsh"
    if eigen_solver == "eigsh":
        v0 = rng.uniform(0.5, 1.5, n)
        try:
            with threadpool_limits(limits=_THREADS):
                _, vecs = eigsh(_doubly_stochastic(adj), k=k, which="LA", v0=v0, tol=tol)
            return vecs
        except ArpackNoConvergence:
            pass  # no gap to speak of: LOBPCG's best effort is as good an embedding
    x0 = rng.standard_normal((n, k)).astype(np.float32)
    with warnings.catch_warnings(), threadpool_limits(limits=_THREADS):
        # LOBPCG warns when it stops short of tol; clusters need little precision.
        warnings.simplefilter("ignore", UserWarning)
        _, vecs = lobpcg(
            _doubly_stochastic(adj, np.float32),
            x0,
            largest=True,
            tol=max(tol, _LOBPCG_MIN_TOL),
            maxiter=_LOBPCG_MAXITER,
        )
    return np.asarray(vecs, dtype=np.float64)


def _cluster(x: np.ndarray, k: int, method: str, n_init: int, seed: int):
    """Cluster the embedding rows; returns (labels, cost (n, k) of each row to each cluster)."""
    n = x.shape[0]
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    xn = np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)
    if n < k:
        # Fewer rows than clusters (a narrow layer): each row is its own cluster; the
        # missing clusters cost the most a unit-vector distance can (4).
        cost = np.full((n, k), 4.0)
        cost[np.arange(n), np.arange(n)] = 0.0
        return np.arange(n, dtype=np.int64), cost
    if method == "kmeans":
        # k-means on normalised rows = Hespanha's cosine-distance k-means.
        with warnings.catch_warnings(), threadpool_limits(limits=_THREADS):
            # Fewer distinct rows than k is fine: the balanced assignment fills devices.
            warnings.simplefilter("ignore", ConvergenceWarning)
            km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(xn)
        mu = km.cluster_centers_
        cost = (xn**2).sum(axis=1)[:, None] - 2.0 * xn @ mu.T + (mu**2).sum(axis=1)[None, :]
        return km.labels_.astype(np.int64), np.maximum(cost, 0.0)
    # Hespanha's "simple case": pivoted QR of U' picks k nearly orthogonal rows; each row
    # goes to the representative it projects on most.
    q, r, _ = qr(xn.T, mode="economic", pivoting=True)
    z = q @ np.linalg.pinv(r[:, :k].T)
    score = xn @ z
    return np.argmax(score, axis=1).astype(np.int64), -score


def _match_devices(
    problem: Problem,
    clusters: np.ndarray,
    group: int | None = None,
    affinity: np.ndarray | None = None,
) -> np.ndarray:
    """Device of each cluster, by a k x k assignment.

    Cost: the share of each group's weight a cluster holds beyond a device's capacity
    (heterogeneous devices get clusters of their size), minus, for a single ``group``, the
    share of the edge weight between the cluster and vertices already on the device
    (``affinity``, rows = the group's vertices, columns = devices).
    """
    k = problem.k
    cost = np.zeros((k, k))
    for g in np.flatnonzero(problem.balanced) if group is None else [group]:
        sl = problem.layer_slice(g)
        w = problem.vertex_weight[sl]
        total = float(w.sum())
        if total <= 0:
            continue
        cl = clusters if group is not None else clusters[sl]
        load = np.bincount(cl, weights=w, minlength=k)
        cost += np.maximum(load[:, None] - problem.capacities(g)[None, :], 0.0) / total
    if affinity is not None and affinity.sum() > 0:
        by_cluster = np.zeros((k, k))
        np.add.at(by_cluster, clusters, affinity)
        cost -= by_cluster / by_cluster.sum()
    _, dev = linear_sum_assignment(cost)
    return dev


def _rows(adj: sp.csr_array, sl: slice) -> sp.csr_array:
    """Rows ``sl`` of ``adj`` sharing its arrays (``adj[sl]`` would copy them)."""
    lo, hi = adj.indptr[sl.start], adj.indptr[sl.stop]
    indptr = adj.indptr[sl.start : sl.stop + 1] - lo
    return sp.csr_array(
        (adj.data[lo:hi], adj.indices[lo:hi], indptr), shape=(sl.stop - sl.start, adj.shape[1])
    )


def _assign(problem: Problem, g: int, cost: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """Balanced assignment of group ``g``: cluster ``c``'s cost becomes device ``dev[c]``'s."""
    sl = problem.layer_slice(g)
    dev_cost = np.empty_like(cost)
    dev_cost[:, dev] = cost
    w = problem.vertex_weight[sl]
    # the tight capacities keep the scored imbalance near 1 + imbalance; the loose contract
    # bound only if HiGHS found no assignment within them (a large uneven group)
    labels = assign_or_none(dev_cost, w, problem.capacities(g, tight=True))
    if labels is None:
        note(loose_note("spectral", problem, g))
        labels = transport_assign(dev_cost, w, problem.capacities(g))
    return labels


class SpectralPartitioner(Partitioner):
    """Hespanha's spectral partition, made balanced per group (see the module docstring).

    Parameters
    ----------
    cluster : {"kmeans", "qr"}
        k-means on normalised rows (``sklearn.cluster.KMeans``, seeded) or Hespanha's
        pivoted-QR assignment.
    n_init : int
        k-means restarts (Hespanha's ``nrep``).
    center : bool
        Subtract each balanced group's mean from its embedding rows before clustering. The
        smoothest eigenvectors of a layered network often vary with depth, which says
        nothing about how to split a layer; balance is per group, so only the variation
        inside a group is kept. No effect with a single group.
    per_group : bool
        Cluster each balanced group's rows on their own, then give the clusters of one
        group to devices in order of the groups, each cluster to the device its
        already-placed neighbours are on (a ``k x k`` assignment). Per-layer balance forces
        every layer onto every device, while clusters of the whole graph often follow depth
        (some clusters hold no vertex of a layer). ``False``: Hespanha's single clustering
        of all rows, one cluster-to-device map.
    eigen_solver : {"auto", "eigsh", "lobpcg"}
        See :func:`spectral_embedding`.
    tol : float
        Eigen-solver tolerance.

    References
    ----------
    J. P. Hespanha, "An efficient MATLAB Algorithm for Graph Partitioning", UC Santa
    Barbara technical report, 2004 (``grPartition``).
    """

    name = "spectral"
    granularities = ("neuron", "layer")
    constraints = {
        "cluster": Choice(*CLUSTERINGS),
        "n_init": Integer(1),
        "center": Boolean,
        "per_group": Boolean,
        "tol": Interval(0, 1),
    }  # eigen_solver: checked by spectral_embedding, which takes it too

    def __init__(
        self,
        cluster: str = "kmeans",
        n_init: int = 4,
        center: bool = True,
        per_group: bool = True,
        eigen_solver: str = "auto",
        tol: float = 1e-6,
    ) -> None:
        self.cluster = cluster
        self.n_init = n_init
        self.center = center
        self.per_group = per_group
        self.eigen_solver = eigen_solver
        self.tol = tol

    @layer_objective
    def partition(self, problem: Problem) -> np.ndarray:
        p = self.checked_params()
        cluster, n_init, center, tol = p["cluster"], p["n_init"], p["center"], p["tol"]
        per_group, eigen_solver = p["per_group"], p["eigen_solver"]
        k = problem.k
        labels = np.zeros(problem.num_vertices, dtype=np.int64)
        if k == 1:
            return labels
        adj = problem.adjacency
        if adj.nnz == 0:
            # No edge: nothing to keep together; cut every group in contiguous slices.
            for g in np.flatnonzero(problem.balanced):
                sl = problem.layer_slice(g)
                labels[sl] = contiguous_slices(problem.vertex_weight[sl], problem.targets)
            return labels
        x = spectral_embedding(adj, k, seed=problem.seed, eigen_solver=eigen_solver, tol=tol)
        groups = np.flatnonzero(problem.balanced)
        if center and len(groups) > 1:
            for g in groups:
                sl = problem.layer_slice(g)
                x[sl] -= x[sl].mean(axis=0)
        if not per_group or len(groups) <= 1:
            clusters, cost = _cluster(x, k, cluster, n_init, problem.seed)
            dev = _match_devices(problem, clusters)
            for g in groups:
                sl = problem.layer_slice(g)
                labels[sl] = _assign(problem, g, cost[sl], dev)
            return place_unbalanced(problem, labels)
        placed = np.zeros((problem.num_vertices, k))
        for g in groups:
            sl = problem.layer_slice(g)
            clusters, cost = _cluster(x[sl], k, cluster, n_init, problem.seed)
            # Clusters of this group go to the devices their already-placed neighbours are on.
            affinity = np.asarray(_rows(adj, sl) @ placed)
            dev = _match_devices(problem, clusters, g, affinity)
            labels[sl] = _assign(problem, g, cost, dev)
            placed[np.arange(sl.start, sl.stop), labels[sl]] = 1.0
        return place_unbalanced(problem, labels)


@with_params_of(SpectralPartitioner)
def spectral_partition(problem: Problem, **params) -> np.ndarray:
    """:class:`SpectralPartitioner` ``(**params)`` on ``problem``: one device per vertex."""
    return SpectralPartitioner(**params).partition(problem)
