"""Cross-device pruning with a least-squares re-fit (Abdi, Rashidi, Fekri, Krishna,
"Restructuring, Pruning, and Adjustment of Deep Models for Parallel Distributed
Inference" (RePurpose), arXiv 2008.08289: the *adjustment* step).

After a dense layer's neurons are placed on devices, a neuron that reads an input
computed on another device makes that input cross the network. Dropping the synapse saves
the transfer once no neuron of the receiving device needs that input any more (the net
disappears); the neuron's pre-activation changes by what the dropped synapses carried.
The re-fit keeps that change as small as possible on calibration activations ``X``: the
weights ``v`` the neuron keeps minimise ``||X w - X_K v - c||^2`` (``c`` a bias shift,
optional), a linear least-squares problem with the closed form
``v = w_K + (X_K^T X_K)^+ X_K^T X_D w_D`` when ``c`` is not fitted. No training loop.
"""

from __future__ import annotations

import numpy as np

from dnnpart.errors import UsageError

__all__ = ["lsq_refit", "cross_device_keep", "cross_prune_lsq", "min_norm_solve"]


def min_norm_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The minimum-norm least-squares solution of ``a @ x = b`` (LAPACK ``gelsy``: a
    complete orthogonal factorisation, several times faster than the SVD)."""
    import scipy.linalg

    return scipy.linalg.lstsq(a, b, lapack_driver="gelsy", check_finite=False)[0]


def lsq_refit(
    x: np.ndarray,
    weight: np.ndarray,
    keep: np.ndarray,
    *,
    fit_bias: bool = True,
    target: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-fit a dense layer's kept weights so its pre-activations change least.

    Parameters
    ----------
    x : ndarray, shape (samples, inputs)
        Calibration activations entering the layer.
    weight : ndarray, shape (inputs, neurons)
        The layer's weights (``y = x @ weight + bias``).
    keep : ndarray of bool, shape (inputs, neurons)
        The synapses each neuron keeps; the others are dropped (set to zero).
    fit_bias : bool
        Also fit a shift of each neuron's bias (absorbs the mean of what was dropped).
    target : ndarray, shape (samples, neurons), optional
        The pre-activations to reproduce (without the bias). Default ``x @ weight``; give
        the original model's when ``x`` comes from a model already changed upstream, so
        the re-fit also absorbs what the layers before it lost.

    Returns
    -------
    new_weight : ndarray, shape (inputs, neurons)
        Zero where ``keep`` is False; elsewhere the least-squares weights (the
        minimum-norm solution where kept inputs are collinear on ``x``).
    bias_shift : ndarray, shape (neurons,)
        Add to the bias (zeros unless ``fit_bias``).

    The normal equations are formed once (``A^T A`` with ``A = [x, 1]``); neurons with
    the same kept inputs are solved together (one ``lstsq`` on the kept block of the Gram
    matrix, whose minimum-norm solution is that of the original problem); a neuron that
    drops nothing keeps its weights exactly.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight)
    keep = np.asarray(keep, dtype=bool)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0] or keep.shape != w.shape:
        raise UsageError(
            f"re-fit needs x (samples, {w.shape[0] if w.ndim == 2 else '?'}), weight "
            f"(inputs, neurons) and keep of the weight's shape; got {x.shape}, {w.shape}, "
            f"{keep.shape}"
        )
    if target is None:
        target = x @ w.astype(np.float64)  # (samples, neurons): the pre-activations to keep
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (x.shape[0], w.shape[1]):
        raise UsageError(f"re-fit target must be {(x.shape[0], w.shape[1])}, got {target.shape}")
    new = np.where(keep, w, 0).astype(w.dtype)
    shift = np.zeros(w.shape[1], dtype=w.dtype)
    dropping = ~keep & (w != 0)
    cols = np.flatnonzero(dropping.any(axis=0))
    if not cols.size:
        return new, shift
    a = np.hstack([x, np.ones((x.shape[0], 1))]) if fit_bias else x
    gram = a.T @ a
    rhs = a.T @ target[:, cols]
    patterns, group = np.unique(keep[:, cols].T, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        members = np.flatnonzero(np.asarray(group).reshape(-1) == g)
        neurons = cols[members]
        kept = np.flatnonzero(pattern)
        if fit_bias:
            kept = np.append(kept, x.shape[1])
        if not kept.size:
            continue  # nothing kept: the neuron's weights are all dropped
        solution = min_norm_solve(gram[np.ix_(kept, kept)], rhs[np.ix_(kept, members)])
        if fit_bias:
            shift[neurons] = solution[-1]
            solution = solution[:-1]
        new[np.ix_(kept[: len(kept) - fit_bias], neurons)] = solution.astype(w.dtype)
    return new, shift


def cross_device_keep(
    input_devices: np.ndarray,
    neuron_devices: np.ndarray,
    dropped: np.ndarray | None = None,
) -> np.ndarray:
    """The synapses kept when cross-device nets are dropped.

    Parameters
    ----------
    input_devices : ndarray of int, shape (inputs,)
        The device that computes each input of the layer.
    neuron_devices : ndarray of int, shape (neurons,)
        The device of each neuron of the layer.
    dropped : ndarray of bool, shape (inputs, k), optional
        ``dropped[i, d]``: input ``i`` is no longer sent to device ``d`` (a net of the
        hypergraph removed). Default: every cross-device net is dropped.

    Returns
    -------
    ndarray of bool, shape (inputs, neurons)
        ``keep[i, j]`` unless input ``i`` lives on another device than neuron ``j`` and
        its net to that device is dropped.
    """
    src = np.asarray(input_devices).reshape(-1, 1)
    dst = np.asarray(neuron_devices).reshape(1, -1)
    local = src == dst
    if dropped is None:
        return local
    dropped = np.asarray(dropped, dtype=bool)
    return local | ~dropped[:, np.asarray(neuron_devices)]


def cross_prune_lsq(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    input_devices: np.ndarray,
    neuron_devices: np.ndarray,
    dropped: np.ndarray | None = None,
    *,
    fit_bias: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One dense layer after dropping cross-device nets and re-fitting (RePurpose).

    Returns the new ``(weight, bias)``: the existing synapses that
    :func:`cross_device_keep` keeps, re-fitted by :func:`lsq_refit` on ``x``; the bias
    shifted (a layer without a bias gets one only when the fit asks for a non-zero shift).
    """
    # only existing synapses are re-fitted: a pruned weight that came back could need an
    # input its device was never sent
    keep = cross_device_keep(input_devices, neuron_devices, dropped) & (np.asarray(weight) != 0)
    new, shift = lsq_refit(x, weight, keep, fit_bias=fit_bias)
    if bias is None:
        return new, (shift if np.any(shift) else None)
    return new, (np.asarray(bias) + shift).astype(np.asarray(bias).dtype)
