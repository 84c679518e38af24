"""The leaderboard's plots, drawn with matplotlib (Agg) and returned as PNG bytes.

PNG rather than SVG: matplotlib's SVG carries ``http://`` namespace and DTD URLs, and the
HTML report promises no network reference at all. Each function draws the rows of one
(model, granularity) across its k values; colours follow the partitioner's position in the
sorted list of names, so a partitioner has one colour in every plot of a report.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from dnnpart.report._rank import group_rows, is_profiled, rank_label, rank_metric
from dnnpart.report._rows import Row

__all__ = ["volume_latency_png", "winner_load_png", "volume_imbalance_png", "available"]


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No metadata: the bytes depend on the data only, not on the matplotlib version string.
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def _colours(names: Sequence[str]) -> dict[str, tuple]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(sorted(set(names)))}


def volume_latency_png(rows: Sequence[Row], title: str) -> bytes:
    """Grouped bars per k: volume (bytes) and the ranking time, one bar per partitioner."""
    plt = _pyplot()
    ok = [r for r in rows if r.status == "ok"]
    ks = sorted({r.k for r in ok})
    names = sorted({r.partitioner for r in ok})
    colours = _colours(names)
    profiled = any(is_profiled(r) for r in ok)
    metric = rank_metric(ok[0].granularity, profiled=profiled) if ok else "latency_s"
    by = rank_label(ok[0].granularity, profiled=profiled) if ok else "latency"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(ks))
    for ax, key, label, scale in (
        (axes[0], "volume_bytes", "volume (bytes)", 1.0),
        (axes[1], metric, f"{by} (ms)", 1e3),
    ):
        for j, name in enumerate(names):
            values = []
            for k in ks:
                match = [r for r in ok if r.k == k and r.partitioner == name]
                value = match[0].scores.get(key) if match else None
                if value is None and key != "volume_bytes" and match:
                    value = match[0].scores.get("latency_s")
                values.append(np.nan if value is None else value * scale)
            ax.bar(
                x + (j - (len(names) - 1) / 2) * width,
                values,
                width,
                label=name,
                color=colours[name],
            )
        ax.set_xticks(x, [f"k={k}" for k in ks])
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    if names:  # beside the bars, never over them
        axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle(title)
    return _png(fig)


_LAYERS_SHOWN = 6  # the winner-load plot names the heaviest layers, the rest is "other"


def _targets(row: Row, k: int) -> np.ndarray:
    """Each device's share of the work: its speed over the sum (equal without devices)."""
    listed = (row.devices or {}).get("device") or []
    speeds = np.array([float(d.get("speed", 1.0)) for d in listed]) if len(listed) == k else None
    return np.full(k, 1.0 / k) if speeds is None else speeds / speeds.sum()


def winner_load_png(rows: Sequence[Row], title: str) -> bytes:
    """Per k, the winner's share of the work per device, stacked by layer, against each
    device's own target share (a short black line over its bar).

    The work of a layer is its scored vertex weight (MACs; seconds for profiled graphs);
    the heaviest layers are named, the others stacked as "other layers". With devices of
    different speeds each device has its own target, so a right split reaches every line.
    """
    plt = _pyplot()
    winners = [
        next((r for r in g if r.rank == 1), None) for g in group_rows(rows).values()
    ]  # rows are ranked by the caller
    winners = [w for w in winners if w is not None and w.scores and w.scores.get("loads")]
    n = max(len(winners), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 1.8, 3.6), layout="constrained")
    axes = np.atleast_1d(axes)
    cmap = plt.get_cmap("tab10")
    for ax, row in zip(axes, winners, strict=False):
        loads = np.asarray(row.scores["loads"], dtype=float)  # (layers, k)
        total = loads.sum()
        shares = loads / total if total > 0 else loads
        k = loads.shape[1]
        order = np.argsort(-shares.sum(axis=1), kind="stable")
        named = [g for g in order[:_LAYERS_SHOWN] if shares[g].sum() > 0]
        rest = [g for g in order[_LAYERS_SHOWN:] if shares[g].sum() > 0]
        bottom = np.zeros(k)
        x = np.arange(k)
        for i, g in enumerate(sorted(named)):
            name = row.groups[g] if g < len(row.groups) else f"layer {g}"
            ax.bar(x, shares[g] * 100, bottom=bottom * 100, label=name, color=cmap(i % 10))
            bottom += shares[g]
        if rest:
            other = shares[rest].sum(axis=0)
            label = f"{len(rest)} other layers"
            ax.bar(x, other * 100, bottom=bottom * 100, label=label, color="lightgrey")
            bottom += other
        target = _targets(row, k) * 100
        ax.hlines(target, x - 0.45, x + 0.45, colors="black", lw=1.5, label="target share")
        names = row.scores.get("device_names") or [str(i) for i in range(k)]
        ax.set_xticks(
            x, names, rotation=45 if k > 4 else 0, fontsize=7, ha="right" if k > 4 else "center"
        )
        ax.set_title(f"k={row.k}: {row.partitioner}", fontsize=9)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    unit = "MACs" if (winners and winners[0].granularity == "neuron") else "work"
    axes[0].set_ylabel(f"share of the model's {unit} (%)")
    if not winners:
        axes[0].text(0.5, 0.5, "no successful run", ha="center", transform=axes[0].transAxes)
    fig.suptitle(title)
    return _png(fig)


def volume_imbalance_png(rows: Sequence[Row], title: str) -> bytes:
    """Volume against worst-layer imbalance: one point per (partitioner, k)."""
    plt = _pyplot()
    ok = [r for r in rows if r.status == "ok"]
    colours = _colours([r.partitioner for r in ok])
    markers = "osD^v<>p*h"
    ks = sorted({r.k for r in ok})
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for name in sorted(colours):
        for r in (r for r in ok if r.partitioner == name):
            ax.scatter(
                r.scores.get("imbalance"),
                r.scores.get("volume_bytes"),
                color=colours[name],
                marker=markers[ks.index(r.k) % len(markers)],
                s=40,
            )
        ax.scatter([], [], color=colours[name], label=name)
    for i, k in enumerate(ks):
        ax.scatter([], [], color="grey", marker=markers[i % len(markers)], label=f"k={k}")
    ax.set_xlabel("imbalance (worst layer; 1.0 is perfect)")
    ax.set_ylabel("volume (bytes)")
    ax.grid(alpha=0.3)
    if ok:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle(title)
    return _png(fig)
