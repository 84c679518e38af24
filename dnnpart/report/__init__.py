"""The leaderboard: run every partitioner on every model and k, rank, render.

``run_leaderboard`` runs each (model, granularity, k, partitioner) in a worker process
under a time limit; ``rank`` orders the rows by latency (time per sample at layer
granularity) with every figure against the vertical baseline; the renderers print a rich
table or write Markdown, JSON (``{"rows": [...]}``), CSV and a self-contained HTML report.
"""

from dnnpart.report._rank import COLUMNS, Column, best_values, flat_record, rank, rank_metric
from dnnpart.report._render import (
    FORMATS,
    print_table,
    to_csv,
    to_html,
    to_json,
    to_markdown,
    write_report,
)
from dnnpart.report._rows import Row, load_partitioner
from dnnpart.report._run import Interrupted, run_leaderboard
from dnnpart.report._worker import verify_plan

__all__ = [
    "run_leaderboard",
    "Interrupted",
    "Row",
    "load_partitioner",
    "verify_plan",
    "rank",
    "rank_metric",
    "best_values",
    "flat_record",
    "Column",
    "COLUMNS",
    "print_table",
    "to_markdown",
    "to_json",
    "to_csv",
    "to_html",
    "write_report",
    "FORMATS",
]
