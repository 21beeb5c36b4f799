"""FITS: cubes, Siril FITSEQ (one image per HDU), single images and folders of frames; a streaming writer.

Reading never loads a cube: astropy parses the headers only, and frames are views of a read-only
memory map of the file at each HDU's data offset, converted one frame at a time (uint16 stored as
BITPIX=16 + BZERO=32768 is turned back into uint16 by flipping the sign bit of that frame only).

Layout decisions (documented for users):

* NAXIS=2: one frame. Further image HDUs of the same shape and type make a FITSEQ (one frame each).
* NAXIS=3 in a single HDU: colour (R, G, B planes, one frame) when NAXIS3 == 3 and either
  ``CTYPE3`` names colour (``RGB``/``COLOR``/``COLOUR``) or there is no hint at all (the Siril and
  PixInsight convention for colour images); a cube of NAXIS3 frames otherwise, i.e. when NAXIS3 != 3,
  ``CTYPE3`` is something else, ``AIFCUBE = 'FRAMES'`` (written by :class:`FitsWriter`) or ``BAYERPAT``
  is present. The reader option ``fits_cube="frames"`` or ``"color"`` overrides the guess.
* NAXIS=4 (N, 3, H, W): a cube of colour frames.
* ``ROWORDER = 'BOTTOM-UP'`` rows are flipped so that row 0 is the top; without ROWORDER rows are
  returned in stored order (as astropy shows them). ``BAYERPAT`` describes the top-left 2x2 cell of
  that top-down frame, shifted by ``XBAYROFF``/``YBAYROFF``.
* ``DATE-OBS`` (per HDU, or per file in a folder) gives timestamps at 100 ns resolution; a cube's
  per-frame times come from a ``TIMESTAMPS`` binary table (column ``TICKS``), as the writer stores them.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Optional, Sequence as _Seq

import numpy as np

from ..errors import FormatError, InputError, ProcessingError
from .base import BAYER_PATTERNS, Sequence, SequenceWriter, check_mapped, datetime_to_ticks

__all__ = ["FitsSequence", "FitsFolderSequence", "FitsWriter", "FITS_EXTS", "date_to_ticks", "ticks_to_date",
           "shift_bayer"]

FITS_EXTS = (".fits", ".fit", ".fts")
BLOCK = 2880
COLOUR_CTYPES = ("RGB", "COLOR", "COLOUR", "RGB-PLANES")
#: header keywords that describe the data layout; never copied from a template
STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "BZERO", "BSCALE", "XTENSION", "PCOUNT", "GCOUNT", "END",
              "ROWORDER", "BAYERPAT", "XBAYROFF", "YBAYROFF", "DATE-OBS", "CTYPE3", "AIFCUBE", "BLANK",
              "CHECKSUM", "DATASUM", "EXTNAME", "DATAMIN", "DATAMAX", "TFIELDS", "THEAP", "ZIMAGE"}


# -- small helpers -------------------------------------------------------------------------------

_DATE_RE = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d*))?)?)?"
                      r"\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?\s*(?:\[[^\]]*\])?\s*$", re.IGNORECASE)
_OLD_DATE_RE = re.compile(r"^\s*(\d{2})/(\d{2})/(\d{2})\s*$")  # FITS before 2000: DD/MM/YY


def date_to_ticks(value: Any) -> Optional[int]:
    """A FITS DATE-OBS string to SER ticks (UTC), keeping 100 ns resolution; None when it does not
    parse. Accepted: ``YYYY-MM-DD[Thh:mm[:ss[.fffffff]]]`` (any number of decimals, a space for the
    T), followed by ``Z``/``UTC``, a ``+hh:mm`` offset (converted to UTC) and/or a Java zone suffix
    such as JSol'Ex's ``2023-10-01T08:44:38.7414456Z[UTC]``; and the pre-2000 ``DD/MM/YY``."""
    if value is None:
        return None
    text = str(value)
    old = _OLD_DATE_RE.match(text)
    if old:
        d, mo, y = (int(g) for g in old.groups())
        text = f"{1900 + y:04d}-{mo:02d}-{d:02d}"
    m = _DATE_RE.match(text)
    if not m:
        return None
    ys, mos, ds, hh, mi, ss, frac, zone = m.groups()
    try:
        when = _dt.datetime(int(ys), int(mos), int(ds), int(hh or 0), int(mi or 0), int(ss or 0),
                            tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    offset = 0
    if zone and zone[0] in "+-":
        digits_z = zone[1:].replace(":", "")
        offset = int(digits_z[:2]) * 3600 + int(digits_z[2:4] or 0) * 60
        offset = -offset if zone[0] == "-" else offset
    digits = (frac or "")[:7].ljust(7, "0")
    return datetime_to_ticks(when) + int(digits) - offset * 10_000_000


def ticks_to_date(ticks: int) -> str:
    """SER ticks to a DATE-OBS string with 7 decimals (exact)."""
    sec, frac = divmod(int(ticks), 10_000_000)
    t = _dt.datetime(1, 1, 1) + _dt.timedelta(seconds=sec)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            f".{frac:07d}")


def shift_bayer(pattern: str, dx: int, dy: int) -> str:
    """The 2x2 CFA pattern seen from an origin shifted by (dx, dy) pixels."""
    g = [[pattern[0], pattern[1]], [pattern[2], pattern[3]]]
    return "".join(g[(y + dy) % 2][(x + dx) % 2] for y in (0, 1) for x in (0, 1))


def _int(header, key: str, default: int = 0) -> int:
    try:
        return int(header.get(key, default))
    except (TypeError, ValueError):
        return default


def _float(header, key: str, default: float) -> float:
    try:
        return float(header.get(key, default))
    except (TypeError, ValueError):
        return default


def _text(header, key: str) -> str:
    v = header.get(key)
    return "" if v is None else str(v).strip()


class _Decoder:
    """Turns the raw big-endian samples of one frame into the frame the Sequence interface promises."""

    def __init__(self, bitpix: int, bzero: float, bscale: float, colour: bool, bottom_up: bool):
        self.bitpix, self.bzero, self.bscale = bitpix, bzero, bscale
        self.colour, self.bottom_up = colour, bottom_up
        codes = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
        if bitpix not in codes:
            raise ValueError(f"BITPIX {bitpix}")
        self.raw_dtype = np.dtype(codes[bitpix])
        self.dtype: np.dtype[Any]
        plain = bzero == 0 and bscale == 1
        if bitpix == 8 and plain:
            self.kind, self.dtype, self.bit_depth = "u8", np.dtype(np.uint8), 8
        elif bitpix == 16 and bzero == 32768 and bscale == 1:
            self.kind, self.dtype, self.bit_depth = "u16", np.dtype(np.uint16), 16
        elif bitpix == 16 and plain:
            self.kind, self.dtype, self.bit_depth = "i16", np.dtype(np.uint16), 16
        elif bitpix == -32 and plain:
            self.kind, self.dtype, self.bit_depth = "f32", np.dtype(np.float32), 32
        else:
            self.kind, self.dtype, self.bit_depth = "scaled", np.dtype(np.float32), 32

    def orient(self, raw: np.ndarray) -> np.ndarray:
        """(H, W) or (3, H, W) raw samples -> (H, W[, 3]) top-down view (no copy)."""
        a = np.moveaxis(raw, 0, -1) if self.colour else raw
        return a[::-1] if self.bottom_up else a

    def finish(self, a: np.ndarray) -> np.ndarray:
        k = self.kind
        if k == "u8":
            out = a
        elif k == "u16":
            out = a.view(">u2") ^ np.uint16(0x8000)
        elif k == "i16":
            out = np.clip(a, 0, None).astype(np.uint16)
        elif k == "f32":
            out = a.astype(np.float32)
        else:
            out = (a.astype(np.float64) * self.bscale + self.bzero).astype(np.float32)
        out = np.ascontiguousarray(out)
        if not out.dtype.isnative:
            out = out.astype(out.dtype.newbyteorder("="))
        return out


#: bytes of signed 16-bit data scanned for negative samples (beyond it, 16 frames spread evenly)
NEGATIVE_SCAN_BYTES = 256 << 20


def _sample_warnings(dec: "_Decoder", raw, n_frames: int, frame_bytes: int) -> list[str]:
    """True warnings about how the samples are read: signed 16-bit data without BZERO only when a
    negative sample is found (every frame of a file up to NEGATIVE_SCAN_BYTES, else 16 spread
    evenly), other scaled or 64-bit types read as float32."""
    if dec.kind == "i16" and n_frames:
        frames: Iterable[int]
        if n_frames * frame_bytes <= NEGATIVE_SCAN_BYTES:
            frames = range(n_frames)
        else:
            frames = sorted({int(round(k * (n_frames - 1) / 15)) for k in range(16)})
        for i in frames:
            a = raw(i)
            if a.min() < 0:
                return [f"signed 16-bit data without BZERO: negative samples (first in frame {i}, minimum "
                        f"{int(a.min())}) read as 0"]
        return []
    if dec.kind == "scaled":
        return [f"BITPIX {dec.bitpix} (BZERO {dec.bzero:g}, BSCALE {dec.bscale:g}) read as 32-bit float"]
    return []


def _colour_from(header, n3: int, option: Optional[str]) -> bool:
    if option:
        return str(option).lower().startswith("col")
    ctype3 = _text(header, "CTYPE3").upper()
    if n3 != 3:
        return False
    if ctype3 in COLOUR_CTYPES:
        return True
    if ctype3 or _text(header, "AIFCUBE").upper() == "FRAMES" or _text(header, "BAYERPAT"):
        return False
    return True


ROW_ORDERS = ("top-down", "bottom-up")


def _is_siril(header) -> str:
    """The card naming Siril as the writer ('' when none does)."""
    for key in ("PROGRAM", "SWCREATE", "CREATOR"):
        if "siril" in _text(header, key).lower():
            return f"{key} = '{_text(header, key)}'"
    return ""


def row_order_of(header, option: Optional[str] = None) -> tuple[bool, str]:
    """(stored bottom-up?, why) for an image HDU: the ``row_order`` option ("top-down" |
    "bottom-up") wins; then the ROWORDER card; then Siril's own convention -- it writes FITS made
    from SER/AVI bottom-up with no ROWORDER card, naming itself in PROGRAM (SWCREATE in later
    versions); otherwise rows are taken in stored order, row 0 at the top, as astropy shows them."""
    if option:
        o = str(option).strip().lower()
        if o not in ROW_ORDERS:
            raise InputError(f"unknown row order '{option}' (use top-down or bottom-up)")
        return o == "bottom-up", f"{o} (row order given by the user)"
    card = _text(header, "ROWORDER").upper()
    if card in ("BOTTOM-UP", "TOP-DOWN"):
        return card == "BOTTOM-UP", f"ROWORDER = '{card}'"
    siril = _is_siril(header)
    if siril:
        return True, f"bottom-up: written by Siril ({siril}) with no ROWORDER card, Siril's rows are bottom-up"
    return False, "top-down: no ROWORDER card, rows in stored order"



def _checked_row_order(header, option: Optional[str], path) -> tuple[bool, str]:
    """:func:`row_order_of` for the file at ``path`` (its errors name that file), after refusing a
    header whose BZERO or BSCALE is not a finite number."""
    try:
        bottom_up, why = row_order_of(header, option)
    except InputError as err:
        raise InputError(err.problem, path) from None
    for key in ("BZERO", "BSCALE"):
        if not np.isfinite(_float(header, key, 0.0)):
            raise FormatError(f"{key} is {header.get(key)!r}: not a number; the header is damaged", path)
    return bottom_up, why

def _bayer_from(header, path) -> tuple[str, list[str]]:
    pat = _text(header, "BAYERPAT").upper().replace(" ", "")
    if not pat:
        return "", []
    if pat not in BAYER_PATTERNS:
        return "", [f"BAYERPAT '{pat}' not understood; treating the data as mono"]
    return shift_bayer(pat, _int(header, "XBAYROFF") % 2, _int(header, "YBAYROFF") % 2), []


def _header_cards(raw: bytes) -> list[tuple[str, Any, str]]:
    """Non-structural cards of a raw header, for copying into a calibrated file; cards astropy cannot
    parse are skipped."""
    from astropy.io import fits

    cards: list[tuple[str, Any, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            header = fits.Header.fromstring(raw.decode("ascii", "replace"))
        except Exception:  # noqa: BLE001 - metadata is optional
            return cards
        for card in header.cards:
            try:
                key, value, comment = card.keyword, card.value, card.comment
            except Exception:  # noqa: BLE001 - an unparsable card is dropped
                continue
            if not key or key in STRUCTURAL or re.match(r"^(NAXIS\d+|TTYPE\d+|TFORM\d+|TUNIT\d+)$", key):
                continue
            cards.append((key, value, comment))
    return cards


def _meta_from_header(cards: dict, raw: bytes) -> dict:
    meta: dict[str, Any] = {"fits_header": _header_cards(raw)}
    for key, name in (("OBSERVER", "observer"), ("INSTRUME", "instrument"), ("TELESCOP", "telescope"),
                      ("EXPTIME", "exptime"), ("OBJECT", "object")):
        if cards.get(key) is not None:
            meta[name] = cards[key]
    return meta


def _parse_value(field: str) -> Any:
    """The value of a FITS card's value field (string, logical, integer or float; None if none)."""
    f = field.strip()
    if f.startswith("'"):
        out, i = [], 1
        while i < len(f):
            if f[i] == "'":
                if f[i + 1:i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(f[i])
            i += 1
        return "".join(out).rstrip()
    f = f.split("/", 1)[0].strip()
    if f in ("T", "F"):
        return f == "T"
    try:
        return int(f)
    except ValueError:
        pass
    try:
        return float(f.replace("D", "E"))
    except ValueError:
        return None


def _parse_cards(block: bytes, cards: dict) -> bool:
    """Add the keyword = value cards of one header block to ``cards``; True at the END card."""
    for k in range(0, len(block), 80):
        card = block[k:k + 80]
        key = card[:8].rstrip().decode("ascii", "replace")
        if key == "END":
            return True
        if card[8:10] == b"= " and key not in cards:
            cards[key] = _parse_value(card[10:].decode("ascii", "replace"))
    return False


def _walk_hdus(path: Path, size: int, warn: list) -> list[dict]:
    """Every HDU's cards (first occurrence of each keyword), header position/length and data offset."""
    hdus: list[dict] = []
    with open(path, "rb") as fh:
        pos = 0
        while pos + BLOCK <= size:
            fh.seek(pos)
            cards: dict[str, Any] = {}
            nblocks, end = 0, False
            while not end:
                block = fh.read(BLOCK)
                if len(block) < BLOCK:
                    if not hdus:
                        raise FormatError("not a FITS file (header ends before its END card)", path)
                    warn.append("file is truncated inside an extension header; later HDUs ignored")
                    return hdus
                if nblocks == 0 and hdus and not block.startswith(b"XTENSION"):
                    return hdus  # padding or junk after the last HDU
                nblocks += 1
                end = _parse_cards(block, cards)
                if nblocks > 2000:
                    raise FormatError("FITS header has no END card", path)
            datloc = pos + nblocks * BLOCK
            naxis = _int(cards, "NAXIS")
            if naxis > 999:  # the standard's limit; a damaged NAXIS = 1e9 looped for ever below
                raise FormatError(f"NAXIS = {naxis} (FITS allows at most 999); the header is damaged", path)
            count = 1 if naxis > 0 else 0
            for k in range(1, naxis + 1):
                count *= max(0, _int(cards, f"NAXIS{k}"))
            nbytes = abs(_int(cards, "BITPIX", 8)) // 8 * max(1, _int(cards, "GCOUNT", 1)) * (
                max(0, _int(cards, "PCOUNT")) + count)
            hdus.append({"cards": cards, "hdrloc": (pos, nblocks * BLOCK), "datloc": datloc, "nbytes": nbytes})
            pos = datloc + nbytes + (-nbytes % BLOCK)
    return hdus


