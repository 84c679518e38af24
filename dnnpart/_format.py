"""Human-readable numbers for terminal output."""

from __future__ import annotations

__all__ = ["si", "size", "duration", "ratio"]


def si(n: float | None, unit: str = "") -> str:
    """``4089184256`` -> ``"4.09 G"`` (decimal prefixes, for counts and MACs)."""
    if n is None:
        return "?"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def size(n: float | None) -> str:
    """Bytes with binary prefixes: ``1536`` -> ``"1.5 KiB"``."""
    if n is None:
        return "?"
    for factor, prefix in ((1 << 40, "Ti"), (1 << 30, "Gi"), (1 << 20, "Mi"), (1 << 10, "Ki")):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {prefix}B"
    return f"{int(n)} B"


def duration(seconds: float | None) -> str:
    """Seconds for people: ``2.0e-4`` -> ``"200.00 µs"``, ``0.05`` -> ``"50.00 ms"``."""
    if seconds is None:
        return "-"
    v = float(seconds)
    if v == 0:
        return "0"
    if abs(v) < 1e-3:
        return f"{v * 1e6:.2f} µs"
    if abs(v) < 1:
        return f"{v * 1e3:.2f} ms"
    return f"{v:.2f} s"


def ratio(x: float | None) -> str:
    """A ratio with 3 decimals, or 2 significant digits below 0.001 (never ``"0.000"``)."""
    if x is None:
        return "-"
    x = float(x)
    if x == 0 or abs(x) >= 1e-3:
        return f"{x:.3f}"
    return f"{x:.2g}"
