"""Offline dust detector quality on synthetic demo sequences (issue 4 acceptance).

Per-speck recall: a speck counts as found when the mask covers at least half of its core (pixels
darkened by at least half the speck's depth). Recall is reported for specks darker than 5% (the
target, >= 0.95) and for all specks. Precision: a predicted connected component (8-connected)
counts as right when it overlaps real dust (the true mask); target >= 0.95.

Every difficulty runs with every limb placement: no limb, and the sky on the top, left, bottom or
right (the drift direction is drawn from the seed, so the sun moves toward the limb in some runs
and away from it in others). "limb px" counts mask pixels within 20 px of where any frame is
off the disc (the sky, which reaches the frame's edge) that are not within 8 px of real dust (the
demo puts dust 12 px or more inside the limb): it must be 0. "near-limb found" counts the specks
darker than 5% that come within 40 px of the limb in some frame (found/total).

Tables: per difficulty at 40 frames (sequence mode, at sensitivity 0.5, split by limb placement
and in total, then the total against the sensitivity control), the hard preset at 200 frames (its
drift is slow: 40 frames move the sun by ~2.4 px only, real captures hold thousands of frames), and
single-image mode (no time axis) on the median of the frames and on one raw frame.

Run:  .venv/bin/python bench/detector_quality.py [--quick] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiflat_gui.core.demo import generate_demo  # noqa: E402
from aiflat_gui.core.detect import compute_scores  # noqa: E402
from aiflat_gui.io.base import ArraySequence  # noqa: E402

SENSITIVITIES = (0.2, 0.35, 0.5, 0.65, 0.8)
LIMBS = ("none", "top", "left", "bottom", "right")


def limb_distance(demo) -> np.ndarray:
    """Distance (px) to the sky of any frame; +inf everywhere without a limb."""
    return demo.sky_distance()


def evaluate(mask: np.ndarray, demo, limb_dist: np.ndarray, min_depth: float = 0.05) -> dict:
    """Counts for one mask against one demo's truth."""
    band = limb_dist <= 20.0
    dark = 1.0 - demo.true_flat
    # real dust and the 8 px around it a speck's mask may grow into (the detector's reach)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))
    near_dust = cv2.dilate(demo.true_mask.view(np.uint8), k) > 0
    found_strong = n_strong = found_all = n_near = found_near = 0
    missed = []
    for sp in demo.specks:
        x0, y0, x1, y1 = sp["bbox"]
        core = dark[y0:y1, x0:x1] >= 0.5 * sp["depth"]
        hit = mask[y0:y1, x0:x1][core].mean() >= 0.5 if core.any() else False
        found_all += int(hit)
        if sp["depth"] > min_depth and limb_dist[y0:y1, x0:x1].min() <= 40.0:
            n_near += 1
            found_near += int(hit)
        if sp["depth"] > min_depth:
            n_strong += 1
            found_strong += int(hit)
        if not hit:
            missed.append((sp["kind"], round(sp["depth"], 3)))
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    truth_labels = np.unique(labels[demo.true_mask])
    right = len(set(truth_labels.tolist()) - {0})
    comps = n - 1
    covered = float((dark * mask).sum() / max(dark.sum(), 1e-9))
    return dict(specks=len(demo.specks), strong=n_strong, found_strong=found_strong, found_all=found_all,
                comps=comps, right=right, covered=covered, missed=missed, near=n_near, found_near=found_near,
                limb_px=int((mask & band & ~near_dust).sum()))


def _merge(rows: list[dict]) -> dict:
    tot = defaultdict(float)
    for r in rows:
        for k in ("specks", "strong", "found_strong", "found_all", "comps", "right", "limb_px", "near", "found_near"):
            tot[k] += r[k]
        tot["covered"] += r["covered"] / len(rows)
    tot["runs"] = len(rows)
    return tot


def _fmt(t: dict) -> str:
    rec5 = t["found_strong"] / max(t["strong"], 1)
    rec = t["found_all"] / max(t["specks"], 1)
    prec = t["right"] / t["comps"] if t["comps"] else 1.0
    return (f"recall(>5%) {rec5:5.3f} ({int(t['found_strong'])}/{int(t['strong'])})  "
            f"recall(all) {rec:5.3f} ({int(t['found_all'])}/{int(t['specks'])})  "
            f"precision {prec:5.3f} ({int(t['right'])}/{int(t['comps'])})  "
            f"limb px {int(t['limb_px'])}  near-limb found {int(t['found_near'])}/{int(t['near'])}  "
            f"covered {t['covered']:4.2f}")


