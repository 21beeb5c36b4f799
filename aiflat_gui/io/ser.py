"""SER videos (spec v3, "LUCAM-RECORDER"): a memory-mapped reader and a streaming writer.

Reading is robust to what capture programs actually write (see ``field-notes.md``):

* **Magic.** The 14-byte FileID must be exactly ``LUCAM-RECORDER``; anything else is refused (every
  known writer uses it, and without it there is no reason to believe the rest of the header).
* **Validation before allocation.** Width, height and depth are checked against sane limits and the
  file size with Python integers before any array is created; nothing is read past the file's end.
* **Frame count.** ``n_frames`` is the number of whole frames actually present: a truncated file
  (capture stopped, disk full) gives fewer frames than FrameCount and a warning. Extra bytes after
  FrameCount frames are the timestamp trailer when they are long enough for it (the spec's layout),
  unless they are not plausible timestamps but do hold more whole frames (a stale FrameCount), in
  which case those frames are used, with a warning. FrameCount <= 0 means "count the frames".
* **Byte order** (16-bit only). The LittleEndian flag is unreliable (Siril, ser-player and PIPP read
  it inverted, JSol'Ex literally), so unless the caller forces ``byte_order`` the data decides: the
  correct byte order gives the smoother image (much smaller mean difference between neighbouring
  same-colour pixels). When the data cannot tell (flat or noise-like frames) we default to
  little-endian. The decision and its reason are in ``byte_order`` / ``byte_order_reason``.
* **Bit depth.** PixelDepthPerPlane is often wrong. The container (1 or 2 bytes per sample) comes from
  it, unless only the other container size fits FrameCount and the file size exactly. For 16-bit
  containers the real depth is inferred from a few sampled frames (max value -> 10/12/14/16 bits;
  data shifted to the top bits -> 16); a header depth of 9..15 bits that the data fits is kept.
* **Timestamps.** The trailer's int64 ticks (100 ns since 0001-01-01 UTC) become ``timestamps``;
  all-zero trailers give ``None``. Raw header and trailer bytes are kept for exact copies.

Writing (:class:`SerWriter`) streams little-endian frames to a temporary file and writes FrameCount and
the trailer only in ``_finish``; a SER template's header is preserved byte for byte (FrameCount
updated; the endianness flag set to 0 when the source data was big-endian, as we write little-endian
and Siril/ser-player read 0 as little-endian) and its trailer is copied frame for frame.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Optional

import numpy as np

from ..errors import FormatError, InputError
from ..text import show_bytes
from .base import AtomicOutput, Sequence, SequenceWriter, check_mapped, datetime_to_ticks, disk_errors

__all__ = ["SerSequence", "SerWriter", "write_ser", "pack_header", "unpack_header", "HEADER_SIZE",
           "FILE_ID", "COLOR_IDS", "COLOR_OF_ID", "MAX_DIMENSION"]

HEADER_SIZE = 178
FILE_ID = b"LUCAM-RECORDER"
#: header layout: FileID, LuID, ColorID, LittleEndian, Width, Height, PixelDepthPerPlane, FrameCount,
#: Observer, Instrument, Telescope, DateTime, DateTime_UTC (all little-endian)
_HEADER = struct.Struct("<14s7i40s40s40sqq")
assert _HEADER.size == HEADER_SIZE
_FIELDS = ("file_id", "lu_id", "color_id", "little_endian", "width", "height", "depth", "frame_count",
           "observer", "instrument", "telescope", "datetime", "datetime_utc")
FRAME_COUNT_OFFSET = 38
LITTLE_ENDIAN_OFFSET = 22

COLOR_IDS = {"mono": 0, "RGGB": 8, "GRBG": 9, "GBRG": 10, "BGGR": 11, "RGB": 100, "BGR": 101}
COLOR_OF_ID = {v: k for k, v in COLOR_IDS.items()}
_CMY_IDS = {16: "CYYM", 17: "YCMY", 18: "YMCY", 19: "MYYC"}
#: refuse frames wider or taller than this: no sensor is, and it bounds every size computation
MAX_DIMENSION = 100_000

# timestamps outside 1900..2200 are not plausible capture times
_TICKS_1900 = 599266080000000000
_TICKS_2200 = 693937152000000000
#: how many pixels per sampled frame the byte-order sniff and depth inference look at
_SAMPLE_PIXELS = 1 << 18


def unpack_header(raw: bytes) -> dict[str, Any]:
    """The 178-byte header as a dict of raw field values (strings still bytes)."""
    return dict(zip(_FIELDS, _HEADER.unpack(raw[:HEADER_SIZE])))


def pack_header(**fields: Any) -> bytes:
    """A 178-byte header; missing fields are zero, text fields may be str or bytes."""
    vals = []
    for name in _FIELDS:
        v = fields.get(name, FILE_ID if name == "file_id" else 0)
        if name in ("file_id", "observer", "instrument", "telescope"):
            if v == 0:
                v = b""
            if isinstance(v, str):
                v = v.encode("latin-1", errors="replace")
        else:
            v = int(v)
        vals.append(v)
    return _HEADER.pack(*vals)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def _plausible_ticks(ts: np.ndarray) -> bool:
    nz = ts[ts != 0]
    return bool(np.all((nz >= _TICKS_1900) & (nz <= _TICKS_2200)))


class SerSequence(Sequence):
    """A memory-mapped SER video. ``frame(i)`` is a read-only view for little-endian data and a
    byteswapped (native) copy of that frame for big-endian data.

    ``byte_order`` ("little"/"big") forces the 16-bit byte order; ``bit_depth`` forces the reported
    real bit depth (it cannot exceed the container's 8 or 16 bits)."""

    format = "ser"

    def __init__(self, path: str | os.PathLike, byte_order: Optional[str] = None,
                 bit_depth: Optional[int] = None):
        super().__init__()
        self.path = Path(path)
        self._mm: Optional[mmap.mmap] = None
        self._file = None
        if byte_order in ("auto", ""):
            byte_order = None
        if byte_order is not None and byte_order not in ("little", "big"):
            raise InputError(f"byte order must be 'little' or 'big', not {byte_order!r}", self.path)
        try:
            self._file = open(self.path, "rb")
            size = os.fstat(self._file.fileno()).st_size
            self._parse(size, byte_order, bit_depth)
        except BaseException:
            self.close()
            raise

    # -- header ------------------------------------------------------------------------------
    def _fail(self, problem: str) -> FormatError:
        return FormatError(problem, self.path)

    def _parse(self, size: int, byte_order: Optional[str], bit_depth: Optional[int]) -> None:
        f = self._file
        assert f is not None
        if size < HEADER_SIZE:
            raise self._fail(f"not a SER file: {size} bytes is shorter than the {HEADER_SIZE}-byte header")
        raw = f.read(HEADER_SIZE)
        if len(raw) != HEADER_SIZE:
            raise self._fail("could not read the SER header")
        h = unpack_header(raw)
        if h["file_id"] != FILE_ID:
            raise self._fail(f"not a SER file (it starts with {show_bytes(h['file_id'])}, not 'LUCAM-RECORDER')")
        color_id = h["color_id"]
        if color_id in _CMY_IDS:
            raise self._fail(f"SER colour type {_CMY_IDS[color_id]} (ColorID {color_id}) is not supported "
                             "(mono, Bayer RGGB/GRBG/GBRG/BGGR, RGB and BGR are)")
        if color_id not in COLOR_OF_ID:
            raise self._fail(f"unknown SER ColorID {color_id} (expected 0, 8-11, 100 or 101)")
        width, height, depth, fc = h["width"], h["height"], h["depth"], h["frame_count"]
        for name, v in (("width", width), ("height", height)):
            if v <= 0:
                raise self._fail(f"SER header {name} is {v}; the file is damaged")
            if v > MAX_DIMENSION:
                raise self._fail(f"SER header {name} is {v} (more than {MAX_DIMENSION}); the file is damaged")
        color = COLOR_OF_ID[color_id]
        planes = 3 if color in ("RGB", "BGR") else 1
        pixels = width * height * planes
        data_bytes = size - HEADER_SIZE

        # container size: from PixelDepthPerPlane, unless only the other one fits the file exactly
        def exact(bpp: int) -> bool:
            if fc <= 0:
                return False
            body = fc * pixels * bpp
            return data_bytes in (body, body + 8 * fc)

        header_bpp = 1 if 1 <= depth <= 8 else 2 if 9 <= depth <= 16 else None
        if header_bpp is None:
            fits = [b for b in (1, 2) if exact(b)]
            if len(fits) != 1:
                raise self._fail(f"SER header depth {depth} is not 1..16 bits and the file size does not "
                                 "tell the sample size; the file is damaged")
            bpp = fits[0]
            self.warnings.append(f"header depth {depth} is invalid; file size implies {8 * bpp}-bit samples")
        else:
            bpp = header_bpp
            other = 3 - bpp
            if not exact(bpp) and exact(other):
                bpp = other
                self.warnings.append(f"header says {depth}-bit samples but the file size fits {fc} frames of "
                                     f"{8 * bpp}-bit samples exactly; reading {8 * bpp}-bit")
        fs = pixels * bpp
        if fs > data_bytes:
            raise self._fail(f"file holds no whole {width}x{height} frame ({data_bytes} data bytes, "
                             f"a frame needs {fs}); the file is truncated or damaged")
        available = data_bytes // fs

        n = fc
        trailer_at = None
        if fc <= 0:
            n = available
            self.warnings.append(f"header says {fc} frames; using the {available} whole frames present")
        elif fc > available:
            n = available
            self.warnings.append(f"header says {fc} frames, file holds {available} whole frames (truncated?)")
        else:
            extra = data_bytes - fc * fs
            if extra >= 8 * fc:
                trailer_at = HEADER_SIZE + fc * fs
                f.seek(trailer_at)
                tr = np.frombuffer(f.read(8 * fc), dtype="<i8")
                if not _plausible_ticks(tr) and available > fc:
                    trailer_at = None
                    n = available
                    self.warnings.append(f"header says {fc} frames but the file holds {available} whole "
                                         f"frames and no valid timestamp trailer; using {available}")
                elif extra > 8 * fc:
                    self.warnings.append(f"{extra - 8 * fc} unexpected bytes after the timestamp trailer ignored")
            elif extra > 0:
                self.warnings.append(f"{extra} bytes after frame {fc} ignored (incomplete timestamp trailer?)")
        self.n_frames = int(n)
        self._frame_bytes = fs

        self.width, self.height, self.channels = int(width), int(height), planes
        self.color = color
        self.dtype = np.dtype(np.uint8 if bpp == 1 else np.uint16)
        self.raw_header = raw
        self.raw_trailer: Optional[bytes] = None
        if trailer_at is not None:
            f.seek(trailer_at)
            self.raw_trailer = f.read(8 * fc)
            ts = np.frombuffer(self.raw_trailer, dtype="<i8").astype(np.int64)[:self.n_frames]
            if not _plausible_ticks(ts):
                self.warnings.append("timestamp trailer holds implausible times; ignoring them")
            elif np.any(ts):
                self.timestamps = ts
        self.metadata = {
            "file_id": _text(h["file_id"]),
            "observer": _text(h["observer"]),
            "instrument": _text(h["instrument"]),
            "telescope": _text(h["telescope"]),
            "lu_id": h["lu_id"],
            "color_id": color_id,
            "little_endian_flag": h["little_endian"],
            "header_depth": depth,
            "header_frame_count": fc,
            "datetime": h["datetime"],
            "datetime_utc": h["datetime_utc"],
            "raw_header": raw,
            "raw_trailer": self.raw_trailer,
        }

        # map the whole file read-only; frames are views into it
        self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if len(self._mm) < HEADER_SIZE + self.n_frames * fs:  # the file shrank under us
            raise self._fail("file changed size while opening")
        self._file = None
        f.close()  # the map holds its own reference to the file
        self.memmapped = True

        flag = h["little_endian"]
        if bpp == 1:
            self.byte_order = None
            self.byte_order_reason = "8-bit samples have no byte order"
            self._be = False
            self.bit_depth = 8
        else:
            if byte_order is not None:
                self.byte_order = byte_order
                self.byte_order_reason = f"set by the user; header flag {flag}"
            else:
                self.byte_order, self.byte_order_reason = self._sniff_byte_order(flag)
            self._be = self.byte_order == "big"
            self.bit_depth = self._infer_depth(depth)
        if bit_depth is not None:
            bit_depth = int(bit_depth)
            if not 1 <= bit_depth <= 8 * bpp:
                raise InputError(f"bit depth {bit_depth} does not fit {8 * bpp}-bit samples", self.path)
            self.bit_depth = bit_depth

    # -- data sniffing ---------------------------------------------------------------------------
    def _sample_frames(self) -> list[np.ndarray]:
        """Raw little-endian-typed views of three bands of rows (at 1/4, 1/2 and 3/4 of the height) of
        a few frames (first, middle, last): cheap, and contiguous so few pages are touched."""
        idx = sorted({0, self.n_frames // 2, self.n_frames - 1})
        row_px = self.width * self.channels
        rows = max(1, min(self.height, _SAMPLE_PIXELS // (3 * row_px)))
        starts = sorted({min(max(0, self.height * k // 4 - rows // 2), self.height - rows) for k in (1, 2, 3)})
        out: list[np.ndarray] = []
        for i in idx:
            v = self._view(i, "<u2")
            out.extend(v[y:y + rows] for y in starts)
        return out

    def _sniff_byte_order(self, flag: int) -> tuple[str, str]:
        """Mean absolute difference between neighbouring same-colour samples (across and down) of
        the data read both ways: the right byte order puts the slowly varying byte on top and is
        much smoother. A byte that never changes becomes the high byte (its lower values win)."""
        step = 2 if self.color in ("RGGB", "GRBG", "GBRG", "BGGR") else 1  # compare same CFA colour
        tv_le = tv_be = 0.0
        for a in self._sample_frames():
            for sw in (False, True):
                v = (a.byteswap() if sw else a).astype(np.int32)
                tv = 0.0
                if v.shape[0] > step:  # down
                    tv += float(np.abs(v[step:] - v[:-step]).mean())
                if v.shape[1] > step:  # across
                    tv += float(np.abs(v[:, step:] - v[:, :-step]).mean())
                if sw:
                    tv_be += tv
                else:
                    tv_le += tv
        if tv_le == 0 and tv_be == 0:
            return "little", f"data cannot tell (flat frames); default little-endian; header flag {flag}"
        lo, hi = min(tv_le, tv_be), max(tv_le, tv_be)
        ratio = hi / lo
        if ratio < 2.0:
            return "little", (f"data cannot tell (both byte orders equally smooth, {ratio:.1f}x); "
                              f"default little-endian; header flag {flag}")
        order = "little" if tv_le < tv_be else "big"
        return order, f"sniffed from data: {order}-endian image is {ratio:.0f}x smoother; header flag {flag}"

    def _infer_depth(self, header_depth: int) -> int:
        mx = 0
        bits = 0
        for a in self._sample_frames():
            if a.size == 0:
                continue
            if self._be:
                a = a.byteswap()
            mx = max(mx, int(a.max()))
            bits |= int(np.bitwise_or.reduce(a, axis=None))
        if bits == 0:  # all-zero samples: nothing to learn
            return header_depth if 9 <= header_depth <= 16 else 16
        trailing = (bits & -bits).bit_length() - 1
        if trailing >= 2:
            data_depth = 16  # shifted to the top bits: a 16-bit container used as such
        else:
            data_depth = next(d for d in (10, 12, 14, 16) if mx < (1 << d))
        if 9 <= header_depth <= 15 and mx < (1 << header_depth) and trailing < 2:
            return header_depth
        if data_depth != header_depth:
            how = "data shifted to the top bits" if trailing >= 2 else f"largest sampled value {mx}"
            self.warnings.append(f"header says {header_depth}-bit depth but the data looks {data_depth}-bit "
                                 f"({how}); using {data_depth}")
        return data_depth

    # -- frames --------------------------------------------------------------------------------
    def _view(self, i: int, dtype) -> np.ndarray:
        if self._mm is None:
            raise InputError("SER file is closed", self.path)
        dt = np.dtype(dtype)
        count = self._frame_bytes // dt.itemsize
        check_mapped(self._mm, HEADER_SIZE + (i + 1) * self._frame_bytes, self.path)
        a = np.frombuffer(self._mm, dtype=dt, count=count, offset=HEADER_SIZE + i * self._frame_bytes)
        return a.reshape(self.frame_shape)

    def _read_frame(self, i: int) -> np.ndarray:
        if self.dtype == np.uint8:
            return self._view(i, np.uint8)
        if self._be:
            return self._view(i, ">u2").astype(np.uint16)
        return self._view(i, "<u2")

    def frame_rows(self, i: int, y0: int, y1: int) -> np.ndarray:
        i = int(i)
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range 0..{self.n_frames - 1}")
        if self.dtype == np.uint8:
            return self._view(i, np.uint8)[y0:y1]
        if self._be:
            return self._view(i, ">u2")[y0:y1].astype(np.uint16)
        return self._view(i, "<u2")[y0:y1]

    def prefetch_rows(self, indices, y0: int, y1: int) -> None:
        """MADV_WILLNEED on rows ``y0:y1`` of each frame: the kernel queues every read at once
        instead of one page fault at a time (a row block of a median spans all frames)."""
        mm = self._mm
        if mm is None or not hasattr(mmap, "MADV_WILLNEED") or y1 <= y0:
            return
        row = self._frame_bytes // max(1, self.height)
        page = mmap.PAGESIZE
        for i in indices:
            a = HEADER_SIZE + int(i) * self._frame_bytes + y0 * row
            start = a // page * page
            try:
                mm.madvise(mmap.MADV_WILLNEED, start, a + (y1 - y0) * row - start)
            except (OSError, ValueError):
                return  # only a hint

    def advise_sequential(self) -> None:
        """Aggressive kernel readahead for a front-to-back pass over the memory map."""
        if self._mm is not None and hasattr(mmap, "MADV_SEQUENTIAL"):
            with contextlib.suppress(OSError, ValueError):
                self._mm.madvise(mmap.MADV_SEQUENTIAL)

    def close(self) -> None:
        mm, self._mm = self._mm, None
        if mm is not None:
            # frames handed out still view the map: then it is released when they are
            with contextlib.suppress(BufferError):
                mm.close()
        fh, self._file = self._file, None
        if fh is not None:
            fh.close()


# -- writing -------------------------------------------------------------------------------------

def _check_dtype(dtype, path) -> None:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        raise InputError(f"SER holds integer samples only; got {dt.name} data (convert to uint8/uint16 first)", path)
    if dt.kind != "u" or dt.itemsize not in (1, 2):
        raise InputError(f"SER holds 8- or 16-bit unsigned samples; got {dt.name} data", path)


def _meta_text(meta: dict, *keys: str) -> str:
    for k in keys:
        for kk in (k, k.upper(), k.lower()):
            v = meta.get(kk)
            if isinstance(v, (str, bytes)) and v:
                return v.decode("latin-1") if isinstance(v, bytes) else v
    return ""


class SerWriter(SequenceWriter):
    """Streams frames to a little-endian SER. Options: ``bit_depth`` (PixelDepthPerPlane for a
    non-SER template), ``timestamps`` (int64 ticks per source index, overriding the template's),
    ``trailer`` (False: write no timestamp trailer). Other options are ignored."""

    format = "ser"

    def __init__(self, path: str | os.PathLike, template: Sequence, n_frames: Optional[int] = None,
                 overwrite: bool = True, bit_depth: Optional[int] = None,
                 timestamps: Optional[np.ndarray] = None, trailer: bool = True, **_ignored: Any):
        _check_dtype(template.dtype, path)
        if template.color not in COLOR_IDS:
            raise InputError(f"SER cannot store colour layout {template.color!r}", path)
        if (template.channels == 3) != (template.color in ("RGB", "BGR")) or template.channels not in (1, 3):
            raise InputError(f"SER cannot store {template.channels}-channel {template.color} frames", path)
        self._fh: Optional[BinaryIO] = None
        self._ticks: list[bytes] = []
        self._bit_depth = bit_depth
        self._timestamps = timestamps
        self._want_trailer = trailer
        super().__init__(path, template, n_frames=n_frames, overwrite=overwrite)

    def _header(self) -> bytes:
        t = self.template
        raw = getattr(t, "raw_header", None) if isinstance(t, SerSequence) else None
        if raw is not None:
            hdr = bytearray(raw)
            if t.byte_order == "big":
                struct.pack_into("<i", hdr, LITTLE_ENDIAN_OFFSET, 0)
            struct.pack_into("<i", hdr, FRAME_COUNT_OFFSET, 0)
            return bytes(hdr)
        if t.dtype == np.uint8:
            depth = 8
        else:
            depth = int(self._bit_depth or t.bit_depth or 16)
            depth = depth if 9 <= depth <= 16 else 16
        ts = self._source_ticks()
        when = int(ts[0]) if ts is not None and len(ts) else 0
        meta = t.metadata or {}
        return pack_header(color_id=COLOR_IDS[t.color], little_endian=0, width=t.width, height=t.height,
                           depth=depth, frame_count=0,
                           observer=_meta_text(meta, "observer")[:40],
                           instrument=_meta_text(meta, "instrument", "instrume")[:40],
                           telescope=_meta_text(meta, "telescope", "telescop")[:40],
                           datetime=when, datetime_utc=when)

    def _source_ticks(self) -> Optional[np.ndarray]:
        if not self._want_trailer:
            return None
        ts = self._timestamps if self._timestamps is not None else self.template.timestamps
        return None if ts is None else np.asarray(ts, dtype=np.int64)

    def _open(self, tmp_path: Path) -> None:
        fh = open(tmp_path, "wb")
        self._fh = fh
        fh.write(self._header())

    def _write(self, frame: np.ndarray, index: int) -> None:
        frame = np.asarray(frame)
        _check_dtype(frame.dtype, self.path)
        if frame.dtype.itemsize != np.dtype(self.template.dtype).itemsize:
            raise InputError(f"frame is {frame.dtype.name} but the SER holds {np.dtype(self.template.dtype).name}",
                             self.path)
        data = np.ascontiguousarray(frame, dtype=frame.dtype.newbyteorder("<"))
        assert self._fh is not None
        self._fh.write(memoryview(data).cast("B"))
        self._ticks.append(self._tick_bytes(index))

    def _tick_bytes(self, index: int) -> bytes:
        if not self._want_trailer:
            return b""
        t = self.template
        if self._timestamps is None and isinstance(t, SerSequence) and t.raw_trailer is not None:
            chunk = t.raw_trailer[8 * index:8 * index + 8]
            return chunk if len(chunk) == 8 else bytes(8)
        ts = self._source_ticks()
        if ts is None:
            return b""
        return struct.pack("<q", int(ts[index])) if 0 <= index < len(ts) else bytes(8)

    def _finish(self) -> None:
        fh = self._fh
        assert fh is not None
        if any(self._ticks):
            fh.write(b"".join(c or bytes(8) for c in self._ticks))
        fh.seek(FRAME_COUNT_OFFSET)
        fh.write(struct.pack("<i", self.written))
        fh.flush()  # AtomicOutput fsyncs before the rename when outputs are durable
        fh.close()
        self._fh = None


def write_ser(path: str | os.PathLike, frames: np.ndarray, color: str = "mono",
              timestamps: Optional[np.ndarray] = None, bit_depth: Optional[int] = None,
              byte_order: str = "little", little_endian_flag: Optional[int] = None,
              header_overrides: Optional[dict] = None, trailer: bool = True) -> Path:
    """Write ``frames`` ((N, H, W) or (N, H, W, 3), uint8/uint16) as a SER in one go, atomically.

    For tests and demo data this can also write deliberately odd files: ``byte_order="big"``,
    a lying ``bit_depth`` (PixelDepthPerPlane), a ``little_endian_flag`` that contradicts the data
    (default: 0 for little-endian, 1 for big, as Siril reads it) and any raw header field through
    ``header_overrides`` (keys: file_id, lu_id, color_id, little_endian, width, height, depth,
    frame_count, observer, instrument, telescope, datetime, datetime_utc). ``timestamps`` (int64 ticks
    or datetimes) become the trailer unless ``trailer`` is False."""
    path = Path(path)
    frames = np.asarray(frames)
    _check_dtype(frames.dtype, path)
    if color not in COLOR_IDS:
        raise InputError(f"unknown SER colour {color!r}", path)
    planes = 3 if color in ("RGB", "BGR") else 1
    if frames.ndim != (4 if planes == 3 else 3) or (planes == 3 and frames.shape[3] != 3):
        raise InputError(f"frames of shape {frames.shape} do not fit colour {color}", path)
    if byte_order not in ("little", "big"):
        raise InputError(f"byte order must be 'little' or 'big', not {byte_order!r}", path)
    n, h, w = frames.shape[:3]
    depth = bit_depth if bit_depth is not None else frames.dtype.itemsize * 8
    fields = dict(color_id=COLOR_IDS[color], width=w, height=h, depth=depth, frame_count=n,
                  little_endian=(0 if byte_order == "little" else 1) if little_endian_flag is None
                  else little_endian_flag)
    ticks = None
    if timestamps is not None:
        ticks = np.array([datetime_to_ticks(t) if hasattr(t, "tzinfo") else int(t) for t in timestamps],
                         dtype="<i8")
        if len(ticks):
            fields["datetime"] = fields["datetime_utc"] = int(ticks[0])
    fields.update(header_overrides or {})
    data = frames.astype(frames.dtype.newbyteorder("<" if byte_order == "little" else ">"), copy=False)
    with AtomicOutput(path) as tmp, disk_errors(path):
        with open(tmp, "wb") as fh:
            fh.write(pack_header(**fields))
            fh.write(memoryview(np.ascontiguousarray(data)).cast("B"))
            if ticks is not None and trailer:
                fh.write(ticks.tobytes())
    return path
