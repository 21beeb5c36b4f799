"""Issue 10's figures on the real material in ``../shared/real-data`` (what tests/test_detect_real.py
and tests/test_verify_acceptance.py assert, printed as numbers).

  H-alpha frame (single image, offline detector, default sensitivity): the least covered of the 10
    opaque clump cores the README lists; Gemini's specks (>= 4 px) found; the mask's area against
    Gemini's; the largest blob; mask pixels within 3 px of the 4 solar points;
  lunar video: specks the detector reports at sensitivity 0.5 and 1.0, the verify step's verdicts on each,
    and the pixels where the flat built from the verified mask is not exactly 1.0.

    .venv/bin/python bench/real_data.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_detect_real import CLUMPS, FRAME, GEMINI, MOON, SOLAR_STRICT, clump_core  # noqa: E402

from aiflat_gui.core.detect import compute_scores  # noqa: E402


def halpha() -> None:
    img = cv2.imread(str(FRAME), cv2.IMREAD_GRAYSCALE)
    gem = cv2.imread(str(GEMINI), cv2.IMREAD_GRAYSCALE) > 30
    m = compute_scores(img.astype(np.float32)).mask(0.5)
    cov = [float(m[clump_core(img, x, y)].mean()) for x, y in CLUMPS]
    n, labels, stats, _ = cv2.connectedComponentsWithStats(gem.view(np.uint8), connectivity=8)
    specks = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= 4]
    hit = np.zeros(n, bool)
    hit[np.unique(labels[m])] = True
    found = sum(bool(hit[i]) for i in specks)
    _k, _l, ms, _c = cv2.connectedComponentsWithStats(m.view(np.uint8), connectivity=8)
    h, w = m.shape
    yy, xx = np.mgrid[0:h, 0:w]
    near = sum(int((m & (np.hypot(xx - x, yy - y) <= 3)).sum()) for x, y in SOLAR_STRICT)
    print(f"H-alpha frame: clump cores covered >= {min(cov):.2f} (10 clumps); Gemini's specks found "
          f"{found}/{len(specks)} ({100 * found / len(specks):.1f} %); area {m.sum() / gem.sum():.2f}x Gemini's; "
          f"largest blob {int(ms[1:, cv2.CC_STAT_AREA].max())} px; mask px within 3 px of the solar points {near}")


def moon() -> None:
    from aiflat_gui.core.flat import synthesize_flat
    from aiflat_gui.core.reference import compute_reference
    from aiflat_gui.io import open_sequence
    from aiflat_gui.pipeline import verify_step

    with open_sequence(MOON) as seq:
        ref = compute_reference(seq)
        sm = compute_scores(ref, seq)
        counts = {s: cv2.connectedComponents(sm.mask(s).view(np.uint8), connectivity=8)[0] - 1 for s in (0.5, 1.0)}
        print(f"lunar video ({sm.info.get('drift_px', 0.0):.1f} px drift): specks at sensitivity 0.5: {counts[0.5]}, "
              f"at 1.0: {counts[1.0]}")
        for s in (0.5, 1.0):
            out = verify_step(sm.mask(s), seq)
            print(f"  sensitivity {s}: verify: {out.summary()}")
            for c in out.verification.checks if out.verification is not None else []:
                print(f"    {c.describe()}")
            flat = synthesize_flat(ref, out.mask, method="auto", sequence=seq, grow=2)
            print(f"    flat from the verified mask: not exactly 1.0 on {int((flat != 1.0).sum())} px")


def main() -> int:
    if not FRAME.exists() or not MOON.exists():
        print(f"real data not found under {FRAME.parent}")
        return 1
    t = time.perf_counter()
    halpha()
    moon()
    print(f"{time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
