"""A before/after picture: reference, mask overlay, flat, calibrated reference, difference.

Drawn with OpenCV (no matplotlib). The reference and the calibrated reference share one stretch so
the comparison is honest; the difference is shown around mid-grey with a symmetric range.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

PANEL_MAX = 480
TITLE_H = 26


def _grey(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    return a.mean(axis=2) if a.ndim == 3 else a


def _fit(img: np.ndarray, size: tuple[int, int], interp=cv2.INTER_AREA) -> np.ndarray:
    w, h = size
    if img.shape[1] == w and img.shape[0] == h:
        return img
    return cv2.resize(img, (w, h), interpolation=interp)


def _to8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def render_report(reference: np.ndarray, mask: np.ndarray, flat: np.ndarray,
                  calibrated_reference: np.ndarray, title: Optional[str] = None) -> np.ndarray:
    """The report as an RGB uint8 image."""
    ref = _grey(reference)
    cal = _grey(calibrated_reference)
    fl = _grey(flat)
    m = np.asarray(mask, dtype=bool)
    H, W = ref.shape
    scale = min(1.0, PANEL_MAX / max(W, 1))
    pw, ph = max(1, int(round(W * scale))), max(1, int(round(H * scale)))
    lo, hi = (float(v) for v in np.percentile(ref, (0.5, 99.8)))
    ref_s, cal_s = _fit(ref, (pw, ph)), _fit(cal, (pw, ph))
    p_ref = _to8(ref_s, lo, hi)
    p_cal = _to8(cal_s, lo, hi)
    m_s = _fit(m.astype(np.float32), (pw, ph)) > 0.0
    over = np.dstack([p_ref] * 3).astype(np.float32)
    over[m_s] = 0.45 * over[m_s] + 0.55 * np.array([255, 0, 0], np.float32)
    p_mask = over.astype(np.uint8)
    fmin = float(fl.min())
    p_flat = _to8(_fit(fl, (pw, ph), cv2.INTER_NEAREST if scale < 1 else cv2.INTER_AREA), min(fmin, 0.999), 1.0)
    diff = cal - ref
    inside = diff[m] if m.any() else diff.reshape(-1)
    amp = float(np.percentile(np.abs(inside), 99.5)) if inside.size else 1.0
    amp = amp if amp > 0 else 1.0
    p_diff = _to8(_fit(diff, (pw, ph)), -amp, amp)
    panels = [("reference", p_ref), ("mask overlay", p_mask), (f"flat (min {fmin:.3f})", p_flat),
              ("calibrated", p_cal), (f"difference (+/-{amp:.3g})", p_diff)]
    gap = 6
    top = TITLE_H + (TITLE_H if title else 0)
    canvas = np.full((top + ph + gap, len(panels) * (pw + gap) + gap, 3), 24, np.uint8)
    if title:
        # Hershey fonts draw ASCII only, and OpenCV crashes on a str that is not valid UTF-8 (a file
        # name with undecodable bytes arrives as surrogate escapes): draw a printable ASCII copy
        title = "".join(c if " " <= c <= "~" else "?" for c in str(title))
        cv2.putText(canvas, title[:120], (gap, TITLE_H - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (255, 255, 255), 1, cv2.LINE_AA)
    for k, (name, img) in enumerate(panels):
        x = gap + k * (pw + gap)
        rgb = img if img.ndim == 3 else np.dstack([img] * 3)
        canvas[top:top + ph, x:x + pw] = rgb
        cv2.putText(canvas, name, (x, top - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 230, 230), 1, cv2.LINE_AA)
    return canvas
