"""The real main window, offscreen, on a small demo the test writes: stretch, brush + undo/redo,
speck removal, detection and calibration through the workers, cancel, sessions, bad imports."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets
from PySide6.QtTest import QTest

from aiflat_gui.io.demo import write_demo
from aiflat_gui.io import open_sequence

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    write_demo(d, frames=12, width=160, height=120, seed=1, difficulty="easy")
    return d


@pytest.fixture
def demo(demo_dir, tmp_path):
    """A private copy of the small demo SER (sessions are written beside it)."""
    (tmp_path / "demo_truth_mask.png").write_bytes((demo_dir / "truth_mask.png").read_bytes())
    d = tmp_path / "video"
    d.mkdir()
    p = d / "demo.ser"
    p.write_bytes((demo_dir / "demo.ser").read_bytes())
    return p


@pytest.fixture
def boxes(monkeypatch):
    """Capture message boxes instead of blocking on them."""
    seen = []

    def fake(kind, ret=None):
        def f(parent, title, text, *a, **k):
            seen.append((kind, title, text))
            return ret
        return f

    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", fake("warning"))
    monkeypatch.setattr(QtWidgets.QMessageBox, "critical", fake("critical"))
    monkeypatch.setattr(QtWidgets.QMessageBox, "information", fake("information"))
    monkeypatch.setattr(QtWidgets.QMessageBox, "about", fake("about"))
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", fake("question", QtWidgets.QMessageBox.Yes))
    return seen


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch, boxes):
    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "userdata"))
    from aiflat_gui.gui.main_window import MainWindow

    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)
    made = []

    def make(**kw):
        kw.setdefault("auto_reference", False)
        w = MainWindow(settings=settings, **kw)
        qtbot.addWidget(w)
        w.resize(900, 650)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        if w.worker is not None:
            w.worker.cancel()
            w.wait_idle(10)


def wait_job(qtbot, worker, timeout=60000):
    assert worker is not None
    if worker.running:
        with qtbot.waitSignal(worker.done, timeout=timeout):
            pass
    return worker


def prepared(make_window, qtbot, demo):
    """A window with the demo open, the reference computed and the offline mask found."""
    w = make_window()
    assert w.open_path(demo)
    wait_job(qtbot, w.run_reference())
    wd = wait_job(qtbot, w.run_detection())
    assert wd.state == "succeeded", wd.error
    assert w.workflow.state("mask") == "done"
    return w


def with_truth_mask(make_window, qtbot, demo):
    """A window with the demo open, the reference computed and the demo's true mask imported."""
    w = make_window()
    assert w.open_path(demo)
    wait_job(qtbot, w.run_reference())
    assert w.import_mask(demo.parent.parent / "demo_truth_mask.png")
    return w


def viewport_pos(w, x, y):
    return w.viewer.pixel_to_viewport(x, y)


def test_open_demo_from_menu_shows_first_frame(make_window, qtbot, monkeypatch, demo, boxes):
    import aiflat_gui.io.demo as demo_mod

    monkeypatch.setattr(demo_mod, "ensure_demo", lambda cache_dir=None: demo)
    w = make_window()
    w.act_demo.trigger()  # generated in a worker, then opened
    qtbot.waitUntil(lambda: w.seq is not None, timeout=10000)
    assert w.path == demo
    with open_sequence(demo) as seq:
        np.testing.assert_array_equal(w.viewer.image(), seq.frame(0))
    assert w.workflow.state("sequence") == "done" and w.workflow.state("reference") == "not done"
    assert "Reference" in w.workflow.hint_label.text() or "reference" in w.workflow.hint_label.text()
    assert w.frame_slider.maximum() == 11
    w.frame_slider.setValue(3)
    with open_sequence(demo) as seq:
        np.testing.assert_array_equal(w.viewer.image(), seq.frame(3))
    assert not boxes


def test_stretch_changes_levels_but_not_data(make_window, demo):
    w = make_window()
    w.open_path(demo)
    before = np.array(w.viewer.image(), copy=True)
    with open_sequence(demo) as seq:
        raw0 = np.array(seq.frame(0))
    state = w.stretch_panel.state()
    new = state.copy(mode="asinh", black=float(raw0.min()) + 5, white=float(raw0.max()) - 5)
    w.stretch_panel.set_state(new)
    w.stretch_panel.stretchChanged.emit(new)
    assert w.viewer.levels() == pytest.approx(new.levels)
    assert w.viewer.stretch().mode == "asinh"
    np.testing.assert_array_equal(w.viewer.image(), before)
    with open_sequence(demo) as seq:
        np.testing.assert_array_equal(seq.frame(0), raw0)
    # with "apply to all frames" the stretch survives a frame change and a fixed-level view
    w.stretch_panel.set_apply_to_all(True)
    w.set_view("mask")
    w.set_view("frame")
    w.set_frame(2)
    assert w.viewer.levels() == pytest.approx(new.levels) and w.viewer.stretch().mode == "asinh"


