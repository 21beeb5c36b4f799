"""Round trips on files written by other software (``<repo root>/../shared/real-data``; skipped when
absent): the Siril-written 16-bit SER copied byte for byte with an empty mask, the DIVX lunar AVI read
as ffmpeg decodes it, and what an empty mask or a lossy input tells the user before any work."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiflat_gui.cli import main
from aiflat_gui.io.masks import save_mask
from aiflat_gui.io import open_sequence

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-data"
SIRIL_SER = REAL / "siril-written-halpha-16bit.ser"
MOON = REAL / "moon-45frames.avi"


def _no_reference(monkeypatch):
    """Fail the test if a reference frame is computed."""
    import aiflat_gui.core.reference as reference

    def refuse(*_a, **_k):
        raise AssertionError("a reference was computed for an empty mask")

    monkeypatch.setattr(reference, "compute_reference", refuse)


@pytest.mark.skipif(not SIRIL_SER.exists(), reason="no ../shared/real-data")
def test_siril_written_ser_copied_byte_for_byte_with_an_empty_mask(tmp_path, monkeypatch, capsys):
    """Header (LittleEndian flag 0, as Siril writes), 24 frames and the timestamp trailer: identical."""
    with open_sequence(SIRIL_SER) as seq:
        h, w = seq.height, seq.width
    save_mask(tmp_path / "empty.png", np.zeros((h, w), bool))
    _no_reference(monkeypatch)
    out = tmp_path / "copy.ser"
    assert main(["calibrate", str(SIRIL_SER), "--mask", str(tmp_path / "empty.png"), "-o", str(out), "--quiet"]) == 0
    assert "mask is empty" in capsys.readouterr().err
    assert out.read_bytes() == SIRIL_SER.read_bytes()


@pytest.mark.skipif(not MOON.exists(), reason="no ../shared/real-data")
def test_lunar_divx_avi_is_read_as_ffmpeg_decodes_it(tmp_path):
    with open_sequence(MOON) as seq:
        assert (seq.n_frames, seq.width, seq.height, seq.channels) == (45, 1280, 960, 3)
        assert seq.metadata["fourcc"] == "DIVX"
        ours = np.stack([seq.frame(i) for i in (0, 22, 44)]).astype(np.int16)
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed")
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(MOON), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                       capture_output=True, timeout=300)
    assert r.returncode == 0
    ref = np.frombuffer(r.stdout, np.uint8).reshape(-1, 960, 1280, 3)
    assert len(ref) == 45
    theirs = ref[[0, 22, 44]].astype(np.int16)
    diff = np.abs(ours - theirs)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 2  # same frames, same order, right way up
    flipped = np.abs(ours - theirs[:, ::-1]).mean()
    assert flipped > 10 * max(diff.mean(), 0.1)


@pytest.mark.skipif(not MOON.exists(), reason="no ../shared/real-data")
def test_lossy_input_says_how_large_the_raw_output_will_be(tmp_path, monkeypatch, capsys):
    """A DIVX input of 0.8 MB becomes ~166 MB of uncompressed frames: said before writing; and an
    empty mask builds no reference (was a full median first: 8.8 s on a 101-frame AVI)."""
    save_mask(tmp_path / "empty.png", np.zeros((960, 1280), bool))
    _no_reference(monkeypatch)
    out = tmp_path / "moon.avi"
    assert main(["calibrate", str(MOON), "--mask", str(tmp_path / "empty.png"), "-o", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "DIVX-compressed (0.8 MB)" in err and "about 166 MB" in err, err
    with open_sequence(MOON) as a, open_sequence(out) as b:
        assert b.n_frames == a.n_frames
        assert np.array_equal(b.frame(10), a.frame(10))  # the decoded frames, unchanged


def test_a_full_size_empty_mask_png_is_not_a_damaged_header(tmp_path):
    """An all-black 1280x960 grey PNG compresses ~430:1 (2.8 kB): within zlib's limit for the samples
    it stores; the size check once counted 4 channels per pixel and refused it."""
    from aiflat_gui.io.masks import load_mask

    p = save_mask(tmp_path / "empty.png", np.zeros((960, 1280), bool))
    assert p.stat().st_size < 5000
    mask, _ = load_mask(p, (960, 1280))
    assert mask.shape == (960, 1280) and not mask.any()
