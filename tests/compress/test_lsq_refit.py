"""RePurpose's adjustment: drop cross-device synapses, re-fit the kept ones by least
squares on calibration activations (closed forms on tiny layers, invariants on random)."""

from __future__ import annotations

import numpy as np
import pytest

from dnnpart.compress import cross_device_keep, cross_prune_lsq, lsq_refit
from dnnpart.errors import UsageError

# four samples of three inputs; inputs 0 and 1 are orthogonal, X_K^T X_K = 2 I
X = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float64)


def test_refit_equals_the_closed_form():
    # one neuron, w = (1, 2, 4), input 2 dropped:
    # v = w_K + (X_K^T X_K)^-1 X_K^T X_D w_D = (1, 2) + (1, 1) / 2 * 4 = (3, 4)
    w = np.array([[1.0], [2.0], [4.0]])
    keep = np.array([[True], [True], [False]])
    new, shift = lsq_refit(X, w, keep, fit_bias=False)
    np.testing.assert_allclose(new.ravel(), [3.0, 4.0, 0.0])
    assert shift.tolist() == [0.0]
    # the residual X w - X_K v = (2, 2, -2, -2) is orthogonal to the kept inputs
    residual = X @ w - X @ new
    np.testing.assert_allclose(X[:, :2].T @ residual, 0, atol=1e-12)


def test_a_constant_dropped_input_goes_into_the_bias():
    # input 2 is always 1; inputs 0 and 1 do not span the constant
    x = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]], dtype=np.float64)
    w = np.array([[1.0, -1.0], [2.0, 0.5], [4.0, 3.0]])
    keep = np.array([[True, True], [True, True], [False, False]])
    new, shift = lsq_refit(x, w, keep)
    np.testing.assert_allclose(new[:2], w[:2], atol=1e-12)
    np.testing.assert_allclose(shift, [4.0, 3.0])
    np.testing.assert_allclose(x @ new + shift, x @ w, atol=1e-12)


def test_neurons_that_drop_nothing_keep_their_weights_exactly():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((50, 6)), rng.standard_normal((6, 4)).astype(np.float32)
    keep = np.ones_like(w, dtype=bool)
    keep[0, 1] = False  # only neuron 1 drops something
    new, shift = lsq_refit(x, w, keep)
    np.testing.assert_array_equal(new[:, [0, 2, 3]], w[:, [0, 2, 3]])
    assert new.dtype == w.dtype and new[0, 1] == 0 and shift[0] == 0


def test_refit_never_does_worse_than_plain_dropping():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 12)) @ rng.standard_normal((12, 12))  # correlated
    w = rng.standard_normal((12, 8))
    keep = rng.random((12, 8)) < 0.5
    new, shift = lsq_refit(x, w, keep)
    target = x @ w
    refit_err = np.linalg.norm(x @ new + shift - target, axis=0)
    drop_err = np.linalg.norm(x @ np.where(keep, w, 0) - target, axis=0)
    assert np.all(refit_err <= drop_err + 1e-9) and refit_err.sum() < 0.8 * drop_err.sum()


def test_dropping_every_cross_device_net_leaves_no_cross_device_synapse():
    rng = np.random.default_rng(2)
    inputs, neurons = np.array([0, 0, 1, 1, 1, 0]), np.array([0, 1, 1, 0])
    w = rng.standard_normal((6, 4))
    w[3, 0] = 0  # an existing zero stays a zero
    x = rng.standard_normal((40, 6))
    new, bias = cross_prune_lsq(x, w, np.zeros(4), inputs, neurons)

    def nets(weight):  # (input, receiving device) pairs that must be sent
        return {
            (i, int(neurons[j]))
            for i, j in zip(*np.nonzero(weight), strict=True)
            if inputs[i] != neurons[j]
        }

    assert len(nets(w)) == 6 and nets(new) == set()
    assert new[3, 0] == 0 and np.count_nonzero(new) <= np.count_nonzero(w)
    assert bias.shape == (4,)


def test_keep_a_chosen_net():
    inputs, neurons = np.array([0, 1]), np.array([0, 1, 1])
    dropped = np.array([[False, True], [True, False]])  # 0 -> device 1 dropped; 1 -> 0 too
    keep = cross_device_keep(inputs, neurons, dropped)
    assert keep.tolist() == [[True, False, False], [False, True, True]]
    kept = cross_device_keep(inputs, neurons, np.zeros((2, 2), bool))
    assert kept.all()


def test_bad_shapes_are_usage_errors():
    with pytest.raises(UsageError, match="re-fit"):
        lsq_refit(X, np.ones((2, 2)), np.ones((2, 2), bool))
