"""What a new user meets in the window (issue 12): the wheel scrolls panels instead of editing
values, the layout does not jump, folders of frames open from the GUI, readable texts, the
"Visualize dust" view and the outline overlay, a viewer that gets most of the window, help."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

pytestmark = pytest.mark.timeout(120)


def _wheel(widget: QtWidgets.QWidget, steps: int = -3) -> None:
    """A real wheel event (``steps`` notches, negative = towards the user) at the widget's centre."""
    pos = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    glob = QtCore.QPointF(widget.mapToGlobal(pos.toPoint()))
    ev = QtGui.QWheelEvent(pos, glob, QtCore.QPoint(0, 0), QtCore.QPoint(0, 120 * steps), Qt.NoButton,
                           Qt.NoModifier, Qt.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(widget, ev)


# ---------------------------------------------------------------- bug 2: the wheel edits settings
def test_wheel_over_workflow_controls_scrolls_the_panel_not_the_value(qtbot):
    from aiflat_gui.gui.workflow import WorkflowPanel

    panel = WorkflowPanel()
    scroll = QtWidgets.QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(panel)
    qtbot.addWidget(scroll)
    scroll.resize(320, 260)  # much shorter than the panel: it scrolls
    scroll.show()
    qtbot.waitExposed(scroll)
    bar = scroll.verticalScrollBar()
    assert bar.maximum() > 0
    controls = {"grow": panel.grow, "feather": panel.feather, "sensitivity": panel.sensitivity,
                "pedestal": panel.pedestal, "max_frames": panel.max_frames, "flat_method": panel.flat_method,
                "reference_method": panel.reference_method, "provider": panel.provider}
    for name, w in controls.items():
        scroll.ensureWidgetVisible(w)
        QtWidgets.QApplication.processEvents()
        before = panel.params()
        scroll_before = bar.value()
        _wheel(w, -3 if scroll_before < bar.maximum() else 3)
        QtWidgets.QApplication.processEvents()
        assert panel.params() == before, f"the wheel changed {name}"
        assert bar.value() != scroll_before, f"the wheel over {name} did not scroll the panel"
    # once the control has the focus (clicked or tabbed to), the wheel edits it as usual
    scroll.ensureWidgetVisible(panel.grow)
    panel.grow.setFocus()
    QtWidgets.QApplication.processEvents()
    if panel.grow.hasFocus():  # (offscreen: focus needs an active window; skip the check if not)
        v = panel.grow.value()
        _wheel(panel.grow, 1)
        assert panel.grow.value() == v + 1
    for w in controls.values():
        assert w.focusPolicy() == Qt.StrongFocus


# ---------------------------------------------------------------- shared fixtures
# the small demo (a private copy per test) and the message-box recorder of the workflow tests
from test_gui_workflow import boxes, demo, demo_dir, wait_job  # noqa: E402,F401


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, boxes):
    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "userdata"))
    from aiflat_gui.gui.main_window import MainWindow

    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)
    w = MainWindow(settings=settings, auto_reference=False, remember_layout=False)
    qtbot.addWidget(w)
    w.resize(1100, 750)
    w.show()
    yield w
    if w.worker is not None:
        w.worker.cancel()
        w.wait_idle(10)


def worked(window, qtbot, demo):
    """The demo open, reference, offline mask and flat done."""
    assert window.open_path(demo)
    for start in (window.run_reference, window.run_detection, window.run_flat):
        w = wait_job(qtbot, start())
        assert w.state == "succeeded", w.error
    return window


def _frames(folder, n=3, ext=".tif", shape=(40, 50)):
    from aiflat_gui.io.single import write_image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(folder / f"sun_{i + 1:04d}{ext}", rng.integers(100, 4000, shape).astype(np.uint16))
    return folder


def _action(window, name):
    a = window.findChild(QtGui.QAction, name)
    assert a is not None, f"no action {name}"
    return a


# ---------------------------------------------------------------- bug 7: folders of frames
def test_file_open_folder_opens_a_folder_of_frames(window, tmp_path, monkeypatch):
    folder = _frames(tmp_path / "tiffs", 3)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    a = _action(window, "open_folder")
    assert a in window.menuBar().actions()[0].menu().actions()  # in the File menu
    a.trigger()
    assert window.seq is not None and window.seq.n_frames == 3
    # the Sequence step offers it too
    assert window.workflow.buttons["open_folder"].isVisible()


