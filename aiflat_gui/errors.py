"""User-facing errors: one line, naming the file and the problem.

Every error a user can cause is an :class:`AiflatError`. The CLI prints ``str(err)`` and exits with
``err.exit_code``; the GUI shows it in a message box. Nothing else should ever reach the user.
"""

from __future__ import annotations

import os
import re


def printable(text: str) -> str:
    """``text`` on one printable line: control characters (a newline in a file name) as escapes like
    ``\\n``, bytes that are not UTF-8 (surrogate escapes of an undecodable file name) as ``\\xff``."""
    s = str(text)
    if any("\udc80" <= c <= "\udcff" for c in s):
        s = os.fsencode(s).decode("utf-8", "backslashreplace")
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates that are not escapes
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], s)


class AiflatError(Exception):
    """Base class of every error shown to a user. ``str()`` is a single line."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.problem = printable(" ".join(str(message).split()))  # always one line
        super().__init__(self.problem if self.path is None else f"{printable(self.path)}: {self.problem}")


class InputError(AiflatError):
    """Bad input from the user: unreadable or malformed file, wrong size, bad option (exit 2)."""

    exit_code = 2


class FormatError(InputError):
    """A file is not in the format it claims, or is damaged beyond use."""


class ProcessingError(AiflatError):
    """A runtime failure that is not the input's fault: disk full, AI service refusal (exit 1)."""

    exit_code = 1


class Cancelled(Exception):
    """Raised by a progress callback to stop a long operation. Not an error for the user."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ('' when it has none)."""
    text = str(exc)
    return text.splitlines()[0] if text else ""


def describe(exc: BaseException) -> str:
    """The one line shown for any exception (CLI, GUI, batch reports): an AiflatError's own line,
    'out of memory', else 'internal error (Type: first line)'."""
    if isinstance(exc, AiflatError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"internal error ({type(exc).__name__}: {first_line(exc)})"
