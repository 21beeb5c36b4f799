"""The app shell: --screenshot, bad input, menus, About, dock layout, recent files, drag-and-drop,
settings (the API key never reaches QSettings), export dialog (overwrite protection)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

import aiflat_gui
from aiflat_gui.io.demo import write_demo

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("appdemo")
    return write_demo(d, frames=12, width=160, height=120, seed=1, difficulty="easy")["sequence"]


@pytest.fixture
def settings(tmp_path):
    return QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)


class _Seen(list):
    answer = QtWidgets.QMessageBox.No


@pytest.fixture
def boxes(monkeypatch):
    seen = _Seen()

    def fake(kind, ret=None):
        def f(parent, title, text, *a, **k):
            seen.append((kind, title, text))
            return ret
        return f

    for kind in ("warning", "critical", "information", "about"):
        monkeypatch.setattr(QtWidgets.QMessageBox, kind, fake(kind))
    monkeypatch.setattr(QtWidgets.QMessageBox, "question",
                        lambda *a, **k: (seen.append(("question", a[1], a[2])), seen.answer)[1])  # type: ignore
    return seen


@pytest.fixture
def window(qtbot, settings, tmp_path, monkeypatch, boxes):
    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "userdata"))
    from aiflat_gui.gui.main_window import MainWindow

    w = MainWindow(settings=settings, auto_reference=False)
    qtbot.addWidget(w)
    w.show()
    return w


def _env():
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def test_screenshot_renders_the_worked_window(demo, tmp_path):
    out = tmp_path / "shot.png"
    home = tmp_path / "home"
    home.mkdir()
    env = _env()
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local"),
               AIFLAT_DATA_DIR=str(home / "data"))
    r = subprocess.run([sys.executable, "-m", "aiflat_gui.gui.app", str(demo), "--screenshot", str(out),
                        "--size", "960x640"], capture_output=True, text=True, timeout=150, env=env)
    assert r.returncode == 0, r.stderr
    import cv2

    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape[:2] == (640, 960)
    assert img[..., :3].std() > 5  # not a blank grab
    # the red overlay is visible somewhere (the mask overlay is shown on the calibrated preview)
    b, g, r_ = (img[..., i].astype(int) for i in range(3))
    assert ((r_ > 150) & (g < 120) & (b < 120)).any()
    assert "Traceback" not in r.stderr
    # no temporary leftovers beside the screenshot
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".shot")] == []


def test_screenshot_of_a_bad_input_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "broken.ser"
    bad.write_bytes(b"LUCAM-RECORDER but far too short")
    out = tmp_path / "shot.png"
    r = subprocess.run([sys.executable, "-m", "aiflat_gui.gui.app", str(bad), "--screenshot", str(out)],
                       capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("aiflat-gui:")]
    assert len(lines) == 1 and "broken.ser" in lines[0]
    assert "Traceback" not in r.stderr and not out.exists()


def test_menus_about_and_version(window, boxes):
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert titles == ["File", "Edit", "View", "Help"]
    assert window.act_undo.shortcut().toString() == "Ctrl+Z"
    assert window.act_redo.shortcut().toString() == "Ctrl+Shift+Z"
    window.act_about.trigger()
    assert boxes[-1][0] == "about" and aiflat_gui.__version__ in boxes[-1][2]


def test_dock_layout_is_remembered(qtbot, settings, tmp_path, monkeypatch, boxes):
    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "userdata"))
    from aiflat_gui.gui.main_window import MainWindow

    w = MainWindow(settings=settings, auto_reference=False)
    qtbot.addWidget(w)
    w.show()
    w.speck_dock.hide()
    w.removeDockWidget(w.log_dock)
    w.addDockWidget(QtCore.Qt.RightDockWidgetArea, w.log_dock)
    w.log_dock.show()
    w.close()
    w2 = MainWindow(settings=settings, auto_reference=False)
    qtbot.addWidget(w2)
    w2.show()
    assert not w2.speck_dock.isVisible()
    assert w2.dockWidgetArea(w2.log_dock) == QtCore.Qt.RightDockWidgetArea


def test_recent_files_and_drag_and_drop(window, demo, tmp_path):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(demo))])
    ev = QtGui.QDropEvent(QtCore.QPointF(10, 10), QtCore.Qt.CopyAction, mime, QtCore.Qt.LeftButton,
                          QtCore.Qt.NoModifier)
    window.dropEvent(ev)
    assert window.path == Path(demo)
    assert window.recent_files()[0] == str(Path(demo).resolve())
    assert [a.text() for a in window.recent_menu.actions()][0] == str(Path(demo).resolve())
    window.close()


def test_settings_keep_the_key_out_of_qsettings(qtbot, settings, tmp_path, monkeypatch):
    import aiflat_gui.ai.keys as keys
    import aiflat_gui.gui.settings_dialog as sd

    import aiflat_gui.ai.gemini  # noqa: F401 - imported before patching: it binds keys' functions by name

    monkeypatch.setattr(keys, "_keyring", lambda: None)  # no OS keyring on this "system"
    for var in keys.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    sd.set_session_api_key(None)
    dlg = sd.SettingsDialog(settings=settings)
    qtbot.addWidget(dlg)
    assert "session only" in dlg.key_status.text()
    dlg.model.setCurrentText("gemini-2.5-flash-image")
    dlg.image_size.setCurrentText("2K")
    dlg.timeout.setValue(45)
    dlg.prompt.setPlainText("Find the dust, draw it white.")
    secret = "AIzaFAKEKEY-0123456789-abcdef"
    dlg.api_key.setText(secret)
    dlg.accept()
    assert "session only" in dlg.key_message
    assert sd.session_api_key() == secret
    settings.sync()
    assert secret not in Path(settings.fileName()).read_text()
    opts = sd.gemini_options(settings)
    assert opts["model"] == "gemini-2.5-flash-image" and opts["image_size"] == "2K" and opts["timeout"] == 45
    assert opts["prompt"] == "Find the dust, draw it white." and opts["api_key"] == secret

    # with a keyring the key goes there, not to the session
    stored = {}
    monkeypatch.setattr(keys, "keyring_available", lambda: True)
    monkeypatch.setattr(keys, "set_api_key", lambda k: stored.setdefault("key", k) is not None)
    sd.set_session_api_key("left-over")
    assert "keyring" in sd.store_api_key("another-fake-key")
    assert stored["key"] == "another-fake-key" and sd.session_api_key() is None
    assert "another-fake-key" not in Path(settings.fileName()).read_text()
    sd.set_session_api_key(None)


def test_export_dialog_overwrite_protection(qtbot, demo, tmp_path, boxes):
    from aiflat_gui.gui.export_dialog import ExportDialog

    dlg = ExportDialog(demo, out_dir=str(tmp_path))
    qtbot.addWidget(dlg)
    got = []
    dlg.exportRequested.connect(lambda kind, opts: got.append((kind, opts)))
    # never the input
    dlg.cal_path.setText(str(demo))
    dlg.cal_button.click()
    assert not got and boxes[-1][0] == "warning" and "input" in boxes[-1][2]
    # an existing file: asks; "No" keeps it
    existing = tmp_path / "exists.ser"
    existing.write_bytes(b"x")
    dlg.cal_path.setText(str(existing))
    boxes.answer = QtWidgets.QMessageBox.No
    dlg.cal_button.click()
    assert not got and boxes[-1][0] == "question"
    boxes.answer = QtWidgets.QMessageBox.Yes
    dlg.cal_button.click()
    assert got[-1] == ("calibrate", {"path": str(existing), "fmt": "ser", "overwrite": True})
    # format changes the extension; flat target; batch of a folder
    dlg.format.setCurrentText("fits")
    assert dlg.cal_path.text().endswith(".fits")
    dlg.target.setCurrentIndex(dlg.target.findData("siril"))
    dlg.flat_button.click()
    assert got[-1][0] == "flat" and got[-1][1]["target"] == "siril"
    dlg.add_batch_inputs([str(Path(demo).parent)])
    assert str(demo) in dlg.batch_inputs()
    dlg.batch_dir.setText(str(tmp_path / "batch_out"))
    dlg.batch_button.click()
    assert got[-1][0] == "batch" and str(demo) in got[-1][1]["inputs"]


def test_gemini_dialog_shows_model_size_and_cost(qtbot):
    from aiflat_gui.gui.gemini_dialog import GeminiAskDialog, reply_text

    desc = {"model": "gemini-3-pro-image", "image_size": "2K", "output_size": [2752, 1536], "tiles": 1,
            "estimated_cost_usd": 0.134}
    dlg = GeminiAskDialog(desc, has_key=False)
    qtbot.addWidget(dlg)
    text = dlg.summary()
    assert "gemini-3-pro-image" in text and "2752 × 1536" in text and "$0.13" in text
    assert not dlg.send_button.isEnabled()
    assert "The model says: no dust here" in reply_text({"text": "no dust here", "seconds": 12.0})
    assert "cache" in reply_text({"cache_hit": True})


def test_main_opens_the_path_given_on_the_command_line(qtbot, demo, settings, monkeypatch, tmp_path, boxes):
    import aiflat_gui.gui.app as app_mod
    import aiflat_gui.gui.main_window as mw

    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "userdata"))
    made = []

    class Window(mw.MainWindow):
        def __init__(self, **kw):
            kw.setdefault("settings", settings)
            super().__init__(**kw)
            made.append(self)

    def fake_exec(*_):
        w = made[0]
        qtbot.waitUntil(lambda: w.seq is not None, timeout=20000)
        w.wait_idle(60)  # the reference starts by itself
        w.close()
        return 0

    monkeypatch.setattr(mw, "MainWindow", Window)
    monkeypatch.setattr(QtWidgets.QApplication, "exec", fake_exec)
    assert app_mod.main([str(demo)]) == 0
    w = made[0]
    assert w.path == Path(demo) and w.reference is not None and w.workflow.state("reference") == "done"
    assert not boxes


def test_an_exception_in_a_slot_becomes_one_line_and_a_log_entry(window, boxes, monkeypatch, caplog):
    import aiflat_gui.gui.app as app_mod

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    app_mod.install_excepthook(window)
    try:
        raise ZeroDivisionError("division by zero\nmore")
    except ZeroDivisionError:
        sys.excepthook(*sys.exc_info())
    kind, _, text = boxes[-1]
    assert kind == "critical" and "ZeroDivisionError: division by zero" in text and "Traceback" not in text
    assert "Traceback" in caplog.text


def test_flush_to_disk_setting_makes_calibration_outputs_durable(qtbot, settings, tmp_path, monkeypatch):
    import numpy as np

    import aiflat_gui.gui.settings_dialog as sd
    from aiflat_gui.pipeline import calibrate_sequence
    from aiflat_gui.io import open_sequence
    from aiflat_gui.io.base import durable_default
    from aiflat_gui.io.ser import write_ser

    monkeypatch.setattr(sd, "_fsync_from_environment", None)
    sd.apply_output_settings(settings)
    assert not durable_default()  # off by default
    dlg = sd.SettingsDialog(settings=settings)
    qtbot.addWidget(dlg)
    assert not dlg.fsync.isChecked()
    dlg.fsync.setChecked(True)
    dlg.accept()
    assert durable_default() and sd.get_setting("output/fsync", settings) is True
    src = write_ser(tmp_path / "in.ser", np.zeros((3, 10, 12), np.uint16))
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    with open_sequence(src) as seq:
        calibrate_sequence(seq, np.full((10, 12), 0.5, np.float32), tmp_path / "out.ser")
    assert synced
    dlg = sd.SettingsDialog(settings=settings)
    qtbot.addWidget(dlg)
    assert dlg.fsync.isChecked()
    dlg.fsync.setChecked(False)
    dlg.accept()
    assert not durable_default()


GC_PROBE = r"""
import gc, sys, threading, weakref
from PySide6 import QtCore, QtWidgets
from aiflat_gui.gui.app import make_app

