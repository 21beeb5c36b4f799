"""The verifier: every speck of any mask checked against the video's physics (dust stays still on
the sensor, the target moves under it). Simple drifting scenes made here; the over-marking and real
data acceptance cases are in tests/test_verify_acceptance.py."""

import numpy as np
import pytest

from aiflat_gui.core.mask import grow
from aiflat_gui.core.verify import (DUST, NOT_DUST, UNVERIFIED, VerifyParams, apply_verdicts, effective_verdict,
                                    verdicts_with_outlines, verify_mask)
from aiflat_gui.io import ArraySequence

H, W = 160, 200


def _texture(rng, h, w):
    import cv2

    t = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 2.0)
    return 1.0 + 0.06 * t / t.std()


def _disc(cx, cy, r, h=H, w=W):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.hypot(xx - cx, yy - cy) <= r


def _scene(frames=24, drift=(0.35, 0.2), seed=0, dust_depth=0.25, feature_depth=0.3):
    """A textured target with a dark 'feature' (a pore/umbra stand-in) drifting ``drift`` px per
    frame, and one static dust disc: frames, true dust mask, the feature's mask in the middle frame."""
    import cv2

    rng = np.random.default_rng(seed)
    pad = 40
    canvas = _texture(rng, H + 2 * pad, W + 2 * pad)
    canvas *= 1.0 - feature_depth * _disc(150 + pad, 50 + pad, 7, H + 2 * pad, W + 2 * pad)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.8)
    dust = _disc(60, 90, 6)
    flat = np.where(dust, 1.0 - dust_depth, 1.0).astype(np.float32)
    out = []
    mid = (frames - 1) / 2.0
    for i in range(frames):
        dx, dy = drift[0] * (i - mid), drift[1] * (i - mid)
        M = np.float32([[1, 0, pad - dx], [0, 1, pad - dy]])
        img = cv2.warpAffine(canvas, M, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        sig = 2000.0 * img * flat
        sig += rng.normal(0, 1, sig.shape) * np.sqrt(sig / 4.0 + 4.0)
        out.append(np.clip(np.rint(sig), 0, 65535).astype(np.uint16))
    return np.stack(out), dust, _disc(150, 50, 7)


def test_static_shadow_is_dust_and_moving_feature_is_not():
    frames, dust, feature = _scene()
    mask = dust | feature
    ver = verify_mask(mask, ArraySequence(frames))
    assert ver.note == "" and ver.motion > 5
    by = {tuple(c.anchor): c for c in ver.checks}
    assert len(by) == 2
    d = next(c for c in ver.checks if dust[c.anchor[1], c.anchor[0]])
    f = next(c for c in ver.checks if feature[c.anchor[1], c.anchor[0]])
    assert d.verdict == DUST and abs(d.depth - 0.25) < 0.03 and d.depth_err < 0.01, d
    assert f.verdict == NOT_DUST and abs(f.depth) < 0.02, f
    kept, refused = apply_verdicts(mask, ver)
    assert refused == [f]
    assert np.array_equal(kept, dust)
    assert np.array_equal(mask, dust | feature)  # the user's mask is untouched


def test_a_speck_the_detector_searched_for_needs_stronger_evidence():
    """A faint static shadow measured at ~3.9 sigma: one hypothesis (drawn by a person, proposed by
    the AI) is dust at 3 sigma; the best of the detector's hundreds of candidates needs 4.5."""
    frames, dust, _ = _scene(dust_depth=0.01)
    drawn = verify_mask(dust, ArraySequence(frames)).checks[0]
    assert drawn.verdict == DUST and 3.0 <= drawn.depth / drawn.depth_err < 4.5, drawn
    found = verify_mask(dust, ArraySequence(frames), searched=dust).checks[0]
    assert (found.depth, found.depth_err) == (drawn.depth, drawn.depth_err)
    assert found.verdict == UNVERIFIED and "detector's search" in found.reason and "4.5 sigma" in found.reason
    kept, refused = apply_verdicts(dust, verify_mask(dust, ArraySequence(frames), searched=dust))
    assert not kept.any() and len(refused) == 1
    # a speck is "searched" when most of its pixels are in the detector's mask
    half = dust & (np.arange(W)[None, :] < 60)
    assert verify_mask(dust, ArraySequence(frames), searched=half).checks[0].verdict == DUST
    # a clear shadow passes either way
    frames2, dust2, _ = _scene(dust_depth=0.03)
    assert verify_mask(dust2, ArraySequence(frames2), searched=dust2).checks[0].verdict == DUST
    with pytest.raises(Exception, match="detector's mask"):
        verify_mask(dust, ArraySequence(frames), searched=dust[:10])


def test_user_override_keeps_a_refused_speck_and_refuses_a_dust_speck():
    frames, dust, feature = _scene()
    mask = dust | feature
    ver = verify_mask(mask, ArraySequence(frames))
    d = next(c for c in ver.checks if c.verdict == DUST)
    f = next(c for c in ver.checks if c.verdict == NOT_DUST)
    overrides = {tuple(f.anchor): DUST, tuple(d.anchor): NOT_DUST}
    assert effective_verdict(f, overrides) == DUST
    kept, refused = apply_verdicts(mask, ver, overrides)
    assert np.array_equal(kept, feature) and refused == [d]


def test_single_image_is_unverified_and_nothing_is_refused():
    frames, dust, feature = _scene(frames=1)
    mask = dust | feature
    ver = verify_mask(mask, ArraySequence(frames))
    assert ver.note and "single image" in ver.note
    assert [c.verdict for c in ver.checks] == [UNVERIFIED, UNVERIFIED]
    assert all(c.depth is None for c in ver.checks)
    kept, refused = apply_verdicts(mask, ver)
    assert refused == [] and np.array_equal(kept, mask)
    ver2 = verify_mask(mask, None)  # no sequence at all: the same
    assert [c.verdict for c in ver2.checks] == [UNVERIFIED, UNVERIFIED]


def test_frames_that_never_moved_cannot_verify():
    frames, dust, feature = _scene(drift=(0.0, 0.0))
    mask = dust | feature
    ver = verify_mask(mask, ArraySequence(frames))
    assert "moved only" in ver.note
    assert all(c.verdict == UNVERIFIED for c in ver.checks)
    kept, refused = apply_verdicts(mask, ver)
    assert refused == [] and np.array_equal(kept, mask)


def test_unverified_specks_are_refused_in_a_moving_video_unless_kept():
    frames, dust, feature = _scene()
    mask = dust | feature
    ver = verify_mask(mask, ArraySequence(frames))
    f = next(c for c in ver.checks if c.verdict == NOT_DUST)
    f.verdict = UNVERIFIED
    kept, refused = apply_verdicts(mask, ver)
    assert refused == [f] and np.array_equal(kept, dust)
    kept, refused = apply_verdicts(mask, ver, keep_unverified=True)
    assert refused == [] and np.array_equal(kept, mask)


def test_verdicts_follow_the_specks_after_the_mask_is_edited_elsewhere():
    frames, dust, feature = _scene()
    mask = dust | feature
    ver = verify_mask(mask, ArraySequence(frames))
    edited = mask | _disc(20, 20, 3)  # a new stroke, never verified: kept
    kept, refused = apply_verdicts(edited, ver)
    assert np.array_equal(kept, dust | _disc(20, 20, 3))
    assert len(refused) == 1


def test_empty_mask_and_bad_shapes():
    frames, dust, feature = _scene(frames=4)
    ver = verify_mask(np.zeros((H, W), bool), ArraySequence(frames))
    assert ver.checks == []
    from aiflat_gui.errors import InputError

    with pytest.raises(InputError):
        verify_mask(np.zeros((H + 1, W), bool), ArraySequence(frames))


def test_progress_and_cancel():
    from aiflat_gui.errors import Cancelled

    frames, dust, feature = _scene(frames=8)
    seen = []
    verify_mask(dust | feature, ArraySequence(frames), progress=lambda f, m="": seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)

    def cancel(f, m=""):
        if f > 0.2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        verify_mask(dust | feature, ArraySequence(frames), progress=cancel)


def test_params_bound_the_frames_read():
    frames, dust, feature = _scene(frames=30)
    ver = verify_mask(dust, ArraySequence(frames), VerifyParams(max_frames=10))
    assert ver.frames == 10


# -- the command line -------------------------------------------------------------------------------

def _cli(capsys, *argv):
    from aiflat_gui.cli import main

    code = main([*map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_flat_refuses_the_moving_feature_and_says_why(tmp_path, capsys):
    from aiflat_gui.io.ser import write_ser
    from aiflat_gui.io.single import read_image, write_image

    frames, dust, feature = _scene()
    ser = write_ser(tmp_path / "v.ser", frames, bit_depth=16)
    write_image(tmp_path / "mask.png", ((dust | feature) * 255).astype(np.uint8))
    code, out, err = _cli(capsys, "-q", "flat", ser, "--mask", tmp_path / "mask.png", "-o", tmp_path / "f.fits",
                          "--grow", "0")
    assert code == 0, err
    refused = [line for line in err.splitlines() if "refused" in line]
    assert len(refused) == 1 and "(150, 50)" in refused[0] and "moves with the target" in refused[0], err
    flat = read_image(tmp_path / "f.fits")
    assert np.all(flat[~dust] == 1.0) and flat[dust].mean() < 0.85
    # --no-verify: the mask as given
    code, out, err = _cli(capsys, "-q", "flat", ser, "--mask", tmp_path / "mask.png", "-o", tmp_path / "g.fits",
                          "--grow", "0", "--no-verify")
    assert code == 0 and "refused" not in err
    assert np.any(read_image(tmp_path / "g.fits")[feature] != 1.0)
    # calibrate --mask and run say the same
    code, out, err = _cli(capsys, "-q", "calibrate", ser, "--mask", tmp_path / "mask.png", "-o", tmp_path / "c.ser")
    assert code == 0 and "refused" in err
    code, out, err = _cli(capsys, "run", ser, "--mask", tmp_path / "mask.png", "-o", tmp_path / "out")
    assert code == 0 and "refused" in err and "1 dust, 1 refused" in out, (out, err)
    assert np.array_equal(read_image(tmp_path / "out" / "mask.png") > 0, dust | feature)  # the mask as given


def test_cli_single_image_tells_the_user_nothing_was_verified(tmp_path, capsys):
    from aiflat_gui.io.single import read_image, write_image

    frames, dust, feature = _scene(frames=1)
    write_image(tmp_path / "frame.tif", frames[0])
    write_image(tmp_path / "mask.png", ((dust | feature) * 255).astype(np.uint8))
    code, out, err = _cli(capsys, "-q", "flat", tmp_path / "frame.tif", "--mask", tmp_path / "mask.png",
                          "-o", tmp_path / "f.fits", "--grow", "0")
    assert code == 0, err
    assert "2 specks unverified, none refused" in err and "single image" in err
    flat = read_image(tmp_path / "f.fits")
    assert flat[dust].mean() < 0.9 and flat[feature].mean() < 0.9  # nothing refused


def test_a_verified_speck_gets_its_rim_and_an_erased_part_stays_erased():
    """A static disc marked 1 px too tight: the flat gets the rim the video measures (outside the
    drawn mask, inside the dust); half of the speck erased after the verification stays out, rim
    and all (the shadow measured there is not a rim)."""
    import cv2

    frames, dust, feature = _scene()
    tight = cv2.erode(dust.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ver = verify_mask(tight, ArraySequence(frames))
    kept, refused, measured = verdicts_with_outlines(tight, ver)
    assert refused == [] and measured.any()
    assert (kept & ~tight).sum() > 10 and not (kept & ~dust).any()  # the rim, within the dust
    erased = tight.copy()
    erased[91:] = False  # the user erases the lower half (the disc's centre is at y = 90)
    kept2, _r, _m = verdicts_with_outlines(erased, ver)
    assert not kept2[92:].any(), int(kept2[92:].sum())
    assert (kept2 & ~erased).any() and not (kept2 & ~grow(erased, 2)).any()
