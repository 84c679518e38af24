"""Human-readable numbers for terminal output."""

from __future__ import annotations

__all__ = ["si", "size"]


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
