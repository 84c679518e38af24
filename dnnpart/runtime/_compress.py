"""``dnnpart compress``: Deep Compression of a whole model (Han, Mao, Dally, ICLR 2016;
the GraphDNN thesis §2.2.2, Tables 4.3-4.5): magnitude pruning, k-means weight sharing
per layer, the Huffman-coded size per layer, and the top-1 accuracy before and after on
the user's data. The model passes are the plan's own (:mod:`dnnpart.compress`), so a plan
made with the same passes partitions exactly the model written here.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from dnnpart.errors import UsageError

__all__ = ["CompressReport", "compress_model"]


@dataclass
class CompressReport:
    """The result of :func:`compress_model` (``--json`` prints :meth:`to_dict`)."""

    model: str
    out: str
    passes: list[dict[str, Any]]
    layers: list = field(default_factory=list)  # compress.LayerSize per splittable layer
    accuracy: float | None = None  # of the compressed model
    reference_accuracy: float | None = None  # of the original model
    accuracy_of: str | None = None
    samples: int = 0

    @property
    def dense_bits(self) -> int:
        return sum(r.dense_bits for r in self.layers)

    @property
    def coded_bits(self) -> int:
        return sum(r.coded_bits for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        weights = sum(r.weights for r in self.layers)
        kept = sum(r.kept for r in self.layers)
        return {
            "model": self.model,
            "out": self.out,
            "passes": self.passes,
            "layers": [r.to_dict() for r in self.layers],
            "total": {
                "weights": weights,
                "kept": kept,
                "kept_fraction": kept / weights if weights else 0.0,
                "dense_bytes": -(-self.dense_bits // 8),
                "coded_bytes": -(-self.coded_bits // 8),
                "rate": self.coded_bits / self.dense_bits if self.dense_bits else 0.0,
            },
            "accuracy": self.accuracy,
            "reference_accuracy": self.reference_accuracy,
            "accuracy_drop": (
                None if self.accuracy is None else self.reference_accuracy - self.accuracy
            ),
            "accuracy_of": self.accuracy_of,
            "samples": self.samples,
        }


def compress_model(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    prune: float,
    share_bits: int | None = None,
    data: str | os.PathLike | None = None,
    labels: str | None = None,
    output: str | None = None,
    index_bits: int | None = None,
    seed: int = 0,
    force: bool = False,
) -> CompressReport:
    """Prune (and share) ``model``'s splittable layers and write the result to ``out``.

    Parameters
    ----------
    model, out : path-like
        The ONNX model, and the compressed ONNX file to write (atomically; checked with
        ``onnx.checker``). An existing ``out`` is replaced only with ``force``.
    prune : float
        Fraction of each layer's weights zeroed by magnitude, in [0, 1); dead neurons
        left by it are removed (:func:`dnnpart.compress.prune_passes`).
    share_bits : int, optional
        k-means weight sharing into ``2**share_bits`` values per layer.
    data : path-like, optional
        An ``.npz`` (see :mod:`dnnpart._accuracy`): top-1 accuracy of the original
        and of the written model, on its labels (``labels``, default ``y``) or, without
        labels, as agreement with the original model.
    index_bits : int, optional
        Bits of a sparse relative index before Huffman coding (default 8 for
        convolutions, 5 for dense layers).
    """
    import onnxruntime as ort

    from dnnpart._accuracy import accuracy, accuracy_of, load_data, predict
    from dnnpart._ort import session_options
    from dnnpart.compress import prune_passes, share_passes, size_table
    from dnnpart.exporters._source import prepare, whole_model
    from dnnpart.exporters._write import save_model_file
    from dnnpart.runtime._verify import model_inputs, reference_session

    if index_bits is not None and not 1 <= index_bits <= 16:
        raise UsageError(f"--index-bits must be from 1 to 16, got {index_bits}")
    passes = prune_passes(prune) + share_passes(share_bits, seed=seed)
    if not passes:
        raise UsageError("nothing to do: give --prune above 0 or --share-bits")
    source = prepare(os.fspath(model), passes)
    written = save_model_file(whole_model(source), out, force=force)
    report = CompressReport(
        model=os.fspath(model),
        out=written[0],
        passes=source.passes,
        layers=size_table(source.graph, shared=share_bits is not None, index_bits=index_bits),
    )
    if data is None:
        if labels is not None or output is not None:
            raise UsageError("--labels and --output need --data")
        return report
    loaded = load_data(data, model_inputs(source.model), labels=labels)
    compressed = ort.InferenceSession(
        written[0], session_options(1), providers=["CPUExecutionProvider"]
    )
    with tempfile.TemporaryDirectory(prefix="dnnpart-compress-") as tmp:
        original = reference_session(prepare(os.fspath(model), []), tmp)
        before = predict(original, loaded.feeds, output)
    after = predict(compressed, loaded.feeds, output)
    truth = before if loaded.labels is None else loaded.labels
    report.reference_accuracy = accuracy(before, truth)
    report.accuracy = accuracy(after, truth)
    report.accuracy_of = accuracy_of(loaded.label_name)
    report.samples = len(loaded.feeds)
    return report
