"""Re-planning after a device loss keeps each survivor's part: the split records its
labels (inline or ``labels.npy``, refused when altered), survivors keep every vertex, only
the lost device's vertices move, and the moves are reported (without Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import dnnpart
from dnnpart.errors import InvalidModelError, PartitionerAnswerError
from dnnpart.exporters import _labels, export
from dnnpart.exporters._labels import read_labels
from dnnpart.exporters._manifest import read_manifest
from dnnpart.partitioners._keep import keep_parts, match_devices
from dnnpart.problem._helpers import is_balanced
from dnnpart.runtime._replan import replan, vertices_moved
from tests._problems import layered_problem

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp" / "mlp.onnx"


# -- the algorithm on a tiny graph ---------------------------------------------------------
def test_survivors_keep_every_vertex_and_the_lost_ones_follow_their_synapses():
    # 6 inputs -> 6 neurons -> 6 neurons, neuron j reading only j; the k = 3 split put
    # j on device j // 2; device 1 (j = 2, 3) is lost, devices 0 and 2 become 0 and 1.
    eye = sp.identity(6, format="csr")
    problem = layered_problem([eye, eye], k=2, imbalance=0.03)
    old = np.tile([0, 0, 1, 1, 2, 2], 3)
    lost = old == 1
    start = np.where(old == 2, 1, 0)
    labels = keep_parts(problem, start, lost)
    assert np.array_equal(labels[~lost], start[~lost])  # survivors keep all their vertices
    # each layer: 3 and 3 (tight balance), chains stay whole: no volume at all
    assert np.array_equal(labels, np.tile([0, 0, 0, 1, 1, 1], 3))
    assert is_balanced(problem, labels, tight=True)


def test_lost_vertices_can_take_the_fresh_partitions_places():
    eye = sp.identity(6, format="csr")
    problem = layered_problem([eye, eye], k=2)
    old = np.tile([0, 0, 1, 1, 2, 2], 3)
    lost = old == 1
    fresh = np.tile([1, 1, 1, 0, 0, 0], 3)
    labels = keep_parts(problem, np.where(old == 2, 1, 0), lost, assign="fresh", fresh=fresh)
    assert np.array_equal(labels[lost], fresh[lost])
    assert np.array_equal(labels[~lost], np.where(old == 2, 1, 0)[~lost])


def test_interchangeable_devices_are_renumbered_to_keep_most_vertices():
    got = match_devices([1, 1, 0, 0, 2], [0, 0, 1, 1, 2], np.ones(5, bool), [[0, 1]])
    assert got.tolist() == [0, 0, 1, 1, 2]
    assert match_devices([1, 0], [0, 1], np.ones(2, bool), []).tolist() == [1, 0]


def test_moves_are_counted_by_device_name():
    moved, flows = vertices_moved(["a", "b", "c"], [0, 1, 2, 1], ["a", "c"], [0, 0, 1, 1])
    assert moved == 2
    assert flows == [
        {"from": "b", "to": "a", "vertices": 1},
        {"from": "b", "to": "c", "vertices": 1},
    ]


def test_the_partition_api_keeps_what_choose_returns():
    graph = dnnpart.load(MLP)
    seen = {}

    def choose(problem, labels):
        seen["n"] = problem.num_vertices
        return np.zeros(problem.num_vertices, dtype=np.int64)

    plan = dnnpart.partition(graph, k=2, method="metis", granularity="layer", choose=choose)
    assert plan.labels.tolist() == [0] * seen["n"]
    with pytest.raises(PartitionerAnswerError):
        dnnpart.partition(graph, k=2, granularity="layer", choose=lambda p, lab: lab[:-1])


# -- labels recorded with the split --------------------------------------------------------
@pytest.fixture(scope="module")
def split3(tmp_path_factory):
    """A k = 3 neuron split of the example MLP, and its plan."""
    tmp = tmp_path_factory.mktemp("replan")
    plan = dnnpart.partition(dnnpart.load(MLP), k=3, method="metis", granularity="neuron")
    export(MLP, plan, tmp / "split")
    return tmp / "split", plan


@pytest.mark.parametrize("inline", [True, False])
def test_labels_round_trip_through_export(tmp_path, monkeypatch, inline):
    plan = dnnpart.partition(dnnpart.load(MLP), k=2, method="metis", granularity="neuron")
    if not inline:
        monkeypatch.setattr(_labels, "INLINE_MAX_RUNS", 1)
    elif len(_labels._runs(plan.labels)[0]) > _labels.INLINE_MAX_RUNS:
        plan.labels = np.sort(plan.labels)  # few runs
    doc = export(MLP, plan, tmp_path / "s")
    entry = doc["labels"]
    assert ("runs" in entry) == inline and ("file" in entry) != inline
    assert (tmp_path / "s" / "labels.npy").exists() != inline
    assert entry["vertices"] == plan.labels.size
    got = read_labels(tmp_path / "s", read_manifest(tmp_path / "s"))
    assert got.dtype == np.int64 and np.array_equal(got, plan.labels)


def _rewrite(folder: Path, change) -> None:
    path = folder / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_an_altered_labels_file_is_refused(split3, tmp_path):
    import shutil

    folder = tmp_path / "s"
    shutil.copytree(split3[0], folder)
    assert "file" in read_manifest(folder)["labels"]
    data = bytearray((folder / "labels.npy").read_bytes())
    data[-1] ^= 1
    (folder / "labels.npy").write_bytes(bytes(data))
    with pytest.raises(InvalidModelError, match="sha256 differs"):
        read_manifest(folder)
    (folder / "labels.npy").unlink()
    with pytest.raises(InvalidModelError, match="labels"):
        read_manifest(folder)


def test_labels_of_the_wrong_count_or_range_are_refused(split3, tmp_path):
    import hashlib
    import shutil

    folder = tmp_path / "s"
    shutil.copytree(split3[0], folder)
    n = split3[1].labels.size
    for labels, match in [
        (np.full(n, 3, np.uint8), "outside 0 .. 2"),
        (np.zeros(n - 1, np.uint8), "labels for"),
    ]:
        np.save(folder / "labels.npy", labels)
        sha = hashlib.sha256((folder / "labels.npy").read_bytes()).hexdigest()
        _rewrite(folder, lambda d, sha=sha: d["labels"].update(sha256=sha))
        with pytest.raises(InvalidModelError, match=match):
            read_manifest(folder)
    _rewrite(folder, lambda d: d["labels"].update(runs=f"0*{n}"))
    with pytest.raises(InvalidModelError, match="either runs or file"):
        read_manifest(folder)


def test_inline_runs_are_checked(tmp_path):
    plan = dnnpart.partition(dnnpart.load(MLP), k=2, method="metis", granularity="layer")
    export(MLP, plan, tmp_path / "s")
    assert "runs" in read_manifest(tmp_path / "s")["labels"]
    for runs, match in [("0*3 1*2", "runs cover"), ("0*x", "not DEVICE"), ("5*7", "outside")]:
        _rewrite(tmp_path / "s", lambda d, runs=runs: d["labels"].update(runs=runs))
        with pytest.raises(InvalidModelError, match=match):
            read_manifest(tmp_path / "s")


# -- replan --------------------------------------------------------------------------------
def test_replan_moves_only_the_lost_devices_vertices(split3, tmp_path):
    folder, plan = split3
    manifest = read_manifest(folder)
    done = replan(MLP, manifest, [1], tmp_path / "new", folder=folder)
    m = done.moves
    lost_own = int((plan.labels == 1).sum())
    assert m["how"] == "kept" and done.notes == []
    assert m["moved"] == m["from_lost"] == lost_own > 0
    assert {f["from"] for f in m["flows"]} == {"dev1"}
    assert sum(f["vertices"] for f in m["flows"]) == lost_own
    assert m["fresh_moved"] > m["moved"]  # from scratch would move survivors' vertices too
    assert done.summary() == (
        f"survivors kept their parts, {lost_own} of {m['vertices']} vertices moved "
        f"({lost_own} from the lost devices; from scratch: {m['fresh_moved']})"
    )
    new = read_labels(tmp_path / "new", read_manifest(tmp_path / "new"))
    names = np.array(["dev0", "dev2"])[new]
    kept = plan.labels != 1
    assert (names[kept] == np.array(["dev0", "dev1", "dev2"])[plan.labels[kept]]).all()
    assert done.manifest["plan"]["scores"]["balance_ok"]


def test_replan_from_scratch_and_when_keeping_costs_too_much(split3, tmp_path):
    folder, _ = split3
    manifest = read_manifest(folder)
    fresh = replan(MLP, manifest, [1], tmp_path / "a", folder=folder, keep=False)
    assert fresh.moves["how"] == "fresh" and fresh.moves["moved"] == fresh.moves["fresh_moved"]
    strict = replan(MLP, manifest, [1], tmp_path / "b", folder=folder, tolerance=-0.9)
    assert strict.moves["how"] == "fresh"
    assert any("from scratch" in n for n in strict.notes)
    # interchangeable devices renumbered: never more moves than the raw from-scratch split
    assert strict.moves["moved"] <= strict.moves["fresh_moved"]


def test_a_split_without_labels_is_replanned_from_scratch(split3, tmp_path):
    folder, _ = split3
    manifest = read_manifest(folder)
    del manifest["labels"]
    done = replan(MLP, manifest, [0], tmp_path / "new", folder=folder)
    assert done.moves["how"] == "fresh" and done.moves["moved"] is None
    assert done.notes == ["the split records no labels: re-planned from scratch"]
