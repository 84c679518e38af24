"""Problems built from reference data and tiny named graphs, shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from dnnpart.partitioners import Problem

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The shared reference data folder, or skip the test with the reason."""
    root = Path(os.environ.get("DNNPART_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"shared reference data not found at {root} (set DNNPART_SHARED_DATA)")
    return root


def layered_problem(weights: list[sp.spmatrix], k: int, **kwargs) -> Problem:
    """Neuron-level problem of a chain of layers given by their weight matrices.

    ``weights[l]`` has shape (n_l, n_{l+1}); a non-zero ``W[i, j]`` is a synapse from neuron
    ``i`` of layer ``l`` to neuron ``j`` of layer ``l + 1``. Layer 0 holds the model's
    input features (zero compute, not balanced); every other neuron's compute is the number
    of synapses into it (its MACs).
    """
    sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    rows, cols, vals = [], [], []
    vertex_weight = np.zeros(n)
    for layer, w in enumerate(weights):
        coo = sp.coo_array(w)
        mask = coo.data != 0
        rows.append(coo.row[mask] + offsets[layer])
        cols.append(coo.col[mask] + offsets[layer + 1])
        vals.append(np.ones(int(mask.sum())))
        fan_in = np.bincount(coo.col[mask], minlength=w.shape[1])
        vertex_weight[offsets[layer + 1] : offsets[layer + 2]] = fan_in
    synapses = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    balanced = np.ones(len(sizes), dtype=bool)
    balanced[0] = False
    return Problem(
        synapses=synapses,
        vertex_weight=vertex_weight,
        layer_offsets=offsets,
        k=k,
        balanced=balanced,
        layer_names=("input",) + tuple(f"layer{i + 1}" for i in range(len(weights))),
        **kwargs,
    )


def graph_challenge_weights(layers: int = 4) -> list[sp.csr_array]:
    """The first ``layers`` weight matrices of the HPEC Graph Challenge 1024-neuron network."""
    root = shared_data() / "graph-challenge"
    out = []
    for i in range(1, layers + 1):
        data = np.loadtxt(root / f"n1024-l{i}.tsv", delimiter="\t", ndmin=2)
        rows = data[:, 0].astype(np.int64) - 1
        cols = data[:, 1].astype(np.int64) - 1
        out.append(sp.csr_array((data[:, 2], (rows, cols)), shape=(1024, 1024)))
    return out


def graph_challenge_problem(k: int, layers: int = 4, **kwargs) -> Problem:
    """The Graph Challenge layers as one neuron-level problem (input layer + ``layers``)."""
    return layered_problem(graph_challenge_weights(layers), k, **kwargs)
