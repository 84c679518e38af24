"""The real-model corpus (``examples/corpus``, built by its ``build.py`` with torch.onnx and
from the onnx wheel): every model imports at its sample's shapes with non-zero MACs and
every tensor shaped, and splits with every built-in partitioner at both granularities,
k = 2 and 3, that verify on the sample (outputs within tolerance, bytes moved = planned)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import dnnpart
from dnnpart.errors import UsageError
from dnnpart.exporters import export
from dnnpart.importers._input_shapes import read_npz
from dnnpart.plugins import get_registry
from dnnpart.runtime import verify

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
# model -> (the dims left open that are not a leading batch axis, MACs by hand or None)
MODELS = {
    # 3x3 stride-2 convs 3->8->16->32 on 32x32 (outputs 16x16, 8x8, 4x4), a 32x10 classifier
    "cnn": (["height", "width"], 8 * 256 * 27 + 16 * 64 * 72 + 32 * 16 * 144 + 32 * 10),
    # 8x8 patches of 32x32 -> 16 tokens + class token, one block (d 32, MLP 64), head 32x10
    "vit": ([], 16 * 32 * 192 + 17 * (4 * 32 * 32 + 2 * 32 * 64) + 2 * 17 * 17 * 32 + 320),
    # 2 blocks at S = 16, d = 32, 4 heads: qkv, proj, 4x MLP, QK^T and AV; a 64-token head
    "gpt": (["sequence"], 2 * (16 * 32 * (96 + 32 + 128 + 128) + 2 * 16 * 16 * 32) + 16 * 32 * 64),
    # 10 steps of 3 gates (GRU) / 4 gates in 2 directions (LSTM), hidden 16, input 8
    "gru": (["sequence"], 10 * 3 * 16 * (8 + 16) + 16 * 4),
    "lstm": (["sequence"], 10 * 2 * 4 * 16 * (8 + 16) + 32 * 4),
    # convs 3->8 (16x16), 8->16 (8x8), 16->32 (4x4); ConvTranspose 32->16 (2x2, stride 2:
    # each of 32x4x4 inputs scatters into 16x2x2); convs 32->16 (8x8), 24->8 (16x16), 8->2
    "unet": (
        ["height", "width"],
        8 * 256 * 27
        + 16 * 64 * 72
        + 32 * 16 * 144
        + 512 * 64
        + 16 * 64 * 288
        + 8 * 256 * 216
        + 2 * 256 * 8,
    ),
    # one block at S = 12 (d 32, MLP 64) and a 32x32 pooler
    "encoder": (["sequence"], 12 * (4 * 32 * 32 + 2 * 32 * 64) + 2 * 12 * 12 * 32 + 32 * 32),
    "wheel_squeezenet": ([], None),
    # a scripted while loop (torch.jit.script): the sample runs the 8x8 body 4 times, a
    # count only the measuring run on the sample knows
    "loop": ([], 4 * 8 * 8),
}
BUILTIN = ("vertical", "spectral", "kl", "metis", "munkres", "pipeline")


@pytest.fixture(scope="module")
def graphs():
    return {
        name: dnnpart.load(CORPUS / f"{name}.onnx", inputs=CORPUS / f"{name}.npz")
        for name in MODELS
    }


def test_corpus_is_small():
    size = sum(p.stat().st_size for p in CORPUS.iterdir() if p.suffix in (".onnx", ".npz"))
    assert size <= 15 << 20 and len(MODELS) >= 8


@pytest.mark.parametrize("name", list(MODELS))
def test_imports_with_every_tensor_shaped_and_the_work_counted(graphs, name):
    g = graphs[name]
    open_dims, macs = MODELS[name]
    assert g.macs > 0 and len(g) > 0
    if macs is not None:
        assert g.macs == macs
    unshaped = [t.name for t in g.tensors.values() if t.shape is None or None in t.shape]
    assert unshaped == []
    assert not [w for w in g.warnings if "shape" in w and "batch" not in w], g.warnings
    assert not [w for w in g.warnings if "cost" in w], g.warnings
    if open_dims:  # without shapes, the first open dimension is named
        with pytest.raises(UsageError, match=f"'{open_dims[0]}'"):
            dnnpart.load(CORPUS / f"{name}.onnx")


def _cases():
    for name in MODELS:
        for granularity in ("layer", "neuron"):
            case = f"{name}-{granularity}"
            yield pytest.param(name, granularity, marks=pytest.mark.slow, id=case)


@pytest.mark.parametrize("name, granularity", list(_cases()))
def test_every_builtin_split_verifies_on_the_sample(graphs, tmp_path, name, granularity):
    sample = read_npz(CORPUS / f"{name}.npz")
    failures = []
    for method in BUILTIN:
        if granularity not in getattr(get_registry().get(method), "granularities", ()):
            continue
        for k in (2, 3):
            plan = dnnpart.partition(graphs[name], k=k, method=method, granularity=granularity)
            out = tmp_path / f"{method}{k}"
            export(CORPUS / f"{name}.onnx", plan, out)
            report = verify(out, inputs=sample, model=CORPUS / f"{name}.onnx")
            if not report.ok:
                failures.append(f"{method} k={k}: {report.problems[:2]}")
    assert failures == []


def test_one_split_per_model_verifies_quickly(graphs, tmp_path):
    """The fast check of the corpus: one neuron split per model (the matrix above is slow)."""
    for name in MODELS:
        plan = dnnpart.partition(graphs[name], k=2, method="metis", granularity="neuron")
        export(CORPUS / f"{name}.onnx", plan, tmp_path / name)
        data = read_npz(CORPUS / f"{name}.npz")
        report = verify(tmp_path / name, inputs=data, model=CORPUS / f"{name}.onnx")
        assert report.ok, (name, report.problems[:2])
        assert report.bytes_measured == report.bytes_planned
        for sub in sorted((tmp_path / name).glob("*.onnx")):  # every value typed and shaped
            onnx.checker.check_model(onnx.load(sub), full_check=True)
