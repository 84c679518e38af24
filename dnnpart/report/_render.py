"""Render a leaderboard: terminal (rich), Markdown, JSON, CSV and a self-contained HTML page.

Every renderer ranks the rows first (:func:`dnnpart.report.rank`) and shows the columns of
:data:`dnnpart.report.COLUMNS`, one table per (model, granularity) with the k values one
after the other; the best value of each column within a k is highlighted (bold green in
the terminal, bold in Markdown, a class in HTML). Rows that did not run show their status
and reason.

JSON is the design's contract, ``{"rows": [...]}``, each row :meth:`Row.to_dict` plus its
rank. CSV is one line per row with the scalar figures of :func:`flat_record`. The HTML page
inlines its CSS and its plots (PNG as ``data:`` URIs) and references nothing outside
itself: it can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dnnpart._output import check_output, write_text
from dnnpart.errors import UsageError
from dnnpart.report._rank import (
    best_values,
    columns_for,
    flat_record,
    group_rows,
    is_profiled,
    rank,
    rank_label,
    rank_text,
)
from dnnpart.report._rows import Row

__all__ = [
    "format_value",
    "print_table",
    "to_markdown",
    "to_json",
    "to_csv",
    "to_html",
    "write_report",
    "FORMATS",
]

FORMATS = {".html": "html", ".htm": "html", ".md": "markdown", ".json": "json", ".csv": "csv"}


def format_value(value: Any, kind: str) -> str:
    """A figure for people: times in µs/ms/s, bytes with binary prefixes, ratios 3 decimals."""
    from dnnpart._format import duration, ratio, si, size

    if value is None:
        return "-"
    if kind == "time" or kind == "seconds":
        return duration(value)
    if kind == "size":
        return size(value)
    if kind == "count":
        return si(value)
    return ratio(value)


def _model_label(rows: Sequence[Row]) -> dict[str, str]:
    """Short model names (file names) unless two models share one."""
    models = list(dict.fromkeys(r.model for r in rows))
    names = [Path(m).name for m in models]
    if len(set(names)) < len(names):
        return {m: m for m in models}
    return dict(zip(models, names, strict=True))


def _tables(rows: Sequence[Row]):
    """Yield ``(model, granularity, columns, [(k, group rows, best), ...])``."""
    ranked = rank(rows)
    by_table: dict[tuple[str, str], list] = {}
    for (model, gran, k), group in group_rows(ranked).items():
        cols = columns_for(gran)
        by_table.setdefault((model, gran), []).append((k, group, best_values(group, cols)))
    for (model, gran), parts in by_table.items():
        # figures measured only on the user's data are shown when some row has them
        shown = [
            c
            for c in columns_for(gran)
            if c.key not in _WITH_DATA or any(c.get(r) is not None for _, g, _ in parts for r in g)
        ]
        yield model, gran, shown, parts


_MEASURED = ("volume_bytes_sparse", "accuracy_drop")
# columns shown only when some row has them: measured on data, or on measured times
_WITH_DATA = (*_MEASURED, "max_load", "max_load_ratio")


def _note(row: Row) -> str:
    """Why a row did not run; else its verification, memory overflow and the plan's notes."""
    if row.status != "ok":
        return f"{row.status}: {row.reason}" if row.reason else row.status
    notes = []
    if row.verify:
        ok = row.verify.get("ok")
        if ok is None:
            notes.append(row.verify.get("reason") or "not verified")
        else:
            notes.append(
                "verified" if ok else f"verify failed: {row.verify.get('reason', '')}".strip()
            )
    if row.scores and row.scores.get("memory_ok") is False:
        names = row.scores.get("device_names") or []
        over = [names[d] if d < len(names) else str(d) for d in row.scores["memory_overflow"]]
        notes.append("does not fit in memory: " + ", ".join(over))
    elif row.feasible is False and row.scores:
        notes.append(f"unbalanced (imbalance {row.scores.get('imbalance', 0):.3g}): ranked last")
    notes += row.messages
    return "; ".join(notes)


def _objective_of(parts) -> str | None:
    """The objective the rows of one table were run for (None: the default)."""
    return next((r.objective for _, group, _ in parts for r in group if r.objective), None)