def test_the_documents_display_is_the_one_stretch(make_window, demo, tmp_path):
    """Document.display owns view, frame, overlay and stretch (issue 12: the stretch lived in the
    panel, the viewer and the document): the panel writes it, and every change of it -- from the
    panel, from the document (a restored session), from a frame change -- shows in the panel and
    the viewer alike. Another file starts from the defaults; its own session restores its own."""
    from aiflat_gui.core.stretch import StretchState
    from aiflat_gui.session import SessionData

    w = make_window()
    assert w.open_path(demo)
    doc, panel = w.doc, w.stretch_panel

    def agree():
        assert doc.stretch is not None
        assert panel.state() == doc.stretch == w.viewer.stretch()
        assert panel.mode_combo.currentData() == doc.stretch.mode
        assert panel.black_spin.value() == pytest.approx(doc.stretch.black, abs=1e-4)
        assert panel.white_spin.value() == pytest.approx(doc.stretch.white, abs=1e-4)

    agree()
    # the panel's controls write the document; the viewer follows
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("asinh"))
    assert doc.stretch.mode == "asinh"
    panel.black_spin.setValue(123.0)
    assert doc.stretch.black == pytest.approx(123.0) and w.viewer.levels()[0] == pytest.approx(123.0)
    agree()
    # a frame change re-levels (apply to all frames is off): one state, not a panel's and a viewer's
    for i in (5, 9, 2):
        w.frame_slider.setValue(i)
        assert doc.display.frame_index == i
        agree()
    # the document changes: the panel and the viewer follow
    doc.set_stretch(StretchState(mode="gamma", black=50.0, white=700.0, gamma=3.0))
    agree()
    assert panel.strength_label.text() == "Gamma" and w.viewer.levels() == pytest.approx((50.0, 700.0))
    data = doc.to_session()
    data.stretch = {"mode": "log", "black": 10.0, "white": 900.0}
    data.overlay_visible, data.overlay_opacity, data.view = False, 0.8, "reference"
    doc.apply_session(data, None)
    agree()
    assert panel.mode_combo.currentData() == "log"
    assert not w.act_overlay.isChecked() and not w.viewer.overlay_item.isVisible()
    assert w.opacity_slider.value() == 80
    assert w.view_combo.currentData() == "reference" and w.view == "reference"
    # the window's toggles write the document
    w.act_overlay.trigger()
    assert doc.display.overlay_visible and w.viewer.overlay_item.isVisible()
    w.act_overlay.trigger()
    w.set_view("frame")
    w.save_session()

    # another file: nothing of this one's display comes along (no session of its own: defaults)
    other = tmp_path / "other" / "other.ser"
    other.parent.mkdir()
    other.write_bytes(demo.read_bytes())
    assert w.open_path(other)
    assert w.doc is not doc and panel.state() == w.doc.stretch == w.viewer.stretch()
    assert w.doc.stretch.mode == StretchState().mode == "linear"
    assert w.doc.display.overlay_visible and w.act_overlay.isChecked() and w.viewer.overlay_item.isVisible()
    assert panel.mode_combo.currentData() == "linear"
    # and the first file's session brings its own display back
    assert w.open_path(demo)
    assert w.doc.stretch.mode == "log" and panel.mode_combo.currentData() == "log" and w.viewer.stretch().mode == "log"
    assert not w.doc.display.overlay_visible and not w.act_overlay.isChecked()


