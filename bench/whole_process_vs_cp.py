"""What a user times: the whole `aiflat calibrate` process (start-up, imports, reading the flat,
calibrating, writing) against `cp` of the same SER, and Siril (siril-cli, if installed) calibrating
the same SER with the same flat (exported with `aiflat export-flat --target siril`).

Makes a 16-bit SER (1.6 GB, 1920x1200 by default) and a flat with 60 dust specks (as
calibrate_vs_cp.py does), warms the page cache with one untimed `cp`, then runs --repeat interleaved
rounds of

    cp big.ser copy.ser
    aiflat calibrate big.ser --flat flat.fits -o calibrated.ser --quiet
    siril-cli -s calibrate.ssf          # requires 1.0.0 / cd DIR / preprocess big -flat=flat_siril.fits -prefix=pp_

each timed as a whole process (wall clock, like `/usr/bin/time -f %e`), with `sync` and a 1 s pause
before every run, outputs deleted after each. Prints every time, the medians and the ratios of
medians measured in this run (the machine may be shared: only same-run ratios mean anything).

    .venv/bin/python bench/whole_process_vs_cp.py [--size-gb 1.6] [--repeat 5] [--dir /tmp] [--no-siril]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate_vs_cp import make_flat, make_ser  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=1.6)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1200)
    ap.add_argument("--no-siril", action="store_true")
    args = ap.parse_args()

    aiflat = Path(sys.executable).parent / "aiflat"
    aiflat_cmd = [str(aiflat)] if aiflat.exists() else [sys.executable, "-c",
                                                         "import sys; from aiflat_gui.cli import main; sys.exit(main())"]
    siril = None if args.no_siril else shutil.which("siril-cli")
    work = Path(tempfile.mkdtemp(prefix="aiflat-whole-", dir=args.dir))
    try:
        src, flat = work / "big.ser", work / "flat.fits"
        n = make_ser(src, args.size_gb, args.width, args.height)
        frac = make_flat(flat, args.width, args.height)
        size = src.stat().st_size
        subprocess.run([*aiflat_cmd, "export-flat", str(flat), "--target", "siril", "-o", str(work / "flat_siril.fits"),
                        "--quiet"], check=True)
        script = work / "calibrate.ssf"
        script.write_text(f"requires 1.0.0\ncd {work}\npreprocess big -flat=flat_siril.fits -prefix=pp_\n")
        print(f"input {size / 1e9:.2f} GB: {n} frames {args.width}x{args.height} uint16 SER; flat != 1.0 on "
              f"{frac * 100:.2f}% of pixels; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        subprocess.run(["cp", src, work / "warm.ser"], check=True)
        (work / "warm.ser").unlink()

        def timed(cmd, out: Path) -> float:
            os.sync()
            time.sleep(1.0)
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
            sec = time.perf_counter() - t
            assert out.exists(), f"{cmd[0]} wrote no {out.name}"
            out.unlink()
            return sec

        runs: dict[str, list[float]] = {"cp": [], "aiflat calibrate": [], "siril preprocess": []}
        for _ in range(args.repeat):
            runs["cp"].append(timed(["cp", str(src), str(work / "copy.ser")], work / "copy.ser"))
            runs["aiflat calibrate"].append(timed([*aiflat_cmd, "calibrate", str(src), "--flat", str(flat), "-o",
                                                   str(work / "calibrated.ser"), "--quiet"], work / "calibrated.ser"))
            if siril:
                runs["siril preprocess"].append(timed([siril, "-s", str(script)], work / "pp_big.ser"))
        med = {k: float(np.median(v)) for k, v in runs.items() if v}
        print(f"{args.repeat} interleaved rounds, whole processes, sync + 1 s pause before each; medians:")
        for k, v in runs.items():
            if v:
                print(f"  {k:17s} {med[k]:6.2f} s  {size / 1e6 / med[k]:6.0f} MB/s   (all: {', '.join(f'{x:.2f}' for x in v)})")
        print(f"aiflat calibrate speed / cp speed      {med['cp'] / med['aiflat calibrate']:.2f}x")
        if "siril preprocess" in med:
            print(f"siril preprocess time / aiflat time    {med['siril preprocess'] / med['aiflat calibrate']:.2f}x "
                  f"(Siril {subprocess.run([siril, '--version'], capture_output=True, text=True).stdout.strip()})")
        else:
            print("siril-cli not installed (or --no-siril): Siril not timed")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
