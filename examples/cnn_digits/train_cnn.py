"""Train the dnnpart example CNN on the digits data set and write it as ONNX.

A small convolutional network for scikit-learn's bundled 8x8 digits (Alpaydin & Kaynak,
UCI 1998; no download), so that convolutions -- a channel is a neuron -- are covered by
the examples: conv 1->8 (3x3) - ReLU - conv 8->16 (3x3) - ReLU - max-pool 2 - conv 16->16
(3x3) - ReLU - global average pool - linear 16->10 (softmax output).

Needs torch (this script's own dependency, not dnnpart's), scikit-learn and onnxruntime::

    python examples/cnn_digits/train_cnn.py [--out-dir DIR]

Writes ``cnn.onnx`` (input ``input`` float32 [batch, 1, 8, 8], output ``probabilities``),
``digits_test.npz`` (the held-out split: ``x`` [360, 1, 8, 8] in [0, 1], ``y``) and
``digits_calib.npz`` (the training split, calibration data for ``dnnpart partition
--cross-prune``), split as examples/mlp/train_mlp.py splits them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "mlp"))
from train_mlp import load_data, save_npz  # noqa: E402  (one split, one writer)

SEED = 0
EPOCHS = 60
MODEL_FILE, DATA_FILE, CALIB_FILE = "cnn.onnx", "digits_test.npz", "digits_calib.npz"


def build():
    """The network (torch.nn.Sequential)."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def train(x: np.ndarray, y: np.ndarray, seed: int = SEED):
    """Adam, cross-entropy, mini-batches of 64, ``EPOCHS`` epochs, one thread (repeatable)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return net.eval()


def export(net, path: Path) -> None:
    """ONNX (opset 17) with a softmax output and a symbolic batch axis."""
    import torch

    model = torch.nn.Sequential(net, torch.nn.Softmax(dim=-1)).eval()
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 8, 8),
        str(path),
        input_names=["input"],
        output_names=["probabilities"],
        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    x_train, x_test, y_train, y_test = load_data()
    x_train = x_train.reshape(-1, 1, 8, 8)
    x_test = x_test.reshape(-1, 1, 8, 8)
    net = train(x_train, y_train)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    export(net, args.out_dir / MODEL_FILE)
    save_npz(args.out_dir / DATA_FILE, x=x_test, y=y_test)
    save_npz(args.out_dir / CALIB_FILE, x=x_train, y=y_train)
    import onnxruntime as ort

    session = ort.InferenceSession(str(args.out_dir / MODEL_FILE))
    pred = session.run(None, {"input": x_test})[0].argmax(axis=1)
    print(f"test accuracy (onnxruntime): {(pred == y_test).mean():.4f} on {len(y_test)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
