"""The output guard: nothing the user gave us is ever overwritten, and an output name that cannot
work is refused before any work starts.

:func:`guard_outputs` is the one check every command, the pipeline, batches and the GUI's exports
call with *all* the inputs of the run (video, flat, mask, reference, clean image, prompt file, every
file of a batch) and *all* the outputs it is about to write. An output is refused (one-line
:class:`InputError`, exit 2) when it

* is an input: the same path, a hard link (same ``st_dev``/``st_ino``) or a symlink to it;
* is a folder output (replaced as a whole, e.g. a TIFF-folder video) holding an input;
* has the same name as another output of the run (two batch inputs calibrating to one name);
* is empty, names a folder where a file is expected (``-o dir/``), is a symlink loop, or its name is
  too long for the folder once the hidden temporary name's affixes are added;
* would land in a folder that does not exist or is not writable.

It also holds :func:`temp_prefix`/:func:`sweep_stale_temps`: hidden temporary outputs carry the
writer's machine (a hash of its host name), PID and process start time in their name
(``.NAME.aiflat-HOST-PID-START.RANDOM.partial``) so the next run writing to that folder can remove those
of writers that are gone (``kill -9``, power cut), and only those: never another machine's (a cluster
batch writes to a shared filesystem from many machines, whose PIDs mean nothing here).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import InputError

#: bytes a hidden temporary name adds to the output's name: "." + ".aiflat-HOST-PID-START." + 8 + ".partial"
TEMP_NAME_OVERHEAD = 1 + len(".aiflat-01234567-4194304-18446744073709551615.") + 8 + len(".partial")


def _real(p: str | os.PathLike) -> str:
    return os.path.normcase(os.path.realpath(os.fspath(p)))  # never raises, even on a symlink loop


def _stat(p: str | os.PathLike) -> Optional[os.stat_result]:
    try:
        return os.stat(p)
    except (OSError, ValueError):
        return None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are one file: the same path, a symlink to it or a hard link."""
    sa, sb = _stat(a), _stat(b)
    if sa is not None and sb is not None:
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    return _real(a) == _real(b)


def _inside(child: str | os.PathLike, folder: str | os.PathLike) -> bool:
    c, f = _real(child), _real(folder)
    return c != f and c.startswith(f.rstrip(os.sep) + os.sep)


def _name_max(folder: str) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_output_name(out: str | os.PathLike, kind: str = "file", check_parent: bool = True) -> Path:
    """Refuse an output name that cannot work, before any work. ``kind``: ``file`` (a file is
    written), ``replace-folder`` (a folder replaced as a whole) or ``folder`` (a folder results are
    written into; created when missing). ``check_parent``: the folder it goes into must exist and be
    writable (False when the caller creates it)."""
    text = os.fspath(out)
    if not str(text).strip():
        raise InputError("the output name is empty; give a file name", "-o")
    p = Path(text)
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("output path is a symlink loop", p) from None
        if exc.errno == errno.ENAMETOOLONG:
            raise InputError("output path is too long for the file system", p) from None
    if kind == "file":
        if str(text).endswith(("/", os.sep)) or p.is_dir():
            raise InputError("output names a folder; give a file name (e.g. NAME.ser)", p)
    if kind == "folder":
        return p
    parent = Path(_real(p)).parent
    if check_parent and not parent.is_dir():
        raise InputError(f"output folder {parent} does not exist", p)
    if check_parent and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output folder {parent} is not writable", p)
    limit = _name_max(str(parent) if parent.is_dir() else str(parent.parent))
    n = len(os.fsencode(p.name))
    if n + TEMP_NAME_OVERHEAD > limit:
        raise InputError(f"output name is {n} bytes long; this folder allows {limit - TEMP_NAME_OVERHEAD} "
                         f"(the hidden temporary name adds {TEMP_NAME_OVERHEAD}); choose a shorter name", p)
    return p


def guard_outputs(outputs: Iterable[Any], inputs: Iterable[Any], overwrite: bool = True,
                  check_parent: bool = True) -> None:
    """Refuse (InputError) any output that is an input of the run, holds one (folder outputs), shares
    its name with another output, or cannot be written. ``outputs``: paths, or ``(path, kind)`` with
    ``kind`` as in :func:`check_output_name`. ``inputs``: paths (None and ``<...>`` entries skipped)."""
    ins = [Path(os.fspath(i)) for i in inputs if i is not None and not str(i).startswith("<") and str(i)]
    seen: dict[str, Path] = {}
    for item in outputs:
        out, kind = item if isinstance(item, tuple) else (item, "file")
        p = check_output_name(out, kind, check_parent)
        for src in ins:
            if kind == "folder" and os.path.isdir(src):
                continue  # results written into the folder of the inputs: each file is guarded itself
            if same_file(p, src):
                raise InputError(f"output would overwrite the input file {src}; choose another name", p)
            if kind == "replace-folder" and _inside(src, p):
                raise InputError(f"output folder holds the input {src} and would be replaced; "
                                 "choose another folder", p)
        key = _real(p)
        if key in seen:
            raise InputError(f"two outputs of this run would both be written to this name "
                             f"(from {seen[key]} and {p}); rename one input", p)
        seen[key] = p
        if not overwrite and os.path.lexists(p):
            raise InputError("output exists (use --overwrite to replace it)", p)


