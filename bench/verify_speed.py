"""Speed and memory of the verifier (issue 10: every speck of a 1920x1200 x 200-frame video with
~30 specks checked in a few seconds at most).

A dustsim scene (physics-made dust on a drifting, seeing-warped sun; frames rendered lazily, so the
video is never held in memory) with ~30 specks is verified with the defaults of ``aiflat flat``
(``VerifyParams()``: 48 evenly spaced frames, one crop per speck). Printed, median of ``--runs``:

  - verify: ``verify_mask`` wall and CPU time (tracemalloc on: a little slower) and its peak numpy
    allocation;
  - baseline: reading the same 48 frames from the same sequence and taking their luminance, the
    part no verifier can avoid, measured in the same run; and the ratio verify / baseline;
  - the frame bytes of the whole video, for scale.

Rendering the frames (dustsim) is not timed: they are rendered once and cached before timing.

Run:  .venv/bin/python bench/verify_speed.py [--runs 3] [--frames 200] [--size 1920x1200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiflat_gui.core.dustsim import TUNING_SEEDS, SimSpec, simulate  # noqa: E402
from aiflat_gui.core.verify import VerifyParams, _frame_indices, _luminance, verify_mask  # noqa: E402
from aiflat_gui.io.base import Sequence  # noqa: E402


class SimSequence(Sequence):
    """A dustsim video as a sequence; the frames the verifier reads are rendered once and kept."""

    format = "array"

    def __init__(self, sim, n_frames: int, keep: set):
        super().__init__()
        self.sim = sim
        self.path = Path("<dustsim>")
        self.n_frames = int(n_frames)
        self.height, self.width = sim.flat.shape
        self.dtype = sim.dtype
        self.bit_depth = 16
        self._cache = {i: sim.frame(i) for i in sorted(keep)}

    def _read_frame(self, i: int) -> np.ndarray:
        f = self._cache.get(i)
        return f if f is not None else self.sim.frame(i)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", default="1920x1200")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    spec = SimSpec(width=w, height=h, frames=args.frames, seed=TUNING_SEEDS[0], n_disc=2, n_donut=1, n_clump=1,
                   n_fibre=0, n_pores=10, seeing_px=1.0)
    sim = simulate(spec)
    params = VerifyParams()
    idx = _frame_indices(args.frames, params.max_frames)
    t0 = time.perf_counter()
    seq = SimSequence(sim, args.frames, set(int(i) for i in idx))
    print(f"rendered {len(idx)} of {args.frames} frames {w}x{h} in {time.perf_counter() - t0:.1f} s (not timed)")
    mask = sim.mask
    import cv2

    n_specks = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)[0] - 1
    print(f"mask: {n_specks} specks, {int(mask.sum())} px (the true dust of the scene)")

    base, ver_t, cpu_t, peaks = [], [], [], []
    result = None
    for _ in range(args.runs):
        t = time.perf_counter()
        for i in idx:
            _luminance(seq.frame(int(i)), None)
        base.append(time.perf_counter() - t)
        tracemalloc.start()
        t, c = time.perf_counter(), time.process_time()
        result = verify_mask(mask, seq, params)
        ver_t.append(time.perf_counter() - t)
        cpu_t.append(time.process_time() - c)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2 ** 20)
        tracemalloc.stop()
    b, v = statistics.median(base), statistics.median(ver_t)
    counts = {k: result.count(k) for k in ("dust", "not dust", "unverified")}
    print(f"baseline (read + luminance of the {len(idx)} frames): {b:.2f} s")
    print(f"verify: {v:.2f} s wall = {v / b:.1f}x baseline, {statistics.median(cpu_t):.2f} s CPU "
          f"(runs: {', '.join(f'{x:.2f}' for x in ver_t)}; on a shared machine wall time includes waiting)")
    print(f"verify peak numpy allocation: {max(peaks):.0f} MB; whole video {args.frames * w * h * 2 / 2 ** 20:.0f} MB")
    print(f"verdicts on the true dust: {counts}; target moved {result.motion:.1f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
