"""Turning a reference frame into what an image model wants, and its answer back into our geometry.

* :func:`to_model_image`: robust percentile stretch of 8/16-bit or float data to 8-bit; raw Bayer
  (CFA) data is demosaiced so the model sees a picture, not a checkerboard; BGR storage order is
  turned into RGB. The stretch is remembered (:class:`Stretch`) so an AI "clean" image can be
  mapped back to the reference's scale.
* :func:`nearest_aspect` / :func:`pad_to_aspect`: Gemini only answers in a few aspect ratios, so the
  frame is padded (black, centred) to the nearest one; geometry is never stretched. The answer is
  resampled to the padded size and the padding cropped off (:func:`fit_answer`).
* :func:`plan_tiles`: overlapping tiles for frames larger than the model returns at full detail.
* :func:`decode_answer`: decode returned bytes by content (PNG, JPEG, WebP...), whatever the label.

No Qt; numpy + OpenCV only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

#: Nominal output (width, height) of the Gemini 3 image models at 1K per aspect ratio (Google's
#: image-generation docs); 2K and 4K are twice and four times that. Only used to plan requests
#: and to tell the user what to expect: answers are always resampled from their real size.
NOMINAL_1K = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
    "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672),
}
SIZE_FACTOR = {"1K": 1, "2K": 2, "4K": 4}

#: OpenCV demosaic codes giving RGB for each CFA pattern (OpenCV names Bayer codes after the
#: second row, so RGGB data needs ``BayerBG``; checked in tests/test_gemini.py).
_DEMOSAIC = {
    "RGGB": cv2.COLOR_BayerBG2RGB,
    "BGGR": cv2.COLOR_BayerRG2RGB,
    "GRBG": cv2.COLOR_BayerGB2RGB,
    "GBRG": cv2.COLOR_BayerGR2RGB,
}
#: Which RGB channel sits at (row % 2, col % 2) for each CFA pattern.
_CFA_CHANNEL = {
    "RGGB": ((0, 1), (1, 2)),
    "BGGR": ((2, 1), (1, 0)),
    "GRBG": ((1, 0), (2, 1)),
    "GBRG": ((1, 2), (0, 1)),
}


@dataclass
class Stretch:
    """The linear map from the reference's values to 8-bit: ``u8 = (v - lo) / (hi - lo) * 255``."""

    lo: float
    hi: float

    def inverse(self, unit: np.ndarray) -> np.ndarray:
        """Values in [0, 1] (an 8-bit answer / 255) back to the reference's scale."""
        return (np.asarray(unit, np.float32) * np.float32(self.hi - self.lo) + np.float32(self.lo)).astype(np.float32)


def robust_range(img: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.9, max_samples: int = 1 << 20) -> Stretch:
    """Percentile range of the finite values (subsampled to ``max_samples`` for speed)."""
    flat = np.asarray(img).reshape(-1)
    step = max(1, flat.size // max_samples)
    sample = flat[::step].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return Stretch(0.0, 1.0)
    lo, hi = np.percentile(sample, [lo_pct, hi_pct])
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
        if not hi > lo:
            hi = lo + 1.0
    return Stretch(float(lo), float(hi))


def stretch_to_u8(img: np.ndarray, stretch: Stretch) -> np.ndarray:
    scaled = (np.asarray(img, np.float32) - np.float32(stretch.lo)) * np.float32(255.0 / (stretch.hi - stretch.lo))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def model_layout(reference: np.ndarray, color: Optional[str]) -> str:
    """``mono``, ``RGB``, ``BGR`` or a Bayer pattern, from the array shape and the sequence's colour."""
    ref = np.asarray(reference)
    if ref.ndim == 3 and ref.shape[2] >= 3:
        return "BGR" if color == "BGR" else "RGB"
    if color in _DEMOSAIC:
        return color
    return "mono"


def to_model_image(reference: np.ndarray, color: Optional[str] = None) -> tuple[np.ndarray, Stretch, str]:
    """8-bit image for the model (gray (H, W) or RGB (H, W, 3)), the stretch used and the layout."""
    ref = np.asarray(reference)
    if ref.ndim == 3 and ref.shape[2] == 1:
        ref = ref[..., 0]
    layout = model_layout(ref, color)
    if ref.ndim == 3:
        ref = ref[..., :3]
    stretch = robust_range(ref)
    u8 = stretch_to_u8(ref, stretch)
    if layout == "BGR":
        u8 = np.ascontiguousarray(u8[..., ::-1])
    elif layout in _DEMOSAIC:
        u8 = cv2.cvtColor(u8, _DEMOSAIC[layout])
    return u8, stretch, layout


def from_model_image(unit_rgb: np.ndarray, layout: str, stretch: Stretch) -> np.ndarray:
    """An answer in [0, 1] (gray or RGB) back to the reference's layout and scale (float32)."""
    img = np.asarray(unit_rgb, np.float32)
    if layout == "mono":
        if img.ndim == 3:
            img = img.mean(axis=2)
    else:
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if layout == "BGR":
            img = img[..., ::-1]
        elif layout in _CFA_CHANNEL:
            img = remosaic(img, layout)
    return np.ascontiguousarray(stretch.inverse(img))


def remosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an (H, W, 3) RGB image on a CFA ``pattern``: the raw (H, W) Bayer frame it came from."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w), rgb.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            out[dy::2, dx::2] = rgb[dy::2, dx::2, _CFA_CHANNEL[pattern][dy][dx]]
    return out


def _ratio(aspect: str) -> float:
    a, b = aspect.split(":")
    return int(a) / int(b)


def nearest_aspect(width: int, height: int) -> str:
    """The supported aspect ratio closest (in log ratio) to ``width/height``."""
    r = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda a: abs(math.log(_ratio(a)) - r))


