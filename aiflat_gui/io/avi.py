"""AVI: an exact reader for uncompressed 8-bit video and a writer of uncompressed 8-bit AVI.

Reading parses the RIFF structure itself (OpenCV converts grey to BGR and crashed on palettized
DIB): every ``RIFF 'AVI '`` / ``'AVIX'`` (OpenDML, files over 1 GB) segment is scanned for the
video stream's ``NNdb``/``NNdc`` chunks, so frame offsets are exact and frames are views of a
read-only memory map. Supported without OpenCV:

* ``Y800``/``GREY``/``Y8`` 8-bit grey (top-down rows);
* 8-bit DIB (``BI_RGB``) with a palette: a grey palette gives one channel, a colour palette RGB;
* 24-bit and 32-bit DIB (stored BGR): returned as RGB, or as one channel when B == G == R in the
  sampled frames (grey video in a colour container).

DIB rows are bottom-up when ``biHeight > 0`` and padded to 4 bytes; the padding is inferred from the
chunk size. Zero-length chunks (dropped frames) are skipped with a warning, and a truncated last
frame is dropped. Anything else (MJPG, I420, ...) is decoded by OpenCV ``VideoCapture``.

:class:`AviWriter` writes the RIFF itself (OpenCV's VideoWriter drops odd rows/columns): 8-bit DIB
with a grey palette (default) or ``Y800`` (``avi_codec="y800"``) for one channel, 24-bit DIB for
colour; OpenDML ``AVIX`` segments, ``ix00`` and super indexes beyond 1 GB, plus a legacy ``idx1``.
DIB frames are written top-down (negative ``biHeight``): opencv-python-headless 5.x aborts or
segfaults reading bottom-up DIB AVIs, and the top-down layout is read frame-identical by OpenCV,
ffmpeg and this reader (tests/test_avi.py runs all three).
"""

from __future__ import annotations

import os
import struct
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..errors import FormatError, InputError, ProcessingError
from .base import Sequence, SequenceWriter, check_mapped

if TYPE_CHECKING:
    import cv2

__all__ = ["AviSequence", "AviWriter"]

GREY_FOURCCS = {b"Y800", b"GREY", b"Y8  ", b"Y8\0\0"}
DIB_FOURCCS = {b"\0\0\0\0", b"DIB ", b"RGB ", b"RAW ", b"raw "}


def _fcc_text(fcc: bytes) -> str:
    if fcc == b"\0\0\0\0":
        return "BI_RGB"
    return "".join(chr(c) if 32 <= c < 127 else "?" for c in fcc).strip() or "?"


