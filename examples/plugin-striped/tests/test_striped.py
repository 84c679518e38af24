"""Tests of the striped plugin: dnnpart's conformance checks plus known answers."""

import numpy as np
import pytest
import scipy.sparse as sp
from dnnpart_striped import StripedPartitioner, stripe

from dnnpart.errors import UsageError
from dnnpart.partitioners import Problem
from dnnpart.problem import is_balanced
from dnnpart.scoring import score
from dnnpart.testing import check_partitioner, conformance_problems


@pytest.mark.parametrize("params", [{}, {"inputs": "follow"}, {"tight": True}])
def test_conformance(params):
    assert check_partitioner(StripedPartitioner, params=params) > 0


def test_following_inputs_never_sends_more_and_tight_keeps_tight_capacities():
    for _, p in conformance_problems("neuron", 3):
        plain = StripedPartitioner().partition(p)
        follow = StripedPartitioner(inputs="follow").partition(p)
        assert score(p, follow).volume <= score(p, plain).volume
        assert is_balanced(p, StripedPartitioner(tight=True).partition(p), tight=True)


def test_bad_parameters_are_usage_errors():
    p = _layers([4, 4])
    for params in ({"inputs": "nearest"}, {"tight": "yes"}):
        with pytest.raises(UsageError):
            StripedPartitioner(**params).partition(p)


def _layers(sizes, weight=None, k=2, targets=None):
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=float)
    return Problem(
        synapses=sp.csr_array((n, n)),
        vertex_weight=w,
        layer_offsets=offsets,
        k=k,
        targets=targets,
    )


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_equal_neurons_are_dealt_i_mod_k_in_every_layer(k):
    p = _layers([8, 5], k=k)
    labels = StripedPartitioner().partition(p)
    assert labels.tolist() == [i % k for i in range(8)] + [i % k for i in range(5)]


def test_a_device_twice_as_fast_gets_two_of_every_three_neurons():
    labels = stripe(np.ones(9), np.array([2 / 3, 1 / 3]))
    assert np.bincount(labels).tolist() == [6, 3]
    assert labels[:3].tolist() == [0, 1, 0]


def test_unequal_neurons_stay_within_one_neuron_of_the_share():
    w = np.array([10, 0, 10, 0, 10, 0, 1, 1, 1, 1], dtype=float)
    labels = stripe(w, np.full(2, 0.5))
    loads = np.bincount(labels, weights=w, minlength=2)
    assert loads.max() <= w.sum() / 2 + w.max()
    # strict i mod 2 would give device 0 everything heavy (31 against 3)
    assert loads.tolist() != [32.0, 2.0]