def test_paint_stroke_with_the_mouse_then_undo_redo(make_window, qtbot, demo):
    w = make_window()
    w.open_path(demo)
    w.set_tool("paint")
    w.brush_spin.setValue(3)
    vp = w.viewer.graphics_view.viewport()
    assert not w.mask_model.mask.any()
    QTest.mousePress(vp, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, viewport_pos(w, 30, 40))
    for x in range(32, 101, 4):  # a fast drag: far apart mouse positions
        QTest.mouseMove(vp, viewport_pos(w, x, 40))
    QTest.mouseRelease(vp, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, viewport_pos(w, 100, 40))
    m = w.mask_model.mask.copy()
    assert m[40, 30:101].all(), "the stroke has gaps"
    assert m[40, 60] and not m[80, 60]
    assert w.workflow.state("mask") == "done" and w.act_undo.isEnabled()
    w.act_undo.trigger()
    assert not w.mask_model.mask.any()
    w.act_redo.trigger()
    np.testing.assert_array_equal(w.mask_model.mask, m)
    # the keyboard shortcuts do the same
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=10000)
    QTest.keyClick(w, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert not w.mask_model.mask.any()
    QTest.keyClick(w, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier | QtCore.Qt.ShiftModifier)
    np.testing.assert_array_equal(w.mask_model.mask, m)


def test_remove_a_speck_by_click(make_window, qtbot, demo):
    w = make_window()
    w.open_path(demo)
    mask = np.zeros((120, 160), bool)
    mask[10:16, 10:16] = True
    mask[60:70, 100:108] = True
    w.mask_model.apply(mask, "test")
    w.set_tool("remove")
    vp = w.viewer.graphics_view.viewport()
    QTest.mouseClick(vp, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, viewport_pos(w, 103, 64))
    assert not w.mask_model.mask[60:70, 100:108].any()
    assert w.mask_model.mask[10:16, 10:16].all()
    w.undo()
    assert w.mask_model.mask[60:70, 100:108].all()


def test_detection_flat_and_calibration_through_workers(make_window, qtbot, demo, tmp_path):
    w = make_window()
    w.open_path(demo)
    seen = []
    wref = w.run_reference()
    wref.progress.connect(lambda f, m: seen.append(("ref", f)))
    wait_job(qtbot, wref)
    assert w.reference is not None and w.reference.shape == (120, 160)

    wdet = w.run_detection()
    wdet.progress.connect(lambda f, m: seen.append(("det", f)))
    wait_job(qtbot, wdet)
    assert wdet.state == "succeeded", wdet.error
    assert w.mask_model.mask.any(), "the offline detector found nothing on the easy demo"
    assert w.workflow.state("mask") == "done"
    assert w.speck_table.rowCount() >= 0

    wait_job(qtbot, w.run_flat())
    assert w.flat is not None and w.workflow.state("flat") == "done"
    from aiflat_gui.core.mask import grow

    grown = grow(w.mask_model.mask.astype(bool), w.workflow.grow.value())
    assert (w.flat[~grown] == 1.0).all() and (w.flat[grown] <= 1.0).all()

    out = tmp_path / "out" / "cal.ser"
    out.parent.mkdir()
    wc = w.calibrate_to(out, "ser")
    wc.progress.connect(lambda f, m: seen.append(("cal", f)))
    wait_job(qtbot, wc)
    assert wc.state == "succeeded", wc.error
    assert any(k == "cal" for k, _ in seen) and any(k == "det" for k, _ in seen)
    assert w.workflow.state("calibrate") == "done"
    with open_sequence(demo) as src, open_sequence(out) as cal:
        assert cal.n_frames == src.n_frames
        untouched = w.flat == 1.0
        for i in range(src.n_frames):
            a, b = src.frame(i), cal.frame(i)
            np.testing.assert_array_equal(a[untouched], b[untouched])
        dusty = ~untouched
        if dusty.any():
            assert (cal.frame(0)[dusty].astype(float) >= src.frame(0)[dusty].astype(float)).all()
    # the calibrated preview equals frame i of the written file
    w.set_frame(5)
    w.set_view("calibrated")
    with open_sequence(out) as cal:
        np.testing.assert_array_equal(w.viewer.image(), cal.frame(5))


def test_cancel_a_calibration_leaves_no_file(make_window, qtbot, demo, tmp_path, monkeypatch):
    import aiflat_gui.gui.steps as steps
    from aiflat_gui.pipeline import calibrate_sequence

    w = with_truth_mask(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())

    def slow_calibrate(path, flat, output, fmt, pedestal, overwrite, progress=None):
        # the real calibration, one frame per chunk, slowed so the Cancel click lands mid-way
        def prog(f, m):
            time.sleep(0.3)  # 12 frames: a 3.6 s window for the click even on a loaded CI machine
            progress(f, m)

        with open_sequence(path) as seq:
            return calibrate_sequence(seq, flat, output, fmt=fmt, pedestal=pedestal, overwrite=overwrite,
                                      progress=prog, chunk_bytes=seq.frame_nbytes)

    monkeypatch.setattr(steps, "job_calibrate", slow_calibrate)
    out = tmp_path / "cancelled.fits"  # the streaming writer: one report per frame
    wc = w.calibrate_to(out, "fits")
    assert w.job_panel.isVisible()
    with qtbot.waitSignal(wc.cancelled, timeout=30000):
        qtbot.waitUntil(lambda: w.job_panel.bar.value() > 0, timeout=10000)
        QTest.mouseClick(w.job_panel.cancel_button, QtCore.Qt.LeftButton)
    assert not out.exists()
    # Esc cancels too
    wc = w.calibrate_to(out, "fits")
    with qtbot.waitSignal(wc.cancelled, timeout=30000):
        qtbot.waitUntil(lambda: w.job_panel.bar.value() > 0, timeout=10000)
        w.act_cancel.trigger()
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if "cancelled" in p.name] == []
    assert w.workflow.state("calibrate") == "not done"
    assert not w.job_panel.isVisible()


