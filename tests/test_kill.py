"""A few random ``kill -9`` of aiflat while it writes (calibrate to TIFF, batch with two workers), then
one good run of each: no temporary file left, no worker outliving its parent, inputs unchanged.
bench/kill_test.py runs the full 40 kills over calibrate/run/batch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import kill_test  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and kill -9 as on Linux")


def test_kill_9_while_writing_leaves_nothing_behind(tmp_path):
    fig = kill_test.main(["--kills", "3", "--frames", "60", "--height", "240", "--width", "320", "--seed", "2",
                          "--kinds", "calibrate-tiff,batch", "--at-temp", "1.0", "--dir", str(tmp_path), "--quiet"])
    assert fig["kills"] >= 2, fig
    assert fig["during_temp"] >= 1, fig  # the kills landed while a temporary output existed
    assert fig["orphans"] == 0, fig["orphan_names"]
    assert fig["partials_after_good_runs"] == []
    assert fig["good_runs_ok"] and fig["inputs_unchanged"] and fig["outputs_open"], fig