class FitsSequence(Sequence):
    """A FITS file as a sequence (see the module docstring for the layouts understood).

    Options: ``fits_cube`` ("frames" | "color") overrides the NAXIS3 == 3 guess; ``row_order``
    ("top-down" | "bottom-up") overrides the stored row order (see :func:`row_order_of`); others are
    ignored."""

    format = "fits"

    def __init__(self, path: str | os.PathLike, fits_cube: Optional[str] = None, row_order: Optional[str] = None,
                 **_options: Any):
        super().__init__()
        self.path = Path(path)
        self._mm: Optional[np.memmap] = None
        size = self.path.stat().st_size
        if size < BLOCK:
            raise FormatError("not a FITS file (shorter than one 2880-byte header block)", self.path)
        with open(self.path, "rb") as f:
            if not f.read(9) == b"SIMPLE  =":
                raise FormatError("not a FITS file (it does not start with a SIMPLE card)", self.path)
        try:
            images, tables = self._headers()
        except FormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - astropy raises many types on damaged headers
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FormatError(f"not a valid FITS file ({msg})", self.path) from None
        if not images:
            raise FormatError("FITS file holds no image", self.path)
        hdr0, loc0 = images[0]
        naxis = _int(hdr0, "NAXIS")
        axes = [_int(hdr0, f"NAXIS{k}") for k in range(1, naxis + 1)]  # FITS order: NAXIS1 = width
        if any(n <= 0 for n in axes):
            raise FormatError(f"FITS image has an empty axis {axes}", self.path)
        w, h = axes[0], axes[1]
        layout, colour, n_cube = "image", False, 1
        if naxis == 3:
            colour = _colour_from(hdr0, axes[2], fits_cube)
            if not colour:
                n_cube, layout = axes[2], "cube"
        elif naxis == 4:
            if axes[2] not in (1, 3):
                raise FormatError(f"4-D FITS with {axes[2]} planes per frame is not supported", self.path)
            colour = axes[2] == 3
            n_cube, layout = axes[3], "cube"
        elif naxis > 4:
            raise FormatError(f"{naxis}-D FITS data is not supported", self.path)
        bottom_up, why = _checked_row_order(hdr0, row_order, self.path)
        try:
            self._dec = _Decoder(_int(hdr0, "BITPIX"), _float(hdr0, "BZERO", 0.0), _float(hdr0, "BSCALE", 1.0),
                                 colour, bottom_up)
        except ValueError:
            raise FormatError(f"invalid BITPIX {hdr0.get('BITPIX')}", self.path) from None
        planes = 3 if colour else 1
        self._raw_shape = (3, h, w) if colour else (h, w)
        self._fbytes = planes * h * w * self._dec.raw_dtype.itemsize
        offsets: list[int] = []
        dates: list[Optional[int]] = []
        hdu_at = {h["datloc"]: k for k, h in enumerate(self._hdus)}
        claimed = None
        if layout == "cube" or len(images) == 1:
            claimed = n_cube  # a header may claim 1e9 frames: list only those the file can hold (+1)
            for i in range(min(n_cube, max(0, size - loc0) // self._fbytes + 1)):
                offsets.append(loc0 + i * self._fbytes)
            frame_hdus = [hdu_at[loc0]]
        else:
            same = [(hd, loc) for hd, loc in images
                    if [_int(hd, f"NAXIS{k}") for k in range(1, _int(hd, "NAXIS") + 1)] == axes
                    and _int(hd, "BITPIX") == self._dec.bitpix
                    and _float(hd, "BZERO", 0.0) == self._dec.bzero and _float(hd, "BSCALE", 1.0) == self._dec.bscale]
            if len(same) < len(images):
                self.warnings.append(f"{len(images) - len(same)} image HDUs of another size or type ignored")
            layout = "hdus" if len(same) > 1 else "image"
            for hd, loc in same:
                offsets.append(loc)
                dates.append(date_to_ticks(hd.get("DATE-OBS")))
            frame_hdus = [hdu_at[loc] for _, loc in same]
        whole = [o for o in offsets if o + self._fbytes <= size]
        total = len(offsets) if claimed is None else claimed
        if total > 1000 * max(1, len(whole)):  # not a cut copy: a header claiming what no file holds
            raise FormatError(f"header claims {total} frames but the file holds at most {len(whole)}; "
                              "the header is damaged", self.path)
        if len(whole) < total:
            self.warnings.append(f"file is truncated: {len(whole)} of {total} frames are complete")
            if not whole:
                raise FormatError(f"file is truncated: it ends before the first frame's data "
                                  f"({size} bytes, needs {offsets[0] + self._fbytes})", self.path)
        self._offsets = whole
        self.n_frames = len(whole)
        #: what FitsWriter needs to write a calibrated copy that keeps every HDU and card: the HDUs
        #: holding the frames (one cube/image HDU, or one HDU per frame), None when the file cannot
        #: be mirrored (truncated, or samples read as another type: scaled data, or signed 16-bit
        #: data holding negative samples, which are read as 0)
        self.mirror = None
        self.height, self.width = h, w
        self.channels = planes
        self.dtype, self.bit_depth = self._dec.dtype, self._dec.bit_depth
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        sample_warnings = _sample_warnings(self._dec, lambda i: self._raw(i), self.n_frames, self._fbytes)
        self.warnings.extend(sample_warnings)
        if len(whole) == len(offsets) and (self._dec.kind in ("u8", "u16", "f32")
                                           or (self._dec.kind == "i16" and not sample_warnings)):
            self.mirror = {"hdus": [dict(h) for h in self._hdus], "frame_hdus": frame_hdus,
                           "per_hdu": layout == "hdus", "bottom_up": bottom_up,
                           "roworder_card": _text(hdr0, "ROWORDER").upper(),
                           "signed16": self._dec.kind == "i16"}
        self.color = "RGB" if colour else "mono"
        if not colour:
            pattern, warn = _bayer_from(hdr0, self.path)
            self.warnings.extend(warn)
            if pattern:
                self.color = pattern
        self.byte_order, self.byte_order_reason = "big", "FITS data are big-endian by definition"
        # timestamps
        if layout == "hdus":
            dates = dates[: self.n_frames]
            if dates and all(d is not None for d in dates):
                self.timestamps = np.asarray(dates, dtype=np.int64)
        else:
            ticks = tables.get("TIMESTAMPS")
            if ticks is not None and len(ticks) >= self.n_frames:
                self.timestamps = np.asarray(ticks[: self.n_frames], dtype=np.int64)
            elif self.n_frames == 1 and date_to_ticks(hdr0.get("DATE-OBS")) is not None:
                self.timestamps = np.asarray([date_to_ticks(hdr0.get("DATE-OBS"))], dtype=np.int64)
        self.metadata = _meta_from_header(hdr0, self._raw_header)
        self.metadata.update(layout=layout, roworder="BOTTOM-UP" if bottom_up else "TOP-DOWN", roworder_reason=why,
                             date_obs=_text(hdr0, "DATE-OBS") or None)
        self.format = "fits"
        self.memmapped = True

    def _headers(self):
        """[(header, data offset)] of image HDUs (a full astropy Header for the first, light card
        dictionaries for the rest) and {EXTNAME: ticks} of the TIMESTAMPS table, from one fast walk
        over the HDU headers (astropy's HDU list costs ~1 ms per HDU; a FITSEQ can have thousands)."""
        size = self.path.stat().st_size
        hdus = _walk_hdus(self.path, size, self.warnings)
        self._hdus = hdus
        images, tables = [], {}
        for k, hdu in enumerate(hdus):
            cards = hdu["cards"]
            xt = str(cards.get("XTENSION", "")).strip().upper()
            if xt == "BINTABLE" and cards.get("ZIMAGE") is True:
                raise FormatError("tile-compressed FITS is not supported; decompress it first (funpack)", self.path)
            if (k == 0 or xt == "IMAGE") and _int(cards, "NAXIS") >= 2:
                images.append((cards, hdu["datloc"], hdu["hdrloc"]))
            elif xt == "BINTABLE" and _text(cards, "EXTNAME").upper() == "TIMESTAMPS":
                n = _int(cards, "NAXIS2")
                if (_int(cards, "TFIELDS") == 1 and str(cards.get("TFORM1", "")).strip() in ("K", "1K")
                        and _int(cards, "NAXIS1") == 8 and hdu["datloc"] + 8 * n <= size):
                    tables["TIMESTAMPS"] = np.fromfile(self.path, dtype=">i8", count=n,
                                                       offset=hdu["datloc"]).astype(np.int64)
                else:
                    self.warnings.append("TIMESTAMPS table not understood; timestamps ignored")
        if images:
            _, loc, (hpos, hlen) = images[0]
            with open(self.path, "rb") as f:
                f.seek(hpos)
                raw = f.read(hlen)
            self._raw_header = raw
            images = [(c, d) for c, d, _ in images]
        return images, tables

    def _raw(self, i: int) -> np.ndarray:
        if getattr(self, "_mm", None) is None:
            raise InputError("file is closed", self.path)
        off = self._offsets[i]
        mm = self._mm
        assert mm is not None  # checked above
        check_mapped(mm, off + self._fbytes, self.path)
        return mm[off: off + self._fbytes].view(self._dec.raw_dtype).reshape(self._raw_shape)

    def _read_frame(self, i: int) -> np.ndarray:
        return self._dec.finish(self._dec.orient(self._raw(i)))

    def frame_rows(self, i: int, y0: int, y1: int) -> np.ndarray:
        i = int(i) + (self.n_frames if int(i) < 0 else 0)
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range 0..{self.n_frames - 1}")
        return self._dec.finish(self._dec.orient(self._raw(i))[y0:y1])

    def close(self) -> None:
        self._mm = None


# -- folder of FITS frames -------------------------------------------------------------------------

def _read_primary_header(path: Path) -> tuple[dict, bytes]:
    """The primary header's cards and raw bytes (its length is the data offset)."""
    chunks: list[bytes] = []
    cards: dict[str, Any] = {}
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK)
            if len(block) < BLOCK:
                raise FormatError("not a FITS file (header ends before its END card)", path)
            if not chunks and not block.startswith(b"SIMPLE  ="):
                raise FormatError("not a FITS file (it does not start with a SIMPLE card)", path)
            chunks.append(block)
            if _parse_cards(block, cards):
                break
            if len(chunks) > 2000:
                raise FormatError("FITS header has no END card", path)
    return cards, b"".join(chunks)


def natural_key(name: str) -> list:
    """Sort key putting frame2 before frame10."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t]


class FitsFolderSequence(Sequence):
    """A folder of FITS files, one frame each, in natural order (frame2 before frame10). All files must
    have the same size, sample type and colour layout. Options: ``fits_cube`` and ``row_order`` as
    for FitsSequence."""

    format = "folder-fits"

    def __init__(self, folder: str | os.PathLike, fits_cube: Optional[str] = None, row_order: Optional[str] = None,
                 **_options: Any):
        super().__init__()
        self.path = Path(folder)
        files = sorted((f for f in self.path.iterdir() if f.is_file() and not f.name.startswith(".")
                        and f.suffix.lower() in FITS_EXTS), key=lambda f: natural_key(f.name))
        if not files:
            raise InputError("folder holds no FITS files", self.path)
        self._files = files
        self._locs: list[int] = []
        dates: list[Optional[int]] = []
        ref: Optional[tuple[int, int, bool, int, float, float]] = None
        for f in files:
            header, raw = _read_primary_header(f)
            loc = len(raw)
            naxis = _int(header, "NAXIS")
            if naxis > 999:
                raise FormatError(f"NAXIS = {naxis} (FITS allows at most 999); the header is damaged", f)
            if naxis < 2:
                raise FormatError("no image in the primary HDU (a folder needs one image per file)", f)
            axes = [_int(header, f"NAXIS{k}") for k in range(1, naxis + 1)]
            colour = naxis == 3 and _colour_from(header, axes[2], fits_cube)
            if naxis > 3 or (naxis == 3 and not colour and axes[2] != 1):
                raise FormatError(f"file holds {int(np.prod(axes[2:]))} frames; a folder needs one frame per file", f)
            key = (axes[0], axes[1], colour, _int(header, "BITPIX"), _float(header, "BZERO", 0.0),
                   _float(header, "BSCALE", 1.0))
            if ref is None:
                ref, hdr0, raw0 = key, header, raw
            elif key != ref:
                if key[:2] != ref[:2]:
                    problem = f"frame is {key[0]}x{key[1]} but {files[0].name} is {ref[0]}x{ref[1]}"
                elif key[2] != ref[2]:
                    problem = f"colour layout differs from {files[0].name}"
                else:
                    problem = f"sample type (BITPIX {key[3]}) differs from {files[0].name} (BITPIX {ref[3]})"
                raise InputError(f"{problem}; all frames in a folder must match", f)
            self._locs.append(loc)
            dates.append(date_to_ticks(header.get("DATE-OBS")))
        assert ref is not None  # files is not empty
        w, h, colour = ref[0], ref[1], ref[2]
        bottom_up, why = _checked_row_order(hdr0, row_order, self.path)
        try:
            self._dec = _Decoder(ref[3], ref[4], ref[5], ref[2], bottom_up)
        except ValueError:
            raise FormatError(f"invalid BITPIX {ref[3]}", files[0]) from None
        self._raw_shape = (3, h, w) if colour else (h, w)
        self._count = int(np.prod(self._raw_shape))
        for f, loc in zip(files, self._locs):
            if f.stat().st_size < loc + self._count * self._dec.raw_dtype.itemsize:
                raise FormatError("file is truncated (image data incomplete)", f)
        self.n_frames = len(files)
        self.width, self.height = w, h
        self.channels = 3 if colour else 1
        self.dtype, self.bit_depth = self._dec.dtype, self._dec.bit_depth
        self.color = "RGB" if colour else "mono"
        if not colour:
            pattern, warn = _bayer_from(hdr0, files[0])
            self.warnings.extend(warn)
            self.color = pattern or "mono"
        if all(d is not None for d in dates):
            self.timestamps = np.asarray(dates, dtype=np.int64)
        self.byte_order, self.byte_order_reason = "big", "FITS data are big-endian by definition"
        self.warnings.extend(_sample_warnings(self._dec, self._raw, self.n_frames,
                                              self._count * self._dec.raw_dtype.itemsize))
        self.metadata = _meta_from_header(hdr0, raw0)
        self.metadata.update(layout="folder", files=[f.name for f in files],
                             roworder="BOTTOM-UP" if bottom_up else "TOP-DOWN", roworder_reason=why)
        self.memmapped = False

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    def _raw(self, i: int) -> np.ndarray:
        f = self._files[i]
        try:
            a = np.fromfile(f, dtype=self._dec.raw_dtype, count=self._count, offset=self._locs[i])
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", f) from None
        if a.size < self._count:
            raise FormatError("file is truncated (image data incomplete)", f)
        return a.reshape(self._raw_shape)

    def _read_frame(self, i: int) -> np.ndarray:
        return self._dec.finish(self._dec.orient(self._raw(i)))


# -- writer ----------------------------------------------------------------------------------------

def _cast(frame: np.ndarray, dtype: np.dtype) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype == dtype:
        return a
    if dtype.kind == "f":
        return a.astype(dtype)
    info = np.iinfo(dtype)
    if a.dtype.kind == "f":
        a = np.rint(a)
    return np.clip(a, info.min, info.max).astype(dtype)


def _card_image(key: str, value: Any, comment: str = "") -> bytes:
    """One header card (80 bytes; commentary cards longer than one card give several)."""
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fits.Card(key, value, comment).image.encode("ascii", "replace")


def _history_cards(text: str) -> list[bytes]:
    import textwrap

    return [_card_image("HISTORY", line) for line in textwrap.wrap(text, 70)]


def edit_header(raw: bytes, set_cards: _Seq[tuple[str, Any, str]] = (), drop: tuple = (),
                history: _Seq[str] = ()) -> bytes:
    """A raw FITS header (2880-byte blocks) with every card kept byte for byte except: the keywords in
    ``drop`` and in ``set_cards`` removed, ``set_cards`` then added, and HISTORY lines appended after
    the existing ones (before END)."""
    cards = [raw[i:i + 80] for i in range(0, len(raw) - len(raw) % 80, 80)]
    end = next((i for i, c in enumerate(cards) if c[:8] == b"END     "), len(cards))
    body = cards[:end]  # blank cards included: every card of the input stays, in its place
    gone = {k.upper() for k in drop} | {k.upper() for k, _, _ in set_cards}
    kept = [c for c in body if c[:8].decode("ascii", "replace").strip().upper() not in gone]
    new = b"".join(kept) + b"".join(_card_image(k, v, c) for k, v, c in set_cards)
    new += b"".join(h for text in history for h in _history_cards(text))
    new += b"END".ljust(80)
    return new + b" " * (-len(new) % BLOCK)


class FitsWriter(SequenceWriter):
    """Streams frames to FITS. ``layout="cube"`` (default for mono/Bayer): one primary HDU
    (NAXIS3 = frames; NAXIS4 for colour) whose header is written first and data streamed frame by
    frame, plus a ``TIMESTAMPS`` table when times are known. ``layout="hdus"`` (default for colour):
    Siril FITSEQ, one image HDU per frame (frame 0 in the primary), each with DATE-OBS.

    uint8 -> BITPIX 8, uint16 -> BITPIX 16 + BZERO 32768, float -> BITPIX -32. Every HDU gets a
    ``ROWORDER`` card; Bayer data keep ``BAYERPAT``; colour gets ``CTYPE3 = 'RGB'`` (planes R, G, B);
    a FITS template's non-structural cards (EXPTIME, GAIN, ...) are copied, HISTORY and COMMENT
    cards all of them.

    A copy of a FITS file with every frame (a calibrated copy) *mirrors* it when its samples keep
    their type (uint8, uint16 via BZERO, float32): every HDU in the same order, every header card byte
    for byte (DATE-OBS included), tables and other extensions copied verbatim, a 2-D image stays
    2-D, a bottom-up file stays bottom-up; only the frames' data change, and their headers gain
    ``ROWORDER`` (the stored order, as read) and a HISTORY line (``history`` option), and lose stale
    CHECKSUM/DATASUM cards. Other copies (another sample type, a subset of the frames, a forced
    ``layout``) are written as described above, in the input's row order when it is a FITS."""

    format = "fits"

    def __init__(self, path: str | os.PathLike, template: Sequence, n_frames: Optional[int] = None,
                 overwrite: bool = True, layout: Optional[str] = None, timestamps: Optional[np.ndarray] = None,
                 **_opts: Any):
        dt = np.dtype(template.dtype)
        self._dtype: np.dtype[Any]
        if dt == np.uint8:
            self._bitpix, self._dtype = 8, np.dtype(np.uint8)
        elif dt == np.uint16:
            self._bitpix, self._dtype = 16, np.dtype(np.uint16)
        elif dt.kind in "fiu":
            self._bitpix, self._dtype = -32, np.dtype(np.float32)
        else:
            raise InputError(f"FITS cannot store {dt.name} samples", path)
        if template.channels not in (1, 3):
            raise InputError(f"FITS writer cannot store {template.channels}-channel frames", path)
        self._colour = template.channels == 3
        forced = layout is not None
        layout = layout or ("hdus" if self._colour else "cube")
        if layout not in ("cube", "hdus"):
            raise InputError(f"unknown FITS layout '{layout}' (use cube or hdus)", path)
        self._ts = timestamps if timestamps is not None else template.timestamps
        self._fh = None
        self._src: Optional[BinaryIO] = None
        meta = template.metadata or {}
        self._bottom_up = template.format in ("fits", "folder-fits") and meta.get("roworder") == "BOTTOM-UP"
        want = template.n_frames if n_frames is None else int(n_frames)
        mirror = getattr(template, "mirror", None)
        self._mirror: Optional[dict[str, Any]] = mirror if (mirror and not forced and want == template.n_frames
                                  and np.dtype(template.dtype) == self._dtype) else None
        # a single 2-D image stays 2-D
        self._plane = (not forced and want == 1 and template.n_frames == 1
                       and (meta.get("layout") == "image" or template.format not in ("fits", "folder-fits")))
        self.layout = layout
        from .. import __version__

        self._history = [str(h) for h in (_opts.get("history") or [
            f"aiflat {__version__} {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S')}: frames "
            f"rewritten from {Path(str(template.path)).name} (a calibrated copy divides them by a dust flat "
            f"that is 1.0 off the dust; other pixels unchanged)"])]
        super().__init__(path, template, n_frames=n_frames, overwrite=overwrite)

    def _cards(self) -> list[tuple[str, Any, str]]:
        t = self.template
        meta = t.metadata or {}
        cards = list(meta.get("fits_header") or [])
        if not cards:
            for key, names in (("OBSERVER", ("observer",)), ("INSTRUME", ("instrument", "instrume")),
                               ("TELESCOP", ("telescope", "telescop"))):
                for name in names:
                    v = meta.get(name)
                    if isinstance(v, str) and v.strip():
                        cards.append((key, v.strip().encode("ascii", "replace").decode()[:68], ""))
                        break
        return cards

    def _header(self, primary: bool, naxes: list[int], date: Optional[int], cube: bool) -> bytes:
        from astropy.io import fits

        t = self.template
        h = fits.Header()
        if primary:
            h["SIMPLE"] = (True, "conforms to FITS standard")
        else:
            h["XTENSION"] = ("IMAGE", "image extension")
        h["BITPIX"] = self._bitpix
        h["NAXIS"] = len(naxes)
        for k, n in enumerate(naxes, 1):
            h[f"NAXIS{k}"] = n
        if primary:
            h["EXTEND"] = True
        else:
            h["PCOUNT"] = 0
            h["GCOUNT"] = 1
        if self._bitpix == 16:
            h["BZERO"] = (32768, "uint16 data stored as int16")
            h["BSCALE"] = 1
        if self._bottom_up:
            h["ROWORDER"] = ("BOTTOM-UP", "first stored row is the bottom of the image")
        else:
            h["ROWORDER"] = ("TOP-DOWN", "first stored row is the top of the image")
        if t.color in BAYER_PATTERNS:
            h["BAYERPAT"] = (t.color, "CFA pattern of the top-left pixels")
            h["XBAYROFF"] = 0
            h["YBAYROFF"] = 0
        if self._colour:
            h["CTYPE3"] = ("RGB", "colour planes R, G, B")
        if cube:
            h["AIFCUBE"] = ("FRAMES", "last axis counts video frames")
        if date is not None:
            h["DATE-OBS"] = (ticks_to_date(date), "UTC start of exposure")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for key, value, comment in self._cards():
                try:
                    if key in ("COMMENT", "HISTORY"):  # all of them, in order
                        h.add_comment(value) if key == "COMMENT" else h.add_history(value)
                    elif key not in h:
                        h[key] = (value, comment)
                except Exception:  # noqa: BLE001 - a card astropy refuses is dropped, not fatal
                    continue
            for line in self._history:
                h.add_history(line)
            return h.tostring().encode("ascii")  # astropy's VerifyWarning (card fixes) stays quiet

    def _tick(self, index: int) -> Optional[int]:
        ts = self._ts
        if ts is None or not 0 <= index < len(ts):
            return None
        return int(ts[index])

    def _frame_axes(self) -> list[int]:
        t = self.template
        return [t.width, t.height, 3] if self._colour else [t.width, t.height]

    def _open(self, tmp_path: Path) -> None:
        self._fh = open(tmp_path, "wb")
        self._ticks: list[Optional[int]] = []
        if self._mirror is not None:
            self._mirror_open()
            return
        if self.layout == "cube":
            self._cube_header = self._cube_header_bytes(self.n_frames, self._tick(0))
            self._fh.write(self._cube_header)

    def _cube_header_bytes(self, n: int, first_tick: Optional[int]) -> bytes:
        if self._plane and n == 1:
            return self._header(True, self._frame_axes(), first_tick, cube=False)
        return self._header(True, self._frame_axes() + [n], first_tick, cube=True)

    # -- mirror: a copy of a FITS file that keeps every HDU and card ------------------------------
    def _mirror_open(self) -> None:
        m = self._mirror
        assert m is not None
        try:
            self._src = open(self.template.path, "rb")
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", self.template.path) from None
        self._hdu_next = 0
        self._remaining = 0
        self._frame_set = set(m["frame_hdus"])
        self._advance()

    def _copy_src(self, start: int, stop: int) -> None:
        src = self._src
        assert src is not None  # opened by _mirror_open
        src.seek(start)
        left = stop - start
        while left > 0:
            buf = src.read(min(left, 16 << 20))
            if not buf:
                break
            self._fh.write(buf)
            left -= len(buf)

    def _advance(self) -> None:
        """Copy HDUs verbatim up to the next one holding frames and write that one's header."""
        m, src = self._mirror, self._src
        assert m is not None and src is not None  # a mirror, opened by _mirror_open
        hdus = m["hdus"]
        while self._remaining == 0 and self._hdu_next < len(hdus):
            k = self._hdu_next
            self._hdu_next += 1
            h = hdus[k]
            hpos, hlen = h["hdrloc"]
            if k not in self._frame_set:
                n = h["nbytes"]
                self._copy_src(hpos, h["datloc"] + n + (-n % BLOCK))
                continue
            src.seek(hpos)
            raw = src.read(hlen)
            order = "BOTTOM-UP" if m["bottom_up"] else "TOP-DOWN"
            sets = [] if m["roworder_card"] == order else [
                ("ROWORDER", order, "stored row order, as read from the input")]
            self._fh.write(edit_header(raw, sets, drop=("CHECKSUM", "DATASUM"),
                                       history=self._history if k == m["frame_hdus"][0] else ()))
            self._remaining = 1 if m["per_hdu"] else self.n_frames
            self._hdu_bytes = h["nbytes"]

    def _mirror_write(self, data: memoryview) -> None:
        if self._remaining <= 0:
            raise ProcessingError(f"more frames than the {self.n_frames} of the input", self.path)
        self._fh.write(data)
        self._remaining -= 1
        if self._remaining == 0:
            self._fh.write(bytes(-self._hdu_bytes % BLOCK))
            self._advance()

    def _data(self, frame: np.ndarray) -> memoryview:
        a = _cast(frame, self._dtype)
        if self._colour:
            if self.template.color == "BGR":
                a = a[..., ::-1]
            a = np.moveaxis(a, -1, 0)
        if self._bottom_up:
            a = a[..., ::-1, :]  # back to the input's stored row order
        if self._mirror is not None and self._mirror.get("signed16"):
            # a signed 16-bit input (no BZERO) keeps its type: calibrated dust pixels saturate at
            # 32767, every other sample is written back as it was read
            a = np.minimum(a, np.uint16(32767)).astype(">i2")
        elif self._bitpix == 16:
            a = (a ^ np.uint16(0x8000)).astype(">u2")
        elif self._bitpix == -32:
            a = a.astype(">f4")
        return memoryview(np.ascontiguousarray(a)).cast("B")

    def _write(self, frame: np.ndarray, index: int) -> None:
        tick = self._tick(index)
        self._ticks.append(tick)
        data = self._data(frame)
        if self._mirror is not None:
            self._mirror_write(data)
            return
        if self.layout == "cube":
            if self.written >= self.n_frames:
                raise ProcessingError(f"more frames than the {self.n_frames} announced", self.path)
            self._fh.write(data)
            return
        self._fh.write(self._header(self.written == 0, self._frame_axes(), tick, cube=False))
        self._fh.write(data)
        self._fh.write(bytes(-data.nbytes % BLOCK))

    def _abort_handles(self) -> None:
        src, self._src = self._src, None
        if src is not None:
            src.close()
        super()._abort_handles()

    def _finish(self) -> None:
        fh = self._fh
        if self._mirror is not None:
            if self.written != self.n_frames or self._remaining:
                raise ProcessingError(f"{self.written} of the input's {self.n_frames} frames were written",
                                      self.path)
            self._advance()
            src, self._src = self._src, None
            if src is not None:
                src.close()
            fh.close()
            self._fh = None
            return
        if self.layout == "cube":
            n = self.written
            data_len = n * int(np.prod(self.template.frame_shape)) * abs(self._bitpix) // 8
            fh.write(bytes(-data_len % BLOCK))
            ticks = self._ticks
            head = self._cube_header_bytes(n, ticks[0] if ticks else self._tick(0))
            if len(head) != len(self._cube_header):
                raise ProcessingError("FITS header changed size while writing", self.path)
            if n != self.n_frames or head != self._cube_header:
                fh.seek(0)
                fh.write(head)
                fh.seek(0, os.SEEK_END)
            if n and all(t is not None for t in ticks):
                fh.write(self._ticks_table(np.asarray(ticks, dtype=np.int64)))
        elif self.written == 0:
            fh.write(self._header(True, [], None, cube=False))
        fh.close()
        self._fh = None

    def _ticks_table(self, ticks: np.ndarray) -> bytes:
        from astropy.io import fits

        h = fits.Header()
        h["XTENSION"] = "BINTABLE"
        h["BITPIX"] = 8
        h["NAXIS"] = 2
        h["NAXIS1"] = 8
        h["NAXIS2"] = len(ticks)
        h["PCOUNT"] = 0
        h["GCOUNT"] = 1
        h["TFIELDS"] = 1
        h["TTYPE1"] = "TICKS"
        h["TFORM1"] = "K"
        h["TUNIT1"] = ("100ns", "since 0001-01-01T00:00:00 UTC (SER ticks)")
        h["EXTNAME"] = ("TIMESTAMPS", "per-frame UTC times of the cube")
        data = ticks.astype(">i8").tobytes()
        return h.tostring().encode("ascii") + data + bytes(-len(data) % BLOCK)
