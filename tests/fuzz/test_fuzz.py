"""A short seeded fuzz campaign (issue 17): mutants of two small real models and of the
plans, manifests, device files and inputs made from them, run through the CLI in forked
children. None may end in an internal error, a signal, a hang or a read outside its case's
folder; the long run is ``python -m tests.fuzz`` (see the package docstring)."""

from __future__ import annotations

from pathlib import Path

import models as tiny_models
import pytest

from ._campaign import Campaign


@pytest.mark.slow
def test_short_seeded_campaign_has_no_crash_internal_error_hang_or_outside_read(tmp_path):
    mlp = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx"
    conv = tiny_models.save(tiny_models.conv_net(), tmp_path, "conv.onnx")
    campaign = Campaign(
        [mlp, conv], tmp_path / "work", seed=17, timeout=60, partition=0.3, deep=0.0
    )
    report = campaign.run(300)
    summary = report.summary()
    assert report.mutants == 300
    failed = {k: report.counts[k] for k in ("internal", "signal", "hang", "outside")}
    assert not any(failed.values()), summary["failures"][:5]
    # the campaign reaches every stage: clean runs and typed refusals of every family
    assert report.counts["ok"] > 0 and report.counts["typed"] > 0
    assert set(summary["by_family"]) == {"model", "bytes", "plan", "manifest", "devices", "npz"}