def test_ui_stays_responsive_during_a_job(make_window, qtbot, demo, monkeypatch):
    import aiflat_gui.gui.steps as steps

    w = make_window()
    w.open_path(demo)

    def slow_reference(path, params, progress=None):
        for i in range(20):
            time.sleep(0.02)
            progress(i / 20, "")
        return np.zeros((120, 160), np.float32)

    monkeypatch.setattr(steps, "job_reference", slow_reference)
    ticks = []
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    job = w.run_reference()
    assert w.workflow.state("reference") == "running" and w.job_panel.isVisible()
    assert not w.workflow.buttons["reference"].isEnabled()
    wait_job(qtbot, job)
    timer.stop()
    assert len(ticks) >= 8
    assert w.workflow.state("reference") == "done"


def test_session_restored_after_closing_the_window(make_window, qtbot, demo):
    w = prepared(make_window, qtbot, demo)
    w.mask_model.dab(20, 20, "paint", 4)  # a hand edit on top of the detection
    w.workflow.grow.setValue(5)
    w.workflow.set_sensitivity(0.65, emit=True)  # a slider move: re-thresholds, keeps the hand edit
    w.set_view("reference")
    state = w.stretch_panel.state().copy(mode="gamma", black=100.0, white=3000.0)
    w.stretch_panel.set_state(state)
    w.stretch_panel.stretchChanged.emit(state)
    mask = w.mask_model.mask.copy()
    w.close()
    sidecar = demo.parent / "demo.ser.aiflat.json"
    assert sidecar.is_file() and (demo.parent / "demo.ser.aiflat-mask.png").is_file()

    w2 = make_window()
    assert w2.open_path(demo)
    np.testing.assert_array_equal(w2.mask_model.mask, mask)
    assert w2.workflow.state("mask") == "done"
    assert w2.workflow.grow.value() == 5 and w2.workflow.sensitivity_value() == pytest.approx(0.65)
    assert w2.view == "reference"
    st = w2.stretch_panel.state()
    assert (st.mode, st.black, st.white) == ("gamma", 100.0, 3000.0)


def test_autosave_after_a_stroke(make_window, qtbot, demo):
    w = make_window()
    w.open_path(demo)
    w.mask_model.dab(50, 50, "paint", 3)
    store = w.session_store
    qtbot.waitUntil(lambda: store.mask_path.is_file(), timeout=10000)  # debounced ~0.5 s
    data, mask, _ = store.load((120, 160))
    assert mask[50, 50] and mask.sum() == w.mask_model.mask.sum()


def test_wrong_size_mask_import_shows_a_message_and_keeps_the_session(make_window, qtbot, demo, tmp_path, boxes):
    from aiflat_gui.io.single import write_image

    w = make_window()
    w.open_path(demo)
    w.mask_model.dab(40, 40, "paint", 3)
    w.save_session()
    before = w.mask_model.mask.copy()
    json_before = w.session_store.json_path.read_bytes()
    bad = tmp_path / "bad_mask.png"
    write_image(bad, np.full((37, 51), 255, np.uint8))
    assert w.import_mask(bad) is False
    assert boxes and boxes[-1][0] == "warning" and str(bad) in boxes[-1][2] and "\n" not in boxes[-1][2]
    np.testing.assert_array_equal(w.mask_model.mask, before)
    w.save_session()
    data, mask, _ = w.session_store.load((120, 160))
    np.testing.assert_array_equal(mask, before.astype(bool))
    assert w.session_store.json_path.read_bytes() == json_before


def test_good_mask_import_and_bad_file_open(make_window, qtbot, demo, tmp_path, boxes):
    from aiflat_gui.io.single import write_image

    w = make_window()
    w.open_path(demo)
    good = tmp_path / "good_mask.png"
    m = np.zeros((120, 160), np.uint8)
    m[5:9, 5:9] = 255
    write_image(good, m)
    w.drop_paths([str(good)])  # a dropped mask is imported into the open video
    np.testing.assert_array_equal(w.mask_model.mask.astype(bool), m > 0)
    bad = tmp_path / "broken.ser"
    bad.write_bytes(b"not a ser file at all")
    assert w.open_path(bad) is False
    assert boxes[-1][0] == "warning" and "broken.ser" in boxes[-1][2]
    assert w.path == demo and w.mask_model.mask.astype(bool).sum() == 16


