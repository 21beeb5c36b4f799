"""run_pipeline and batch_calibrate on demo data (the parallel batch runs real worker processes)."""

from pathlib import Path

import numpy as np
import pytest

from aiflat_gui.core.demo import generate_demo
from aiflat_gui.io.demo import write_demo
from aiflat_gui.core.mask import grow
from aiflat_gui.errors import Cancelled, InputError
from aiflat_gui.io import open_sequence
from aiflat_gui.io.ser import write_ser
from aiflat_gui.io.single import read_image, write_image
from aiflat_gui.pipeline import FlatParams, BatchSummary, batch_calibrate, expand_inputs, run_pipeline


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    paths = write_demo(d, frames=8, width=128, height=96, seed=4, difficulty="easy")
    return paths


def test_run_pipeline_with_a_mask(demo, tmp_path):
    seen = []
    res = run_pipeline(demo["sequence"], tmp_path / "out", mask_path=demo["mask"], flat=FlatParams(grow=2),
                       progress=lambda f, m: seen.append(f))
    out = tmp_path / "out"
    assert res["calibrated"] == out / "calibrated.ser" and res["frames"] == 8 and res["specks"] >= 1
    mask = read_image(out / "mask.png") > 0
    truth = read_image(demo["mask"]) > 0
    assert np.array_equal(mask, truth)
    flat = read_image(out / "flat.fits")
    assert np.all(flat[~grow(truth, 2)] == 1.0) and flat.min() < 0.95
    rep = read_image(out / "report.png")
    assert rep.ndim == 3 and rep.shape[1] > 5 * 128 and rep.std() > 10
    with open_sequence(demo["sequence"]) as a, open_sequence(out / "calibrated.ser") as b:
        outside = ~grow(truth, 2)
        for i in range(a.n_frames):
            assert np.array_equal(a.frame(i)[outside], b.frame(i)[outside])
        assert np.array_equal(a.timestamps, b.timestamps)
    assert seen[-1] == 1.0


def test_run_pipeline_verifies_the_detectors_specks_as_searched(demo, tmp_path, monkeypatch):
    """The offline detector's mask reaches the verifier as "searched" (core.verify's search_sigmas:
    its specks need stronger evidence); a mask file is one hypothesis per speck."""
    import aiflat_gui.pipeline as pl

    seen = []
    real = pl.verify_step

    def spy(mask, seq, *a, searched=None, **k):
        seen.append((np.asarray(mask, bool).copy(), searched))
        return real(mask, seq, *a, searched=searched, **k)

    monkeypatch.setattr(pl, "verify_step", spy)
    res = run_pipeline(demo["sequence"], tmp_path / "det")
    mask, searched = seen[-1]
    assert searched is not None and np.array_equal(searched, mask)
    assert np.array_equal(mask, read_image(res["mask"]) > 0)
    run_pipeline(demo["sequence"], tmp_path / "file", mask_path=demo["mask"])
    assert seen[-1][1] is None


def test_run_pipeline_other_format_and_ai_clean(demo, tmp_path):
    # the truth's clean signal from the generator itself (clean.fits is written with its axes swapped)
    clean = generate_demo(frames=8, width=128, height=96, seed=4, difficulty="easy").clean
    write_image(tmp_path / "clean.fits", np.median(clean, axis=0).astype(np.float32))
    res = run_pipeline(demo["sequence"], tmp_path / "o", mask_path=demo["mask"], fmt="fits", flat=FlatParams(method="ai"),
                       clean_path=tmp_path / "clean.fits")
    assert Path(res["calibrated"]).name == "calibrated.fits"
    truth = read_image(demo["flat"])
    flat = read_image(tmp_path / "o" / "flat.fits")
    m = truth < 1
    assert np.abs(flat - truth)[m].mean() < 0.02


def test_run_pipeline_errors(demo, tmp_path):
    with pytest.raises(InputError):
        run_pipeline(demo["sequence"], tmp_path / "missing" / "out", mask_path=demo["mask"])
    with pytest.raises(InputError):
        run_pipeline(demo["sequence"], tmp_path / "o", mask_path=demo["mask"], flat=FlatParams(method="ai"))


def test_batch_parallel_skips_wrong_size_and_summarises(demo, tmp_path):
    session = tmp_path / "session"
    session.mkdir()
    frames = open_sequence(demo["sequence"])[:]
    write_ser(session / "a.ser", frames)
    write_ser(session / "b.ser", frames[:3])
    write_ser(session / "small.ser", frames[:2, :48, :64])
    flat = np.ones((96, 128), np.float32)
    flat[10:20, 10:20] = 0.5
    write_image(tmp_path / "flat.fits", flat)
    seen = []
    summary = batch_calibrate([session], tmp_path / "flat.fits", tmp_path / "out", jobs=2,
                              progress=lambda f, m: seen.append(f))
    assert isinstance(summary, BatchSummary) and summary.ok
    status = {it.input.name: it.status for it in summary.items}
    assert status == {"a.ser": "ok", "b.ser": "ok", "small.ser": "skipped"}
    text = summary.text()
    assert "2 calibrated, 1 skipped, 0 failed" in text and "64x48" in text
    with open_sequence(tmp_path / "out" / "a_calibrated.ser") as s:
        f0 = s.frame(0)
        assert f0[0, 0] == frames[0, 0, 0] and s.n_frames == 8
        assert f0[15, 15] == min(4095, round(frames[0, 15, 15] / 0.5))
    assert seen[-1] == 1.0


def test_batch_cancel_and_failures(demo, tmp_path):
    flat = np.ones((96, 128), np.float32)
    write_image(tmp_path / "flat.fits", flat)
    (tmp_path / "junk.ser").write_bytes(b"not a ser file at all")

    def cancel(f, m):
        raise Cancelled()

    with pytest.raises(Cancelled):
        batch_calibrate([demo["sequence"]], tmp_path / "flat.fits", tmp_path / "out", jobs=1, progress=cancel)
    assert list((tmp_path / "out").iterdir()) == []
    summary = batch_calibrate([demo["sequence"], tmp_path / "junk.ser"], tmp_path / "flat.fits", tmp_path / "out2",
                              jobs=1)
    assert not summary.ok and [it.status for it in summary.items] == ["ok", "failed"]
    assert "junk.ser" in summary.text()
    with pytest.raises(InputError):
        expand_inputs([tmp_path / "nothing-here"])
