"""Fuzz every reader and the mask/flat loaders with thousands of mutated files (issue 13).

Usage:
    .venv/bin/python bench/fuzz_readers.py                  # 6000 cases (about 670 per kind), seed 1
    .venv/bin/python bench/fuzz_readers.py --cases 600 --seed 5 --kinds ser,fits
    .venv/bin/python bench/fuzz_readers.py --cli 200        # also 200 `aiflat info` runs on mutated files

Each case runs in a child process under a 1 GB address-space limit (RLIMIT_AS) with a 30 s time limit
(tests/fuzz_harness.py). Prints per kind: cases, read fine, refused (one line, exit 2), errors
(other exceptions or bad refusals), MemoryErrors, crashes, hangs, slowest case; then the child's peak
resident memory. Exit status 1 when any case was not read fine or refused cleanly. The first few
findings are printed with the seed and case number that reproduce them.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fuzz_harness as fh  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(fh.KINDS))
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--cli", type=int, default=0, help="also run `aiflat info` on N mutated files")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    rnd = random.Random(args.seed)
    runner = fh.Runner(timeout=args.timeout)
    stats = {k: {"cases": 0, "ok": 0, "refused": 0, "error": 0, "memory": 0, "crash": 0, "hang": 0, "slowest": 0.0}
             for k in kinds}
    findings = []
    t0 = time.monotonic()
    try:
        for n in range(args.cases):
            kind = kinds[n % len(kinds)]
            data, ext = fh.make_case(rnd, kind)
            res = runner.run(kind, data, ext)
            s = stats[kind]
            s["cases"] += 1
            s[res["outcome"]] += 1
            s["slowest"] = max(s["slowest"], res.get("seconds", 0.0))
            if res["outcome"] not in ("ok", "refused"):
                findings.append((n, kind, res))
            if (n + 1) % 500 == 0:
                print(f"  {n + 1} cases, {len(findings)} findings, {time.monotonic() - t0:.0f} s", file=sys.stderr)
    finally:
        runner.close()
    total = {key: sum(s[key] for s in stats.values()) for key in ("cases", "ok", "refused", "error", "memory",
                                                                     "crash", "hang")}
    print(f"{'kind':8s} {'cases':>6s} {'ok':>6s} {'refused':>8s} {'error':>6s} {'memory':>7s} {'crash':>6s} "
          f"{'hang':>5s} {'slowest':>8s}")
    for k, s in stats.items():
        print(f"{k:8s} {s['cases']:6d} {s['ok']:6d} {s['refused']:8d} {s['error']:6d} {s['memory']:7d} "
              f"{s['crash']:6d} {s['hang']:5d} {s['slowest']:7.2f}s")
    print(f"{'all':8s} {total['cases']:6d} {total['ok']:6d} {total['refused']:8d} {total['error']:6d} "
          f"{total['memory']:7d} {total['crash']:6d} {total['hang']:5d}")
    print(f"child peak resident memory {runner.peak_rss_kb / 1024:.0f} MB (address-space limit "
          f"{fh.LIMIT_AS >> 20} MB); {time.monotonic() - t0:.0f} s in all")
    bad_cli = 0
    if args.cli:
        with tempfile.TemporaryDirectory() as d:
            ones = 0
            for n in range(args.cli):
                kind = ("ser", "avi", "fits", "fitseq", "tiff", "png", "jpeg")[n % 7]
                data, ext = fh.make_case(rnd, kind)
                code, err = fh.cli_refusal(data, ext, Path(d), timeout=args.timeout)
                good = code == 0 and not err or code == 0 and all(ln.startswith("aiflat: warning") for ln in err) \
                    or code == 2 and len(err) == 1 and err[0].startswith("aiflat: error: ")
                ones += code == 2 and good
                if not good:
                    bad_cli += 1
                    findings.append((n, f"cli-{kind}", {"exit": code, "stderr": err[:3]}))
            print(f"cli: {args.cli} runs of `aiflat info`, {ones} refused in one line with exit 2, {bad_cli} not clean")
    for n, kind, res in findings[:10]:
        print(f"finding: seed {args.seed} case {n} ({kind}): {res}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
