"""TIFF, PNG and JPEG: multi-page TIFF stacks, single images, folders of frames; TIFF writers.

* A multi-page TIFF is one frame per page (the first series as tifffile sees it). Uncompressed
  contiguous pages are views of a read-only memory map; compressed pages are decoded one at a time.
* A single TIFF/PNG/JPEG image is a one-frame sequence (formats "tiff", "png", "jpeg").
* A folder of TIFF/PNG/JPEG files is one frame per file in natural order (frame2 before frame10);
  every file must have the same size, channel count and sample type, checked from the file headers.

Samples are kept: uint8 and uint16 stay, float TIFF is float32; colour is returned RGB (alpha dropped).
The writers store each page's colour layout (Bayer pattern) and timestamp in a small JSON
ImageDescription (``{"aiflat": 1, "color": ..., "ticks": ...}``) so a round trip keeps them.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..errors import FormatError, InputError
from .base import COLORS, Sequence, SequenceWriter, check_mapped
from .fits import natural_key

if TYPE_CHECKING:
    import tifffile

__all__ = ["ImageSequence", "ImageFolderSequence", "TiffWriter", "TiffFolderWriter", "IMAGE_EXTS", "natural_key"]

TIFF_EXTS = (".tif", ".tiff")
PNG_EXTS = (".png",)
JPEG_EXTS = (".jpg", ".jpeg")
IMAGE_EXTS = TIFF_EXTS + PNG_EXTS + JPEG_EXTS


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sample_dtype(dt: np.dtype) -> np.dtype:
    """The sample type the Sequence interface uses for stored samples of type ``dt``."""
    dt = np.dtype(dt)
    if dt in (np.uint8, np.uint16, np.float32):
        return np.dtype(dt.char)
    if dt == np.bool_:
        return np.dtype(np.uint8)
    return np.dtype(np.float32)


def _to_sample(a: np.ndarray) -> np.ndarray:
    dt = _sample_dtype(a.dtype)
    if a.dtype != dt:
        a = a.astype(dt)
    return a


def _aiflat_description(text: Optional[str]) -> dict:
    if not text or not text.lstrip().startswith("{"):
        return {}
    try:
        d = json.loads(text)
    except ValueError:
        return {}
    return d if isinstance(d, dict) and d.get("aiflat") else {}


# -- TIFF pages --------------------------------------------------------------------------------------

class _TiffLayout:
    """How one TIFF page's samples become a frame: shape, channels, planar order."""

    def __init__(self, page, path: Path):
        shape = tuple(int(s) for s in page.shape)
        spp = int(getattr(page, "samplesperpixel", 1) or 1)
        planar = spp > 1 and int(getattr(page, "planarconfig", 1)) == 2
        if len(shape) == 2:
            h, w, ch = shape[0], shape[1], 1
        elif len(shape) == 3 and planar:
            ch, h, w = shape
        elif len(shape) == 3:
            h, w, ch = shape
        else:
            raise FormatError(f"TIFF page of shape {shape} is not a 2-D image", path)
        if ch == 2:
            keep = 1  # grey + alpha
        elif ch >= 3:
            keep = 3
        else:
            keep = 1
        self.page_shape, self.planar, self.stored_channels = shape, planar, ch
        self.height, self.width, self.channels = h, w, keep
        self.dtype = _sample_dtype(page.dtype)

    @property
    def key(self) -> tuple:
        return (self.width, self.height, self.channels, self.dtype.name)

    def frame(self, a: np.ndarray) -> np.ndarray:
        """Stored page samples -> (H, W) or (H, W, 3) view/array (no dtype change)."""
        if self.planar:
            a = np.moveaxis(a, 0, -1)
        if a.ndim == 3:
            a = a[..., 0] if self.channels == 1 else a[..., :3]
        return a