def _profiled(parts) -> bool:
    """The rows of one table were scored on measured times (:func:`is_profiled`)."""
    return any(is_profiled(r) for _, group, _ in parts for r in group)


def _title(model: str, gran: str, labels: dict[str, str], parts) -> str:
    by = rank_label(gran, _objective_of(parts), _profiled(parts))
    return f"{labels[model]}, {gran} granularity, ranked by {by}"


# -- terminal ------------------------------------------------------------------------------


_COMPACT = {
    "neuron": (
        "latency_s",
        "latency_ratio",
        "volume_bytes",
        "volume_ratio",
        "imbalance",
        "seconds",
    ),
    "layer": (
        "max_load",
        "max_load_ratio",
        "time_per_sample_s",
        "time_per_sample_ratio",
        "volume_bytes",
        "volume_ratio",
        "imbalance",
        "seconds",
    ),
}
_SHORT = {
    "latency_s": "latency",
    "time_per_sample_s": "t/sample",
    "latency_ratio": "×vert",
    "time_per_sample_ratio": "×vert",
    "max_load_ratio": "×vert",
    "volume_bytes": "volume",
    "volume_ratio": "×vert",
    "imbalance": "imbal.",
    "accuracy_drop": "acc↓",
    "volume_bytes_sparse": "sparse",
    "seconds": "run",
}
_WIDE = 160  # terminal columns from which every figure fits in the table


