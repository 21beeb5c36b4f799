"""The flat alone in poor seeing: the TRUE mask, physics-made videos (aiflat_gui.core.dustsim).

Per scene: the median reference, ``synthesize_flat`` (method auto = multiframe here, grow 2, the
pipeline's defaults), every frame calibrated, then
  removed   share of the dust's darkening removed, over all frames and dust pixels on the target
            (darkening-weighted; 100 % = perfect), also per kind;
  worst     the worst single speck (farthest from 100 %);
  err       mean |flat - true flat| over the dust pixels;
  outside   pixels outside the grown mask that changed in some frame (must be 0).
Tuning seeds and held-out seeds are printed in separate tables.

    .venv/bin/python bench/flat_seeing.py [--seeing 3 4] [--seeds 3] [--frames 48] [--size 480x360]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiflat_gui.core.dustsim import HELDOUT_SEEDS, KINDS, TUNING_SEEDS, SimSpec, simulate  # noqa: E402


def poor_seeing_spec(seed: int, seeing: float = 3.0, frames: int = 48, size=(480, 360), **kw) -> SimSpec:
    """The poor-seeing scene of the flat's acceptance test: sun with sunspot, plage, filaments,
    pores; random-walk drift; local warp of ``seeing`` px rms changing every frame; seeing blur."""
    return SimSpec(width=size[0], height=size[1], frames=frames, seed=seed, background="sun", seeing_px=seeing,
                   drift_px=0.4, jitter_px=0.3, seeing_blur=(1.0, 2.2), **kw)


def measure(sim, flat, grow_px: int = 2) -> dict:
    """Removal (total, per kind, worst speck), flat error, pixels changed outside the grown mask."""
    from aiflat_gui.core.calibrate import calibrate_array
    from aiflat_gui.core.mask import grow

    g = grow(sim.mask, grow_px)
    labels = sim.labels
    nl = len(sim.specks) + 1
    dark = np.zeros(nl)
    left = np.zeros(nl)
    outside = np.zeros(labels.shape, bool)
    for i in range(sim.n_frames):
        raw = sim.frame(i)
        cal = calibrate_array(raw, flat, pedestal=sim.spec.pedestal)
        clean = sim.clean(i).astype(np.float64)
        dark += np.bincount(labels.ravel(), weights=(clean - raw).ravel(), minlength=nl)
        left += np.bincount(labels.ravel(), weights=(clean - cal).ravel(), minlength=nl)
        outside |= (cal != raw) & ~g
    on = [s for s in sim.specks if s.on_target >= 0.5]
    res = {"removed": _frac([s.label for s in on], dark, left)}
    for k in KINDS:
        res[k] = _frac([s.label for s in on if s.kind == k], dark, left)
    per = [1 - left[s.label] / dark[s.label] for s in on if dark[s.label] > 0]
    res["worst"] = per[int(np.argmax(np.abs(np.array(per) - 1)))] if per else float("nan")
    res["err"] = float(np.abs(flat - sim.flat)[sim.mask].mean())
    res["outside"] = int(outside.sum())
    return res


def _frac(labs, dark, left) -> float:
    d = sum(dark[i] for i in labs)
    return (d - sum(left[i] for i in labs)) / d if d > 0 else float("nan")


def main() -> int:
    from aiflat_gui.core.flat import synthesize_flat
    from aiflat_gui.core.reference import compute_reference
    from aiflat_gui.io import ArraySequence

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeing", type=float, nargs="+", default=[3.0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per set")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="480x360")
    ap.add_argument("--method", default="auto")
    ap.add_argument("--sets", nargs="+", default=["tuning", "held-out"], choices=["tuning", "held-out"])
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    seeds = {"tuning": TUNING_SEEDS[:args.seeds], "held-out": HELDOUT_SEEDS[:args.seeds]}
    for set_name in args.sets:
        print(f"\n=== {set_name} seeds, {args.size} x {args.frames} frames, method {args.method}, true mask ===")
        print(f"{'seeing':>6s} {'seed':>5s} {'removed':>8s} " + " ".join(f"{k:>6s}" for k in KINDS)
              + f" {'worst':>7s} {'err':>7s} {'outside':>7s} {'sec':>5s}")
        for seeing in args.seeing:
            tot = []
            for seed in seeds[set_name]:
                sim = simulate(poor_seeing_spec(seed, seeing, args.frames, size))
                seq = ArraySequence(sim.frames)
                ref = compute_reference(seq)
                t = time.perf_counter()
                flat = synthesize_flat(ref, sim.mask, method=args.method, sequence=seq, grow=2)
                sec = time.perf_counter() - t
                r = measure(sim, flat)
                tot.append(r["removed"])
                print(f"{seeing:6g} {seed:5d} {100 * r['removed']:7.1f}% "
                      + " ".join(f"{100 * r[k]:5.1f}%" if r[k] == r[k] else "     -" for k in KINDS)
                      + f" {100 * r['worst']:6.1f}% {r['err']:7.4f} {r['outside']:7d} {sec:5.1f}", flush=True)
            print(f"{seeing:6g}  mean {100 * np.mean(tot):6.1f}%  min {100 * np.min(tot):5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
