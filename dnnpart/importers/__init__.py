"""Importers: model files -> :class:`dnnpart.graph.LayerGraph`."""

from __future__ import annotations

from dnnpart.importers._load import load

__all__ = ["load"]
