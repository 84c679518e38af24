"""Write the HPEC Sparse DNN Graph Challenge layers as an ONNX model.

The Graph Challenge (Kepner et al., "Sparse Deep Neural Network Graph Challenge", IEEE HPEC
2019) publishes its networks as TSV triplets ``row<TAB>col<TAB>value`` (1-based; ``W[i, j]``
non-zero means neuron ``i`` of the previous layer feeds neuron ``j``). Inference is
``Y <- min(ReLU(Y @ W + b), 32)`` with ``b = -0.3``. This script writes that computation as an
ordinary ONNX model, so that every dnnpart command (``import``, ``partition``,
``leaderboard``, ``export``) can run on it::

    input [batch, 1024] -> l1 (MatMul W1) -> l1.add (Add -0.3) -> l1.relu -> l1.min (Min 32)
                        -> l2 ... -> l4.min = output [batch, 1024]

The sparse weights are stored as *dense* float32 initializers (zeros included): dnnpart counts
synapses as non-zero weights, so the neuron-level problem is exactly the challenge's graph.
The challenge adds the bias to the non-zeros of ``Y @ W`` only; adding it everywhere gives the
same result after the ReLU (a zero becomes -0.3, then 0).

The model is derived from shared data: generate it where you need it, do not commit it::

    python examples/graph_challenge/make_onnx.py [--data DIR] [--layers 4] -o gc.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["read_layer", "build_model", "DEFAULT_DATA"]

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "graph-challenge"
NEURONS = 1024
BIAS = -0.3
YMAX = 32.0


def read_layer(path: str | Path, neurons: int = NEURONS) -> np.ndarray:
    """One challenge layer (TSV triplets, 1-based) as a dense ``neurons x neurons`` array."""
    data = np.loadtxt(path, delimiter="\t", ndmin=2)
    rows = data[:, 0].astype(np.int64) - 1
    cols = data[:, 1].astype(np.int64) - 1
    w = np.zeros((neurons, neurons), dtype=np.float32)
    w[rows, cols] = data[:, 2]
    return w


def build_model(data_dir: str | Path = DEFAULT_DATA, layers: int = 4) -> onnx.ModelProto:
    """The first ``layers`` layers of the 1024-neuron challenge network as an ONNX model.

    Layer ``i`` (1-based) reads ``n1024-l{i}.tsv`` from ``data_dir``; nodes are ``l{i}``
    (MatMul), ``l{i}.add``, ``l{i}.relu`` and ``l{i}.min``; the weight is ``l{i}.weight``.
    """
    data_dir = Path(data_dir)
    nodes, inits = [], []
    inits.append(numpy_helper.from_array(np.full(NEURONS, BIAS, dtype=np.float32), "bias"))
    inits.append(numpy_helper.from_array(np.array(YMAX, dtype=np.float32), "ymax"))
    x = "input"
    for i in range(1, layers + 1):
        weight = read_layer(data_dir / f"n1024-l{i}.tsv")
        inits.append(numpy_helper.from_array(weight, f"l{i}.weight"))
        out = "output" if i == layers else f"y{i}"
        nodes += [
            helper.make_node("MatMul", [x, f"l{i}.weight"], [f"z{i}"], name=f"l{i}"),
            helper.make_node("Add", [f"z{i}", "bias"], [f"b{i}"], name=f"l{i}.add"),
            helper.make_node("Relu", [f"b{i}"], [f"r{i}"], name=f"l{i}.relu"),
            helper.make_node("Min", [f"r{i}", "ymax"], [out], name=f"l{i}.min"),
        ]
        x = out
    graph = helper.make_graph(
        nodes,
        "graph_challenge_n1024",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", NEURONS])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", NEURONS])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="dnnpart-examples"
    )
    model.ir_version = 8  # what onnxruntime of every supported version reads
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of n1024-l*.tsv")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("-o", "--output", default="gc.onnx")
    args = parser.parse_args(argv)
    onnx.save(build_model(args.data, args.layers), args.output)
    print(args.output)


if __name__ == "__main__":
    main()