def test_all_views_render(make_window, qtbot, demo):
    w = with_truth_mask(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())
    for key in ("frame", "reference", "mask", "flat", "calibrated", "difference", "blink"):
        w.set_view(key)
        assert w.viewer.image() is not None, key
    assert w.blink_timer.isActive()
    first = np.array(w.viewer.image())
    w._blink()
    second = np.array(w.viewer.image())
    w.set_view("frame")
    assert not w.blink_timer.isActive()
    with open_sequence(demo) as seq:
        raw = seq.frame(0)
    assert any(np.array_equal(x, raw) for x in (first, second))
    assert not np.array_equal(first, second) or not (w.flat != 1).any()


def test_sensitivity_slider_rethresholds_live(make_window, qtbot, demo):
    w = prepared(make_window, qtbot, demo)
    if getattr(w.local_provider, "scores", None) is None:
        pytest.skip("detector keeps no score map")
    scores = w.local_provider.scores
    masks = {}
    for s in (0.1, 0.5, 0.9):
        t0 = time.perf_counter()
        w.workflow.set_sensitivity(s, emit=True)
        assert w.worker is None  # live: no new detection job was started
        assert time.perf_counter() - t0 < 5.0  # generous: a loaded 2-core CI machine
        masks[s] = w.mask_model.mask.astype(bool).copy()
        np.testing.assert_array_equal(masks[s], scores.mask(s))
    assert not all(np.array_equal(masks[0.1], m) for m in masks.values())
    # each re-threshold is undoable
    w.undo()
    np.testing.assert_array_equal(w.mask_model.mask.astype(bool), masks[0.5])


def test_play_advances_frames(make_window, qtbot, demo):
    w = make_window()
    w.open_path(demo)
    w.play_button.setChecked(True)
    qtbot.waitUntil(lambda: w.frame_index >= 2, timeout=10000)
    w.play_button.setChecked(False)
    assert not w.play_timer.isActive()


def test_pixel_readout(make_window, qtbot, demo):
    w = with_truth_mask(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())
    w.set_view("frame")
    w._on_hover(7, 9)
    with open_sequence(demo) as seq:
        v = int(seq.frame(0)[9, 7])
    text = w.pixel_label.text()
    assert "x 7" in text and "y 9" in text and f"value {v}" in text and "mask" in text and "flat" in text


def test_ask_ai_through_the_worker_with_a_fake_gemini(make_window, qtbot, demo, tmp_path, monkeypatch, boxes):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_gemini import FakeGemini

    import aiflat_gui.gui.gemini_dialog as gd

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the answer cache
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaFAKE-gui-test-key-000")
    shown = []
    reroll = {"on": False}

    def fake_exec(self):
        shown.append(self.summary())
        self.reroll_box.setChecked(reroll["on"])
        return QtWidgets.QDialog.Accepted

    monkeypatch.setattr(gd.GeminiAskDialog, "exec", fake_exec)
    with FakeGemini() as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        w = make_window()
        w.settings.setValue("gemini/timeout", 20.0)
        w.open_path(demo)
        wait_job(qtbot, w.run_reference())
        w.workflow.set_provider("gemini")
        assert w.workflow.buttons["ask_ai"].isVisibleTo(w.workflow)
        wa = wait_job(qtbot, w.ask_ai())
        assert wa.state == "succeeded", wa.error
        assert "gemini-3-pro-image" in shown[0] and "$" in shown[0]
        assert len(server.requests) == 1
        assert w.mask_model.mask.any() and w.workflow.state("mask") == "done"
        assert boxes[-1][0] == "information" and "The model says" in boxes[-1][2]
        # asked again: the cached answer, no new request; re-roll asks again
        wait_job(qtbot, w.ask_ai())
        assert len(server.requests) == 1 and "cache" in boxes[-1][2]
        reroll["on"] = True
        wait_job(qtbot, w.ask_ai())
        assert len(server.requests) == 2
    # the key is in no session file
    w.save_session()
    for f in demo.parent.iterdir():
        if ".aiflat" in f.name:
            assert b"AIzaFAKE" not in f.read_bytes()


def test_brush_keys_and_tool_shortcuts(make_window, qtbot, demo):
    w = make_window()
    w.open_path(demo)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=10000)
    w.brush_spin.setValue(8)
    QTest.keyClick(w, QtCore.Qt.Key_BracketRight)
    assert w.brush_spin.value() == 9 and w.viewer.brush_radius() == 9
    w.brush_spin.setValue(40)
    QTest.keyClick(w, QtCore.Qt.Key_BracketLeft)
    assert w.brush_spin.value() == 32 and w.viewer.brush_radius() == 32
    QTest.keyClick(w, QtCore.Qt.Key_E)
    assert w.viewer.tool() == "erase" and w.tool_actions["erase"].isChecked()
    QTest.keyClick(w, QtCore.Qt.Key_3)
    assert w.view == "mask"


