"""Open a large 16-bit SER and show frame 0: time and peak resident memory against the file size.

Usage:
    .venv/bin/python bench/open_large_ser.py                 # 4 GB temporary file in the system temp dir
    .venv/bin/python bench/open_large_ser.py --size-gb 1 --dir /var/tmp
    .venv/bin/python bench/open_large_ser.py --path capture.ser   # measure an existing file (kept)
    .venv/bin/python bench/open_large_ser.py --dense              # every frame real data (slower to create)

The generated file is a valid SER: header, a few real (smooth, noisy) frames at the start, the rest
sparse (ftruncate) so creating 4 GB takes a moment and little disk. Its pages are evicted from the
page cache (posix_fadvise DONTNEED) before measuring, so frame 0 comes from disk. Each measurement runs
in a fresh interpreter; the baseline is the same interpreter with the same imports but no file opened,
and a plain seek+read of frame 0's bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiflat_gui.io.ser import HEADER_SIZE, pack_header  # noqa: E402

PROBE = r"""
import json, os, sys, time
import numpy as np
import aiflat_gui.io.ser as ser
from aiflat_gui.io import open_sequence


def mem():
    # VmRSS (now) and VmHWM (peak) of this process; unlike ru_maxrss they are not inherited across exec
    d = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(d["VmRSS"].split()[0]) * 1024, int(d["VmHWM"].split()[0]) * 1024


mode, path = sys.argv[1], sys.argv[2]
rss0, _ = mem()
t0 = time.perf_counter()
if mode == "open":
    seq = open_sequence(path)
    f0 = np.array(seq.frame(0))          # what a viewer does: own a copy of frame 0
    lo, hi = int(f0.min()), int(f0.max())
    extra = {"frames": seq.n_frames, "shape": list(seq.frame_shape), "byte_order_reason": seq.byte_order_reason,
             "bit_depth": seq.bit_depth, "min": lo, "max": hi}
    rss_open, _ = mem()
    seq.close()
    extra["rss_while_open"] = rss_open
elif mode == "rawread":
    w, h = int(sys.argv[3]), int(sys.argv[4])
    with open(path, "rb") as f:
        f.seek(ser.HEADER_SIZE)
        f0 = np.frombuffer(f.read(w * h * 2), "<u2").reshape(h, w).copy()
    extra = {}
else:
    extra = {}
dt = time.perf_counter() - t0
_, peak = mem()
print(json.dumps({"seconds": dt, "peak_rss": peak, "rss_before": rss0, **extra}))
"""


def make_file(path: Path, size: int, width: int, height: int, real_frames: int, dense: bool = False) -> int:
    fs = width * height * 2
    n = (size - HEADER_SIZE) // fs
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:height, :width]
    disc = 1000 + 2500 * np.exp(-(((x - width / 2) ** 2 + (y - height / 2) ** 2) / (0.3 * width) ** 2))
    with open(path, "wb") as f:
        f.write(pack_header(width=width, height=height, depth=12, frame_count=n, observer="bench",
                            telescope="open_large_ser.py"))
        frames = [np.clip(disc + rng.normal(0, 15, disc.shape) + 3 * k, 0, 4095).astype("<u2").tobytes()
                  for k in range(min(real_frames, n))]
        for k in range(n if dense else len(frames)):
            f.write(frames[k % len(frames)])
        f.truncate(HEADER_SIZE + n * fs)
        f.flush()
        os.fsync(f.fileno())
    return n


def evict(path: Path) -> None:
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def probe(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=4.0)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1200)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--dense", action="store_true", help="write real data into every frame (not sparse)")
    ap.add_argument("--path", help="measure this existing 16-bit SER instead (not deleted)")
    args = ap.parse_args()

    made = None
    if args.path:
        path = Path(args.path)
    else:
        made = path = Path(args.dir) / f"aiflat_bench_{os.getpid()}.ser"
        import time
        t = time.perf_counter()
        n = make_file(path, int(args.size_gb * 1024**3), args.width, args.height, real_frames=8, dense=args.dense)
        print(f"created {path} ({n} frames of {args.width}x{args.height} uint16) in {time.perf_counter() - t:.2f} s")
    try:
        size = path.stat().st_size
        base = probe("none", str(path))
        evict(path)
        raw = probe("rawread", str(path), str(args.width), str(args.height))
        evict(path)
        res = probe("open", str(path))
        mb = 1024**2
        print(f"file size                     {size / mb:10.1f} MB")
        print(f"frames / frame shape          {res['frames']} / {res['shape']} (bit depth {res['bit_depth']}, "
              f"{res['byte_order_reason']})")
        print(f"baseline peak RSS (imports)   {base['peak_rss'] / mb:10.1f} MB")
        print(f"plain seek+read of frame 0    {raw['seconds'] * 1000:10.1f} ms, peak RSS {raw['peak_rss'] / mb:.1f} MB")
        print(f"open + frame 0 (SerSequence)  {res['seconds'] * 1000:10.1f} ms, peak RSS {res['peak_rss'] / mb:.1f} MB")
        print(f"ratio open time / plain read  {res['seconds'] / max(raw['seconds'], 1e-9):10.2f}")
        print(f"RSS before open / with frame 0 {res['rss_before'] / mb:9.1f} MB / {res['rss_while_open'] / mb:.1f} MB "
              f"(frame 0 is {res['shape'][0] * res['shape'][1] * 2 / mb:.1f} MB)")
        print(f"peak RSS above baseline       {(res['peak_rss'] - base['peak_rss']) / mb:10.1f} MB")
        print(f"ratio peak RSS / file size    {res['peak_rss'] / size:10.4f}")
        print(f"ratio peak RSS above baseline / file size {(res['peak_rss'] - base['peak_rss']) / size:.4f}")
    finally:
        if made is not None:
            made.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