class AviSequence(Sequence):
    """Frames of an AVI file. Options are ignored (``byte_order`` etc. mean nothing here)."""

    format = "avi"

    def __init__(self, path: str | os.PathLike, **_options: Any):
        super().__init__()
        self.path = Path(path)
        self.dtype = np.dtype(np.uint8)
        self.bit_depth = 8
        self._mm: Optional[np.memmap] = None
        self._cap: Optional[cv2.VideoCapture] = None
        self._lock = threading.Lock()
        size = self.path.stat().st_size
        if size < 12:
            raise FormatError("not an AVI file (too short)", self.path)
        try:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (ValueError, OSError) as exc:
            raise FormatError(f"cannot map the file: {exc}", self.path) from None
        mm = self._mm
        if bytes(mm[0:4]) != b"RIFF" or bytes(mm[8:12]) != b"AVI ":
            self.close()
            raise FormatError("not an AVI file (no RIFF 'AVI ' header)", self.path)
        self._size = size
        self._streams: list[dict] = []
        self._video: Optional[dict] = None
        self._chunks: list[tuple[int, int]] = []
        self._truncated = False
        self._avih: dict = {}
        self._unfinished = False
        try:
            self._scan_file()
        except struct.error:
            self.close()
            raise FormatError("damaged AVI (a header runs past the end of the file)", self.path) from None
        if self._video is None:
            self.close()
            raise FormatError("AVI holds no video stream (no 'vids' stream header)", self.path)
        v = self._video
        fps = v["rate"] / v["scale"] if v.get("scale") else 0.0
        if not fps and self._avih.get("us_per_frame"):
            fps = 1e6 / self._avih["us_per_frame"]
        self.metadata = {"fourcc": _fcc_text(v.get("compression", b"????")),
                         "handler": _fcc_text(v.get("handler", b"\0\0\0\0")),
                         "fps": round(fps, 6) if fps else None,
                         "header_frames": v.get("length")}
        empty = sum(1 for _, n in self._chunks if n == 0)
        if empty:
            self.warnings.append(f"{empty} empty (dropped) frame chunks skipped")
        self._chunks = [c for c in self._chunks if c[1] > 0]
        if self._unfinished:
            self.warnings.append("AVI was not finalised (capture interrupted?): frames found by scanning the file")
        if self._truncated:
            self.warnings.append("file is truncated; the incomplete last frame is ignored")
        if not self._setup_raw():
            self._setup_opencv()
        if self.n_frames == 0:
            self.close()
            raise FormatError("AVI holds no video frames", self.path)

    # -- RIFF parsing ------------------------------------------------------------------------------
    @property
    def _map(self) -> np.memmap:
        """The file's bytes (mapped); InputError once closed."""
        if self._mm is None:
            raise InputError("file is closed", self.path)
        return self._mm

    def _fourcc(self, off: int) -> bytes:
        return bytes(self._map[off:off + 4])

    def _u32(self, off: int) -> int:
        return struct.unpack_from("<I", self._map, off)[0]

    def _scan_file(self) -> None:
        pos, end = 0, self._size
        while pos + 12 <= end:
            cid, csize = self._fourcc(pos), self._u32(pos + 4)
            if cid != b"RIFF":
                break  # trailing junk after the last segment
            form = self._fourcc(pos + 8)
            stop = pos + 8 + csize if csize >= 4 else end
            if csize < 4:
                self._unfinished = True
            if stop > end:
                stop = end
            if form in (b"AVI ", b"AVIX"):
                self._scan_list(pos + 12, stop, depth=0)
            pos = pos + 8 + csize + (csize & 1)
            if csize < 4:
                break

    def _scan_list(self, pos: int, end: int, depth: int, in_movi: bool = False) -> None:
        tag = None
        if self._video is not None:
            tag = f"{self._video['index']:02d}".encode()
        while pos + 8 <= end:
            cid, csize = self._fourcc(pos), self._u32(pos + 4)
            data = pos + 8
            if cid == b"LIST" and pos + 12 <= end:
                ltype = self._fourcc(pos + 8)
                lend = min(data + csize, end)
                if ltype == b"movi" and csize < 4:  # capture stopped before the sizes were written
                    lend = end
                    csize = end - data
                    self._unfinished = True
                if depth < 8:
                    if ltype == b"strl":
                        self._parse_strl(pos + 12, lend)
                        tag = f"{self._video['index']:02d}".encode() if self._video else None
                    else:
                        self._scan_list(pos + 12, lend, depth + 1,
                                        in_movi=in_movi or ltype in (b"movi", b"rec "))
                        if self._video is not None:
                            tag = f"{self._video['index']:02d}".encode()
            elif cid == b"avih" and not in_movi:
                if data + 40 <= end:
                    us, _, _, flags, total, _, nstreams, _, w, h = struct.unpack_from("<10I", self._map, data)
                    self._avih = {"us_per_frame": us, "total_frames": total, "width": w, "height": h}
            elif in_movi and tag is not None and cid[:2] == tag and cid[2:] in (b"db", b"dc"):
                if data + csize > end:
                    self._truncated = True
                    return
                self._chunks.append((data, csize))
            if csize > end - data and cid != b"LIST":
                if in_movi:
                    self._truncated = True
                return
            pos = data + csize + (csize & 1)

    def _parse_strl(self, pos: int, end: int) -> None:
        index = len(self._streams)
        stream: dict = {"index": index}
        while pos + 8 <= end:
            cid, csize = self._fourcc(pos), self._u32(pos + 4)
            data = pos + 8
            csize_in = min(csize, end - data)
            if cid == b"strh" and csize_in >= 48:
                (stype, handler, _flags, _prio, _lang, _init, scale, rate, _start,
                 length) = struct.unpack_from("<4s4sIHHIIIII", self._map, data)
                stream.update(type=stype, handler=handler, scale=scale, rate=rate, length=length)
            elif cid == b"strf":
                stream["strf"] = (data, csize_in)
            pos = data + csize + (csize & 1)
        self._streams.append(stream)
        if self._video is None and stream.get("type") == b"vids" and "strf" in stream:
            data, n = stream["strf"]
            if n < 40:
                raise FormatError("damaged AVI (video format header too short)", self.path)
            (bi_size, width, height, _planes, bits, compression, _sizeimage, _xp, _yp, clr_used,
             _clr_imp) = struct.unpack_from("<IiiHH4sIiiII", self._map, data)
            stream.update(bi_size=bi_size, width=width, height=height, bits=bits, compression=compression,
                          clr_used=clr_used, palette_at=data + bi_size, palette_end=data + n)
            self._video = stream

    # -- raw (uncompressed) decoding -----------------------------------------------------------------
    def _setup_raw(self) -> bool:
        v = self._video
        assert v is not None  # the scan found a video stream or raised
        comp, bits = v["compression"], v["bits"]
        w, h = int(v["width"]), abs(int(v["height"]))
        if w <= 0 or h <= 0 or w > 1 << 16 or h > 1 << 16:
            self.close()
            raise FormatError(f"damaged AVI (frame size {w}x{h})", self.path)
        from .images import check_frame_memory

        try:
            check_frame_memory((h, w, 4), 1, self.path)
        except FormatError:
            self.close()
            raise
        if comp in GREY_FOURCCS and bits in (0, 8):
            kind, bpp, bottom_up = "grey", 1, False
        elif comp in DIB_FOURCCS and bits in (8, 24, 32):
            kind, bpp = {8: "pal8", 24: "bgr", 32: "bgra"}[bits], bits // 8
            bottom_up = int(v["height"]) > 0
        else:
            return False
        if not self._chunks:
            self.n_frames = 0
            return True
        row = w * bpp
        common = Counter(n for _, n in self._chunks[:1000]).most_common(1)[0][0]
        padded = (row + 3) & ~3
        if common // h == padded:
            stride = padded
        elif common // h == row:
            stride = row
        elif common % h == 0 and common // h >= row:
            stride = common // h
        else:
            self.close()
            raise FormatError(f"frame chunks of {common} bytes do not hold {w}x{h} pixels of {bits} bits "
                              f"({_fcc_text(comp)})", self.path)
        need = stride * h
        short = sum(1 for _, n in self._chunks if n < need)
        if short:
            self.warnings.append(f"{short} damaged (short) frame chunks skipped")
            self._chunks = [c for c in self._chunks if c[1] >= need]
        self._kind, self._bpp, self._stride, self._bottom_up = kind, bpp, stride, bottom_up
        self.width, self.height = w, h
        self.n_frames = len(self._chunks)
        self.memmapped = True
        self._lut: Optional[np.ndarray] = None
        self.channels, self.color = 1, "mono"
        if kind == "pal8":
            pal = self._palette(v)
            if np.all(pal[:, 0] == pal[:, 1]) and np.all(pal[:, 1] == pal[:, 2]):
                if not np.array_equal(pal[:, 0], np.arange(256, dtype=np.uint8)):
                    self._lut = np.ascontiguousarray(pal[:, 0])
            else:
                self._lut = np.ascontiguousarray(pal)
                self.channels, self.color = 3, "RGB"
            self.metadata["palette"] = "grey" if self.channels == 1 else "colour"
        elif kind in ("bgr", "bgra") and self.n_frames:
            grey = all(self._is_grey(self._view(i)) for i in self._sample_indices())
            if not grey:
                self.channels, self.color = 3, "RGB"
        return True

    def _palette(self, v: dict) -> np.ndarray:
        """(256, 3) RGB palette; missing entries are filled with the grey ramp."""
        pal = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=1)
        start, end = v["palette_at"], v["palette_end"]
        n = v["clr_used"] or 256
        n = max(0, min(256, n, (end - start) // 4))
        if n:
            quads = np.asarray(self._map[start:start + 4 * n]).reshape(n, 4)
            pal[:n] = quads[:, 2::-1]  # RGBQUAD is B, G, R, reserved
        return pal

    def _sample_indices(self) -> list[int]:
        """Frames checked for B == G == R: all of a small file (<= 64 MB), else 16 spread evenly."""
        n = self.n_frames
        if n * self._stride * self.height <= 64 << 20:
            return list(range(n))
        return sorted({int(round(k * (n - 1) / 15)) for k in range(16)})

    def _is_grey(self, raw: np.ndarray) -> bool:
        px = raw[:, : self.width * self._bpp].reshape(self.height, self.width, self._bpp)
        return bool(np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 1], px[..., 2]))

    def _view(self, i: int) -> np.ndarray:
        off, _ = self._chunks[i]
        mm = self._map
        check_mapped(mm, off + self._stride * self.height, self.path)
        a = mm[off: off + self._stride * self.height].reshape(self.height, self._stride)
        return a[::-1] if self._bottom_up else a

    def _convert(self, rows: np.ndarray) -> np.ndarray:
        k = self._kind
        n = rows.shape[0]
        if k == "grey" or k == "pal8":
            px = rows[:, : self.width]
            if self._lut is not None:
                return self._lut[px]
            return px if px.flags.c_contiguous else np.ascontiguousarray(px)
        px = rows[:, : self.width * self._bpp].reshape(n, self.width, self._bpp)
        if self.channels == 1:
            return np.ascontiguousarray(px[..., 0])
        return np.ascontiguousarray(px[..., 2::-1])

    def _read_frame(self, i: int) -> np.ndarray:
        if self._cap is not None:
            return self._read_opencv(i)
        if self._mm is None:
            raise InputError("file is closed", self.path)
        return self._convert(self._view(i))

    def frame_rows(self, i: int, y0: int, y1: int) -> np.ndarray:
        if self._cap is not None or self._mm is None:
            return super().frame_rows(i, y0, y1)
        i = int(i) + (self.n_frames if int(i) < 0 else 0)
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range 0..{self.n_frames - 1}")
        return self._convert(self._view(i)[y0:y1])

    # -- compressed video through OpenCV -------------------------------------------------------------
    def _setup_opencv(self) -> None:
        import cv2

        v = self._video
        assert v is not None  # the scan found a video stream or raised
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            self.close()
            raise FormatError(f"cannot decode video codec '{_fcc_text(v['compression'])}'", self.path)
        self._cap = cap
        self._next = 0
        ok, img = cap.read()
        if not ok or img is None:
            self.close()
            raise FormatError(f"cannot decode frame 0 (codec '{_fcc_text(v['compression'])}')", self.path)
        self._next = 1
        self._cached = (0, img)
        n = len(self._chunks) or int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.n_frames = max(0, n)
        self.height, self.width = img.shape[:2]
        if img.ndim == 3 and img.dtype == np.uint8 and not (
                np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])):
            self.channels, self.color = 3, "RGB"
        else:
            self.channels, self.color = 1, "mono"
        self.memmapped = False
        self.metadata["decoder"] = "opencv"
        if self._mm is not None:
            del self._mm
            self._mm = None

    def _read_opencv(self, i: int) -> np.ndarray:
        import cv2

        with self._lock:
            if self._cached[0] == i:
                img = self._cached[1]
            else:
                cap = self._cap
                if cap is None:
                    raise InputError("file is closed", self.path)
                if i != self._next:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                ok, img = cap.read()
                if not ok or img is None:
                    self._next = -1
                    raise FormatError(f"cannot decode frame {i}", self.path)
                self._next = i + 1
                self._cached = (i, img)
        if img.ndim == 2:
            out = img
        elif self.channels == 1:
            out = img[..., 0]
        else:
            out = img[..., 2::-1]
        if out.dtype != np.uint8:
            out = np.clip(out, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(out)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._mm = None


# -- writer ----------------------------------------------------------------------------------------

def _guess_fps(template: Sequence) -> float:
    fps = (template.metadata or {}).get("fps")
    try:
        if fps and float(fps) > 0:  # a header's rate may be absurd (1e12 fps): keep the AVI fields in range
            return float(np.clip(float(fps), 0.01, 100000.0))
    except (TypeError, ValueError):
        pass
    ts = template.timestamps
    if ts is not None and len(ts) > 1:
        d = np.diff(np.asarray(ts, dtype=np.int64))
        d = d[d > 0]
        if len(d):
            return float(np.clip(1e7 / float(np.median(d)), 0.01, 100000.0))
    return 25.0


def _chunk(fcc: bytes, payload: bytes) -> bytes:
    return fcc + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")


class AviWriter(SequenceWriter):
    """Uncompressed 8-bit AVI. Options: ``avi_codec`` ("dib": 8-bit DIB with a grey palette, the
    default; "y800": Y800 grey) for one-channel data (colour is always 24-bit DIB), ``fps`` (else
    the template's, else from timestamps, else 25). Unknown options are ignored. Raw Bayer data is
    stored as grey (AVI has no Bayer tag)."""

    format = "avi"
    #: bytes per RIFF segment before an OpenDML 'AVIX' continuation starts (AVI 1.0 readers see the first)
    SEGMENT_LIMIT = 1 << 30
    SUPER_INDEX_ENTRIES = 256

    def __init__(self, path: str | os.PathLike, template: Sequence, n_frames: Optional[int] = None,
                 overwrite: bool = True, avi_codec: str = "dib", fps: Optional[float] = None, **_opts: Any):
        if np.dtype(template.dtype) != np.uint8:
            raise InputError(f"AVI is 8-bit only and this data is {np.dtype(template.dtype).name}; "
                             "write SER, FITS or TIFF instead", path)
        if template.channels not in (1, 3):
            raise InputError(f"AVI cannot store {template.channels}-channel frames", path)
        codec = str(avi_codec or "dib").lower()
        if codec not in ("dib", "y800"):
            raise InputError(f"unknown AVI codec '{avi_codec}' (use dib or y800)", path)
        self._colour = template.channels == 3
        self._y800 = codec == "y800" and not self._colour
        self._bgr_input = template.color == "BGR"
        self._fps = float(np.clip(float(fps), 0.01, 100000.0)) if fps else _guess_fps(template)
        self._fh = None
        super().__init__(path, template, n_frames=n_frames, overwrite=overwrite)

    # layout helpers
    @property
    def _bpp(self) -> int:
        return 3 if self._colour else 1

    def _open(self, tmp_path: Path) -> None:
        t = self.template
        w, h = t.width, t.height
        self._row = w * self._bpp
        self._stride = self._row if self._y800 else (self._row + 3) & ~3
        self._fsize = self._stride * h
        self._ckid = b"00db"
        self._fh = open(tmp_path, "wb")
        scale, rate = 1000, max(1, int(round(self._fps * 1000)))
        bufsize = self._fsize + 8
        avih = struct.pack("<14I", int(round(1e6 / self._fps)), int(bufsize * self._fps), 0, 0x10, 0, 0, 1,
                           bufsize, w, h, 0, 0, 0, 0)
        handler = b"Y800" if self._y800 else b"DIB "
        strh = struct.pack("<4s4sIHHIIIIIIII4h", b"vids", handler, 0, 0, 0, 0, scale, rate, 0, 0, bufsize,
                           0xFFFFFFFF, 0, 0, 0, min(w, 32767), min(h, 32767))
        if self._y800:
            strf = struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 8, b"Y800", self._fsize,
                               0, 0, 0, 0)
        else:
            bits = 24 if self._colour else 8
            # negative biHeight: a top-down DIB (rows stored top row first). opencv-python-headless 5.x
            # aborts or segfaults on bottom-up (positive height) DIBs; ffmpeg and we read both.
            strf = struct.pack("<IiiHH4sIiiII", 40, w, -h, 1, bits, b"\0\0\0\0", self._fsize, 0, 0,
                               0 if self._colour else 256, 0)
            if not self._colour:
                ramp = np.arange(256, dtype=np.uint8)
                strf += np.stack([ramp, ramp, ramp, np.zeros(256, np.uint8)], axis=1).tobytes()
        indx = struct.pack("<HBBI4s3I", 4, 0, 0, 0, self._ckid, 0, 0, 0) + bytes(16 * self.SUPER_INDEX_ENTRIES)
        strl = b"strl" + _chunk(b"strh", strh) + _chunk(b"strf", strf) + _chunk(b"indx", indx)
        odml = b"odml" + _chunk(b"dmlh", bytes(248))
        hdrl = b"hdrl" + _chunk(b"avih", avih) + _chunk(b"LIST", strl) + _chunk(b"LIST", odml)
        head = b"RIFF\0\0\0\0AVI " + _chunk(b"LIST", hdrl)
        # absolute positions of fields patched in _finish
        self._pos_avih_frames = head.index(b"avih") + 8 + 16
        self._pos_strh_length = head.index(b"strh") + 8 + 32
        self._pos_indx = head.index(b"indx") + 8
        self._pos_dmlh = head.index(b"dmlh") + 8
        self._fh.write(head)
        self._segments: list[tuple[int, int, int]] = []  # (ix00 offset, ix00 chunk size, frames)
        self._first_frames = 0
        self._total = 0
        self._start_segment(first=True)

    def _start_segment(self, first: bool) -> None:
        fh = self._fh
        if first:
            self._riff_at = 0
        else:
            self._riff_at = fh.tell()
            fh.write(b"RIFF\0\0\0\0AVIX")
        self._movi_at = fh.tell()
        fh.write(b"LIST\0\0\0\0movi")
        self._seg_entries: list[tuple[int, int]] = []  # (chunk header offset, size)
        self._seg_first = first

    def _patch_u32(self, pos: int, value: int) -> None:
        fh = self._fh
        here = fh.tell()
        fh.seek(pos)
        fh.write(struct.pack("<I", value))
        fh.seek(here)

    def _end_segment(self) -> None:
        fh = self._fh
        entries = self._seg_entries
        base = self._movi_at
        ix = bytearray(struct.pack("<HBBI4sQI", 2, 0, 1, len(entries), self._ckid, base, 0))
        for off, size in entries:
            ix += struct.pack("<II", off + 8 - base, size)
        ix_at = fh.tell()
        fh.write(_chunk(b"ix00", bytes(ix)))
        self._segments.append((ix_at, 8 + len(ix), len(entries)))
        end = fh.tell()
        self._patch_u32(self._movi_at + 4, end - self._movi_at - 8)
        if self._seg_first:
            movi_fcc = self._movi_at + 8
            idx1 = b"".join(struct.pack("<4sIII", self._ckid, 0x10, off - movi_fcc, size) for off, size in entries)
            fh.write(_chunk(b"idx1", idx1))
            self._first_frames = len(entries)
            end = fh.tell()
        if end - self._riff_at - 8 >= 1 << 32:
            raise ProcessingError("AVI segment exceeds 4 GB", self.path)
        self._patch_u32(self._riff_at + 4, end - self._riff_at - 8)

    def _write(self, frame: np.ndarray, index: int) -> None:
        a = np.asarray(frame)
        if a.dtype != np.uint8:
            a = np.clip(np.rint(a) if a.dtype.kind == "f" else a, 0, 255).astype(np.uint8)
        if self._colour and not self._bgr_input:
            a = a[..., ::-1]  # DIB stores B, G, R
        a = a.reshape(self.template.height, self._row)
        if self._stride != self._row:
            out = np.zeros((self.template.height, self._stride), np.uint8)
            out[:, : self._row] = a
            a = out
        data = memoryview(np.ascontiguousarray(a)).cast("B")
        fh = self._fh
        chunk_len = 8 + len(data) + (len(data) & 1)
        if self._seg_entries and fh.tell() + chunk_len + 8 * len(self._seg_entries) + 64 - self._riff_at \
                > self.SEGMENT_LIMIT:
            self._end_segment()
            if len(self._segments) >= self.SUPER_INDEX_ENTRIES:
                raise ProcessingError("AVI output too large for its index (over 256 segments)", self.path)
            self._start_segment(first=False)
        self._seg_entries.append((fh.tell(), len(data)))
        fh.write(self._ckid + struct.pack("<I", len(data)))
        fh.write(data)
        if len(data) & 1:
            fh.write(b"\0")
        self._total += 1

    def _finish(self) -> None:
        fh = self._fh
        self._end_segment()
        self._patch_u32(self._pos_avih_frames, self._first_frames)
        self._patch_u32(self._pos_strh_length, self._total)
        self._patch_u32(self._pos_dmlh, self._total)
        sup = bytearray(struct.pack("<HBBI4s3I", 4, 0, 0, len(self._segments), self._ckid, 0, 0, 0))
        for off, size, frames in self._segments:
            sup += struct.pack("<QII", off, size, frames)
        fh.seek(self._pos_indx)
        fh.write(bytes(sup))
        fh.seek(0, os.SEEK_END)
        fh.close()
        self._fh = None