def test_calibration_failure_shows_a_message_and_keeps_the_session(make_window, qtbot, demo, tmp_path, boxes):
    w = with_truth_mask(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())
    mask = w.mask_model.mask.copy()
    wc = wait_job(qtbot, w.calibrate_to(tmp_path / "missing_dir" / "out.ser", "ser"))
    assert wc.state == "failed"
    assert boxes[-1][0] == "warning" and "missing_dir" in boxes[-1][2] and "\n" not in boxes[-1][2]
    assert w.workflow.state("calibrate") == "not done" and w.workflow.state("flat") == "done"
    np.testing.assert_array_equal(w.mask_model.mask, mask)
    assert w.calibrate_to(demo) is None  # never over the input
    assert "input" in boxes[-1][2]


def test_speck_table_lists_and_centres_specks(make_window, qtbot, demo):
    from aiflat_gui.core.mask import components

    w = with_truth_mask(make_window, qtbot, demo)
    w.refresh_specks()
    specks = components(w.mask_model.mask.astype(bool), w.reference)
    assert len(specks) > 0 and w.speck_table.rowCount() == len(specks)
    w.viewer.zoom_1to1()
    row = w.speck_table.rowCount() - 1
    w.speck_table.cellClicked.emit(row, 0)
    label = int(w.speck_table.item(row, 0).text())
    s = next(sp for sp in specks if sp.label == label)
    (x0, x1), (y0, y1) = w.viewer.view_box.viewRange()
    assert abs((x0 + x1) / 2 - (s.centroid[0] + 0.5)) < 2 and abs((y0 + y1) / 2 - (s.centroid[1] + 0.5)) < 2
    # the workflow says what is next, and the log dock shows what happened
    assert w.workflow.state("flat") == "not done" and "flat" in w.workflow.hint_label.text().lower()
    assert "imported mask" in w.log_view.toPlainText()


