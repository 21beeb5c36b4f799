"""Fuzzing every reader (SER, AVI, FITS, TIFF, PNG/JPEG) and the mask/flat loaders in a child process
under an address-space limit and a time limit. Shared by tests/test_fuzz_readers.py (a bounded
sample, in CI) and bench/fuzz_readers.py (thousands of cases, locally).

A case is (kind, bytes): the bytes are a small valid file of that kind, mutated (bytes flipped,
header integers set to interesting values, truncated, spliced, extended), written under the kind's
extension and read the way aiflat reads it: ``open_sequence`` + describe + first/middle/last frame +
a row block for videos, ``load_mask`` for masks, ``load_flat`` for flats. The child reports each
case as one JSON line. Outcomes:

* ``ok`` -- read fine; ``refused`` -- an AiflatError whose message is one line and exit code 2;
* ``error`` -- any other exception (a bug), or a refusal that is not one line / exit 2;
* ``memory`` -- MemoryError under the address-space limit (a run over the limit);
* ``crash`` -- the child died (segfault, SIGBUS, abort); ``hang`` -- no answer within the time limit.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

LIMIT_AS = 1 << 30
KINDS = ("ser", "avi", "fits", "fitseq", "tiff", "png", "jpeg", "mask", "flat")
EXT = {"ser": ".ser", "avi": ".avi", "fits": ".fits", "fitseq": ".fits", "tiff": ".tif", "png": ".png",
       "jpeg": ".jpg"}
H, W = 24, 32  # frame size of the seeds, and of the video masks/flats are loaded for
INTERESTING = [0, 1, 2, 3, 7, 8, 16, 255, 256, 65535, 65536, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1,
               1_000_000_000, 0x7FFF, 0x8000, 100_000, 24, 32]


# -- seeds: small valid files ------------------------------------------------------------------------------

def _seed_files() -> dict[str, list[bytes]]:
    from aiflat_gui.io import open_writer
    from aiflat_gui.io.base import ArraySequence
    from aiflat_gui.io.ser import write_ser
    from aiflat_gui.io.single import write_image

    rng = np.random.default_rng(7)
    seeds: dict[str, list[bytes]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        mono16 = rng.integers(0, 4096, (4, H, W), dtype=np.uint16)
        rgb8 = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
        grey8 = rng.integers(0, 256, (4, H, W), dtype=np.uint8)
        write_ser(d / "a.ser", mono16, timestamps=621355968000000000 + np.arange(4) * 10 ** 7 + 10 ** 17)
        write_ser(d / "b.ser", rgb8, color="RGB")
        for name, data, fmt in (("a.avi", grey8, "avi"), ("b.avi", rgb8, "avi"), ("a.fits", mono16, "fits"),
                                ("a.tif", mono16, "tiff"), ("b.tif", rgb8, "tiff")):
            with open_writer(d / name, fmt, ArraySequence(data)) as w:
                for f in data:
                    w.write(f)
        from astropy.io import fits

        hdus = [fits.PrimaryHDU(mono16[0])] + [fits.ImageHDU(f) for f in mono16[1:]]
        fits.HDUList(hdus).writeto(d / "seq.fits")
        write_image(d / "img.fits", mono16[0].astype(np.float32))
        write_image(d / "a.png", grey8[0])
        write_image(d / "b.png", mono16[0])
        write_image(d / "c.png", rgb8[0])
        import cv2

        for k, img in enumerate((grey8[0], rgb8[0])):
            ok, buf = cv2.imencode(".jpg", img)
            (d / f"{k}.jpg").write_bytes(buf.tobytes())
        mask = np.zeros((H, W), np.uint8)
        mask[5:9, 10:15] = 255
        write_image(d / "m.png", mask)
        write_image(d / "m.tif", mask)
        flat = np.ones((H, W), np.float32)
        flat[5:9, 10:15] = 0.8
        write_image(d / "f.fits", flat)
        write_image(d / "f.tif", flat)
        r = lambda *names: [(d / n).read_bytes() for n in names]  # noqa: E731
        seeds.update(ser=r("a.ser", "b.ser"), avi=r("a.avi", "b.avi"), fits=r("a.fits", "img.fits"), fitseq=r("seq.fits"),
                     tiff=r("a.tif", "b.tif"), png=r("a.png", "b.png", "c.png"), jpeg=r("0.jpg", "1.jpg"),
                     mask=[(b, e) for b, e in zip(r("m.png", "m.tif"), (".png", ".tif"))],
                     flat=[(b, e) for b, e in zip(r("f.fits", "f.tif"), (".fits", ".tif"))])
    return seeds


_SEEDS: Optional[dict] = None


def seeds() -> dict:
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = _seed_files()
    return _SEEDS


# -- mutations --------------------------------------------------------------------------------------------

def mutate(rnd: random.Random, data: bytes) -> bytes:
    """1-4 random edits, biased to the header (the first 3 KB) where the claims live."""
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        if not b:
            b = bytearray(rnd.randbytes(rnd.randint(0, 64)))
            continue
        head = min(len(b), 3000)
        pos = rnd.randrange(head) if rnd.random() < 0.8 else rnd.randrange(len(b))
        op = rnd.randrange(8)
        if op == 0:  # flip bits
            b[pos] ^= 1 << rnd.randrange(8)
        elif op == 1:  # an interesting 16/32-bit integer, either byte order
            v = rnd.choice(INTERESTING)
            n = rnd.choice((2, 4))
            raw = (v % (1 << (8 * n))).to_bytes(n, rnd.choice(("little", "big")))
            b[pos:pos + n] = raw
        elif op == 2:  # truncate
            del b[rnd.randrange(len(b) + 1):]
        elif op == 3:  # random bytes
            b[pos:pos + rnd.randint(1, 16)] = rnd.randbytes(rnd.randint(1, 16))
        elif op == 4:  # an ASCII number into a FITS card value or anywhere
            s = str(rnd.choice(INTERESTING + [-1, -2 ** 31, 10 ** 12])).encode()
            b[pos:pos + len(s)] = s
        elif op == 5:  # duplicate a chunk (extends the file)
            a = rnd.randrange(len(b))
            b[pos:pos] = b[a:a + rnd.randint(1, 256)]
        elif op == 6:  # delete a chunk
            del b[pos:pos + rnd.randint(1, 64)]
        else:  # zero a run
            n = rnd.randint(1, 32)
            b[pos:pos + n] = bytes(min(n, len(b) - pos))
    return bytes(b)


def make_case(rnd: random.Random, kind: str) -> tuple[bytes, str]:
    """(bytes, extension) of one mutated file of ``kind``."""
    pool = seeds()[kind]
    seed = rnd.choice(pool)
    data, ext = seed if isinstance(seed, tuple) else (seed, EXT[kind])
    if rnd.random() < 0.03:  # pure garbage now and then
        return rnd.randbytes(rnd.randint(0, 400)), ext
    return mutate(rnd, data), ext


# -- the child: reads one case per stdin line, answers one JSON line ---------------------------------------------

def _run_case(kind: str, path: str) -> None:
    from aiflat_gui.pipeline import load_flat
    from aiflat_gui.io.masks import load_mask
    from aiflat_gui.io import open_sequence
    from aiflat_gui.io.base import ArraySequence

    if kind == "mask":
        m, _ = load_mask(path, (H, W))
        assert m.shape == (H, W) and m.dtype == bool
        return
    if kind == "flat":
        f = load_flat(path, ArraySequence(np.zeros((1, H, W), np.uint16)))
        assert f.shape == (H, W) and np.isfinite(f).all() and (f > 0).all()
        return
    with open_sequence(path) as s:
        d = s.describe()
        json.dumps(d)
        n = s.n_frames
        assert n >= 1 and s.height >= 1 and s.width >= 1, d
        for i in sorted({0, n // 2, n - 1}):
            a = np.asarray(s.frame(i))
            assert a.shape == s.frame_shape, (a.shape, s.frame_shape)
            float(a.astype(np.float64).sum())  # touch every sample
        s.frame_rows(n - 1, 0, min(2, s.height))


def child_main() -> None:
    import resource
    import signal

    limit = int(os.environ.get("AIFLAT_FUZZ_AS", LIMIT_AS))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    import cv2

    cv2.setNumThreads(1)
    from aiflat_gui.errors import AiflatError

    import warnings

    warnings.simplefilter("ignore")
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        res: dict = {"id": req["id"]}
        try:
            _run_case(req["kind"], req["path"])
            res["outcome"] = "ok"
        except AiflatError as err:
            text = str(err)
            good = err.exit_code == 2 and "\n" not in text and bool(text.strip())
            res.update(outcome="refused" if good else "error", msg=text[:300], exit=err.exit_code)
        except MemoryError:
            res.update(outcome="memory", msg="MemoryError")
        except BaseException as exc:  # noqa: BLE001 - every other exception is a finding
            import traceback

            res.update(outcome="error", msg=f"{type(exc).__name__}: {str(exc)[:200]}",
                       where=traceback.format_exc().splitlines()[-3][:200])
        out.write(json.dumps(res) + "\n")
        out.flush()


class Runner:
    """Feeds cases to a child process; restarts it after a crash or a hang."""

    def __init__(self, timeout: float = 30.0, limit: int = LIMIT_AS):
        self.timeout = timeout
        self.limit = limit
        self.dir = tempfile.TemporaryDirectory(prefix="aiflat-fuzz-")
        self.proc: Optional[subprocess.Popen] = None
        self.n = 0
        self.peak_rss_kb = 0

    def _start(self) -> None:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", AIFLAT_FUZZ_AS=str(self.limit),
                   PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent),
                                               str(Path(__file__).resolve().parents[1]),
                                               os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, "-c", "import fuzz_harness; fuzz_harness.child_main()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, text=True, bufsize=1)

    def _stop(self) -> None:
        if self.proc is not None:
            self._rss()
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def _rss(self) -> None:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            self.peak_rss_kb = max(self.peak_rss_kb, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError, ValueError, AttributeError):
            pass

    def run(self, kind: str, data: bytes, ext: str) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.n += 1
        path = Path(self.dir.name) / f"case{ext}"
        path.write_bytes(data)
        self.proc.stdin.write(json.dumps({"id": self.n, "kind": kind, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        t0 = time.monotonic()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self._stop()
            return {"outcome": "hang", "seconds": time.monotonic() - t0}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return {"outcome": "crash", "msg": f"child exit {code}"}
        res = json.loads(line)
        res["seconds"] = time.monotonic() - t0
        if self.n % 50 == 0:
            self._rss()
        return res

    def close(self) -> None:
        self._stop()
        self.dir.cleanup()


def cli_refusal(data: bytes, ext: str, folder: Path, timeout: float = 30.0) -> tuple[int, list[str]]:
    """``aiflat info`` on a case, under the same limits: (exit code, non-empty stderr lines). The
    command runs in a process of its own, forked from one that imported the libraries once
    (tests/cli_forkserver.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cli_forkserver

    p = folder / f"cli{ext}"
    p.write_bytes(data)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env.pop("AIFLAT_DEBUG", None)
    r = cli_forkserver.run(["info", str(p)], timeout=timeout, mem=LIMIT_AS, env=env)
    return r.returncode, [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
