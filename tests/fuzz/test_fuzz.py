"""Seeded fuzz campaigns (issue 17): mutants of small real models and of the plans,
manifests, device files and inputs made from them, run through the CLI in forked
children. None may end in an internal error, a signal, a hang or a read outside its case's
folder. A short campaign (about 30 mutants of the example MLP) is in the default set, the
300-mutant one is slow; the long run is ``python -m tests.fuzz`` (see the package
docstring)."""

from __future__ import annotations

from pathlib import Path

import models as tiny_models
import pytest

from ._campaign import Campaign
from ._runner import FAILURES

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp" / "mlp.onnx"


def _campaign(models, work: Path, mutants: int, seed: int) -> dict:
    campaign = Campaign(models, work, seed=seed, timeout=60, partition=0.3, deep=0.0)
    report = campaign.run(mutants)
    summary = report.summary()
    assert report.mutants == mutants and not report.interrupted
    failed = {k: report.counts[k] for k in FAILURES}
    assert not any(failed.values()), summary["failures"][:5]
    # clean runs and typed refusals both happen: the mutants reach past the first check
    assert report.counts["ok"] > 0 and report.counts["typed"] > 0, summary
    return summary


def test_thirty_mutants_of_the_example_mlp(tmp_path):
    summary = _campaign([MLP], tmp_path / "work", 30, seed=30)
    assert sum(summary["by_code"]["typed"].values()) == summary["outcomes"]["typed"]


@pytest.mark.slow
def test_short_seeded_campaign_has_no_crash_internal_error_hang_or_outside_read(tmp_path):
    conv = tiny_models.save(tiny_models.conv_net(), tmp_path, "conv.onnx")
    summary = _campaign([MLP, conv], tmp_path / "work", 300, seed=17)
    assert set(summary["by_family"]) == {"model", "bytes", "plan", "manifest", "devices", "npz"}
