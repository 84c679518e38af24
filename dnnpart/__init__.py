"""dnnpart: split trained deep neural networks across devices."""

from __future__ import annotations

from dnnpart.errors import DnnpartError
from dnnpart.importers import load


def partition(graph, **kwargs):
    """Partition a LayerGraph; see :func:`dnnpart._partition.partition`."""
    from dnnpart._partition import partition as _partition

    return _partition(graph, **kwargs)


__version__ = "0.1.0"

__all__ = ["DnnpartError", "load", "partition", "__version__"]
