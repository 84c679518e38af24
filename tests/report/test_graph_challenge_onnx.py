"""The Graph Challenge converter: the ONNX model computes the challenge's inference and
imports as the challenge's graph."""

from __future__ import annotations

import numpy as np
import pytest
from _problems import graph_challenge_weights
from lb_graph_challenge import converter, write_gc_model

import dnnpart


@pytest.fixture(scope="module")
def gc_path(tmp_path_factory):
    return write_gc_model(tmp_path_factory.mktemp("gc"))


def test_inference_matches_the_challenge_formula(gc_path):
    ort = pytest.importorskip("onnxruntime")
    weights = [w.toarray() for w in graph_challenge_weights()]
    rng = np.random.default_rng(0)
    y0 = (rng.random((8, 1024)) < 0.3).astype(np.float32)  # sparse binary inputs
    # Y <- min(ReLU(Y W + b), 32), the bias added to non-zeros only (Kepner et al. 2019)
    y = y0.astype(np.float64)
    for w in weights:
        z = y @ w
        y = np.minimum(np.maximum(np.where(z != 0, z - 0.3, 0.0), 0.0), 32.0)
    session = ort.InferenceSession(str(gc_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": y0})
    assert got.shape == (8, 1024)
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)
    assert np.count_nonzero(got) > 0  # the test would be empty if everything died out


def test_imports_as_the_challenge_graph(gc_path):
    graph = dnnpart.load(str(gc_path))
    summary = graph.summary()
    split = summary["splittable"]
    assert [s["neurons"] for s in split] == [1024] * 4
    assert [s["synapses"] for s in split] == [32768] * 4  # README: 32 768 per layer
    # README facts: a block split at k = 2 cuts 65 536 synapses, sends 4 096 activations
    plan = dnnpart.partition(graph, k=2, method="vertical")
    assert plan.scores["cut"] == 65536
    assert plan.scores["volume"] == 4096


def test_read_layer_is_one_based(tmp_path):
    f = tmp_path / "l.tsv"
    f.write_text("1\t2\t0.5\n3\t1\t0.25\n")
    w = converter().read_layer(f, neurons=3)
    expected = np.zeros((3, 3), dtype=np.float32)
    expected[0, 1], expected[2, 0] = 0.5, 0.25
    np.testing.assert_array_equal(w, expected)
