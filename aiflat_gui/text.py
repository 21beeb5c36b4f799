"""Words shown to people: counts with the right plural, human names of file formats, file IDs as
text (never a Python ``bytes`` repr). Plain Python (no Qt, no io): the CLI, the pipeline and the
GUI all use it."""

from __future__ import annotations

#: io format keys (``Sequence.format``) -> what a user calls them
FORMAT_NAMES = {
    "ser": "SER video",
    "avi": "AVI video",
    "fits": "FITS",
    "folder-fits": "folder of FITS frames",
    "folder-images": "folder of images",
    "tiff": "TIFF",
    "tiff-folder": "folder of TIFF frames",
    "array": "in-memory frames",
    "unknown": "unknown format",
}


def plural(n: int, word: str, words: str = "") -> str:
    """``"1 frame"``, ``"2 frames"``, ``"0 frames"`` (``words`` for irregular plurals)."""
    n = int(n)
    return f"{n} {word if n == 1 else (words or word + 's')}"


def format_name(key: str) -> str:
    """The human name of an io format key: ``folder-images`` -> ``folder of images``."""
    return FORMAT_NAMES.get(str(key), str(key).replace("-", " ").replace("_", " "))


def show_bytes(raw: bytes, limit: int = 14) -> str:
    """Bytes read from a file as a person can read them: quoted text when printable ASCII,
    else hexadecimal (``71 11 b0 2d …``)."""
    raw = bytes(raw[:limit])
    if raw and all(32 <= b < 127 for b in raw):
        return "'" + raw.decode("ascii") + "'"
    return "bytes " + raw.hex(" ") if raw else "nothing"


def sequence_summary(d: dict) -> str:
    """One line about a sequence from ``Sequence.describe()``: ``1 frame, 640×480, mono, 16-bit TIFF``."""
    return (f"{plural(d['frames'], 'frame')}, {d['width']}×{d['height']}, {d['color']}, "
            f"{d['bit_depth']}-bit {format_name(d['format'])}")
