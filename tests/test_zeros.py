"""Zero skipping (GraphDNN thesis §5.1.3): sparse message bytes, hand-computed on tiny
messages and bounded on a tiny split."""

from __future__ import annotations

import numpy as np
import pytest

import dnnpart
from dnnpart._zeros import index_bytes, message_bytes, sparse_volume
from dnnpart.problem import build_problem
from dnnpart.scoring import score
from tests.models import mlp_matmul, save


def test_the_smaller_of_bitmap_and_index_value_per_message():
    # 10 float32 elements: bitmap 2 + 4 z bytes, index + value 5 z bytes
    assert message_bytes(10, np.array([0, 1, 2, 3, 10]), 4).tolist() == [0, 5, 10, 14, 42]
    assert [index_bytes(n) for n in (1, 256, 257, 65536, 65537)] == [1, 1, 2, 2, 4]


def test_sparse_volume_of_a_tiny_split(tmp_path):
    graph = dnnpart.load(save(mlp_matmul(batch="N"), tmp_path))
    problem = build_problem(graph, "neuron", k=2)
    labels = dnnpart.partition(graph, k=2, method="vertical").labels
    dense = score(problem, labels).volume_bytes
    shapes = {name: (3, problem.graph.tensors[name].shape[-1]) for name in problem.nets.tensors}
    zeros = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    assert sparse_volume(problem, labels, zeros) == (0.0, 1.0)
    ones = {name: np.ones(shape, np.float32) for name, shape in shapes.items()}
    sparse, fraction = sparse_volume(problem, labels, ones)
    # no zero: every message is a bitmap (one byte: at most 8 elements) and its values
    messages = sparse - dense
    assert fraction == 0.0 and 1 <= messages <= 2 * len(shapes)
    assert messages == int(messages)


def test_partition_scores_sparse_bytes_on_data(tmp_path):
    graph = dnnpart.load(save(mlp_matmul(batch="N", seed=2), tmp_path))
    x = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32)
    x[:, :3] = 0  # half the input features are always zero
    plan = dnnpart.partition(graph, k=2, method="vertical", data={"input": x})
    s = plan.scores
    assert s["volume_bytes_sparse"] < s["volume_bytes"]
    assert 0 < s["zero_fraction"] < 1
    assert s["accuracy"] == pytest.approx(1.0) and s["accuracy_drop"] == 0


def test_verify_measures_the_sparse_bytes_the_plan_scored(tmp_path):
    from dnnpart.exporters import export
    from dnnpart.runtime import verify

    path = save(mlp_matmul(batch="N", seed=2), tmp_path)
    x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
    x[:, ::2] = 0
    plan = dnnpart.partition(dnnpart.load(path), k=2, method="vertical", data={"input": x})
    export(path, plan, tmp_path / "split")
    report = verify(tmp_path / "split", inputs={"input": x})
    assert report.ok
    assert report.bytes_sparse_planned == pytest.approx(plan.scores["volume_bytes_sparse"])
    assert report.bytes_sparse_measured == pytest.approx(report.bytes_sparse_planned)
    assert report.bytes_sparse_measured < report.bytes_measured
