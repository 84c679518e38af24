"""A fuzzing harness for dnnpart's command line (issue 17, BAD_INPUTS.md).

Structure-aware and byte-level mutants of real ONNX models, and mutants of plans,
manifests, device files and ``.npz`` inputs, each run through the CLI's entry point in a
forked child under a time and memory limit; outcomes are classified (ok, typed error by
exit code, internal error, signal, hang, read outside the case's folder) and failures kept
as reproductions. ``test_fuzz.py`` runs short seeded campaigns (30 mutants in the
default set, 300 marked slow); the long run is::

    python -m tests.fuzz --mutants 3000 --work /tmp/dnnpart-fuzz

(five real models by default; ``--model PATH`` repeated to choose others, ``--seed``,
``--timeout`` and ``--cpu`` for the wall-time and CPU-seconds limits of one run: on a
loaded machine give the wall time room, e.g. ``--timeout 300 --cpu 120``, so that only
the CPU limit decides what is a hang). It prints a JSON summary: counts by outcome, by
family, and by how runs ended (``by_code``: ``exit 3``, ``SIGABRT``, ``wall``...), and
the failures with their reproductions; Ctrl-C stops it with the summary of what ran.
"""

from ._campaign import Campaign, Report, main_models
from ._runner import FAILURES, Outcome, run_cli

__all__ = ["Campaign", "Report", "main_models", "run_cli", "Outcome", "FAILURES"]
