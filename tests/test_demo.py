"""The synthetic demo generator: determinism, truth consistency, files, cache, CLI."""

import json
import os

import numpy as np
import pytest

from aiflat_gui.core.demo import GENERATOR_VERSION, generate_demo
from aiflat_gui.io.demo import ensure_demo, write_demo
from aiflat_gui.errors import InputError

SMALL = dict(frames=6, width=200, height=150)


@pytest.fixture(scope="module")
def demo():
    return generate_demo(frames=12, width=320, height=240, seed=7)


def test_deterministic_for_a_seed():
    a = generate_demo(seed=3, **SMALL)
    b = generate_demo(seed=3, **SMALL)
    c = generate_demo(seed=4, **SMALL)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.clean, b.clean)
    assert np.array_equal(a.true_flat, b.true_flat) and a.specks == b.specks
    assert not np.array_equal(a.frames, c.frames)


def test_types_shapes_and_12_bit_values(demo):
    n, h, w = demo.frames.shape
    assert (n, h, w) == (12, 240, 320)
    assert demo.frames.dtype == np.uint16 and demo.clean.dtype == np.float32
    assert demo.true_flat.dtype == np.float32 and demo.true_flat.shape == (h, w)
    assert demo.true_mask.dtype == bool
    assert 1000 < int(demo.frames.max()) < 4096
    assert demo.params["bit_depth"] == 12
    assert demo.shifts.shape == (n, 2)
    ts = demo.timestamps
    assert ts.dtype == np.int64 and np.all(np.diff(ts) > 0)


def test_flat_is_exactly_one_outside_the_mask(demo):
    assert np.all(demo.true_flat[~demo.true_mask] == 1.0)
    assert np.all(demo.true_flat[demo.true_mask] < 1.0)
    assert demo.true_flat.min() > 0.5
    assert demo.true_mask.sum() > 0


def test_specks_match_the_flat(demo):
    assert len(demo.specks) >= 2
    dark = 1.0 - demo.true_flat
    for sp in demo.specks:
        assert sp["kind"] in ("disc", "donut", "fibre")
        assert 0.019 <= sp["depth"] <= 0.31
        x0, y0, x1, y1 = sp["bbox"]
        assert dark[y0:y1, x0:x1].max() == pytest.approx(sp["depth"], abs=2e-4)
        cx, cy = sp["centroid"]
        assert x0 <= cx < x1 and y0 <= cy < y1
        assert ("length" in sp) if sp["kind"] == "fibre" else ("radius" in sp)
    # specks do not overlap: each bbox holds one speck's darkening
    boxes = [sp["bbox"] for sp in demo.specks]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_donut_is_lighter_in_the_centre():
    d = generate_demo(frames=2, width=640, height=480, seed=11, difficulty="easy")
    donuts = [sp for sp in d.specks if sp["kind"] == "donut"]
    assert donuts
    for sp in donuts:
        cx, cy = (int(round(v)) for v in sp["centroid"])
        centre_dark = 1.0 - d.true_flat[cy, cx]
        assert centre_dark < 0.7 * sp["depth"]


def test_frames_are_clean_times_flat_within_noise(demo):
    ratio = demo.frames.astype(np.float64).mean(axis=0) / demo.clean.astype(np.float64).mean(axis=0)
    on = demo.clean.mean(axis=0) > 500  # on the disc
    err = np.abs(ratio - demo.true_flat)[on]
    assert err.mean() < 0.004
    # inside the dust the data is darker than the clean truth by the flat
    m = demo.true_mask & on
    assert np.corrcoef(ratio[m], demo.true_flat[m])[0, 1] > 0.9


def test_pedestal_is_added_after_the_dust():
    off = 300
    a = generate_demo(seed=2, offset=0, **SMALL)
    b = generate_demo(seed=2, offset=off, **SMALL)
    assert b.offset == off
    assert np.allclose(b.clean, a.clean + off)
    assert np.array_equal(a.true_flat, b.true_flat)
    sig = (b.frames.astype(np.float64) - off).mean(axis=0)
    clean_sig = (b.clean.astype(np.float64) - off).mean(axis=0)
    m = b.true_mask & (clean_sig > 500)
    if m.any():  # dust attenuates the signal, not the offset
        assert np.abs(sig[m] / clean_sig[m] - b.true_flat[m]).mean() < 0.01


def test_difficulties_differ():
    easy = generate_demo(frames=2, width=640, height=480, seed=1, difficulty="easy")
    hard = generate_demo(frames=2, width=640, height=480, seed=1, difficulty="hard")
    assert min(sp["depth"] for sp in easy.specks) >= 0.09
    faint = [sp for sp in hard.specks if sp["depth"] <= 0.05]
    assert len(faint) >= len(hard.specks) // 3
    assert len(hard.specks) > len(easy.specks)
    kinds = {d["kind"] for d in hard.distractors}
    assert {"sunspot", "pore", "filament"} <= kinds
    assert sum(d["kind"] == "pore" for d in hard.distractors) > sum(d["kind"] == "pore" for d in easy.distractors)
    assert hard.params["limb"] and not easy.params["limb"]