def test_picking_one_frame_of_a_numbered_series_offers_the_folder(window, tmp_path, monkeypatch):
    folder = _frames(tmp_path / "pngs", 4, ext=".png")
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(folder / "sun_0002.png"), ""))
    window.open_dialog()
    asked = []
    for answer, n in ((QtWidgets.QMessageBox.Yes, 4), (QtWidgets.QMessageBox.No, 1)):
        monkeypatch.setattr(QtWidgets.QMessageBox, "question",
                            lambda parent, title, text, *a, answer=answer, **k: (asked.append(text), answer)[1])
        window.open_dialog()
        assert "series of 4" in asked[-1]
        assert window.seq.n_frames == n  # Yes: the folder; No: the single frame


def test_numbered_series_looks_at_names_only(tmp_path):
    from aiflat_gui.io.series import numbered_series

    folder = _frames(tmp_path / "f", 3, ext=".fits")
    (folder / "notes.txt").write_text("x")
    (folder / "other_0001.fits").write_bytes(b"")
    assert numbered_series(folder / "sun_0001.fits") == (folder, 3)
    (tmp_path / "single").mkdir()
    lone = tmp_path / "single" / "moon_0001.tif"
    lone.write_bytes(b"")
    assert numbered_series(lone) is None
    assert numbered_series(folder / "notes.txt") is None


# ---------------------------------------------------------------- bug 9: texts
def test_sequence_texts_are_plural_aware_and_name_formats(window, tmp_path):
    from aiflat_gui.io.single import write_image

    one = tmp_path / "one.tif"
    write_image(one, np.full((30, 40), 1000, np.uint16))
    assert window.open_path(one)
    info = window.workflow.sequence_info.text()
    assert "1 frame," in info and "1 frames" not in info
    folder = _frames(tmp_path / "frames", 3, ext=".png")
    assert window.open_path(folder)
    info = window.workflow.sequence_info.text()
    assert "3 frames" in info and "FOLDER" not in info and "folder of images" in info


def test_text_helpers():
    from aiflat_gui.text import format_name, plural, show_bytes

    assert plural(1, "frame") == "1 frame" and plural(0, "frame") == "0 frames" and plural(2, "frame") == "2 frames"
    assert format_name("folder-images") == "folder of images" and format_name("ser") == "SER video"
    assert show_bytes(b"LUCAM") == "'LUCAM'"
    assert show_bytes(b"q\x11\xb0") == "bytes 71 11 b0"


def test_random_bytes_ser_error_has_no_python_repr(window, tmp_path):
    bad = tmp_path / "random.ser"
    bad.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert not window.open_path(bad)
    msg = window.errors[-1]
    assert "not a SER file" in msg and "b'" not in msg and "\\x" not in msg and "bytes " in msg
    assert "\n" not in msg


def test_batch_log_says_batch_once(window, qtbot, demo, tmp_path):
    worked(window, qtbot, demo)
    second = demo.parent / "demo2.ser"
    second.write_bytes(demo.read_bytes())
    window.log_view.clear()
    wait_job(qtbot, window.run_batch([str(demo), str(second)], tmp_path / "out"), timeout=120000)
    QtWidgets.QApplication.processEvents()
    log = window.log_view.toPlainText()
    assert "batch: 2 calibrated" in log
    assert log.count("batch:") == 1, log
    assert "1 frames" not in log


def test_ask_ai_without_key_does_not_promise_a_keyring_that_does_not_exist(qtbot, monkeypatch):
    from aiflat_gui.gui import settings_dialog
    from aiflat_gui.gui.gemini_dialog import GeminiAskDialog

    monkeypatch.setattr(settings_dialog, "keyring_ok", lambda: False)
    dlg = GeminiAskDialog({"model": "m", "estimated_cost_usd": 0.1}, None, has_key=False, purpose="mask")
    qtbot.addWidget(dlg)
    texts = " ".join(lb.text() for lb in dlg.findChildren(QtWidgets.QLabel))
    assert "keyring" in texts and "stored in the OS keyring" not in texts
    assert "this session only" in texts
    monkeypatch.setattr(settings_dialog, "keyring_ok", lambda: True)
    dlg2 = GeminiAskDialog({"model": "m", "estimated_cost_usd": 0.1}, None, has_key=False, purpose="mask")
    qtbot.addWidget(dlg2)
    assert "stored in the OS keyring" in " ".join(lb.text() for lb in dlg2.findChildren(QtWidgets.QLabel))


