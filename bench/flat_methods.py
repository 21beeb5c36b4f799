"""Flat methods compared on `aiflat demo` data with the true mask.

For each difficulty and seed: the median reference, then each method's flat (grow 2), and
  err      mean |flat - true flat| over the true dust pixels (0.01 = 1 % of the light);
  removed  share of the dust's darkening removed by calibrating every frame, mean over dust pixels,
           judged against the demo's clean truth (100 % = perfect, > 100 % = over-corrected);
  outside  pixels outside the grown mask that differ from the input after calibration (must be 0).
Methods: auto (the default of `aiflat flat`/`run`: multiframe with >= 8 frames, else local), local,
multiframe, ai-perfect (the demo's own clean signal as the "AI" image: the method's
upper bound) and ai-shifted (that clean image with a brightness/gamma change and 2 % fake texture,
what an image model does; histogram matching undoes the global part).

    .venv/bin/python bench/flat_methods.py [--seeds 1 2 3] [--frames 32] [--size 320x240]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main() -> int:
    from aiflat_gui.core.calibrate import calibrate_array
    from aiflat_gui.core.demo import generate_demo
    from aiflat_gui.core.flat import synthesize_flat
    from aiflat_gui.core.mask import grow
    from aiflat_gui.core.reference import compute_reference
    from aiflat_gui.io import ArraySequence

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--difficulties", nargs="+", default=["easy", "normal", "hard"])
    ap.add_argument("--grow", type=int, default=2)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    methods = ("auto", "local", "multiframe", "ai-perfect", "ai-shifted")
    print(f"{'difficulty':10s} {'seed':>4s} {'method':12s} {'err':>7s} {'removed':>8s} {'outside':>7s} {'sec':>5s}")
    summary: dict = {}
    for diff in args.difficulties:
        for seed in args.seeds:
            demo = generate_demo(frames=args.frames, width=w, height=h, seed=seed, difficulty=diff)
            seq = ArraySequence(demo.frames, bit_depth=demo.params["bit_depth"])
            ref = compute_reference(seq)
            m = demo.true_mask
            g = grow(m, args.grow)
            clean = np.median(demo.clean, axis=0)
            rng = np.random.default_rng(seed)
            tex = 1 + 0.02 * rng.standard_normal(clean.shape)
            shifted = (0.8 * (clean / clean.max()) ** 0.9 * 60000 * tex).astype(np.float32)
            before = (demo.clean[:, m] - demo.frames[:, m].astype(np.float64)).mean()
            limits = (0.0, float(2 ** demo.params["bit_depth"] - 1))
            for method in methods:
                t = time.perf_counter()
                base = method.split("-")[0]
                c = clean if method == "ai-perfect" else shifted if method == "ai-shifted" else None
                flat = synthesize_flat(ref, m, method=base, sequence=seq, clean=c, grow=args.grow)
                sec = time.perf_counter() - t
                cal = calibrate_array(demo.frames, flat, limits=limits)
                err = float(np.abs(flat - demo.true_flat)[m].mean())
                removed = 1.0 - (demo.clean[:, m] - cal[:, m].astype(np.float64)).mean() / before
                outside = int((cal[:, ~g] != demo.frames[:, ~g]).sum())
                summary.setdefault((diff, method), []).append((err, removed))
                print(f"{diff:10s} {seed:4d} {method:12s} {err:7.4f} {removed * 100:7.1f}% {outside:7d} {sec:5.2f}")
    print("\nmean over seeds (err, removed, worst removed):")
    for (diff, method), vals in summary.items():
        e = np.mean([v[0] for v in vals])
        r = np.array([v[1] for v in vals])
        worst = r[np.argmax(np.abs(r - 1))]
        ok = "meets" if np.all((r >= 0.95) & (r <= 1.05)) else "MISSES"
        print(f"  {diff:8s} {method:12s} err {e:.4f}  removed {r.mean() * 100:6.1f}%  worst {worst * 100:6.1f}%  "
              f"range {r.min() * 100:5.1f}-{r.max() * 100:5.1f}%  {ok} 95-105 % on every seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
