"""Process states from /proc, shared by the tests that check no child outlives its run."""

from __future__ import annotations

import time
from pathlib import Path


def state(pid: int) -> str | None:
    """The process's state letter from /proc (None once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[0]


def gone(pid: int, seconds: float = 10.0) -> bool:
    """True once ``pid`` is no longer running (gone, or a zombie its new parent has yet
    to reap), waiting up to ``seconds`` for it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if state(pid) in (None, "Z", "X"):
            return True
        time.sleep(0.02)
    return False