def _check_ifd_chain(path: Path) -> None:
    """Walk a TIFF's chain of page directories before tifffile does: a damaged "next page" offset
    that points back into the chain made tifffile list pages for ever (a hang). Refuses a cycle, or
    more pages than the file has room for."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            return  # tifffile gives the error
        bo = "<" if head[:2] == b"II" else ">"
        magic = struct.unpack(bo + "H", head[2:4])[0]
        if magic == 43 and len(head) >= 16:
            off, entry, cnt_fmt, off_fmt = struct.unpack(bo + "Q", head[8:16])[0], 20, "Q", "Q"
        elif magic == 42:
            off, entry, cnt_fmt, off_fmt = struct.unpack(bo + "I", head[4:8])[0], 12, "H", "I"
        else:
            return
        seen: set[int] = set()
        cnt_size, off_size = struct.calcsize(cnt_fmt), struct.calcsize(off_fmt)
        while off:
            if off in seen:
                raise FormatError(f"damaged TIFF: its page directories loop (page {len(seen) + 1} points back "
                                  "to an earlier one)", path)
            if off + cnt_size > size or len(seen) > size // (cnt_size + off_size):
                return  # past the end: tifffile reports it (or reads the pages before)
            seen.add(off)
            f.seek(off)
            n = struct.unpack(bo + cnt_fmt, f.read(cnt_size))[0]
            f.seek(off + cnt_size + n * entry)
            raw = f.read(off_size)
            if len(raw) < off_size:
                return
            off = struct.unpack(bo + off_fmt, raw)[0]


def _open_tiff(path: Path):
    import tifffile

    _check_ifd_chain(path)
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types on damaged files
        raise FormatError(f"not a readable TIFF ({_first_line(exc)})", path) from None
    try:
        has_series = bool(tif.series)
    except Exception as exc:  # noqa: BLE001
        tif.close()
        raise FormatError(f"damaged TIFF ({_first_line(exc)})", path) from None
    if not has_series:
        tif.close()
        raise FormatError("TIFF holds no image", path)
    return tif


def check_frame_memory(shape: tuple, itemsize: int, path, what: str = "frame") -> None:
    """Refuse (one-line FormatError) a frame whose header claims more memory than is free: a damaged
    or hostile header must not make a decoder allocate gigabytes."""
    nbytes = int(np.prod([int(n) for n in shape], dtype=np.float64)) * int(itemsize)
    limit = 1 << 33
    try:
        import psutil

        limit = min(limit, int(psutil.virtual_memory().available * 0.5))
    except Exception:  # noqa: BLE001 - psutil missing or failing: keep the fixed cap
        pass
    if nbytes > limit:
        dims = "x".join(str(int(n)) for n in shape)
        raise FormatError(f"{what} of {dims} would need {nbytes / 1e9:.1f} GB, more than this machine can "
                          "spare; the header is probably damaged", path)


# -- PNG / JPEG header probes ---------------------------------------------------------------------------

def _probe_png(path: Path) -> tuple:
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise FormatError("not a PNG file (bad signature)", path)
    w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
    if ctype not in (0, 2, 3, 4, 6) or depth not in (1, 2, 4, 8, 16) or not w or not h:
        raise FormatError(f"damaged PNG header (colour type {ctype}, depth {depth}, {w}x{h})", path)
    # walk the chunks: a length running past the end of the file makes decoders allocate it blindly
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 8
        while True:
            f.seek(pos)
            hdr = f.read(8)
            if len(hdr) < 8:
                raise FormatError("damaged PNG (ends before its IEND chunk)", path)
            length, ctag = struct.unpack(">I4s", hdr)
            if pos + 12 + length > size:
                raise FormatError(f"damaged PNG (chunk {ctag!r} runs past the end of the file)", path)
            if ctag == b"IEND":
                break
            pos += 12 + length
    channels = 3 if ctype in (2, 3, 6) else 1
    return (w, h, channels, "uint16" if depth == 16 else "uint8")


def _probe_jpeg(path: Path) -> tuple:
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    if data[:2] != b"\xff\xd8":
        raise FormatError("not a JPEG file (bad signature)", path)
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            pos += 1 if marker == 0xFF else 2
            continue
        seg = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 10 <= len(data):
            depth, h, w, ncomp = struct.unpack(">BHHB", data[pos + 4:pos + 10])
            return (w, h, 3 if ncomp >= 3 else 1, "uint16" if depth > 8 else "uint8")
        pos += 2 + seg
    raise FormatError("damaged JPEG (no frame header)", path)


def _check_tiff_expansion(page, path: Path) -> None:
    """A compressed page claiming far more pixels than its compressed bytes can hold is damaged."""
    if int(getattr(page, "compression", 1)) == 1:
        return
    stored = int(sum(int(n) for n in page.databytecounts))
    if int(page.nbytes) > 5000 * stored + (1 << 20):
        raise FormatError(f"damaged TIFF: a page claims {page.nbytes} bytes of pixels from {stored} "
                          "compressed bytes", path)


#: most a compressed file can expand: zlib (PNG) tops out near 1032:1; JPEG needs >= ~2 bits per 8x8 block
_MAX_EXPANSION = {"png": 1100, "jpeg": 2000}


def _png_stream_bytes(path: Path) -> int:
    """Bytes of the filtered pixel stream a PNG's IHDR implies (what zlib must inflate to)."""
    with open(path, "rb") as f:
        head = f.read(26)
    w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype, 1)
    return h * (1 + -(-w * samples * depth // 8))


def _check_claimed_size(path: Path, probe: tuple, fmt: Optional[str] = None) -> None:
    """Refuse a PNG/JPEG whose header claims far more pixels than its bytes can hold (damaged header),
    or more memory than the machine can spare, before OpenCV allocates it."""
    w, h, ch, dt = probe
    fmt = fmt or _image_format(path)
    nbytes = _png_stream_bytes(path) if fmt == "png" else w * h * ch * np.dtype(dt).itemsize
    size = path.stat().st_size
    if nbytes > _MAX_EXPANSION[fmt] * max(size, 1) + (1 << 20):
        raise FormatError(f"damaged header: it claims {w}x{h} pixels but the file has only {size} bytes", path)
    check_frame_memory((h, w, 4 if fmt == "png" else ch), np.dtype(dt).itemsize, path, "image")


def _decode_cv(path: Path, channels: int = 0) -> np.ndarray:
    import cv2

    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
    from .inputs import native_stderr_quiet

    with native_stderr_quiet():
        img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if img is None:
        raise FormatError("not a readable image (damaged or unsupported encoding)", path)
    if img.ndim == 3:
        if img.shape[2] >= 3 and channels != 1:
            img = img[..., 2::-1]
        else:
            img = img[..., 0]  # grey (+ alpha) that OpenCV expanded to BGRA
    return np.ascontiguousarray(_to_sample(img))


def _image_format(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in TIFF_EXTS:
        return "tiff"
    if ext in PNG_EXTS:
        return "png"
    if ext in JPEG_EXTS:
        return "jpeg"
    raise InputError(f"unsupported image type '{ext}' (use TIFF, PNG or JPEG)", path)


# -- readers ---------------------------------------------------------------------------------------------

class ImageSequence(Sequence):
    """A multi-page TIFF (one frame per page) or a single TIFF/PNG/JPEG image. Options are ignored."""

    def __init__(self, path: str | os.PathLike, **_options: Any):
        super().__init__()
        self.path = Path(path)
        self.format = _image_format(self.path)
        self._tif = None
        self._mm: Optional[np.memmap] = None
        self._image: Optional[np.ndarray] = None
        self._lock = threading.Lock()
        if self.format == "tiff":
            self._open_tiff()
        else:
            probe = (_probe_png if self.format == "png" else _probe_jpeg)(self.path)
            _check_claimed_size(self.path, probe)
            img = _decode_cv(self.path, probe[2])
            self._image = img
            self.n_frames = 1
            self.height, self.width = img.shape[:2]
            self.channels = 3 if img.ndim == 3 else 1
            self.dtype = img.dtype
            self.color = "RGB" if self.channels == 3 else "mono"
            self.memmapped = False
        self.bit_depth = 32 if np.dtype(self.dtype).kind == "f" else np.dtype(self.dtype).itemsize * 8

    def _open_tiff(self) -> None:
        tif = _open_tiff(self.path)
        self._tif = tif
        try:
            series = tif.series[0]
            key = series.keyframe
            lay = _TiffLayout(key, self.path)
            per = int(np.prod(lay.page_shape))
            check_frame_memory(lay.page_shape, np.dtype(key.dtype).itemsize, self.path, "page")
            _check_tiff_expansion(key, self.path)
            file_dtype = np.dtype(key.dtype).newbyteorder(tif.byteorder)
            self._lay, self._series, self._per, self._file_dtype = lay, series, per, file_dtype
            # one source per frame: ("off", byte offset) for uncompressed contiguous data, else
            # ("page", page) or ("key", series index, frame in series) decoded by tifffile
            sources: list[tuple] = []
            ignored = 0
            for si, s in enumerate(tif.series):
                if si and (np.dtype(s.dtype) != np.dtype(series.dtype)
                           or tuple(s.keyframe.shape) != lay.page_shape):
                    ignored += 1
                    continue
                n_s = max(1, int(np.prod(s.shape)) // per)
                if s.dataoffset is not None:
                    sources += [("off", int(s.dataoffset) + k * per * file_dtype.itemsize) for k in range(n_s)]
                elif len(s.pages) == n_s and all(p is not None for p in s.pages):
                    sources += [("off", int(p.dataoffsets[0])) if p.is_contiguous else ("page", p)
                                for p in s.pages]
                else:
                    sources += [("key", si, k) for k in range(n_s)]
            if ignored:
                self.warnings.append(f"{ignored} other images in the TIFF (thumbnails or other sizes) ignored")
            self._sources = sources
            self.n_frames = len(sources)
            self.height, self.width, self.channels = lay.height, lay.width, lay.channels
            self.dtype = lay.dtype
            self.color = "RGB" if lay.channels == 3 else "mono"
            if all(src[0] == "off" for src in sources):
                size = self.path.stat().st_size
                if max(src[1] for src in sources) + per * file_dtype.itemsize > size:
                    raise FormatError("TIFF is truncated (page data runs past the end of the file)", self.path)
                self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
                self.memmapped = True
            desc = _aiflat_description(getattr(key, "description", None))
            if desc:
                self._apply_description(desc)
            self.byte_order = "little" if tif.byteorder == "<" else "big"
            self.byte_order_reason = "TIFF header"
            self.metadata = {"pages": len(tif.pages), "compression": str(getattr(key, "compression", "")),
                             "photometric": str(getattr(key, "photometric", ""))}
        except InputError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001
            self.close()
            raise FormatError(f"damaged TIFF ({_first_line(exc)})", self.path) from None

    def _apply_description(self, first: dict) -> None:
        color = first.get("color")
        if self.channels == 1 and color in COLORS and color not in ("RGB", "BGR"):
            self.color = color
        if first.get("ticks") is None or self._tif is None or len(self._tif.pages) != self.n_frames:
            return
        ticks = []
        pages = self._tif.pages
        for i in range(self.n_frames):
            page = pages.get(i) if i else self._series.keyframe
            d = _aiflat_description(getattr(page, "description", None)) if page is not None else {}
            t = d.get("ticks")
            if not isinstance(t, int):
                return
            ticks.append(t)
        self.timestamps = np.asarray(ticks, dtype=np.int64)

    def _read_frame(self, i: int) -> np.ndarray:
        if self._image is not None:
            return self._image
        return self._finish(self._tiff_raw(i))

    def _tiff_raw(self, i: int) -> np.ndarray:
        if self._tif is None:
            raise InputError("file is closed", self.path)
        src = self._sources[i]
        try:
            if src[0] == "off":
                if self._mm is None:
                    a = np.fromfile(self.path, dtype=self._file_dtype, count=self._per, offset=src[1])
                    if a.size < self._per:
                        raise FormatError(f"TIFF page {i} is truncated", self.path)
                    return a.reshape(self._lay.page_shape)
                n = self._per * self._file_dtype.itemsize
                check_mapped(self._mm, src[1] + n, self.path)
                return self._mm[src[1]: src[1] + n].view(self._file_dtype).reshape(self._lay.page_shape)
            with self._lock:  # one file handle: seek+read must not interleave between threads
                if src[0] == "page":
                    a = src[1].asarray()
                else:
                    a = self._tif.asarray(series=src[1], key=src[2])
            return np.asarray(a).reshape(self._lay.page_shape)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise FormatError(f"cannot decode page {i} ({_first_line(exc)})", self.path) from None

    def _finish(self, a: np.ndarray) -> np.ndarray:
        a = self._lay.frame(a)
        a = _to_sample(a)
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)

    def frame_rows(self, i: int, y0: int, y1: int) -> np.ndarray:
        if self._mm is None or self._lay.planar:
            return super().frame_rows(i, y0, y1)
        i = int(i) + (self.n_frames if int(i) < 0 else 0)
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range 0..{self.n_frames - 1}")
        return self._finish(self._tiff_raw(i)[y0:y1])

    def close(self) -> None:
        self._mm = None
        if self._tif is not None:
            self._tif.close()
            self._tif = None


class ImageFolderSequence(Sequence):
    """A folder of TIFF/PNG/JPEG frames, one per file, natural order, all the same size and type."""

    format = "folder-images"

    def __init__(self, folder: str | os.PathLike, **_options: Any):
        super().__init__()
        self.path = Path(folder)
        files = sorted((f for f in self.path.iterdir() if f.is_file() and not f.name.startswith(".")
                        and f.suffix.lower() in IMAGE_EXTS), key=lambda f: natural_key(f.name))
        if not files:
            raise InputError("folder holds no TIFF, PNG or JPEG frames", self.path)
        self._files = files
        ref: Optional[tuple[Any, ...]] = None
        ticks: list[Optional[int]] = []
        colors: set[str] = set()
        multipage = 0
        for f in files:
            key, desc, pages = self._probe(f)
            if ref is None:
                ref = key
                check_frame_memory((key[1], key[0], key[2]), np.dtype(key[3]).itemsize, f)
            elif key != ref:
                if key[:2] != ref[:2]:
                    problem = f"frame is {key[0]}x{key[1]} but {files[0].name} is {ref[0]}x{ref[1]}"
                elif key[2] != ref[2]:
                    problem = f"frame has {key[2]} channel(s) but {files[0].name} has {ref[2]}"
                else:
                    problem = f"samples are {key[3]} but {files[0].name} has {ref[3]}"
                raise InputError(f"{problem}; all frames in a folder must match", f)
            t = desc.get("ticks")
            ticks.append(t if isinstance(t, int) else None)
            colors.add(str(desc.get("color") or ""))
            multipage += pages > 1
        assert ref is not None  # files is not empty
        self.n_frames = len(files)
        self.width, self.height, self.channels = ref[0], ref[1], ref[2]
        self.dtype = np.dtype(ref[3])
        self.bit_depth = 32 if self.dtype.kind == "f" else self.dtype.itemsize * 8
        self.color = "RGB" if self.channels == 3 else "mono"
        if self.channels == 1 and len(colors) == 1:
            c = colors.pop()
            if c in COLORS and c not in ("RGB", "BGR"):
                self.color = c
        if ticks and all(t is not None for t in ticks):
            self.timestamps = np.asarray(ticks, dtype=np.int64)
        if multipage:
            self.warnings.append(f"{multipage} multi-page TIFF files: only their first page is used")
        self.metadata = {"files": [f.name for f in files]}
        self.memmapped = False

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    def _probe(self, f: Path) -> tuple[tuple, dict, int]:
        fmt = _image_format(f)
        if fmt in ("png", "jpeg"):
            probe = (_probe_png if fmt == "png" else _probe_jpeg)(f)
            _check_claimed_size(f, probe)
            return probe, {}, 1
        tif = _open_tiff(f)
        try:
            page = tif.pages.first
            lay = _TiffLayout(page, f)
            _check_tiff_expansion(page, f)
            return lay.key, _aiflat_description(getattr(page, "description", None)), len(tif.pages)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise FormatError(f"damaged TIFF ({_first_line(exc)})", f) from None
        finally:
            tif.close()

    def _read_frame(self, i: int) -> np.ndarray:
        f = self._files[i]
        if _image_format(f) == "tiff":
            tif = _open_tiff(f)
            try:
                page = tif.pages.first
                lay = _TiffLayout(page, f)
                a = _to_sample(lay.frame(page.asarray()))
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise FormatError(f"cannot decode ({_first_line(exc)})", f) from None
            finally:
                tif.close()
            a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
        else:
            a = _decode_cv(f, self.channels)
        if a.shape != self.frame_shape or a.dtype != self.dtype:
            raise FormatError(f"decoded frame {a.shape} {a.dtype.name} does not match the folder's "
                              f"{self.frame_shape} {self.dtype.name}", f)
        return a


# -- writers ---------------------------------------------------------------------------------------------

class _TiffPages:
    """What both TIFF writers share: sample type, colour handling, page description."""

    template: Sequence

    def _setup(self, template: Sequence, path, timestamps: Optional[np.ndarray]) -> None:
        dt = np.dtype(template.dtype)
        if template.channels not in (1, 3):
            raise InputError(f"TIFF writer cannot store {template.channels}-channel frames", path)
        self._dtype: np.dtype[Any] = dt if dt in (np.uint8, np.uint16, np.float32) else np.dtype(np.float32)
        self._colour = template.channels == 3
        self._bgr = template.color == "BGR"
        self._ts = timestamps if timestamps is not None else template.timestamps

    def _page(self, frame: np.ndarray, index: int) -> tuple[np.ndarray, dict]:
        a = np.asarray(frame)
        if a.dtype != self._dtype:
            if self._dtype.kind == "f":
                a = a.astype(self._dtype)
            else:
                info = np.iinfo(self._dtype)
                a = np.clip(np.rint(a) if a.dtype.kind == "f" else a, info.min, info.max).astype(self._dtype)
        if self._colour and self._bgr:
            a = a[..., ::-1]
        desc: dict[str, Any] = {"aiflat": 1, "color": "RGB" if self._colour else self.template.color}
        ts = self._ts
        if ts is not None and 0 <= index < len(ts):
            desc["ticks"] = int(ts[index])
        kwargs = dict(photometric="rgb" if self._colour else "minisblack", metadata=None,
                      description=json.dumps(desc, separators=(",", ":")))
        return np.ascontiguousarray(a), kwargs


class TiffWriter(_TiffPages, SequenceWriter):
    """Streams a multi-page TIFF, one uncompressed page per frame, in the template's sample type
    (uint8/uint16/float32). BigTIFF when the result may exceed 4 GB. Options: ``timestamps``."""

    format = "tiff"

    def __init__(self, path: str | os.PathLike, template: Sequence, n_frames: Optional[int] = None,
                 overwrite: bool = True, timestamps: Optional[np.ndarray] = None, **_opts: Any):
        self._setup(template, path, timestamps)
        self._tw: Optional[tifffile.TiffWriter] = None
        super().__init__(path, template, n_frames=n_frames, overwrite=overwrite)

    def _open(self, tmp_path: Path) -> None:
        import tifffile

        t = self.template
        estimate = max(1, self.n_frames) * (t.height * t.width * t.channels * self._dtype.itemsize + 512)
        self._tw = tifffile.TiffWriter(tmp_path, bigtiff=estimate > 2 ** 32 - 2 ** 26)

    def _write(self, frame: np.ndarray, index: int) -> None:
        a, kwargs = self._page(frame, index)
        assert self._tw is not None  # set by _open
        self._tw.write(a, contiguous=False, **kwargs)

    def _finish(self) -> None:
        tw, self._tw = self._tw, None
        assert tw is not None
        tw.close()

    def _abort_handles(self) -> None:
        if self._tw is not None:
            tw, self._tw = self._tw, None
            tw.close()


class TiffFolderWriter(_TiffPages, SequenceWriter):
    """One TIFF per frame (frame_00000.tif, ...) in a folder that appears under the final name only
    when complete."""

    format = "tiff-folder"
    is_directory = True

    def __init__(self, path: str | os.PathLike, template: Sequence, n_frames: Optional[int] = None,
                 overwrite: bool = True, timestamps: Optional[np.ndarray] = None, **_opts: Any):
        self._setup(template, path, timestamps)
        self._dir: Optional[Path] = None
        super().__init__(path, template, n_frames=n_frames, overwrite=overwrite)

    def _open(self, tmp_path: Path) -> None:
        self._dir = Path(tmp_path)
        self._digits = max(5, len(str(max(0, self.n_frames - 1))))

    def _write(self, frame: np.ndarray, index: int) -> None:
        import tifffile

        a, kwargs = self._page(frame, index)
        assert self._dir is not None  # set by _open
        tifffile.imwrite(self._dir / f"frame_{self.written:0{self._digits}d}.tif", a, **kwargs)