def test_sun_drifts_and_dust_does_not(demo):
    # the sun moves between the first and the last frame, the flat is the same for all frames
    assert np.abs(demo.shifts[-1]).max() > 1.0
    a = demo.clean[0].astype(np.float64)
    b = demo.clean[-1].astype(np.float64)
    assert np.abs(a - b).mean() > 10


def test_bad_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        generate_demo(difficulty="insane")
    with pytest.raises(InputError):
        generate_demo(frames=0)
    with pytest.raises(InputError):
        generate_demo(width=10, height=10)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError) as exc:
        write_demo(f, **SMALL)
    assert str(f) in str(exc.value) and "\n" not in str(exc.value)


def test_write_demo_files_read_back(tmp_path):
    from aiflat_gui.io import open_sequence
    from aiflat_gui.io.single import read_image

    out = tmp_path / "demo"
    paths = write_demo(out, seed=5, offset=100, **SMALL)
    assert set(paths) == {"sequence", "flat", "mask", "clean", "truth"}
    d = generate_demo(seed=5, offset=100, **SMALL)
    with open_sequence(paths["sequence"]) as seq:
        assert (seq.n_frames, seq.height, seq.width, seq.color) == (6, 150, 200, "mono")
        assert np.array_equal(seq[0:6], d.frames)
        assert seq.timestamps is not None and np.array_equal(seq.timestamps, d.timestamps)
    assert np.array_equal(read_image(paths["flat"]), d.true_flat)
    assert np.array_equal(read_image(paths["mask"]) == 255, d.true_mask)
    from astropy.io import fits

    with fits.open(paths["clean"]) as hdul:
        cube = np.asarray(hdul[0].data)
        assert cube.shape == d.clean.shape and np.abs(cube.astype(np.float64) - d.clean).max() <= 0.5
        assert hdul[0].header["PEDESTAL"] == 100
    truth = json.loads(paths["truth"].read_text())
    assert truth["offset"] == 100 and len(truth["specks"]) == len(d.specks)
    assert truth["params"]["generator_version"] == GENERATOR_VERSION
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_ensure_demo_caches_and_regenerates(tmp_path, monkeypatch):
    import aiflat_gui.io.demo as demo_mod

    monkeypatch.setattr(demo_mod, "DEFAULT_DEMO", dict(frames=3, width=128, height=96, seed=1, offset=0,
                                                       difficulty="normal"))
    ser = ensure_demo(tmp_path / "cache")
    assert ser.is_file() and ser.name == "demo.ser"
    mtime = ser.stat().st_mtime_ns
    assert ensure_demo(tmp_path / "cache") == ser
    assert ser.stat().st_mtime_ns == mtime  # cached, not regenerated
    monkeypatch.setattr(demo_mod, "GENERATOR_VERSION", GENERATOR_VERSION + 1)
    os.utime(ser, ns=(mtime - 10**9, mtime - 10**9))
    ensure_demo(tmp_path / "cache")
    assert ser.stat().st_mtime_ns != mtime - 10**9  # a new generator version rewrites it
    ser.unlink()
    assert ensure_demo(tmp_path / "cache").is_file()  # missing: regenerated


def test_ensure_demo_default_location(tmp_path, monkeypatch):
    import aiflat_gui.io.demo as demo_mod

    monkeypatch.setattr(demo_mod, "DEFAULT_DEMO", dict(frames=2, width=96, height=64, seed=1, offset=0,
                                                       difficulty="easy"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ser = ensure_demo()
    assert ser.is_file() and str(tmp_path / "xdg") in str(ser) and ser.parent.name == "demo"


def test_cli_demo(tmp_path, capsys):
    from aiflat_gui.cli import main

    rc = main(["demo", str(tmp_path / "d"), "--frames", "3", "--width", "128", "--height", "96",
               "--seed", "2", "--offset", "50", "--difficulty", "hard"])
    assert rc == 0
    for name in ("demo.ser", "truth_flat.fits", "truth_mask.png", "clean.fits", "truth.json"):
        assert (tmp_path / "d" / name).is_file()
    truth = json.loads((tmp_path / "d" / "truth.json").read_text())
    assert truth["params"]["difficulty"] == "hard" and truth["offset"] == 50


def test_limb_side_can_be_chosen():
    from aiflat_gui.core.demo import LIMB_SIDES

    for side in LIMB_SIDES:
        d = generate_demo(frames=1, width=96, height=80, seed=1, limb=side)
        assert d.params["limb"] and d.params["limb_side"] == side
        img = d.frames[0].astype(np.float32)
        edge = {"left": img[:, :3], "right": img[:, -3:], "top": img[:3], "bottom": img[-3:]}[side]
        assert edge.mean() < 0.2 * np.percentile(img, 90)  # the sky lies on that side
    assert generate_demo(frames=1, width=96, height=80, limb=False).params["limb_side"] is None
    with pytest.raises(InputError):
        generate_demo(frames=1, width=96, height=80, limb="north")
