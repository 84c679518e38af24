"""Where a split first departs from the whole model, when ``verify`` finds a mismatch.

A wrong output has two very different causes: a routing or export error (a transfer
carries the wrong elements, a sub-model has the wrong weights), or a reference that is
numerically ill-conditioned in its last layers (a softmax over logits near 7e9 turns
float32 rounding of the logits into 0.0 against 0.0013). The tensors that crossed devices
tell them apart: each is compared with the whole model's value of the same elements, in
the order they were sent, within the verify tolerance or float rounding (64 ulps of the
tensor's largest value, whichever is looser: summing in another order differs by a few
ulps). The first one over that is where the split went wrong; if none is, the split agreed
up to its last transfer and the difference arose after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["divergence"]


def _output_layers(manifest: dict[str, Any], names: list[str]) -> str:
    """The layers of the stages that produce the model's outputs, with their devices."""
    wanted = {(int(p["device"]), p["value"]) for p in manifest["outputs"]}
    parts = []
    for s in manifest["stages"]:
        if any((int(s["device"]), v) in wanted for v in s["outputs"]):
            layers = ", ".join(s["layers"][-3:])
            parts.append(f"{layers} (on {names[int(s['device'])]})")
    return "; ".join(parts) or "the last layers"


def divergence(
    manifest: dict[str, Any],
    trace: list[tuple[int, np.ndarray]],
    reference: dict[str, np.ndarray],
    rtol: float,
    atol: float | None,
    compare: Callable,
) -> str:
    """One sentence: the first transfer that differs from the whole model, or that none do.

    Parameters
    ----------
    manifest : dict
        The export's manifest (:func:`~dnnpart.exporters.read_manifest`).
    trace : list of (int, ndarray)
        What :meth:`Executor.run` recorded: transfer index and the array sent, in order.
    reference : dict
        The whole model's value of each tensor that crossed devices, by tensor name.
    rtol, atol
        The tolerances of the comparison (as for the outputs).
    compare : callable
        ``compare(name, got, want, rtol, atol) -> (max abs error, problem or None)``: the
        rule the outputs were compared by.
    """
    transfers = manifest["transfers"]
    names = [str(d["name"]) for d in manifest["devices"]["device"]]
    checked, worst, peak = 0, 0.0, 0.0
    for i, sent in trace:
        t = transfers[i]
        whole = reference.get(t["tensor"])
        if whole is None:
            continue
        want = whole if t["indices"] is None else np.take(whole, t["indices"], axis=t["axis"])
        where = f"tensor {t['tensor']!r} sent {names[int(t['from'])]} -> {names[int(t['to'])]}"
        rounding = 64 * float(np.finfo(want.dtype).eps) if want.dtype.kind in "fc" else 0.0
        err, problem = compare(t["tensor"], np.asarray(sent), want, max(rtol, rounding), atol)
        if problem:
            return (
                f"the split first departs from the whole model at {where} "
                f"(transfer {i}, max abs error {err:.3g}): a routing or export error"
            )
        checked += 1
        if want.dtype.kind in "fc" and want.size:
            scale = float(np.max(np.abs(want)))
            peak = max(peak, scale)
            worst = max(worst, err / scale if scale else err)
    if not checked:
        return "no tensor crossed devices before the outputs; nothing to localise"
    return (
        f"all {checked} tensors that crossed devices match the whole model (largest "
        f"relative error {worst:.2g}); the outputs differ only after the last transfer, "
        f"in {_output_layers(manifest, names)}, whose inputs reach |x| = {peak:.3g}: "
        "float32 rounding is amplified there (an ill-conditioned reference), not a "
        "routing error"
    )
