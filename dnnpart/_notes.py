"""One channel for notes to the user.

Partitioners, passes and importers call :func:`note` for what the user should know but
that is not an error: a fallback to a cheaper search, an approximation, a default taken.
Whoever runs them (``dnnpart.partition``, the CLI, the leaderboard worker) opens a
:func:`collecting` block and puts what was collected where the user sees it
(``plan.messages``, stderr). Outside any such block a note is a Python warning of category
:class:`DnnpartNote`, so library users still see it.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Iterator

__all__ = ["DnnpartNote", "collecting", "note"]


class DnnpartNote(UserWarning):
    """A note from dnnpart raised as a warning where nobody collects notes."""


_sink: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "dnnpart_notes", default=None
)


def note(message: str) -> None:
    """Tell the user ``message`` (one line, no trailing period needed)."""
    sink = _sink.get()
    if sink is None:
        warnings.warn(str(message), DnnpartNote, stacklevel=2)
    elif str(message) not in sink:  # the same fallback in every layer is said once
        sink.append(str(message))


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the notes made inside the block into the list it yields (in order)."""
    sink: list[str] = []
    token = _sink.set(sink)
    try:
        yield sink
    finally:
        _sink.reset(token)