# ---------------------------------------------------------------- bug 5: layout jumps
def _geometry(window):
    tb = window.findChild(QtWidgets.QToolBar, "toolbar_tools")
    return {"workflow": window.workflow_dock.width(), "window": window.width(),
            "bar": window.job_panel.bar.geometry(), "cancel": window.job_panel.cancel_button.geometry(),
            "toolbar": [tb.widgetForAction(a).geometry() for a in tb.actions() if tb.widgetForAction(a)]}


def test_long_job_messages_and_undo_labels_do_not_move_the_layout(window, qtbot, demo):
    from aiflat_gui.gui.workers import Worker

    assert window.open_path(demo)
    qtbot.wait(50)
    viewer_idle = window.viewer.geometry()
    worker = Worker(lambda progress=None: None, name="fake")
    window.job_panel.attach(worker, "Asking the AI")
    window.statusBar().showMessage("Asking the AI: started")
    worker.progress.emit(0.1, "sending")
    qtbot.wait(50)
    before = _geometry(window)
    assert window.viewer.geometry() == viewer_idle, "the image jumped when the job started"
    long = ("HTTP 503 from generativelanguage.googleapis.com: the model is overloaded; retrying in 8 s "
            "(attempt 2 of 5) with exponential back-off; " * 3)
    worker.progress.emit(0.2, long)
    window.statusBar().showMessage("Asking the AI: " + long)
    qtbot.wait(50)
    after = _geometry(window)
    assert after["workflow"] == before["workflow"], "a long message narrowed the Workflow dock"
    assert after["window"] == before["window"], "a long message widened the window"
    assert after["bar"] == before["bar"] and after["cancel"] == before["cancel"], "the progress bar moved"
    assert window.job_panel.label.toolTip().startswith("Asking the AI: HTTP 503")  # the full text is a hover away
    # the Undo label names the last edit in the menu; toolbar buttons stay where they are
    window.mask_model.apply(np.ones(window.mask_model.shape, bool), "Find dust with a very long descriptive name")
    window._update_actions()
    qtbot.wait(50)
    assert _geometry(window)["toolbar"] == before["toolbar"]
    assert "very long" in window.act_undo.text()
    window.mask_model.undo()
    window._update_actions()
    qtbot.wait(50)
    assert _geometry(window)["toolbar"] == before["toolbar"]


# ---------------------------------------------------------------- the viewer gets most of the window
@pytest.mark.parametrize("size, wide", [((1366, 768), False), ((1600, 1000), True)])
def test_the_viewer_gets_most_of_the_window(window, qtbot, demo, size, wide):
    from aiflat_gui.gui.polish import arrange_docks

    assert window.open_path(demo)
    window.resize(*size)
    arrange_docks(window, wide=wide)
    window.default_dock_sizes()
    qtbot.wait(100)
    assert window.width() == size[0] and window.height() <= size[1]  # fits the screen
    share = window.viewer.width() / window.width()
    assert share >= (0.60 if not wide else 0.55), f"viewer {window.viewer.width()} of {window.width()} px"
    assert window.viewer.height() >= 0.6 * window.height()
    # every dock can still be reached (a tab or visible)
    for d in (window.workflow_dock, window.stretch_dock, window.speck_dock, window.log_dock):
        assert not d.isFloating() and (d.isVisible() or window.tabifiedDockWidgets(d))
    # and the Workflow panel is not clipped: its buttons are as wide as their text
    for b in window.workflow.buttons.values():
        if b.isVisible():
            assert b.width() >= b.fontMetrics().horizontalAdvance(b.text()), b.text()


