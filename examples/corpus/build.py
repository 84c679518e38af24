"""Build the real-model corpus: small random-initialised models exported by their real
exporter (torch.onnx), plus a model shipped inside a PyPI wheel, each with one sample.

Run in an environment with torch (not a dnnpart dependency)::

    python -m venv /tmp/corpus && /tmp/corpus/bin/pip install torch onnx numpy
    /tmp/corpus/bin/python examples/corpus/build.py

Every model keeps the dynamic axes a user's export would have (batch, sequence, image H
and W); ``MODELS`` in ``tests/test_corpus.py`` lists the shapes each is imported at
(``sample.npz`` beside each model is one input of those shapes). Configs are shrunk so the
corpus stays a few megabytes; the seeds make the files reproducible for a given torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _export(torch, model, args, names, dynamic, path: Path) -> None:
    model.eval()
    kwargs = dict(
        input_names=names,
        output_names=["output"],
        dynamic_axes=dynamic,
        opset_version=17,
        do_constant_folding=True,
    )
    try:
        torch.onnx.export(model, args, str(path), dynamo=False, **kwargs)
    except TypeError:  # a torch without the dynamo switch
        torch.onnx.export(model, args, str(path), **kwargs)
    data = Path(str(path) + ".data")
    if data.exists():  # keep one self-contained file
        import onnx

        onnx.save(onnx.load(str(path)), str(path))
        data.unlink()


def _sample(path: Path, **arrays) -> None:
    np.savez(path.with_suffix(".npz"), **{k: np.asarray(v) for k, v in arrays.items()})


def build_torch(out: Path) -> None:
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)

    class CNN(nn.Module):
        """Conv-BN-ReLU stages with strides, global pooling and a classifier."""

        def __init__(self):
            super().__init__()
            layers, c = [], 3
            for width in (8, 16, 32):
                layers += [nn.Conv2d(c, width, 3, stride=2, padding=1), nn.BatchNorm2d(width)]
                layers.append(nn.ReLU())
                c = width
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))

    class ViT(nn.Module):
        def __init__(self, image=32, patch=8, d=32, heads=4, layers=1, classes=10):
            super().__init__()
            self.patch = nn.Conv2d(3, d, patch, stride=patch)
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
            self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, d) * 0.1)
            block = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, classes)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
            return self.head(self.norm(self.encoder(t))[:, 0])

    class Decoder(nn.Module):
        """GPT-style: token and position embeddings, causal self-attention, tied-free head."""

        def __init__(self, vocab=64, d=32, heads=4, layers=2, ctx=64):
            super().__init__()
            self.heads = heads
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(ctx, d)
            self.blocks = nn.ModuleList()
            for _ in range(layers):
                self.blocks.append(
                    nn.ModuleDict(
                        {
                            "ln1": nn.LayerNorm(d),
                            "qkv": nn.Linear(d, 3 * d),
                            "proj": nn.Linear(d, d),
                            "ln2": nn.LayerNorm(d),
                            "fc": nn.Linear(d, 4 * d),
                            "out": nn.Linear(4 * d, d),
                        }
                    )
                )
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab, bias=False)

        def forward(self, ids):
            b, s = ids.shape
            pos = torch.arange(s, device=ids.device).unsqueeze(0)
            x = self.tok(ids) + self.pos(pos)
            mask = torch.triu(torch.ones(s, s, dtype=torch.bool), 1)
            for blk in self.blocks:
                q, k, v = blk["qkv"](blk["ln1"](x)).chunk(3, dim=-1)
                q, k, v = (t.reshape(b, s, self.heads, -1).transpose(1, 2) for t in (q, k, v))
                att = (q @ k.transpose(-2, -1)) / (q.shape[-1] ** 0.5)
                att = att.masked_fill(mask, float("-inf")).softmax(-1)
                y = (att @ v).transpose(1, 2).reshape(b, s, -1)
                x = x + blk["proj"](y)
                x = x + blk["out"](F.gelu(blk["fc"](blk["ln2"](x))))
            return self.head(self.ln(x))

    class Recurrent(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.rnn = cell(8, 16, batch_first=True, bidirectional=cell is nn.LSTM)
            self.fc = nn.Linear(32 if cell is nn.LSTM else 16, 4)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.fc(y[:, -1])

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()

            def block(a, b):
                return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU())

            self.enc1, self.enc2, self.mid = block(3, 8), block(8, 16), block(16, 32)
            self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
            self.dec2 = block(32, 16)
            self.dec1 = block(24, 8)
            self.out = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            e1 = self.enc1(x)
            e2 = self.enc2(F.max_pool2d(e1, 2))
            m = self.mid(F.max_pool2d(e2, 2))
            d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
            d1 = F.interpolate(d2, scale_factor=2.0, mode="nearest")
            return self.out(self.dec1(torch.cat([d1, e1], 1)))

    class Encoder(nn.Module):
        def __init__(self, d=32, heads=4, layers=1):
            super().__init__()
            block = nn.TransformerEncoderLayer(d, heads, 64, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.pool = nn.Linear(d, d)

        def forward(self, x):
            return torch.tanh(self.pool(self.encoder(x).mean(1)))

    rng = np.random.default_rng(0)
    img = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    cases = [
        ("cnn", CNN(), img, {"x": {0: "batch", 2: "height", 3: "width"}}),
        ("vit", ViT(), img, {"x": {0: "batch"}}),
        ("gpt", Decoder(), rng.integers(0, 64, (1, 16)), {"x": {0: "batch", 1: "sequence"}}),
        (
            "gru",
            Recurrent(nn.GRU),
            rng.standard_normal((1, 10, 8)).astype(np.float32),
            {"x": {0: "batch", 1: "sequence"}},
        ),  # fmt: skip
        (
            "lstm",
            Recurrent(nn.LSTM),
            rng.standard_normal((1, 10, 8)).astype(np.float32),
            {"x": {0: "batch", 1: "sequence"}},
        ),  # fmt: skip
        (
            "unet",
            UNet(),
            rng.standard_normal((1, 3, 16, 16)).astype(np.float32),
            {"x": {0: "batch", 2: "height", 3: "width"}},
        ),  # fmt: skip
        (
            "encoder",
            Encoder(),
            rng.standard_normal((1, 12, 32)).astype(np.float32),
            {"x": {0: "batch", 1: "sequence"}},
        ),  # fmt: skip
    ]
    for name, model, sample, dynamic in cases:
        path = out / f"{name}.onnx"
        arg = torch.from_numpy(np.asarray(sample))
        # (with gradients on: torch's fused inference path has no ONNX export)
        _export(torch, model, (arg,), ["x"], {**dynamic, "output": {0: "batch"}}, path)
        _sample(path, x=sample)
        print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)


def build_loop(out: Path) -> None:
    """A scripted while loop: its trip count comes from the data (a Loop whose condition
    is computed in its body), as torch.onnx writes it for ``torch.jit.script``."""
    import torch

    torch.manual_seed(0)

    class Halve(torch.nn.Module):
        """Halve x (a linear map, 0.5 I) until its squared norm falls under 1."""

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8, bias=False)
            with torch.no_grad():
                self.lin.weight.copy_(0.5 * torch.eye(8))

        def forward(self, x):
            while bool((x * x).sum() > 1.0):
                x = self.lin(x)
            return x

    path = out / "loop.onnx"
    sample = np.full((1, 8), 4.0, dtype=np.float32)  # 4 trips: 128 -> 32 -> 8 -> 2 -> 0.5
    model = torch.jit.script(Halve())
    _export(torch, model, (torch.from_numpy(sample),), ["x"], {"x": {0: "batch"}}, path)
    _sample(path, x=sample)
    print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)


def copy_wheel_models(out: Path) -> None:
    """Models shipped inside the onnx wheel (its 'light' backend-test models), with
    trained-looking weights in place of their constant fills (``tests/models.py``)."""
    import onnx

    sys.path.insert(0, str(HERE.parents[1] / "tests"))
    from models import light_with_weights

    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    for name in ("squeezenet",):
        path = out / f"wheel_{name}.onnx"
        onnx.save(light_with_weights(light / f"light_{name}.onnx"), str(path))
        graph = onnx.load(str(path)).graph
        weights = {t.name for t in graph.initializer}
        x = next(i for i in graph.input if i.name not in weights)
        dims = [d.dim_value for d in x.type.tensor_type.shape.dim]
        rng = np.random.default_rng(0)
        _sample(path, **{x.name: rng.standard_normal(dims).astype(np.float32)})
        print(f"copied {path} ({path.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    os.makedirs(out, exist_ok=True)
    build_torch(out)
    build_loop(out)
    copy_wheel_models(out)