def test_export_flat_mask_and_batch_from_the_window(make_window, qtbot, demo, tmp_path, boxes):
    import cv2

    from aiflat_gui.io.single import read_image

    w = with_truth_mask(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())
    out = tmp_path / "exports"
    out.mkdir()
    # through the dialog's signal, as its buttons do
    w._on_export_requested("flat", {"path": str(out / "flat_siril.fits"), "target": "siril"})
    w._on_export_requested("mask", {"path": str(out / "mask.png")})
    assert (out / "flat_siril.fits").is_file()
    m = cv2.imread(str(out / "mask.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(m > 0, w.mask_model.mask.astype(bool))
    assert set(np.unique(m)) <= {0, 255}
    # batch: this video and a second copy of it, into a new folder
    second = tmp_path / "second.ser"
    second.write_bytes(demo.read_bytes())
    wb = wait_job(qtbot, w.run_batch([str(demo), str(second)], out / "batch", None, jobs=1))
    assert wb.state == "succeeded", wb.error
    made = sorted(p.name for p in (out / "batch").iterdir())
    assert "flat.fits" in made and len([n for n in made if "calibrated" in n]) == 2
    np.testing.assert_array_equal(read_image(out / "batch" / "flat.fits"), w.flat)
    assert boxes[-1][0] == "information" and "2 calibrated" in boxes[-1][2]


def test_refused_ai_answer_is_a_message_and_the_mask_stays(make_window, qtbot, demo, tmp_path, monkeypatch, boxes):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_gemini import FakeGemini, text_reply

    import aiflat_gui.gui.gemini_dialog as gd

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaFAKE-gui-test-key-001")
    monkeypatch.setattr(gd.GeminiAskDialog, "exec", lambda self: QtWidgets.QDialog.Accepted)
    with FakeGemini() as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        server.default = text_reply("I cannot find any dust in this picture.")
        w = with_truth_mask(make_window, qtbot, demo)
        w.settings.setValue("gemini/timeout", 20.0)
        before = w.mask_model.mask.copy()
        wa = wait_job(qtbot, w.ask_ai())
    assert wa.state == "failed"
    kind, _, text = boxes[-1]
    assert kind == "warning" and "I cannot find any dust" in text and "\n" not in text
    np.testing.assert_array_equal(w.mask_model.mask, before)
    assert w.workflow.state("mask") == "done"


@pytest.mark.parametrize("color", ["RGGB", "RGB"])
def test_colour_and_bayer_videos_go_through_every_view(make_window, qtbot, tmp_path, color, boxes):
    from aiflat_gui.io.ser import write_ser

    rng = np.random.default_rng(0)
    shape = (5, 64, 80) if color == "RGGB" else (5, 64, 80, 3)
    frames = rng.integers(800, 1200, size=shape).astype(np.uint16)
    frames[:, 20:26, 30:36] = (frames[:, 20:26, 30:36] * 0.7).astype(np.uint16)  # a static dust speck
    path = write_ser(tmp_path / f"{color}.ser", frames, color=color, bit_depth=12)
    w = make_window()
    assert w.open_path(path)
    wait_job(qtbot, w.run_reference())
    m = np.zeros((64, 80), bool)
    m[19:27, 29:37] = True
    w.mask_model.apply(m, "test")
    wf = wait_job(qtbot, w.run_flat())
    assert wf.state == "succeeded", wf.error
    assert w.flat.shape[:2] == (64, 80)
    for key in ("frame", "reference", "mask", "flat", "calibrated", "difference", "blink"):
        w.set_view(key)
        assert w.viewer.image() is not None
    w._on_hover(31, 22)
    assert "flat" in w.pixel_label.text()
    cal = w.calibrated_frame()
    flat = w.flat if w.flat.shape == cal.shape else np.repeat(w.flat[..., None], 3, axis=2)
    outside = flat == 1.0
    assert outside.sum() > 0.8 * outside.size
    np.testing.assert_array_equal(cal[outside], frames[0][outside])
    assert (cal[~outside].astype(int) >= frames[0][~outside]).all()
    assert not boxes, boxes


def test_steps_turn_stale_when_their_inputs_change(make_window, qtbot, demo):
    w = with_truth_mask(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())
    assert [w.workflow.state(s) for s in ("sequence", "reference", "mask", "flat")] == ["done"] * 4
    assert "Calibrate" in w.workflow.hint_label.text()
    w.mask_model.dab(10, 10, "paint", 2)  # a mask edit makes the flat out of date
    assert w.workflow.state("flat") == "stale" and "Out of date" in w.workflow.hint_label.text()
    wait_job(qtbot, w.run_flat())
    assert w.workflow.state("flat") == "done"
    w.workflow.feather.setValue(3)  # so does a flat option
    assert w.workflow.state("flat") == "stale"
    w.workflow.reference_method.setCurrentText("mean")  # and the reference method, for the reference
    assert w.workflow.state("reference") == "stale"
    assert w.workflow.state_labels["flat"].text().endswith("stale")


def test_ai_flat_method_asks_for_a_clean_image(make_window, qtbot, demo, tmp_path, monkeypatch, boxes):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_gemini import FakeGemini

    import aiflat_gui.gui.gemini_dialog as gd

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaFAKE-gui-test-key-002")
    titles = []

    def fake_exec(self):
        titles.append(self.windowTitle())
        return QtWidgets.QDialog.Accepted

    monkeypatch.setattr(gd.GeminiAskDialog, "exec", fake_exec)
    with FakeGemini() as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        w = with_truth_mask(make_window, qtbot, demo)
        w.settings.setValue("gemini/timeout", 20.0)
        w.workflow.flat_method.setCurrentIndex(w.workflow.flat_method.findData("ai"))
        wf = wait_job(qtbot, w.run_flat())
        assert wf.state == "succeeded", wf.error
        assert titles == ["Ask the AI for a dust-free image"]
        assert len(server.requests) == 1 and len(server.requests[0].images) == 2  # image + mask
        assert w.clean is not None and w.clean.shape == w.reference.shape
        grown_outside = w.flat == 1.0
        assert grown_outside.sum() > 0.8 * w.flat.size and w.flat.min() < 1.0
        # the same mask again: the clean image is reused, nothing is sent
        wait_job(qtbot, w.run_flat())
        assert len(server.requests) == 1 and titles == ["Ask the AI for a dust-free image"]


def test_workflow_state_bookkeeping():
    from aiflat_gui.gui.workflow import WorkflowState

    st = WorkflowState()
    assert st.next_step() == "sequence" and st.hint().startswith("Next: Open a video")
    for step in ("sequence", "reference", "mask", "flat", "calibrate"):
        assert st.changed(step) == []
    assert st.next_step() is None and st.hint().startswith("All done")
    assert st.changed("mask") == ["flat", "calibrate"]
    assert st.next_step() == "flat" and st.hint().startswith("Out of date")
    st.set("flat", "running")
    assert st.hint() == "Working on the flat step…"
    with pytest.raises(ValueError):
        st.set("flat", "finished")


def test_a_damaged_or_odd_session_does_not_block_opening(make_window, qtbot, demo, boxes):
    side = demo.parent / "demo.ser.aiflat.json"
    side.write_text('{"grow": "lots", "view": 7}')
    w = make_window()
    assert w.open_path(demo) and w.seq is not None
    side.write_text("{broken")
    assert w.open_path(demo) and w.seq is not None
    assert "session" in w.log_view.toPlainText()
    assert not boxes


def test_disk_full_during_calibration_is_a_message_and_no_file(make_window, qtbot, demo, tmp_path, monkeypatch, boxes):
    import errno

    from aiflat_gui.io.fits import FitsWriter

    w = with_truth_mask(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())

    def full(self, frame, index):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FitsWriter, "_write", full)
    out = tmp_path / "full.fits"
    wc = wait_job(qtbot, w.calibrate_to(out, "fits"))
    assert wc.state == "failed"
    kind, _, text = boxes[-1]
    assert kind == "warning" and "disk full" in text and "full.fits" in text
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".full.fits")]
    assert w.workflow.state("flat") == "done" and w.flat is not None