def _runs(difficulty: str, frames: int, cases, verbose: bool):
    """Yields (case, demo, band, {mode: ScoreMap}, seconds of the sequence run)."""
    for (w, h, seed, limb) in cases:
        demo = generate_demo(frames=frames, width=w, height=h, seed=seed, difficulty=difficulty,
                             limb=False if limb == "none" else limb)
        band = limb_distance(demo)
        ref = np.median(demo.frames, axis=0).astype(np.float32)
        t = time.perf_counter()
        sm = compute_scores(ref, ArraySequence(demo.frames), max_frames=max(200, frames))
        dt = time.perf_counter() - t
        maps = {"sequence": sm, "single median": compute_scores(ref),
                "single frame": compute_scores(demo.frames[0].astype(np.float32))}
        if verbose:
            r = evaluate(sm.mask(0.5), demo, band)
            if r["missed"] or r["right"] < r["comps"] or r["limb_px"]:
                print(f"   {difficulty} {frames}f {w}x{h} seed {seed} limb {limb}: missed {r['missed']} "
                      f"false comps {r['comps'] - r['right']} limb px {r['limb_px']}", flush=True)
        yield (w, h, seed, limb), demo, band, maps, dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer seeds and sizes")
    ap.add_argument("--verbose", action="store_true", help="list missed specks and false components per run")
    args = ap.parse_args()
    seeds = (1, 2) if args.quick else (1, 2, 3, 4, 5)
    # 640x480: every seed with every limb placement; 1024x640: one placement per seed, in turn
    cases = [(640, 480, s, limb) for s in seeds for limb in LIMBS]
    if not args.quick:
        cases += [(1024, 640, s, LIMBS[i % len(LIMBS)]) for i, s in enumerate(seeds)]
    print(f"detector quality: seeds {seeds}, limb {LIMBS}, 640x480 all placements"
          f"{'' if args.quick else ' + 1024x640 one placement per seed'}")
    print()
    summary = []
    single_rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    t_all = time.perf_counter()
    for difficulty, frames in (("easy", 40), ("normal", 40), ("hard", 40), ("hard", 200)):
        run_cases = cases
        if frames > 40:  # long sequences: one size, one placement per seed (each in turn), twice the seeds
            long_seeds = seeds + tuple(s + len(seeds) for s in seeds)
            run_cases = [(640, 480, s, LIMBS[i % len(LIMBS)]) for i, s in enumerate(long_seeds)]
        by_limb = defaultdict(list)
        by_sens = defaultdict(list)
        secs = []
        for (w, h, seed, limb), demo, band, maps, dt in _runs(difficulty, frames, run_cases, args.verbose):
            secs.append(dt)
            by_limb[limb].append(evaluate(maps["sequence"].mask(0.5), demo, band))
            for sens in SENSITIVITIES:
                by_sens[sens].append(evaluate(maps["sequence"].mask(sens), demo, band))
            if frames == 40:
                for mode in ("single median", "single frame"):
                    single_rows[difficulty][mode].append(evaluate(maps[mode].mask(0.5), demo, band))
        label = f"{difficulty}, {frames} frames"
        print(f"== {label}: sequence mode ({np.mean(secs):.2f} s per detection, {len(secs)} runs) ==")
        for limb in LIMBS:
            if by_limb[limb]:
                print(f"  limb {limb:6s} sens 0.50: {_fmt(_merge(by_limb[limb]))}")
        for sens in SENSITIVITIES:
            print(f"  all    sens {sens:4.2f}: {_fmt(_merge(by_sens[sens]))}")
        summary.append((label, _merge(by_sens[0.5])))
        print(flush=True)
    print("== single image (no time axis), 40-frame demos, sensitivity 0.50 ==")
    for difficulty, modes in single_rows.items():
        for mode, rows in modes.items():
            t = _merge(rows)
            print(f"  {difficulty:6s} {mode:13s}: {_fmt(t)}")
            summary.append((f"{difficulty}, {mode}", t))
    print()
    print("== summary at sensitivity 0.50 (targets: recall(>5%) >= 0.95, precision >= 0.95, limb px 0 "
          "on easy/normal 40 frames and hard 200 frames) ==")
    for label, t in summary:
        rec5 = t["found_strong"] / max(t["strong"], 1)
        prec = t["right"] / t["comps"] if t["comps"] else 1.0
        print(f"  {label:28s} recall(>5%) {rec5:5.3f}  precision {prec:5.3f}  limb px {int(t['limb_px']):6d}  "
              f"near-limb found {int(t['found_near']):3d}/{int(t['near']):3d}  runs {int(t['runs'])}")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
