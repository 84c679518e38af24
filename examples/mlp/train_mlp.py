"""Train the dnnpart example MLP on the digits data set and write it as ONNX.

The model is a 64-300-100-10 multilayer perceptron with ReLU hidden layers: the
LeNet-300-100 shape used throughout the Deep Compression work (Han, Mao & Dally, "Deep
Compression", ICLR 2016) and the GraphDNN thesis, with the input shrunk from 28x28 MNIST
to the 8x8 images of scikit-learn's bundled digits set (Alpaydin & Kaynak, "Optical
Recognition of Handwritten Digits", UCI, 1998), so that no download is needed.

Usage::

    python examples/mlp/train_mlp.py [--out-dir DIR]

Writes ``mlp.onnx``, ``digits_test.npz`` (held-out split: ``x`` float32 [N, 64] in
[0, 1], ``y`` int64 [N]) and ``digits_calib.npz`` (the training split, calibration data
for ``dnnpart partition --cross-prune``) into DIR (default: this script's folder).
Running it twice gives byte-identical files on the same machine.
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

HIDDEN = (300, 100)
SEED = 0
TEST_SIZE = 0.2  # 1797 samples -> 360 held out
OPSET = 17
IR_VERSION = 8
MODEL_FILE = "mlp.onnx"
DATA_FILE = "digits_test.npz"
CALIB_FILE = "digits_calib.npz"  # the training split: calibration for --cross-prune
# Fixed zip member timestamp: np.savez stamps members with the current time, which would
# make the .npz differ between two runs. 1980-01-01 is the earliest date zip can store.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def load_data(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load digits, scale to [0, 1] and split into train and test.

    Parameters
    ----------
    seed : int
        Seed of the stratified split.

    Returns
    -------
    x_train, x_test, y_train, y_test : numpy.ndarray
        Inputs are float32 in [0, 1] (pixel values 0..16 divided by 16: the scaling lives in
        the data, not in the model); labels are int64.
    """
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=TEST_SIZE, stratify=y, random_state=seed)


def train(x: np.ndarray, y: np.ndarray, seed: int = SEED) -> MLPClassifier:
    """Fit the 64-300-100-10 ReLU MLP.

    Parameters
    ----------
    x, y : numpy.ndarray
        Training inputs (float32, so that the weights come out float32 as in the ONNX
        file) and labels.
    seed : int
        ``random_state`` of the weight initialisation and of Adam's mini-batch shuffling.

    Returns
    -------
    sklearn.neural_network.MLPClassifier
        The fitted classifier.
    """
    clf = MLPClassifier(
        hidden_layer_sizes=HIDDEN,
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size=64,
        learning_rate_init=1e-3,
        max_iter=200,
        random_state=seed,
    )
    # One BLAS thread: multithreaded reductions may sum in a different order from run to
    # run, and training amplifies the last-bit differences into different weights.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def flush_denormals(a: np.ndarray) -> np.ndarray:
    """``a`` as float32 with its subnormal values set to zero.

    Weight decay (``alpha``) shrinks the weights that get little or no gradient (into or
    out of ReLU units that never fire on the training set, out of pixels that are 0 in
    every image) geometrically towards zero: 2,602 of them end below
    ``np.finfo(np.float32).tiny`` (1.2e-38). A subnormal operand takes a slow microcode
    path on x86, which made onnxruntime about 40x slower on the whole model at batch 360.
    Their share of any activation is below 1e-33, so flushing them changes no prediction.

    Parameters
    ----------
    a : numpy.ndarray
        A weight or bias array.

    Returns
    -------
    numpy.ndarray
        A float32 copy without subnormals.
    """
    out = np.array(a, dtype=np.float32)
    out[np.abs(out) < np.finfo(np.float32).tiny] = 0.0
    return out


