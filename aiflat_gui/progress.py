"""Progress callbacks, Orange3 style.

A long operation takes ``progress: ProgressFn | None``, calls ``progress(fraction, message)`` with a
fraction in [0, 1] now and then, and never knows about threads. The callback may raise
:class:`~aiflat_gui.errors.Cancelled` to stop it; the operation must then leave no partial output.
"""

from __future__ import annotations

from typing import Callable, Optional

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]

__all__ = ["ProgressFn", "Cancelled", "report", "sub_progress"]


def report(progress: Optional[ProgressFn], fraction: float, message: str = "") -> None:
    """Call ``progress`` if given, with ``fraction`` clamped to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), message)


def sub_progress(progress: Optional[ProgressFn], start: float, stop: float) -> Optional[ProgressFn]:
    """A callback mapping [0, 1] of a sub-task onto [start, stop] of ``progress``."""
    if progress is None:
        return None

    def _sub(fraction: float, message: str = "") -> None:
        progress(start + (stop - start) * min(1.0, max(0.0, fraction)), message)

    return _sub