# ---------------------------------------------------------------- what Lightroom/Siril/napari users expect
def test_visualize_dust_view_shows_the_dust_that_linear_hides(window, qtbot, demo):
    assert window.open_path(demo)
    wait_job(qtbot, window.run_reference())
    assert "dust" in [window.view_combo.itemData(i) for i in range(window.view_combo.count())]
    _action(window, "view_dust").trigger()  # key 8, View menu, or the View combo
    assert window.view == "dust"
    img, color, levels = window.view_image()
    assert img.dtype == np.float32 and img.shape == window.reference.shape[:2]
    lo, hi = levels
    assert lo < 1 < hi
    # the demo's true dust is darker than the black point far more often than clean surface
    truth = demo.parent.parent / "demo_truth_mask.png"
    from aiflat_gui.io.masks import load_mask

    dust, _ = load_mask(truth, img.shape)
    lit = window.reference > 0.3 * np.percentile(window.reference, 99)
    below = img < lo + 0.25 * (hi - lo)
    assert below[dust & lit].mean() > 5 * below[~dust & lit].mean()
    # the histogram is the view's own (ratio units), the stretch controls wait
    assert window.stretch_panel.showing_levels() == pytest.approx(levels)
    edges, _ = window.stretch_panel.histogram_data()
    assert edges.min() >= 0 and edges.max() < 3
    assert not window.stretch_panel.black_spin.isEnabled()
    _action(window, "view_frame").trigger()
    assert window.stretch_panel.showing_levels() is None and window.stretch_panel.black_spin.isEnabled()
    assert window.stretch_panel.histogram_data()[0].max() > 100  # ADU again


def test_flat_view_histogram_is_in_flat_units(window, qtbot, demo):
    worked(window, qtbot, demo)
    black_before = window.stretch_panel.state().black
    window.set_view("flat")
    edges, counts = window.stretch_panel.histogram_data()
    assert 0.5 < edges.min() and edges.max() <= 1.0 + 1e-6  # the flat: 1.0 outside, its shadows below
    assert window.stretch_panel.fixed_label.isVisible() and "Flat" in window.stretch_panel.fixed_label.text()
    window.set_frame(3)  # a frame change behind the flat view keeps the flat's histogram
    assert window.stretch_panel.histogram_data()[0].max() <= 1.0 + 1e-6
    window.set_view("frame")
    assert window.stretch_panel.histogram_data()[0].max() > 100
    assert window.stretch_panel.state().black == pytest.approx(black_before, rel=0.5)


def test_mask_outline_mode_draws_only_the_boundary(window, qtbot, demo):
    assert window.open_path(demo)
    m = np.zeros(window.mask_model.shape, bool)
    m[40:60, 50:80] = True
    window.mask_model.apply(m, "box")
    ov = window.viewer.overlay_item
    assert ov.pixel_argb(65, 50) != 0  # filled
    _action(window, "overlay_outline").trigger()
    assert window.viewer.overlay_outline()
    assert ov.pixel_argb(65, 50) == 0 and ov.pixel_argb(50, 50) != 0 and ov.pixel_argb(65, 40) != 0
    assert ov.pixel_argb(49, 50) == 0  # outside stays clear
    # an edit updates the outline where it happened
    window.mask_model.apply(np.zeros_like(m), "clear")
    assert ov.pixel_argb(50, 50) == 0
    window.mask_model.undo()
    assert ov.pixel_argb(50, 50) != 0 and ov.pixel_argb(65, 50) == 0
    _action(window, "overlay_outline").trigger()
    assert ov.pixel_argb(65, 50) != 0


def _controls(root):
    kinds = (QtWidgets.QAbstractButton, QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox, QtWidgets.QSlider)
    for w in root.findChildren(QtWidgets.QWidget):
        if not isinstance(w, kinds) or not w.isVisibleTo(root):
            continue
        if type(w).__name__.startswith("QDockWidget") or isinstance(w.parent(), (QtWidgets.QTabBar,
                                                                                  QtWidgets.QDockWidget)):
            continue  # Qt's own dock/tab buttons
        if isinstance(w.parent(), QtWidgets.QAbstractSpinBox):
            continue
        yield w