def to_onnx(clf: MLPClassifier) -> onnx.ModelProto:
    """Write the fitted MLP as an ONNX graph of MatMul + Add (+ Relu) layers.

    Parameters
    ----------
    clf : sklearn.neural_network.MLPClassifier
        Fitted classifier with ReLU hidden layers and a softmax output. Its subnormal
        weights are written as zeros (:func:`flush_denormals`).

    Returns
    -------
    onnx.ModelProto
        Input ``input`` float32 ["batch", 64]; outputs ``probabilities`` (softmax over the
        last axis) only; the pre-softmax tensor is named ``logits``.
    """
    if clf.activation != "relu" or clf.out_activation_ != "softmax":
        raise ValueError("expected ReLU hidden layers and a softmax output")
    n_layers = len(clf.coefs_)
    nodes, inits = [], []
    prev = "input"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True), start=1):
        fc, last = f"fc{i}", i == n_layers
        # sklearn stores W as [in, out], which is exactly MatMul's right operand.
        inits.append(numpy_helper.from_array(flush_denormals(w), f"{fc}.weight"))
        inits.append(numpy_helper.from_array(flush_denormals(b), f"{fc}.bias"))
        nodes.append(helper.make_node("MatMul", [prev, f"{fc}.weight"], [f"{fc}.mm"], f"{fc}"))
        out = "logits" if last else f"{fc}.out"
        nodes.append(helper.make_node("Add", [f"{fc}.mm", f"{fc}.bias"], [out], f"{fc}.add"))
        if not last:
            relu = f"relu{i}"
            nodes.append(helper.make_node("Relu", [out], [relu], relu))
            out = relu
        prev = out
    nodes.append(helper.make_node("Softmax", [prev], ["probabilities"], "softmax", axis=-1))
    n_in, n_out = clf.coefs_[0].shape[0], clf.coefs_[-1].shape[1]
    graph = helper.make_graph(
        nodes,
        "mlp_digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="dnnpart-examples",
        doc_string="64-300-100-10 ReLU MLP trained on sklearn digits (inputs / 16).",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write arrays as an uncompressed .npz with fixed timestamps (reproducible bytes).

    Parameters
    ----------
    path : pathlib.Path
        Destination file; ``numpy.load`` reads it like any ``numpy.savez`` output.
    **arrays : numpy.ndarray
        Arrays stored as ``<name>.npy`` members, in the given order.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16  # fixed permissions, not the umask's
            zf.writestr(info, buf.getvalue())


def onnx_predict(model_path: Path, x: np.ndarray) -> np.ndarray:
    """Run the written model with onnxruntime and return the probabilities."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"input": x})[0]


def main(argv: list[str] | None = None) -> int:
    """Train, export, check with onnxruntime and write the test split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=Path(__file__).resolve().parent, help="output folder"
    )
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    x_train, x_test, y_train, y_test = load_data()
    clf = train(x_train, y_train)
    model_path = args.out_dir / MODEL_FILE
    onnx.save(to_onnx(clf), model_path)
    save_npz(args.out_dir / DATA_FILE, x=x_test, y=y_test)
    save_npz(args.out_dir / CALIB_FILE, x=x_train, y=y_train)

    proba = onnx_predict(model_path, x_test)
    pred_onnx = proba.argmax(axis=1)
    pred_sk = clf.predict(x_test)
    if not np.array_equal(pred_onnx, pred_sk):
        n_diff = int((pred_onnx != pred_sk).sum())
        raise RuntimeError(f"onnxruntime and sklearn disagree on {n_diff} test samples")
    max_err = float(np.abs(proba - clf.predict_proba(x_test)).max())
    acc = float((pred_onnx == y_test).mean())
    print(
        f"test accuracy (onnxruntime): {acc:.4f} on {len(y_test)} samples "
        f"[train {len(y_train)}, {clf.n_iter_} epochs, max |p_onnx - p_sklearn| = {max_err:.1e}]"
    )
    for name in (MODEL_FILE, DATA_FILE, CALIB_FILE):
        print(f"wrote {args.out_dir / name} ({(args.out_dir / name).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
