"""Checks every reader makes before opening a file the user gave us.

* :func:`check_input` refuses anything that is not a regular file or folder -- a FIFO, a device, a
  socket -- before it is opened (opening a FIFO blocks forever; ``/dev/zero`` never ends), and names
  a symlink loop as such.
* :func:`read_text` reads a small text input (a prompt file) with a size cap.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path

from ..errors import InputError

#: The most a text input (a prompt file) may hold.
TEXT_LIMIT = 1 << 20

#: Set by the command line (not the GUI): native decoders' own messages ("libpng error: ...",
#: "Corrupt JPEG data: ...") are kept off stderr while they decode; our one-line error says it.
QUIET_NATIVE = False
_QUIET_LOCK = threading.Lock()


@contextlib.contextmanager
def native_stderr_quiet():
    """While decoding: file descriptor 2 points to /dev/null when :data:`QUIET_NATIVE` is set."""
    if not QUIET_NATIVE:
        yield
        return
    with _QUIET_LOCK:
        try:
            saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        except OSError:
            yield
            return
        try:
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)


def check_input(path: str | os.PathLike, folder_ok: bool = True) -> os.stat_result:
    """``os.stat`` of an input after refusing (InputError) a missing file, a symlink loop, a
    special file (FIFO, device, socket) or -- unless ``folder_ok`` -- a folder."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("is a symlink loop", p) from None
        if exc.errno == errno.ENAMETOOLONG:
            raise InputError("file name is too long", p) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise InputError("file is not readable (permission denied)", p) from None
        raise InputError("no such file or folder", p) from None
    except ValueError:
        raise InputError("invalid file name", p) from None
    if stat.S_ISDIR(st.st_mode):
        if not folder_ok:
            raise InputError("is a folder; expected a file", p)
        return st
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise InputError(f"is {kind}, not a file; give a regular file", p)
    return st


def read_text(path: str | os.PathLike, limit: int = TEXT_LIMIT) -> str:
    """A small UTF-8 text file, refused (InputError) when special, larger than ``limit`` bytes or not text."""
    p = Path(path)
    st = check_input(p, folder_ok=False)
    if st.st_size > limit:
        raise InputError(f"is {st.st_size} bytes; a text input may hold at most {limit} bytes", p)
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", p) from None
    if len(data) > limit:
        raise InputError(f"holds more than {limit} bytes; a text input may hold at most {limit} bytes", p)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", p) from None
