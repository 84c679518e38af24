"""Typed errors raised by the dnnpart library.

Library code raises these; only :mod:`dnnpart.cli` turns them into one-line messages
and exit codes. Every error carries the exit code the design assigns to its kind:

0 ok · 1 internal bug · 2 usage · 3 invalid or unsupported model · 4 unsafe reference ·
5 resource limit · 6 output conflict · 7 verification mismatch.
"""

from __future__ import annotations

__all__ = [
    "DnnpartError",
    "UsageError",
    "InvalidModelError",
    "UnsupportedModelError",
    "UnsafeReferenceError",
    "ResourceLimitError",
    "OutputConflictError",
    "PartitionerAnswerError",
    "VerificationError",
]


class DnnpartError(Exception):
    """Base of every error dnnpart raises on purpose."""

    exit_code = 1


class UsageError(DnnpartError, ValueError):
    """A bad argument or configuration value (k, a device file field, an option)."""

    exit_code = 2


class InvalidModelError(DnnpartError, ValueError):
    """The model file is not a valid ONNX model, or its graph is malformed."""

    exit_code = 3


class UnsupportedModelError(InvalidModelError):
    """The model is valid but uses something dnnpart refuses (e.g. in strict mode)."""


class UnsafeReferenceError(DnnpartError):
    """An external-data reference points outside the model's folder or at a non-file."""

    exit_code = 4


class ResourceLimitError(DnnpartError):
    """Honouring the input would need more memory, size or depth than allowed."""

    exit_code = 5


class PartitionerAnswerError(DnnpartError):
    """A partitioner (often a plugin) returned an answer of the wrong length, type or range."""

    exit_code = 1


class OutputConflictError(DnnpartError):
    """An output would overwrite existing files."""

    exit_code = 6


class VerificationError(DnnpartError):
    """A split model did not compute what the whole model computed."""

    exit_code = 7
