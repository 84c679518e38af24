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

from dnnpart.report._rank import group_rows, rank_metric
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
    metric = rank_metric(ok[0].granularity) if ok else "latency_s"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(ks))
    for ax, key, label, scale in (
        (axes[0], "volume_bytes", "volume (bytes)", 1.0),
        (axes[1], metric, f"{metric.replace('_s', '')} (ms)", 1e3),
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
    axes[0].legend(fontsize=8, ncols=min(len(names), 3))
    fig.suptitle(title)
    return _png(fig)


def winner_load_png(rows: Sequence[Row], title: str) -> bytes:
    """Per k, the winner's load per device, stacked by layer, with the even share marked.

    Load is the scored vertex weight (MACs; seconds for profiled graphs) of each balanced
    layer the device computes. The dashed line is the total divided by k: with identical
    devices, the load every device should carry.
    """
    plt = _pyplot()
    winners = [
        next((r for r in g if r.rank == 1), None) for g in group_rows(rows).values()
    ]  # rows are ranked by the caller
    winners = [w for w in winners if w is not None and w.scores and w.scores.get("loads")]
    n = max(len(winners), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.4), layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, row in zip(axes, winners, strict=False):
        loads = np.asarray(row.scores["loads"], dtype=float)  # (layers, k)
        keep = np.flatnonzero(loads.sum(axis=1) > 0)
        bottom = np.zeros(loads.shape[1])
        cmap = plt.get_cmap("viridis")
        for n, g in enumerate(keep):
            name = row.groups[g] if g < len(row.groups) else f"layer {g}"
            colour = cmap(n / max(len(keep) - 1, 1))
            ax.bar(np.arange(loads.shape[1]), loads[g], bottom=bottom, label=name, color=colour)
            bottom += loads[g]
        ax.axhline(bottom.sum() / max(len(bottom), 1), ls="--", color="black", lw=1)
        names = row.scores.get("device_names") or [str(i) for i in range(loads.shape[1])]
        ax.set_xticks(np.arange(loads.shape[1]), names, rotation=45, fontsize=7)
        ax.set_title(f"k={row.k}: {row.partitioner}", fontsize=9)
        if 0 < len(keep) <= 8:
            ax.legend(fontsize=6)
    axes[0].set_ylabel("load (vertex weight)")
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
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
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
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _png(fig)