def print_table(rows: Sequence[Row], console=None, full: bool | None = None) -> None:
    """Print the ranked tables with rich (stdout unless ``console`` says otherwise).

    On a terminal narrower than 160 columns (and ``full`` not True) the table keeps the
    main figures (ranking time, volume, imbalance, run time, with ratios to
    vertical, and the verification when there is one); the reasons of rows that did not
    run or did not verify are listed under the table.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    full = console.width >= _WIDE if full is None else full
    labels = _model_label(rows)
    for model, gran, all_cols, parts in _tables(rows):
        compact = _COMPACT[gran] + _MEASURED
        if _profiled(parts):  # max-load is the time per sample that ranks: not both
            compact = tuple(c for c in compact if not c.startswith("time_per_sample"))
        cols = all_cols if full else [c for c in all_cols if c.key in compact]
        table = Table(
            title=_title(model, gran, labels, parts),
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        table.add_column("k", justify="right", no_wrap=True, min_width=1)
        table.add_column("#", justify="right", no_wrap=True, min_width=1)
        table.add_column("partitioner", no_wrap=True)
        for col in cols:
            label = col.label if full else _SHORT.get(col.key, col.label)
            table.add_column(label, justify="right", no_wrap=True)
        verified = any(r.verify for _, group, _ in parts for r in group)
        if full:
            table.add_column("note")
        elif verified:
            table.add_column("verify", no_wrap=True)
        notes = []
        for n, (k, group, best) in enumerate(parts):
            if n:
                table.add_section()
            for row in group:
                cells = [str(k), rank_text(row), Text(row.partitioner)]
                for col in cols:
                    value = col.get(row) if row.status == "ok" else None
                    text = format_value(value, col.kind) if row.status == "ok" else row.status
                    text = text if full else text.replace(" ", "")
                    good = value is not None and best.get(col.key) == value
                    style = "bold green" if good else ("" if row.status == "ok" else "red")
                    cells.append(Text(text, style=style))
                if full:
                    cells.append(Text(_note(row), style="" if row.status == "ok" else "red"))
                else:
                    if verified:
                        cells.append(_verify_cell(row))
                    if _note(row):
                        bad = row.status != "ok" or (row.verify or {}).get("ok") is False
                        notes.append((f"k={k} {row.partitioner}: {_note(row)}", bad))
                table.add_row(*cells)
        console.print(table)
        for note, bad in notes:
            console.print(Text("  " + note, style="red" if bad else "yellow"), soft_wrap=True)
        console.print()


def _verify_cell(row: Row):
    from rich.text import Text

    ok = (row.verify or {}).get("ok", "")
    text = {True: "ok", False: "failed", None: "n/a"}.get(ok, "")
    return Text(text, style={True: "green", False: "red"}.get(ok, ""))


# -- Markdown --------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Sequence[Row]) -> str:
    """The ranked tables as GitHub Markdown (best values in bold)."""
    labels = _model_label(rows)
    out = ["# dnnpart leaderboard", ""]
    for model, gran, cols, parts in _tables(rows):
        out += [f"## {_md_cell(_title(model, gran, labels, parts))}", ""]
        head = ["k", "#", "partitioner"] + [c.label for c in cols] + ["note"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---:", "---:", "---"] + ["---:"] * len(cols) + ["---"]) + "|")
        for k, group, best in parts:
            for row in group:
                cells = [str(k), rank_text(row), _md_cell(row.partitioner)]
                for col in cols:
                    value = col.get(row) if row.status == "ok" else None
                    text = format_value(value, col.kind)
                    good = value is not None and best.get(col.key) == value
                    cells.append(f"**{text}**" if good else text)
                cells.append(_md_cell(_note(row)))
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    out.append("Lower is better in every column; ×vert is the ratio to the vertical baseline.")
    return "\n".join(out) + "\n"


# -- JSON and CSV ----------------------------------------------------------------------------


def to_json(rows: Sequence[Row]) -> str:
    """``{"rows": [...]}``, ranked, every row in full (:meth:`Row.to_dict`)."""
    return json.dumps({"rows": [r.to_dict() for r in rank(rows)]}, indent=1, sort_keys=True)


def to_csv(rows: Sequence[Row]) -> str:
    """One line per row with the scalar figures of :func:`flat_record`."""
    records = [flat_record(r) for r in rank(rows)]
    buf = io.StringIO()
    fields = list(records[0]) if records else list(flat_record(Row("", 0, "", "", "")))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: "" if v is None else v for k, v in rec.items()})
    return buf.getvalue()


# -- HTML ------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right;
  white-space: nowrap; }
td.note { white-space: normal; min-width: 14em; max-width: 28em; text-align: left; }
div.wide { overflow-x: auto; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.name, th.name, td.note { text-align: left; }
tr.k-first td { border-top: 2px solid #888; }
td.best { font-weight: bold; color: #0a6b2d; background: #e9f7ee; }
tr.bad td { color: #a11; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
p.meta { color: #666; font-size: 0.85em; }
table.split td.over { color: #a11; font-weight: bold; }
h3 { font-size: 1em; margin-top: 1.5em; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def to_html(
    rows: Sequence[Row], title: str = "dnnpart leaderboard", meta: dict | None = None
) -> str:
    """A self-contained HTML report: ranked tables and plots, nothing loaded from anywhere.

    Per (model, granularity): the table, then volume and ranking time per partitioner per
    k, the winner's per-device load per k, and volume against imbalance. Without
    matplotlib the page says so instead of showing plots.
    """
    from dnnpart.report import _plots

    esc = html.escape
    labels = _model_label(rows)
    ranked = rank(rows)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if meta:
        out.append(
            '<p class="meta">'
            + " · ".join(f"{esc(str(k))}: {esc(str(v))}" for k, v in meta.items())
            + "</p>"
        )
    out.append(
        '<p class="meta">Lower is better in every column; ×vert is the ratio to the vertical '
        "baseline of the same problem. Best of each column per k in bold. Rows within 1 % share a "
        "rank; ✗ marks a split that breaks memory or balance (ranked after the others).</p>"
    )
    plots = _plots.available()
    for model, gran, cols, parts in _tables(rows):
        heading = _title(model, gran, labels, parts)
        out.append(f"<h2>{esc(heading)}</h2>")
        with_notes = any(_note(r) for _, group, _ in parts for r in group)
        out.append("<div class='wide'><table><thead><tr><th>k</th><th>#</th>")
        out.append("<th class='name'>partitioner</th>")
        out += [f"<th>{esc(c.label)}</th>" for c in cols]
        out.append(("<th class='name'>note</th>" if with_notes else "") + "</tr></thead><tbody>")
        for k, group, best in parts:
            for i, row in enumerate(group):
                classes = (["k-first"] if i == 0 else []) + ([] if row.status == "ok" else ["bad"])
                out.append(f"<tr class='{' '.join(classes)}'><td>{k}</td>")
                out.append(
                    f"<td>{esc(rank_text(row))}</td><td class='name'>{esc(row.partitioner)}</td>"
                )
                for col in cols:
                    value = col.get(row) if row.status == "ok" else None
                    good = value is not None and best.get(col.key) == value
                    cls = " class='best'" if good else ""
                    out.append(f"<td{cls}>{esc(format_value(value, col.kind))}</td>")
                note = f"<td class='note'>{esc(_note(row))}</td>" if with_notes else ""
                out.append(note + "</tr>")
        out.append("</tbody></table></div>")
        for _k, group, _ in parts:
            winner = next((r for r in group if r.rank == 1), None)
            if winner is not None and winner.scores and winner.scores.get("neurons"):
                out += _split_html(winner, gran)
        sub = [r for r in ranked if r.model == model and r.granularity == gran]
        if not plots:
            out.append("<p class='meta'>Plots need matplotlib, which is not installed.</p>")
        elif any(r.status == "ok" for r in sub):
            name = labels[model]
            out.append(
                _img(
                    _plots.volume_latency_png(sub, f"{name}: volume and time"),
                    "volume and time per partitioner per k",
                )
            )
            out.append(
                _img(
                    _plots.winner_load_png(sub, f"{name}: the winner's work per device"),
                    "the winner's share of the work per device and layer, with targets",
                )
            )
            out.append(
                _img(
                    _plots.volume_imbalance_png(sub, f"{name}: volume vs imbalance"),
                    "volume against imbalance",
                )
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _split_html(row: Row, gran: str) -> list[str]:
    """The winner's split per device and layer (as ``dnnpart show`` prints it)."""
    from dnnpart._format import si, size
    from dnnpart._show import layer_table, split_view

    esc = html.escape
    view = split_view(row.groups, row.scores, row.devices)
    unit = "neurons or channels" if gran == "neuron" else "layers"
    out = [
        f"<h3>k={row.k}: the split of the winner, {esc(row.partitioner)}</h3>",
        "<table class='split'><thead><tr><th class='name'>device</th><th>speed</th>"
        f"<th>target share</th><th>share of the work</th><th>{unit}</th><th>memory</th>"
        "<th>of</th></tr></thead><tbody>",
    ]
    for d in view["devices"]:
        share = "-" if d["share"] is None else f"{d['share']:.1%}"
        over = "" if d["memory_ok"] else " class='over'"
        limit = "unlimited" if d["memory"] is None else size(d["memory"])
        out.append(
            f"<tr><td class='name'>{esc(d['name'])}</td><td>{esc(si(d['speed'], 'FLOPS'))}</td>"
            f"<td>{d['target']:.1%}</td><td>{share}</td><td>{d['vertices']}</td>"
            f"<td{over}>{esc(size(d['memory_bytes']))}</td><td>{esc(limit)}</td></tr>"
        )
    out.append("</tbody></table>")
    head, rows = layer_table(view)
    out.append(
        "<table class='split'><thead><tr><th class='name'>layer</th>"
        + "".join(f"<th>{esc(c)}</th>" for c in head[1:])
        + "</tr></thead><tbody>"
    )
    for row in rows:
        out.append(
            f"<tr><td class='name'>{esc(row[0])}</td>"
            + "".join(f"<td>{esc(c)}</td>" for c in row[1:])
            + "</tr>"
        )
    out.append("</tbody></table>")
    return out


# -- files -----------------------------------------------------------------------------------


def write_report(
    rows: Sequence[Row],
    path: str | os.PathLike,
    *,
    title: str = "dnnpart leaderboard",
    meta: dict | None = None,
) -> str:
    """Write ``rows`` in the format the suffix names (.html/.htm, .md, .json, .csv).

    ``title`` and ``meta`` (options shown under the title) are used by the HTML page.

    The file is written to a temporary name in the same folder and renamed into place, so
    a reader never sees half a report. Returns the format written.
    """
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(
            f"cannot tell the report format of {os.fspath(path)!r}: use one of "
            + ", ".join(sorted(FORMATS))
        )
    if fmt == "html":
        text = to_html(rows, title=title, meta=meta)
    elif fmt == "markdown":
        text = to_markdown(rows)
    elif fmt == "json":
        text = to_json(rows) + "\n"
    else:
        text = to_csv(rows)
    check_output(path, force=True)  # the folder exists and is writable
    write_text(path, text)
    return fmt
