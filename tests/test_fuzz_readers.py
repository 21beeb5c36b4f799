"""Fuzz every reader (SER, AVI, FITS, FITSEQ, TIFF, PNG, JPEG) and the mask/flat loaders with mutated
files, in a child process under a 1 GB address-space limit and a time limit (tests/fuzz_harness.py).
A bounded sample here (CI); ``bench/fuzz_readers.py`` runs thousands of cases.

Every case must be read fine or refused with one line and exit code 2: no other exception, no crash,
no hang, no MemoryError under the limit. The in-process SER property test (tracemalloc) is
tests/test_ser_fuzz.py; this one adds the other formats, the process-level failures and the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
import fuzz_harness as fh  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc as on Linux")

#: examples per kind in CI (AIFLAT_FUZZ_EXAMPLES raises it)
EXAMPLES = int(os.environ.get("AIFLAT_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def runner():
    r = fh.Runner(timeout=30.0)
    yield r
    r.close()


@pytest.mark.parametrize("kind", fh.KINDS)
def test_reader_survives_mutated_files(runner, kind):
    seen = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def case(rnd):
        data, ext = fh.make_case(rnd, kind)
        res = runner.run(kind, data, ext)
        seen[res["outcome"]] = seen.get(res["outcome"], 0) + 1
        assert res["outcome"] in ("ok", "refused"), (kind, res, data[:64])

    case()
    assert sum(seen.values()) >= min(EXAMPLES, 10)


@pytest.mark.parametrize("kind", ["ser", "fits", "png", "tiff", "avi"])
def test_cli_refusals_are_one_line_exit_2(tmp_path, kind):
    import random

    rnd = random.Random(kind)
    for _ in range(2):
        data, ext = fh.make_case(rnd, kind)
        code, err = fh.cli_refusal(data, ext, tmp_path)
        assert code in (0, 2), (code, err)
        if code == 2:
            assert len(err) == 1 and err[0].startswith("aiflat: error: "), err
        else:
            assert not any("error" in line for line in err), err


def test_hangs_the_fuzzer_found(tmp_path):
    """bench/fuzz_readers.py (seed 1) found two hangs: a FITS header with NAXIS = 1e9 (a loop over
    the claimed axes) and a TIFF whose page chain loops (tifffile listed pages for ever)."""
    import numpy as np
    import tifffile

    head = b"".join(f"{k:<8}= {v:>20}".ljust(80).encode() for k, v in
                    (("SIMPLE", "T"), ("BITPIX", "16"), ("NAXIS", "1000000000"))) + b"END".ljust(80)
    (tmp_path / "naxis.fits").write_bytes(head.ljust(2880, b" ") + bytes(2880))
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 8, 8), np.uint16))
    raw = bytearray((tmp_path / "two.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "two.tif") as t:
        first, second = t.pages[0].offset, t.pages[1].offset
    n = int.from_bytes(raw[second:second + 2], "little")
    raw[second + 2 + 12 * n:second + 6 + 12 * n] = first.to_bytes(4, "little")  # page 2 -> page 1 again
    (tmp_path / "loop.tif").write_bytes(bytes(raw))
    for name, words in (("naxis.fits", "NAXIS"), ("loop.tif", "loop")):
        code, err = fh.cli_refusal((tmp_path / name).read_bytes(), Path(name).suffix, tmp_path, timeout=30)
        assert code == 2 and len(err) == 1 and words in err[0], err