def test_every_control_has_a_tooltip_naming_its_shortcut(window, demo):
    assert window.open_path(demo)
    missing = [f"{type(w).__name__} {w.objectName()} {getattr(w, 'text', lambda: '')()}"
               for w in _controls(window) if not w.toolTip().strip()]
    assert not missing, missing
    tb = window.findChild(QtWidgets.QToolBar, "toolbar_tools")
    for a in tb.actions():
        if a.isSeparator() or tb.widgetForAction(a) is None or isinstance(a, QtWidgets.QWidgetAction):
            continue
        assert not a.icon().isNull(), a.objectName()
        sc = a.shortcut().toString(QtGui.QKeySequence.NativeText)
        if sc:
            assert f"({sc})" in a.toolTip(), (a.objectName(), a.toolTip())
    assert "(Ctrl+O)" in window.workflow.buttons["open"].toolTip()
    assert "(Ctrl+G)" in window.workflow.buttons["grow"].toolTip()
    # the Undo tooltip follows its label
    window.mask_model.apply(np.ones(window.mask_model.shape, bool), "Find dust (offline)")
    window._update_actions()
    assert "Find dust" in window.act_undo.toolTip() and "(Ctrl+Z)" in window.act_undo.toolTip()


def test_help_menu_has_a_guide_and_the_keyboard_shortcuts(window):
    from aiflat_gui.gui.help_dialog import shortcut_rows

    window.interactive = False  # build the dialogs without showing them
    help_menu = [a.menu() for a in window.menuBar().actions() if a.menu() and "Help" in a.text()][0]
    names = [a.objectName() for a in help_menu.actions()]
    assert "guide" in names and "shortcuts" in names and "about" in names
    rows = dict(shortcut_rows(window))
    assert rows["Ctrl+Z"].startswith("Undo") and "Paint" in rows["B"] and rows["8"].startswith("Visualize dust")
    assert "Mask outline" in rows["Shift+O"] or "outline" in rows["Shift+O"]
    from aiflat_gui.gui.help_dialog import show_guide, show_shortcuts

    dlg = show_shortcuts(window)
    assert dlg.table.rowCount() == len(shortcut_rows(window))
    guide = show_guide(window)
    assert "Visualize dust" in guide.text.toPlainText()
    dlg.deleteLater()
    guide.deleteLater()


def test_export_dialog_explains_each_flat_keeps_the_tab_and_lists_the_batch(window, qtbot, demo, tmp_path):
    from aiflat_gui.io.demo import write_demo
    from aiflat_gui.gui.export_dialog import EXPORT_TARGETS, ExportDialog

    worked(window, qtbot, demo)
    dlg = ExportDialog(demo, have_flat=True, parent=window)
    qtbot.addWidget(dlg)
    # how to use each flat in its program
    for key, label in EXPORT_TARGETS:
        dlg.target.setCurrentIndex(dlg.target.findData(key))
        text = dlg.target_help.text()
        assert label.split()[0] in text and len(text) > 80, key
    dlg.target.setCurrentIndex(dlg.target.findData("pixelmath"))
    assert "$T / flat" in dlg.target_help.text()
    # batch: frames and size per video, other sizes marked, Remove
    other = write_demo(tmp_path / "small", frames=5, width=96, height=64, seed=2, difficulty="easy")["sequence"]
    dlg.add_batch_inputs([str(demo), str(other)])
    rows = [[dlg.batch_list.topLevelItem(i).text(c) for c in range(4)] for i in range(2)]
    assert rows[0][:3] == ["demo.ser", "12", "160×120"] and rows[0][3] == ""
    assert rows[1][1:3] == ["5", "96×64"] and "skipped" in rows[1][3]
    dlg.batch_list.topLevelItem(1).setSelected(True)
    dlg.remove_button.click()
    assert dlg.batch_inputs() == [str(demo)]
    # the last tab comes back (Ctrl+E opens it there)
    dlg.tabs.setCurrentIndex(2)
    dlg.close()
    again = ExportDialog(demo, have_flat=True, parent=window)
    qtbot.addWidget(again)
    assert again.tabs.currentIndex() == 2


def test_file_dialogs_are_the_platforms_own():
    """Nothing forces Qt's own file dialog: the platform's dialog (GTK, KDE, Windows, macOS) is used
    where there is one (tests replace the dialogs and never show them)."""
    import pathlib

    import aiflat_gui

    assert not QtCore.QCoreApplication.testAttribute(Qt.AA_DontUseNativeDialogs)
    root = pathlib.Path(aiflat_gui.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if "DontUseNativeDialog" in p.read_text()]
    assert offenders == []
