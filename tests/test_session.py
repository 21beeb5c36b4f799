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
    import aiflat_gui.session as session

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
    import aiflat_gui.session as session

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
