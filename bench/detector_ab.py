"""Find dust with this tree's detector and with the one of another git revision, interleaved in the
same run, on the 1920x1200 x 200-frame uint16 scene of bench/detector_speed.py: wall and CPU time
(all threads) of each, and whether the results are bit-identical (score, extent, darkening, the
mask at sensitivities 0.3, 0.5 and 0.8). On a shared 2-core machine the wall time follows the
other sessions' load; the CPU time and the same-run comparison do much less.

Run:  .venv/bin/python bench/detector_ab.py [--base REV] [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiflat_gui.core.detect as NEW  # noqa: E402
from aiflat_gui.core.demo import generate_demo  # noqa: E402
from detector_speed import CycledSequence  # noqa: E402


def load_base(rev: str, tmp: Path):
    """The detector module of revision ``rev`` (imported beside this tree's package)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:aiflat_gui/core/detect.py"],
                         capture_output=True, text=True, check=True).stdout
    path = tmp / "detect_base.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("aiflat_gui.core.detect_base", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="main", help="git revision of the other detector (default main)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(args.base, Path(tmp))
    demo = generate_demo(frames=16, width=1920, height=1200, seed=1, difficulty="normal")
    ref = np.median(demo.frames, axis=0).astype(np.float32)
    seq = CycledSequence(demo.frames, 200)
    runs: dict[str, list] = {"base": [], "this": []}
    out = {}
    load0 = os.getloadavg()[0]
    for r in range(args.repeat + 1):  # (the first round warms up and is not counted)
        for name, mod in (("base", base), ("this", NEW)):
            t, c = time.perf_counter(), time.process_time()
            sm = mod.compute_scores(ref, seq, max_frames=200)
            if r:
                runs[name].append((time.perf_counter() - t, time.process_time() - c))
            out[name] = sm
    for name, label in (("base", args.base), ("this", "this tree")):
        v = runs[name]
        print(f"{label:>10s}: find dust 1920x1200 x 200 frames {statistics.median(x[0] for x in v):.2f} s wall, "
              f"{statistics.median(x[1] for x in v):.2f} s CPU (medians of {len(v)}; wall "
              f"{', '.join(f'{x[0]:.2f}' for x in v)})")
    a, b = out["base"], out["this"]
    same = dict(score=np.array_equal(a.score, b.score), extent=np.array_equal(a.extent, b.extent),
                darkening=np.array_equal(a.darkening, b.darkening),
                masks=all(np.array_equal(a.mask(s), b.mask(s)) for s in (0.3, 0.5, 0.8)))
    ratio = statistics.median(x[0] for x in runs["this"]) / statistics.median(x[0] for x in runs["base"])
    print(f"ratio this/base (wall) {ratio:.2f}; bit-identical: "
          + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items())
          + f"; load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
