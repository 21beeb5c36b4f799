"""How long building the flat takes on a large video, and how much memory it needs.

A 1920x1200 x 200 frame 16-bit SER with physics-made dust (aiflat_gui.core.dustsim; its true mask
is used) is written once to a temporary folder. Then, each in a fresh child process (so that the
peak memory is the step's own), ``--runs`` times:
  read      one plain read of every frame (the baseline: what touching the video costs);
  flat      ``synthesize_flat`` as ``aiflat flat``/``run`` call it (method auto, grow 2) from the
            median reference (computed beforehand, not timed);
and the median wall time (in a fresh process: it includes importing the flat module, ~0.5 s, and
loading the mask and reference; "alone" is ``synthesize_flat``'s own wall time), the median CPU time, the largest peak RSS (VmHWM: it includes the pages of
the memory-mapped video that were read) and the largest peak anonymous memory (RssAnon sampled every
10 ms: what the step itself allocates) of each, and flat / read.
The CPU is shared with other work on small machines: quote medians and say how loaded it was
(the load average is printed).

    .venv/bin/python bench/flat_speed.py [--size 1920x1200] [--frames 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _status_kb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def child(kind: str, video: str, mask: str, ref: str) -> None:
    from aiflat_gui.io import open_sequence

    # peak anonymous memory (the heap: what the step allocates), sampled every 10 ms; the peak RSS
    # also counts the pages of the memory-mapped video that were read (the page cache, reclaimable)
    anon = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            anon[0] = max(anon[0], _status_kb("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    c = time.process_time()
    with open_sequence(video) as seq:
        if kind == "read":
            s = 0.0
            for i in range(seq.n_frames):
                s += float(np.asarray(seq.frame(i)).sum())
        else:
            from aiflat_gui.core.flat import synthesize_flat

            m = np.load(mask)
            r = np.load(ref)
            t_synth = time.perf_counter()
            synthesize_flat(r, m, method="auto", sequence=seq, grow=2)
    end = time.perf_counter()
    wall = end - t
    synth = end - t_synth if kind != "read" else wall
    cpu = time.process_time() - c
    stop.set()
    sampler.join()
    anon[0] = max(anon[0], _status_kb("RssAnon"))
    # VmHWM, not getrusage's ru_maxrss: a child started by fork + exec inherits its parent's peak
    # there (this script's parent holds the whole generated video: every figure read 1327 MB)
    rss = _status_kb("VmHWM") / 1024.0
    print(f"{wall:.3f} {cpu:.3f} {rss:.1f} {anon[0] / 1024.0:.1f} {synth:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1920x1200")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None, help="dustsim seed (default: the first tuning seed)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    from aiflat_gui.core.dustsim import TUNING_SEEDS, SimSpec, simulate
    from aiflat_gui.core.reference import compute_reference
    from aiflat_gui.io import ArraySequence, open_sequence, open_writer

    w, h = (int(v) for v in args.size.split("x"))
    seed = TUNING_SEEDS[0] if args.seed is None else args.seed
    with tempfile.TemporaryDirectory(prefix="flatspeed-") as tmp:
        t = time.perf_counter()
        sim = simulate(SimSpec(width=w, height=h, frames=args.frames, seed=seed, seeing_px=2.0, drift_px=0.4))
        video = Path(tmp) / "video.ser"
        template = ArraySequence(np.zeros((1, h, w), np.uint16))
        with open_writer(video, "ser", template, n_frames=args.frames) as wr:
            for f in sim.iter_frames():
                wr.write(f)
        np.save(Path(tmp) / "mask.npy", sim.mask)
        n_specks, n_dust = len(sim.specks), int(sim.mask.sum())
        del sim  # the children are started by fork + exec: no 1 GB parent to copy
        with open_sequence(video) as seq:
            np.save(Path(tmp) / "ref.npy", compute_reference(seq))
        print(f"{w}x{h} x {args.frames} frames 16-bit, {n_specks} specks, {n_dust} dust px "
              f"({time.perf_counter() - t:.0f} s to make); load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores")
        res: dict = {"read": [], "flat": []}
        for r in range(args.runs):
            for kind in ("read", "flat"):
                out = subprocess.run([sys.executable, __file__, "--child", kind, str(video), str(Path(tmp) / "mask.npy"),
                                      str(Path(tmp) / "ref.npy")], capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr)
                    return 1
                res[kind].append([float(v) for v in out.stdout.split()])
                print(f"  run {r + 1} {kind:5s} wall {res[kind][-1][0]:6.2f} s  cpu {res[kind][-1][1]:6.2f} s  "
                      f"(synthesize_flat alone {res[kind][-1][4]:5.2f} s)  "
                      f"peak RSS {res[kind][-1][2]:7.0f} MB  peak anon {res[kind][-1][3]:6.0f} MB  "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
        med = {k: np.median(np.array(v), axis=0) for k, v in res.items()}
        mx = {k: np.max(np.array(v)[:, 2:4], axis=0) for k, v in res.items()}
        for k in ("read", "flat"):
            print(f"{k:5s} median wall {med[k][0]:6.2f} s  cpu {med[k][1]:6.2f} s  (alone {med[k][4]:5.2f} s)  "
                  f"max peak RSS {mx[k][0]:6.0f} MB  "
                  f"max peak anon {mx[k][1]:6.0f} MB")
        print(f"flat / read: {med['flat'][0] / med['read'][0]:.1f}x wall; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
