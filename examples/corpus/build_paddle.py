"""Build the corpus's PaddlePaddle models: small seeded models exported by paddle2onnx
(``paddle.onnx.export``), each with a sample of batch 2 (``.npz`` beside the model).

Run in an environment with Paddle and paddle2onnx (not a dnnpart dependency)::

    python -m venv /tmp/venv-pd && /tmp/venv-pd/bin/pip install paddlepaddle paddle2onnx \\
        packaging onnx onnxruntime
    /tmp/venv-pd/bin/python examples/corpus/build_paddle.py

The batch axis is left open as a user's export leaves it; ``pd_gru`` also keeps its
sequence open. ``tests/test_corpus_exporters.py`` counts each model's MACs by hand.
The committed files were made with paddlepaddle 3.3.1, paddle2onnx 2.1.0 and onnx 1.17.0,
opset 17.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from _checked import run


def _models(paddle):
    from paddle import nn

    class GRU(nn.Layer):
        """A GRU over an open sequence; its last output feeds a classifier."""

        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(8, 16)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.fc(y[:, -1])

    class Encoder(nn.Layer):
        """One transformer encoder layer (d 32, 4 heads, MLP 64), mean-pooled, a pooler."""

        def __init__(self):
            super().__init__()
            self.block = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0)
            self.pool = nn.Linear(32, 32)

        def forward(self, x):
            return paddle.tanh(self.pool(self.block(x).mean(1)))

    def mobilenet():
        return paddle.vision.models.mobilenet_v3_small(scale=0.25, num_classes=10)

    return [  # name, model class, the input spec, one sample's shape
        ("pd_mobilenet", mobilenet, [None, 3, 32, 32], (3, 32, 32)),
        ("pd_gru", GRU, [None, None, 8], (10, 8)),
        ("pd_encoder", Encoder, [None, 12, 32], (12, 32)),
    ]


def build(out: Path) -> dict[str, np.ndarray]:
    """Write each model and its sample; return Paddle's outputs on the samples."""
    import onnx
    import paddle

    expected = {}
    for name, make, spec_shape, shape in _models(paddle):
        paddle.seed(0)  # the same weights whichever models are built before
        model = make()
        model.eval()
        spec = [paddle.static.InputSpec(spec_shape, "float32", "x")]
        path = out / f"{name}.onnx"
        with tempfile.TemporaryDirectory() as tmp:
            paddle.onnx.export(model, f"{tmp}/{name}", input_spec=spec, opset_version=17)
            onnx.save(onnx.load(f"{tmp}/{name}.onnx"), str(path))
        sample = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
        np.savez(path.with_suffix(".npz"), x=sample)
        expected[name] = model(paddle.to_tensor(sample)).numpy()
        print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)
    return expected


if __name__ == "__main__":
    run(build, "paddle")
