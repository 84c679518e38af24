"""dnnpart: split trained deep neural networks across devices."""

from __future__ import annotations

from dnnpart.errors import DnnpartError
from dnnpart.importers import load

__version__ = "0.1.0"

__all__ = ["DnnpartError", "load", "__version__"]
