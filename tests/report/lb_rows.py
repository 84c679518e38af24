"""Leaderboard rows with chosen figures, and a check of HTML pages, for the report tests."""

from __future__ import annotations

import re

from dnnpart.report import Row


def make_row(
    partitioner: str,
    k: int = 2,
    *,
    latency: float = 1e-3,
    volume: int = 1000,
    imbalance: float = 1.0,
    tps: float | None = None,
    max_load: float | None = None,
    granularity: str = "neuron",
    model: str = "m.onnx",
    status: str = "ok",
    reason: str | None = None,
    base_latency: float = 2e-3,
    base_volume: int = 2000,
) -> Row:
    """An ``ok`` row (or a failed one) whose baseline has ``base_latency``/``base_volume``;
    ``max_load`` makes it a row of a problem with measured times (ratio to vertical 0.25)."""
    if status != "ok":
        return Row(model, k, partitioner, granularity, status, reason, plugin="dnnpart")
    layers = 2
    scores = {
        "k": k,
        "granularity": granularity,
        "device_names": [f"dev{i}" for i in range(k)],
        "cut": 3.0 * volume,
        "volume": volume // 4,
        "volume_bytes": volume,
        "messages": 10,
        "imbalance": imbalance,
        "imbalance_total": imbalance,
        "loads": [[100.0 * (d + 1) for d in range(k)] for _ in range(layers)],
        "memory_bytes": [1000 * (d + 1) for d in range(k)],
        "memory_ok": True,
        "latency_s": latency,
        "time_per_sample_s": tps,
        "max_load": max_load,
    }
    baseline = dict(scores, latency_s=base_latency, volume_bytes=base_volume)
    ratios = {
        "latency_s": latency / base_latency,
        "volume_bytes": volume / base_volume,
        "cut": 1.0,
        "time_per_sample_s": None if tps is None else tps / (2 * tps),
        "max_load": None if max_load is None else 0.25,
    }
    return Row(
        model,
        k,
        partitioner,
        granularity,
        "ok",
        plugin="dnnpart",
        scores=scores,
        baseline=baseline,
        ratios=ratios,
        seconds=0.01,
        seconds_all=[0.01],
        groups=["fc1", "fc2"],
    )


def network_references(page: str) -> list[str]:
    """Every way an HTML page could make the browser fetch something from elsewhere."""
    found = re.findall(r"https?://", page)
    found += re.findall(r"""(?:src|href)\s*=\s*["']?\s*//""", page, flags=re.I)
    found += re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?!data:|#)[a-z]+:""", page, flags=re.I)
    found += re.findall(r"@import|url\(", page)
    return found