app = make_app()
main, where = threading.get_ident(), []

class Node:  # a reference cycle, as a closed dialog's slots or a finished worker's closures make
    pass

def worker():
    for _ in range(2000):  # a job that makes and drops cyclic garbage, then allocates
        a, b = Node(), Node()
        a.b, b.a = b, a
        weakref.finalize(a, lambda: where.append(threading.get_ident()))
        del a, b
    junk = [[] for _ in range(200000)]  # enough allocations to trigger an automatic collection
    del junk

t = threading.Thread(target=worker)
t.start()
t.join()
print("enabled", gc.isenabled(), "before", len(where))
QtCore.QTimer.singleShot(2500, app.quit)
app.exec()
print("after", len(where), "gui", all(w == main for w in where))
"""


def test_cyclic_garbage_is_freed_in_the_gui_thread_only():
    """aiflat-gui's start-up (make_app) leaves cyclic garbage collection to a timer of the GUI
    thread: a cycle dropped by a worker is not freed in the worker (where freeing a cycle that
    holds Qt objects crashes Qt) but on the GUI thread within a few seconds."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    p = subprocess.run([sys.executable, "-c", GC_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[:4] == ["enabled", "False", "before", "0"], p.stdout  # nothing freed in the worker
    assert lines[4] == "after" and int(lines[5]) == 2000 and lines[7] == "True", p.stdout
