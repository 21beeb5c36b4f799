"""Sessions: sidecar beside the input, atomic, restored, fallback folder, never a key."""

import json
import os

import numpy as np
import pytest

from aiflat_gui.errors import InputError
from aiflat_gui.session import SessionData, SessionStore, fallback_dir


@pytest.fixture
def video(tmp_path):
    p = tmp_path / "video.ser"
    p.write_bytes(b"\0" * 1000)
    return p


def test_round_trip_beside_the_input(video):
    store = SessionStore(video)
    assert store.json_path == video.parent / "video.ser.aiflat.json"
    assert store.mask_path == video.parent / "video.ser.aiflat-mask.png"
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:14] = True
    data = SessionData(provider="gemini", sensitivity=0.7, flat_method="multiframe", grow=4, feather=2,
                       pedestal=12.5, stretch={"mode": "asinh", "black": 10, "white": 900}, view="flat",
                       output={"format": "fits"}, gemini={"model": "gemini-3-pro-image", "image_size": "2K"})
    store.save(data, mask)
    got, got_mask, warnings = SessionStore(video).load((20, 30))
    assert warnings == []
    assert got.provider == "gemini" and got.sensitivity == 0.7 and got.flat_method == "multiframe"
    assert (got.grow, got.feather, got.pedestal) == (4, 2, 12.5)
    assert got.stretch == {"mode": "asinh", "black": 10, "white": 900} and got.view == "flat"
    assert got.output == {"format": "fits"} and got.gemini["image_size"] == "2K"
    np.testing.assert_array_equal(got_mask, mask)
    # no temporary files left behind
    assert sorted(p.name for p in video.parent.iterdir()) == [
        "video.ser", "video.ser.aiflat-mask.png", "video.ser.aiflat.json"]


def test_never_contains_an_api_key(video):
    secret = "AIzaSyTHIS-IS-A-FAKE-KEY-1234567890"
    data = SessionData(gemini={"model": "m", "api_key": secret}, output={"token": secret, "format": "ser"})
    data.stretch = {"apiKey": secret}
    SessionStore(video).save(data, np.zeros((4, 4), bool))
    for f in video.parent.iterdir():
        assert secret.encode() not in f.read_bytes(), f.name
    got, _, _ = SessionStore(video).load()
    assert got.output == {"format": "ser"} and "api_key" not in got.gemini


def test_changed_input_and_wrong_size_mask_warn(video):
    store = SessionStore(video)
    store.save(SessionData(), np.ones((10, 10), bool))
    video.write_bytes(b"\0" * 2000)  # the user re-captured over the same name
    data, mask, warnings = store.load((12, 10))
    assert data is not None and mask is None
    assert any("input changed" in w for w in warnings)
    assert any("mask ignored" in w for w in warnings)


def test_no_session_and_damaged_session(video):
    store = SessionStore(video)
    assert store.load() == (None, None, [])
    store.json_path.write_text("{not json")
    with pytest.raises(InputError) as ei:
        store.load()
    assert str(store.json_path) in str(ei.value) and "\n" not in str(ei.value)


def test_read_only_folder_falls_back_to_user_data(tmp_path, monkeypatch, video):
    import aiflat_gui.io.sidecar as session

    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "data"))
    # we may run as root, for whom chmod 555 does not stop writes: simulate the read-only folder
    real = session._dir_writable
    monkeypatch.setattr(session, "_dir_writable", lambda d: False if d == video.parent else real(d))
    store = SessionStore(video)
    assert store.fallback and store.folder == fallback_dir(video)
    store.save(SessionData(sensitivity=0.3), np.ones((3, 3), bool))
    assert not (video.parent / "video.ser.aiflat.json").exists()
    assert SessionStore(video).load()[0].sensitivity == 0.3


def test_fallback_location_is_per_input(tmp_path, monkeypatch):
    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "data"))
    a, b = fallback_dir(tmp_path / "a.ser"), fallback_dir(tmp_path / "b.ser")
    assert a != b and a.parent == tmp_path / "data" / "sessions"
    store = SessionStore(tmp_path / "a.ser", location=a)
    store.save(SessionData(view="mask"))
    assert json.loads(store.json_path.read_text())["view"] == "mask"


def test_session_module_is_qt_free():
    import subprocess
    import sys

    code = ("import sys, aiflat_gui.session\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'superqt', 'shiboken6')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_sidecar_in_a_read_only_folder_is_still_read(tmp_path, monkeypatch, video):
    import aiflat_gui.io.sidecar as session

    mask = np.zeros((5, 6), bool)
    mask[1, 2] = True
    SessionStore(video).save(SessionData(grow=7), mask)  # written while the folder was writable
    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "data"))
    real = session._dir_writable
    monkeypatch.setattr(session, "_dir_writable", lambda d: False if d == video.parent else real(d))
    store = SessionStore(video)
    assert store.fallback and store.exists()
    data, got, _ = store.load((5, 6))
    assert data.grow == 7 and got[1, 2] and got.sum() == 1
    store.save(SessionData(grow=9), got)  # saving goes to the fallback, which is then read
    assert store.json_path.parent == fallback_dir(video)
    assert SessionStore(video).load()[0].grow == 9
    assert SessionStore(video, location=video.parent).load()[0].grow == 7  # the original untouched


def test_the_session_mask_goes_through_the_one_mask_codec(video, monkeypatch):
    """The sidecar mask is written and read by aiflat_gui.io.masks (no second decoder): what the
    codec encodes is what the session stores, a session mask loads back bit for bit, and the
    sidecar is an ordinary mask file that `aiflat flat --mask` reads the same."""
    import aiflat_gui.io.masks as masks
    from aiflat_gui.io.single import read_image

    calls = []
    real_read, real_save = masks.read_mask, masks.save_mask
    import aiflat_gui.io.sidecar as sidecar

    monkeypatch.setattr(sidecar, "read_mask", lambda *a, **k: calls.append("read") or real_read(*a, **k))
    monkeypatch.setattr(sidecar, "save_mask", lambda *a, **k: calls.append("save") or real_save(*a, **k))
    rng = np.random.default_rng(3)
    mask = rng.random((37, 53)) < 0.2
    store = SessionStore(video)
    store.save(SessionData(), mask)
    assert np.array_equal(read_image(store.mask_path), masks.encode_mask(mask))
    _, got, warnings = SessionStore(video).load((37, 53))
    assert calls == ["save", "read"] and warnings == []
    assert got.dtype == bool and np.array_equal(got, mask)
    assert np.array_equal(masks.load_mask(store.mask_path, (37, 53))[0], mask)
    # a colour sidecar painted elsewhere decodes as the codec says: dust in any colour channel
    assert np.array_equal(masks.decode_mask(np.dstack([masks.encode_mask(mask)] + [np.zeros_like(mask, np.uint8)] * 2)),
                          mask)


@pytest.mark.parametrize("damage", [b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"", b"GIF89a not a png at all"])
def test_a_damaged_session_mask_is_one_line_naming_the_sidecar(video, damage):
    store = SessionStore(video)
    store.save(SessionData(grow=5), np.ones((8, 9), bool))
    store.mask_path.write_bytes(damage)
    with pytest.raises(InputError) as ei:
        SessionStore(video).load((8, 9))
    msg = str(ei.value)
    assert "\n" not in msg and "session mask is damaged" in msg and str(store.mask_path) in msg, msg