def padded_shape(height: int, width: int, aspect: str) -> tuple[int, int]:
    """The smallest (H, W) of ratio ``aspect`` holding a ``height`` x ``width`` image."""
    r = _ratio(aspect)
    if width / height >= r:
        return max(height, int(round(width / r))), width
    return height, max(width, int(round(height * r)))


def pad_to_aspect(img: np.ndarray, aspect: str, fill: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """``img`` centred on a black canvas of ratio ``aspect``; returns it and the (top, left) offset."""
    h, w = img.shape[:2]
    ph, pw = padded_shape(h, w, aspect)
    top, left = (ph - h) // 2, (pw - w) // 2
    if (ph, pw) == (h, w):
        return img, (0, 0)
    canvas = np.full((ph, pw) + img.shape[2:], fill, img.dtype)
    canvas[top:top + h, left:left + w] = img
    return canvas, (top, left)


def output_size(aspect: str, image_size: str) -> tuple[int, int]:
    """Nominal (width, height) of the model's answer."""
    w, h = NOMINAL_1K.get(aspect, (1024, 1024))
    k = SIZE_FACTOR.get(image_size, 1)
    return w * k, h * k


def plan_tiles(height: int, width: int, max_side: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Boxes ``(y0, y1, x0, x1)`` covering the frame, each at most ``max_side`` on a side (plus
    ``overlap`` shared with its neighbours). One box when the frame fits."""

    def spans(n: int) -> list[tuple[int, int]]:
        if n <= max_side:
            return [(0, n)]
        k = math.ceil((n - overlap) / max(1, max_side - overlap))
        step = (n - overlap) / k
        out = []
        for i in range(k):
            a = int(round(i * step))
            b = n if i == k - 1 else min(n, int(round(i * step + step + overlap)))
            out.append((a, b))
        return out

    return [(y0, y1, x0, x1) for (y0, y1) in spans(height) for (x0, x1) in spans(width)]


def encode_png(u8: np.ndarray) -> bytes:
    """PNG bytes of a gray or RGB uint8 image."""
    arr = np.ascontiguousarray(u8[..., ::-1] if u8.ndim == 3 else u8)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise ValueError("cannot encode PNG")
    return buf.tobytes()


def sniff_format(data: bytes) -> str:
    """What the bytes really are: ``png``, ``jpeg``, ``webp``, ``gif``, ``bmp``, ``tiff`` or ``unknown``."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return "unknown"


def decode_answer(data: bytes) -> Optional[np.ndarray]:
    """Decode image bytes by content to float32 in [0, 1]: (H, W) gray or (H, W, 3) RGB (alpha dropped).
    None if the bytes are not a decodable image."""
    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return None
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(img.dtype, 1.0)
    img = img.astype(np.float32) / np.float32(scale)
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[..., 0]
        elif img.shape[2] == 2:  # gray + alpha
            img = img[..., 0]
        else:
            img = np.ascontiguousarray(img[..., 2::-1])  # BGR(A) -> RGB
    return np.clip(img, 0.0, 1.0)


def canonical_png(data: bytes) -> Optional[bytes]:
    """The decoded samples of an answer as a lossless PNG (alpha dropped as :func:`decode_answer`
    drops it, so both decode to the same array); None when the bytes do not decode. Float images
    (no PNG form) come back unchanged."""
    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return None
    if img.dtype not in (np.uint8, np.uint16):
        return bytes(data)
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img = img[..., 0] if img.shape[2] == 2 else img[..., :3]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    return buf.tobytes() if ok else None


def resample(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to (height, width): area averaging when shrinking, bilinear when enlarging."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    interp = cv2.INTER_AREA if (height < h and width < w) else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def fit_answer(answer: np.ndarray, padded_hw: tuple[int, int], offset: tuple[int, int],
               hw: tuple[int, int]) -> np.ndarray:
    """Resample an answer to the padded request size, then crop the padding away."""
    out = resample(answer, *padded_hw)
    top, left = offset
    return out[top:top + hw[0], left:left + hw[1]]


def mask_channel(answer: np.ndarray) -> np.ndarray:
    """A mask answer as one float channel: the max over colour channels (white or coloured marks
    on black both count)."""
    return answer.max(axis=2) if answer.ndim == 3 else answer


def blend_weights(h: int, w: int, box: tuple[int, int, int, int], frame_hw: tuple[int, int], ramp: int) -> np.ndarray:
    """Weights for stitching a tile: linear ramps of ``ramp`` px on the sides that touch another
    tile, 1 elsewhere (never 0, so every pixel is covered)."""
    y0, y1, x0, x1 = box
    H, W = frame_hw

    def ramp1d(n: int, left: bool, right: bool) -> np.ndarray:
        r = np.ones(n, np.float32)
        k = max(1, min(ramp, n // 2))
        edge = (np.arange(k, dtype=np.float32) + 1) / (k + 1)
        if left:
            r[:k] = np.minimum(r[:k], edge)
        if right:
            r[n - k:] = np.minimum(r[n - k:], edge[::-1])
        return r

    wy = ramp1d(h, y0 > 0, y1 < H)
    wx = ramp1d(w, x0 > 0, x1 < W)
    return wy[:, None] * wx[None, :]