def test_calibration_refuses_a_flat_built_for_an_older_mask(make_window, qtbot, demo, tmp_path, boxes):
    """Erasing a speck after the flat was built must not let the old flat change those pixels."""
    w = make_window()
    w.open_path(demo)
    wait_job(qtbot, w.run_reference())
    wait_job(qtbot, w.run_detection())
    assert w.mask_model.mask.any()
    wait_job(qtbot, w.run_flat())
    assert w.workflow.state("flat") == "done"
    ys, xs = np.nonzero(w.mask_model.mask)
    w.mask_model.remove_component_at(int(xs[0]), int(ys[0]))  # a user edit after the flat
    assert w.workflow.state("flat") == "stale"
    out = tmp_path / "cal.ser"
    assert w.calibrate_to(out, "ser") is None
    assert not out.exists()
    assert any("rebuild the flat" in text for _kind, _title, text in boxes)
    wait_job(qtbot, w.run_flat())  # rebuilt for the edited mask: calibration goes ahead
    wc = w.calibrate_to(out, "ser")
    wait_job(qtbot, wc)
    assert wc.state == "succeeded" and out.exists()


def test_speck_depths_come_from_the_flat_once_it_is_built(make_window, qtbot, demo):
    from aiflat_gui.gui.speck_table import DEPTH_TIPS

    w = with_truth_mask(make_window, qtbot, demo)
    w.refresh_specks()
    assert {s.depth_from for s in w.speck_table.specks} == {"reference"}
    assert w.speck_table.horizontalHeaderItem(2).toolTip() == DEPTH_TIPS["reference"]
    wait_job(qtbot, w.run_flat())
    qtbot.waitUntil(lambda: {s.depth_from for s in w.speck_table.specks} == {"flat"}, timeout=5000)
    mask = w.mask_model.mask.astype(bool)
    import cv2

    _n, lab = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    for s in w.speck_table.specks:
        assert abs(s.attenuation - (1.0 - w.flat[lab == s.label].mean())) < 1e-6
    # the flat's job checked the specks against the video first: the column shows that measurement
    assert w.speck_table.verification is not None
    assert w.speck_table.horizontalHeaderItem(2).toolTip() == DEPTH_TIPS["verified"]
    # a mask edit makes the flat stale: the depths go back to the reference's estimate
    w.mask_model.begin_stroke("paint")
    w.mask_model.stroke_to(5, 5)
    w.mask_model.end_stroke()
    w.refresh_specks()
    assert w.workflow.state("flat") == "stale"
    assert {s.depth_from for s in w.speck_table.specks} == {"reference"}


def test_the_workflow_panel_is_widened_to_fit_after_a_job(make_window, qtbot, demo):
    # the main window hands width to the viewer as docks fill up; after a job the workflow dock is
    # widened again to what its panel needs (never narrowed: the user may still drag it)
    w = make_window()
    w.resize(1280, 800)
    assert w.open_path(demo)
    qtbot.wait(400)  # past the first-show layout (default dock sizes are applied again after 200 ms)
    need = w.workflow.minimumSizeHint().width()
    w.resizeDocks([w.workflow_dock], [need // 2], QtCore.Qt.Horizontal)
    QtWidgets.QApplication.processEvents()
    assert w.workflow_scroll.viewport().width() < need
    wait_job(qtbot, w.run_reference())
    qtbot.waitUntil(lambda: w.workflow_scroll.viewport().width() >= w.workflow.minimumSizeHint().width()
                    and not w.workflow_scroll.horizontalScrollBar().isVisible(), timeout=3000)
