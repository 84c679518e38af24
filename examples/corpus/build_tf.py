"""Build the corpus's TensorFlow models: small seeded Keras models converted by tf2onnx,
each with a sample of batch 2 (``.npz`` beside the model).

Run in an environment with TensorFlow and tf2onnx (not a dnnpart dependency)::

    python -m venv /tmp/venv-tf && /tmp/venv-tf/bin/pip install tensorflow-cpu tf2onnx \\
        onnx onnxruntime
    /tmp/venv-tf/bin/python examples/corpus/build_tf.py

The batch axis is left open as a user's export leaves it; ``tf_cnn`` also keeps its image
height and width open and ``tf_lstm`` its sequence (tf2onnx names such axes ``unk__N``).
``tests/test_corpus_exporters.py`` counts each model's MACs by hand.
The committed files were made with tensorflow-cpu 2.21.0 (Keras 3.15.1), tf2onnx 1.17.0
and onnx 1.23.2, opset 17.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from _checked import run  # noqa: E402


def _cnn(keras):
    """NHWC convs (tf2onnx transposes to NCHW), a depthwise conv, batch norm, pooling."""
    x = keras.Input((None, None, 3), name="image")
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(y)
    y = keras.layers.Conv2D(16, 1, activation="relu")(y)
    y = keras.layers.MaxPooling2D(2)(y)
    y = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, keras.layers.Dense(10)(y)), (32, 32, 3)


def _lstm(keras):
    """A Keras LSTM over an open sequence; its last state feeds a classifier."""
    x = keras.Input((None, 8), name="x")
    y = keras.layers.LSTM(16)(x)
    return keras.Model(x, keras.layers.Dense(4)(y)), (10, 8)


def _attention(keras):
    """One post-norm encoder block: Keras MultiHeadAttention (EinsumDense projections),
    a ReLU MLP, layer norms; mean-pooled into a classifier."""
    x = keras.Input((12, 32), name="x")
    a = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(x, x)
    y = keras.layers.LayerNormalization()(x + a)
    f = keras.layers.Dense(32)(keras.layers.Dense(64, activation="relu")(y))
    y = keras.layers.LayerNormalization()(y + f)
    y = keras.layers.GlobalAveragePooling1D()(y)
    return keras.Model(x, keras.layers.Dense(10)(y)), (12, 32)


def build(out: Path) -> dict[str, np.ndarray]:
    """Write each model and its sample; return Keras's outputs on the samples."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    keras = tf.keras
    expected = {}
    for name, make in (("tf_cnn", _cnn), ("tf_lstm", _lstm), ("tf_attention", _attention)):
        keras.utils.set_random_seed(0)
        model, shape = make(keras)
        spec = [tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name="x")]
        fn = tf.function(lambda x, model=model: model(x, training=False))
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
        path = out / f"{name}.onnx"
        onnx.save(proto, str(path))
        sample = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
        np.savez(path.with_suffix(".npz"), **{proto.graph.input[0].name: sample})
        expected[name] = model(sample, training=False).numpy()
        print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)
    return expected


if __name__ == "__main__":
    run(build, "keras")
