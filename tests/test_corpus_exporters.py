"""The corpus's models from TensorFlow (tf2onnx, ``examples/corpus/build_tf.py``) and Paddle
(paddle2onnx, ``build_paddle.py``): ``dnnpart import`` counts the MACs by hand, an open
dimension other than the batch is refused by name, and metis splits at layer (k = 3) and
neuron (k = 2) granularity verify on the sample (outputs equal the whole model's)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

import dnnpart
from dnnpart.cli import main
from dnnpart.errors import UsageError
from dnnpart.exporters import export
from dnnpart.importers._input_shapes import read_npz
from dnnpart.runtime import verify

pytest.importorskip("onnxruntime")

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
B = 2  # every sample is a batch of 2; MACs count the whole batch


def _mobilenet_v3_small_macs() -> int:
    """MobileNetV3-Small at width 0.25 on 32 x 32 (paddle.vision's config), per sample.

    Channels scale by 0.25 and round to a multiple of 8 (at least 8, and up by 8 when
    rounding lost over 10 %): 16 -> 8, 72 -> 24, 88 -> 24, 24 -> 8, 96 -> 24, 40 -> 16,
    240 -> 64, 120 -> 32, 48 -> 16, 144 -> 40, 288 -> 72, 576 -> 144. A block is a 1 x 1
    expansion at the input size (absent when in == expanded), a k x k depthwise conv at the
    output size, squeeze-excitation (two 1 x 1 convs on the pooled vector, squeeze width
    expanded // 4 rounded the same way), a 1 x 1 projection. MACs count every kernel tap,
    padding included (a 5 x 5 depthwise on a 1 x 1 map is 25 per channel).
    """
    stem = 16 * 16 * 8 * 27  # 3 x 3 stride-2 conv 3 -> 8: 16 x 16 outputs
    # (in, kernel, expanded, out, squeeze (0: no SE), input side, output side)
    blocks = [
        (8, 3, 8, 8, 8, 16, 8),
        (8, 3, 24, 8, 0, 8, 4),
        (8, 3, 24, 8, 0, 4, 4),
        (8, 5, 24, 16, 8, 4, 2),
        (16, 5, 64, 16, 16, 2, 2),
        (16, 5, 64, 16, 16, 2, 2),
        (16, 5, 32, 16, 8, 2, 2),
        (16, 5, 40, 16, 16, 2, 2),
        (16, 5, 72, 24, 24, 2, 1),
        (24, 5, 144, 24, 40, 1, 1),
        (24, 5, 144, 24, 40, 1, 1),
    ]
    body = 0
    for cin, k, exp, out, sq, side_in, side_out in blocks:
        body += side_in**2 * cin * exp if cin != exp else 0
        body += side_out**2 * exp * k * k + 2 * exp * sq + side_out**2 * exp * out
    head = 24 * 144 + 144 * 256 + 256 * 10  # 1 x 1 conv 24 -> 144 on 1 x 1; fc 256; fc 10
    return stem + body + head


# model -> MACs of the batch-2 sample, by hand
MACS = {
    # NHWC 32x32x3: conv 3x3/2 3->8 (16x16 out), depthwise 3x3 on 8 (16x16), 1x1 8->16,
    # max pool to 8x8, conv 3x3 16->32 (8x8), dense 32->10 (batch norm: 0 MACs)
    "tf_cnn": B * (256 * 8 * 27 + 256 * 8 * 9 + 256 * 16 * 8 + 64 * 32 * 144 + 32 * 10),
    # 10 steps of an LSTM, input 8, hidden 16: 4 gates x 16 x (8 + 16); dense 16->4
    "tf_lstm": B * (10 * 4 * 16 * (8 + 16) + 16 * 4),
    # S = 12, d = 32, 4 heads of 8: q, k, v and output projections (4 x 32x32 per token),
    # QK^T and AV (2 x 4 heads x 12 x 12 x 8), MLP 32->64->32, dense 32->10 on the mean
    "tf_attention": B * (12 * 4 * 32 * 32 + 2 * 4 * 12 * 12 * 8 + 12 * 2 * 32 * 64 + 32 * 10),
    "pd_mobilenet": B * _mobilenet_v3_small_macs(),
    # 10 steps of a GRU, input 8, hidden 16: 3 gates x 16 x (8 + 16); dense 16->4
    "pd_gru": B * (10 * 3 * 16 * (8 + 16) + 16 * 4),
    # the same encoder block as tf_attention (paddle's TransformerEncoderLayer, MLP 64)
    # with a 32->32 pooler on the mean
    "pd_encoder": B * (12 * 4 * 32 * 32 + 2 * 4 * 12 * 12 * 8 + 12 * 2 * 32 * 64 + 32 * 32),
}
# models whose axis 1 the exporter left open (tf2onnx: unk__N, paddle2onnx:
# DynamicDimension.N), besides the batch
OPEN = ("tf_cnn", "tf_lstm", "pd_gru")
SLOW = {("pd_mobilenet", "neuron")}  # over 5 s on a loaded machine


def _model(name: str) -> Path:
    return CORPUS / f"{name}.onnx"


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_exporters_models_are_small():
    sizes = {p.name: p.stat().st_size for p in CORPUS.glob("*") if p.stem in MACS}
    assert len(sizes) == 2 * len(MACS)
    assert max(sizes.values()) <= 600 << 10, sizes


@pytest.mark.parametrize("name", list(MACS))
def test_import_counts_the_macs_by_hand(name):
    res = _cli("import", _model(name), "--inputs", CORPUS / f"{name}.npz", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["macs"] == MACS[name]
    assert doc["inputs"][0]["shape"][0] == B
    g = dnnpart.load(_model(name), inputs=CORPUS / f"{name}.npz")
    assert [t.name for t in g.tensors.values() if t.shape is None or None in t.shape] == []
    assert g.warnings == []


@pytest.mark.parametrize("name", OPEN)
def test_an_open_dimension_without_a_shape_is_refused_by_its_name(name):
    dims = onnx.load(_model(name)).graph.input[0].type.tensor_type.shape.dim
    open_dim = dims[1].dim_param  # as the exporter named it
    assert open_dim and dims[0].dim_param  # the batch is open too (and set to 1)
    with pytest.raises(UsageError, match=f"'{open_dim}'"):
        dnnpart.load(_model(name))
    # the CLI names the flag to set; setting each dim it names (tf_cnn: height, then
    # width) imports the model, the exporter's dim names (dots included) taken as they are
    named, flags = [], []
    for _ in range(len(dims)):
        res = _cli("import", _model(name), *flags)
        if res.exit_code == 0:
            break
        assert res.exit_code == UsageError.exit_code, res.output
        named.append(res.output.split("--dim ")[1].split("=")[0])
        flags += ["--dim", f"{named[-1]}=8"]
    assert res.exit_code == 0, res.output
    assert named[0] == open_dim
    assert named == [d.dim_param for d in dims[1:] if d.dim_param]


@pytest.mark.parametrize("name", sorted(set(MACS) - set(OPEN)))
def test_only_the_batch_open_loads_at_batch_one(name):
    g = dnnpart.load(_model(name))
    assert g.inputs[0].shape[0] == 1 and g.macs == MACS[name] // B
    assert any("batch" in w for w in g.warnings)


def _splits():
    for name in MACS:
        for granularity in ("layer", "neuron"):
            marks = pytest.mark.slow if (name, granularity) in SLOW else ()
            yield pytest.param(name, granularity, marks=marks, id=f"{name}-{granularity}")


@pytest.mark.parametrize("name, granularity", list(_splits()))
def test_a_metis_split_verifies_on_the_sample(tmp_path, name, granularity):
    k = 3 if granularity == "layer" else 2
    graph = dnnpart.load(_model(name), inputs=CORPUS / f"{name}.npz")
    plan = dnnpart.partition(graph, k=k, method="metis", granularity=granularity)
    doc = export(_model(name), plan, tmp_path / "split")
    if granularity == "neuron":  # both devices work (at layer granularity one LSTM,
        # GRU or conv layer can hold most of the MACs, and metis may leave a device idle)
        assert len({s["device"] for s in doc["stages"]}) == k
    report = verify(tmp_path / "split", inputs=read_npz(CORPUS / f"{name}.npz"), model=_model(name))
    assert report.ok, report.problems[:2]
    assert report.bytes_measured == report.bytes_planned
