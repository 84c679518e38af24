"""Deep Compression's parts: Huffman code lengths, k-means weight sharing as a model pass,
and the coded size of a layer (Han et al., ICLR 2016; the GraphDNN thesis §2.2.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dnnpart
from dnnpart.compress import (
    apply_passes,
    huffman_bits,
    huffman_lengths,
    layer_size,
    prune_passes,
    share_passes,
    share_weights,
    size_table,
    weights_digest,
)
from dnnpart.errors import InvalidModelError, UsageError

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx"


@pytest.fixture(scope="module")
def mlp():
    return dnnpart.load(MLP)


# -- Huffman -----------------------------------------------------------------------------


def test_huffman_lengths_of_the_textbook_example():
    # Cormen et al., Introduction to Algorithms, §16.3: 224 bits for 100 characters
    counts = {"a": 45, "b": 13, "c": 12, "d": 16, "e": 9, "f": 5}
    lengths = huffman_lengths(counts)
    assert lengths == {"a": 1, "b": 3, "c": 3, "d": 3, "e": 4, "f": 4}
    assert huffman_bits("a" * 45 + "b" * 13 + "c" * 12 + "d" * 16 + "e" * 9 + "f" * 5) == 224


def test_huffman_of_one_symbol_and_of_nothing():
    assert huffman_lengths({"x": 7}) == {"x": 1}
    assert huffman_bits("xxx") == 3
    assert huffman_lengths({}) == {} and huffman_bits([]) == 0
    assert huffman_lengths({"x": 0, "y": 2}) == {"y": 1}


# -- the coded size of a layer -------------------------------------------------------------

# 12 weights, 4 kept, at flat positions 0, 3, 10, 11; two shared values (-1.0 and 0.5)
LAYER = np.array([[0.5, 0, 0, 0.5, 0, 0], [0, 0, 0, 0, -1.0, 0.5]], dtype=np.float32)


def test_coded_size_of_a_small_layer_by_hand():
    # index_bits 2: one entry bridges at most 4 positions. Distances from the previous
    # kept weight (the first from position -1): 1, 3, 7, 1. The 7 needs one filler entry
    # (+4, a zero value), then 3: index symbols (distance - 1) 0, 2, 3 (filler), 2, 0.
    # Huffman of {0: 2, 2: 2, 3: 1}: 1, 2, 2 bits -> 2*2 + 2*1 + 1*2 = 8 bits.
    # Values: 0.5 three times, -1.0 once, one filler: Huffman {0.5: 3, -1.0: 1, fill: 1}
    # -> 1, 2, 2 bits -> 3 + 2 + 2 = 7 bits, plus the codebook, 2 values x 32 bits = 64.
    row = layer_size("fc", LAYER, index_bits=2, shared=True)
    assert (row.weights, row.kept, row.fillers, row.bits) == (12, 4, 1, 1)
    assert row.index_coded_bits == 8
    assert row.value_bits == 7 + 64
    assert row.coded_bits == 79 and row.coded_bytes == 10
    assert row.dense_bits == 12 * 32
    assert row.rate == pytest.approx(79 / 384)
    assert row.kept_fraction == pytest.approx(4 / 12)


def test_coded_size_without_sharing_stores_raw_values():
    row = layer_size("fc", LAYER, index_bits=2, shared=False)
    assert row.value_bits == (4 + 1) * 32  # four weights and the filler, 32 bits each
    assert row.index_coded_bits == 8 and row.bits == 32


def test_wide_index_needs_no_filler():
    row = layer_size("fc", LAYER, index_bits=3, shared=True)
    # distances 1, 3, 7, 1 -> symbols 0, 2, 6, 0: Huffman {0: 2, 2: 1, 6: 1} = 2 + 2 + 2
    assert row.fillers == 0 and row.index_coded_bits == 6
    # values {0.5: 3, -1.0: 1} -> 1 bit each = 4 bits, plus the codebook
    assert row.value_bits == 4 + 64


def test_an_empty_layer_costs_nothing():
    row = layer_size("fc", np.zeros((3, 3), np.float32), index_bits=5, shared=True)
    assert row.kept == 0 and row.coded_bits == 0 and row.rate == 0


# -- weight sharing ---------------------------------------------------------------------


def test_sharing_keeps_zeros_and_at_most_2_to_the_bits_values(mlp):
    pruned = dnnpart.compress.magnitude_prune(mlp, 0.8)
    shared = share_weights(pruned, 3)
    for before, after in zip(pruned.layers, shared.layers, strict=True):
        if not before.splittable:
            assert after is before
            continue
        w0, w1 = before.weights["weight"].numpy(), after.weights["weight"].numpy()
        assert w1.dtype == w0.dtype and w1.shape == w0.shape
        np.testing.assert_array_equal(w1 == 0, w0 == 0)
        values = np.unique(w1[w1 != 0])
        assert 1 < values.size <= 8
        # k-means: every centroid is the mean of the weights it replaced
        for v in values:
            assert float(w0[w1 == v].mean()) == pytest.approx(float(v), rel=1e-5, abs=1e-7)


def test_sharing_is_deterministic_and_rejects_bad_bits(mlp):
    assert weights_digest(share_weights(mlp, 4)) == weights_digest(share_weights(mlp, 4))
    for bad in (0, 17, 2.5, True):
        with pytest.raises(UsageError, match="share-bits"):
            share_weights(mlp, bad)


def test_sharing_as_a_pass_records_the_weights_and_replays_them(mlp):
    graph, records = apply_passes(mlp, prune_passes(0.9) + share_passes(4, seed=3))
    assert [r["name"] for r in records] == [
        "magnitude_prune",
        "remove_dead_neurons",
        "share_weights",
    ]
    share = records[-1]
    assert share["bits"] == 4 and share["seed"] == 3
    assert share["sha256"] == weights_digest(graph)
    again, replayed = apply_passes(mlp, records)
    assert replayed == records and weights_digest(again) == share["sha256"]
    tampered = [*records[:-1], {**share, "sha256": "0" * 64}]
    with pytest.raises(InvalidModelError, match="weight sharing"):
        apply_passes(mlp, tampered)


def test_size_table_of_the_mlp(mlp):
    graph, _ = apply_passes(mlp, prune_passes(0.9) + share_passes(5))
    rows = size_table(graph, shared=True)
    assert [r.layer for r in rows] == [layer.name for layer in graph.layers if layer.splittable]
    assert [r.weights for r in rows] == [64 * 300, 300 * 100, 100 * 10]
    for r in rows:
        assert r.kept <= round(0.1 * r.weights) and r.index_bits == 5 and r.bits <= 5
        # 5-bit values and 5-bit indices Huffman-coded: below 10 bits per kept weight
        # plus the 32-value codebook and fillers
        assert r.coded_bits < r.kept * 10 + 32 * 32 + r.fillers * 10
    dense = sum(r.dense_bits for r in rows)
    assert sum(r.coded_bits for r in rows) < dense / 20  # more than 20x smaller