# -- hidden temporary outputs of dead writers -------------------------------------------------------------

def _proc_start(pid: int) -> Optional[int]:
    """Start time of process ``pid`` in clock ticks since boot (Linux), None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data.rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


_SELF_START: Optional[int] = None


def host_tag() -> str:
    """8 hex digits naming this machine in temporary names. A PID only means something on the machine
    that issued it: on a shared filesystem (``aiflat batch --cluster``) a worker must never judge, by
    its own process table, the temporary file of a writer on another machine."""
    import socket
    import zlib

    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"


def temp_prefix(target: str | os.PathLike) -> str:
    """Prefix of a hidden temporary name for ``target``: ``.NAME.aiflat-HOST-PID-START.``"""
    global _SELF_START
    pid = os.getpid()
    if _SELF_START is None or getattr(temp_prefix, "_pid", None) != pid:
        _SELF_START = _proc_start(pid) or 0
        temp_prefix._pid = pid  # type: ignore[attr-defined]
    return f".{Path(target).name}.aiflat-{host_tag()}-{pid}-{_SELF_START}."


_TEMP_RE = re.compile(r"^\..+\.aiflat-([0-9a-f]{8})-(\d+)-(\d+)\.[^.]+\.partial$")


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists and belongs to another user
        return True
    return True


def _writer_alive(pid: int, start: int) -> bool:
    if pid == os.getpid():
        return start in (0, _SELF_START or 0) or _proc_start(pid) in (None, start)
    if not _pid_exists(pid):
        return False
    now = _proc_start(pid)
    if now is None:
        return not os.path.isdir("/proc/self")  # no /proc (macOS): trust kill(0)
    return start == 0 or now == start  # the PID was reused by another process when the start differs


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove hidden temporary outputs in ``folder`` left by aiflat writers that are gone; returns
    what was removed. Only names of our own pattern written on this machine, only when their writer
    process no longer exists (or its PID now belongs to a process started at another time); never raises."""
    removed: list[Path] = []
    host = host_tag()
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if not m:
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        if m.group(1) != host or _writer_alive(int(m.group(2)), int(m.group(3))):
            continue  # alive, or another machine's writer (its PID means nothing here)
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
    return removed


_SWEPT: set[str] = set()


def sweep_stale_temps_once(folder: str | os.PathLike) -> list[Path]:
    """:func:`sweep_stale_temps` the first time this process writes into ``folder``, nothing after:
    leftovers of dead runs predate this process, and a batch of N outputs into one folder (on a
    network filesystem too) would otherwise list that folder N times."""
    key = os.path.realpath(folder)
    if key in _SWEPT:
        return []
    _SWEPT.add(key)
    return sweep_stale_temps(key)



# -- batch receipts: what --resume may trust ---------------------------------------------------------
#: folder (inside a batch's output folder) of one small JSON receipt per finished output
RECEIPTS = ".aiflat-receipts"


def file_signature(path: str | os.PathLike) -> Optional[list[int]]:
    """[size, mtime in ns] of a file; of a folder (a TIFF-folder video): the sum of its files'
    sizes and the newest mtime. None when it cannot be read."""
    p = Path(path)
    try:
        if p.is_dir():
            sts = [e.stat() for e in os.scandir(p) if e.is_file()]
            return [sum(s.st_size for s in sts), max((s.st_mtime_ns for s in sts), default=0)]
        st = p.stat()
        return [int(st.st_size), int(st.st_mtime_ns)]
    except OSError:
        return None


def _receipt_path(output: Path) -> Path:
    return output.parent / RECEIPTS / (output.name + ".json")


def write_receipt(output: str | os.PathLike, key: str) -> None:
    """Record that ``output`` (just written) was made by the calibration ``key`` (a digest of the
    flat, the input and the settings). Best effort: a receipt that cannot be written only makes a
    later --resume calibrate that file again."""
    import json

    from .base import atomic_write_bytes

    output = Path(output)
    sig = file_signature(output)
    if sig is None:
        return
    with contextlib.suppress(OSError, InputError):
        _receipt_path(output).parent.mkdir(exist_ok=True)
        atomic_write_bytes(_receipt_path(output), json.dumps({"key": key, "output": sig}).encode())


def receipt_matches(output: str | os.PathLike, key: str) -> bool:
    """True when ``output`` is, unchanged, what the calibration ``key`` wrote (its receipt names
    ``key`` and the file still has the size and mtime it had then)."""
    import json

    output = Path(output)
    try:
        rec = json.loads(_receipt_path(output).read_text())
        return rec.get("key") == key and rec.get("output") == file_signature(output)
    except (OSError, ValueError, AttributeError):
        return False
