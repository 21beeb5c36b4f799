"""Fuzz every reader (SER, AVI, FITS, FITSEQ, TIFF, PNG, JPEG) and the mask/flat loaders with mutated
files, in a child process under a 1 GB address-space limit and a time limit (tests/fuzz_harness.py).
A bounded sample here (CI); ``bench/fuzz_readers.py`` runs thousands of cases.

Every case must be read fine or refused with one line and exit code 2: no other exception, no crash,
no hang, no MemoryError under the limit. The in-process SER property test (tracemalloc) is
tests/test_ser_fuzz.py; this one adds the other formats, the process-level failures and the CLI."""

from __future__ import annotations

import os
import sys

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
