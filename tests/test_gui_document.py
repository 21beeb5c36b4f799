"""One Document under the window (issue 12): the window only wires widgets to it. Bugs 1, 3, 4 and
6 of the issue, each with the test that failed before the Document existed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PySide6 import QtWidgets

from test_gui_workflow import boxes, demo, demo_dir, make_window, prepared, wait_job  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(180)


def test_document_is_qt_free():
    code = "import sys, aiflat_gui.document; print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_main_window_only_wires_widgets():
    from pathlib import Path

    import aiflat_gui.gui.main_window as mw

    assert len(Path(mw.__file__).read_text().splitlines()) < 600


# ---------------------------------------------------------------- bug 3: the sensitivity slider
def test_sensitivity_keeps_brush_edits_and_undo_moves_the_slider_back(make_window, qtbot, demo):
    w = prepared(make_window, qtbot, demo)
    doc = w.doc
    assert w.workflow.sensitivity_value() == pytest.approx(0.5)
    # a brush edit far from any speck, then a sensitivity move
    before = doc.mask.as_bool()
    doc.mask.dab(5, 5, "paint", 2)
    painted = doc.mask.as_bool() & ~before
    assert painted[5, 5]
    w.workflow.set_sensitivity(0.9, emit=True)  # what a slider move emits
    assert doc.sensitivity == pytest.approx(0.9)
    assert doc.mask.mask[5, 5] == 1, "the sensitivity move threw the brush edit away"
    scores = doc.local_provider.scores
    detector = np.asarray(scores.mask(0.9), bool)
    assert np.array_equal(doc.mask.as_bool(), detector | painted)  # the detector's new mask + the edit
    assert "Sensitivity" in w.act_undo.text()
    w.undo()  # the sensitivity step: the mask and the slider go back together
    assert w.workflow.sensitivity_value() == pytest.approx(0.5)
    assert doc.sensitivity == pytest.approx(0.5)
    assert doc.mask.mask[5, 5] == 1
    w.redo()
    assert w.workflow.sensitivity_value() == pytest.approx(0.9)
    doc.mask.undo()  # the viewer's own Ctrl+Z goes to the mask model directly: the slider follows too
    assert w.workflow.sensitivity_value() == pytest.approx(0.5)
    doc.mask.redo()
    assert w.workflow.sensitivity_value() == pytest.approx(0.9)
    w.save_session()
    assert w.session_store.load()[0].sensitivity == pytest.approx(0.9)


def test_sensitivity_works_after_a_restored_session(make_window, qtbot, demo):
    w = prepared(make_window, qtbot, demo, )
    w.autosave = True
    assert w.save_session()
    before = w.doc.mask.as_bool()
    w.close()
    w2 = make_window(autosave=True)
    assert w2.open_path(demo)
    assert np.array_equal(w2.doc.mask.as_bool(), before)
    assert w2.doc.local_provider is None  # the detector's scores are not in the session
    wait_job(qtbot, w2.run_reference())
    w2.workflow.set_sensitivity(0.95, emit=True)  # runs the detector for its scores, then re-thresholds
    qtbot.waitUntil(lambda: w2.doc.has_scores() and w2.worker is None, timeout=60000)
    assert w2.doc.sensitivity == pytest.approx(0.95)
    assert w2.doc.mask.as_bool().sum() > before.sum()


# ---------------------------------------------------------------- bug 4: nothing leaks across files
def test_opening_another_file_leaves_nothing_of_the_first(make_window, qtbot, demo, tmp_path):
    from aiflat_gui.io.single import write_image

    w = prepared(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())
    wait_job(qtbot, w.calibrate_to(tmp_path / "out.ser"))
    w.act_overlay.trigger()  # overlay off
    w.workflow.set_sensitivity(0.8, emit=True)
    assert w.workflow.mask_info.text() and w.workflow.calibrate_info.text()
    other = tmp_path / "other.tif"
    write_image(other, np.full((50, 60), 1000, np.uint16))
    assert w.open_path(other)
    assert w.workflow.mask_info.text() == ""
    assert w.workflow.calibrate_info.text() == ""
    assert w.act_overlay.isChecked() and w.viewer.overlay_visible()
    assert w.workflow.sensitivity_value() == pytest.approx(0.5)
    assert w.flat is None and w.doc.local_provider is None and w.doc.output_choices == {}
    assert all(w.workflow.state(s) == "not done" for s in ("reference", "mask", "flat", "calibrate"))
    w.set_view("blink")
    w._blink()
    assert "no flat" in w.statusBar().currentMessage()


# ---------------------------------------------------------------- bug 6: late errors
def test_avi_is_not_offered_for_12_bit_data(make_window, qtbot, demo, monkeypatch):
    from aiflat_gui.gui import export_dialog

    w = make_window()
    w.open_path(demo)  # 12-bit in uint16
    seen = []
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", lambda self: seen.append(
        [self.format.itemText(i) for i in range(self.format.count())]) or 0)
    w.export_dialog()
    assert seen and "avi" not in seen[0] and "ser" in seen[0]


def test_a_stale_flat_is_reported_before_the_replace_prompt(make_window, qtbot, demo, boxes, tmp_path):
    from aiflat_gui.gui.export_dialog import ExportDialog

    w = prepared(make_window, qtbot, demo)
    wait_job(qtbot, w.run_flat())
    w.mask_op("grow")  # the flat is now stale
    assert w.workflow.state("flat") == "stale"
    out = tmp_path / "exists.ser"
    out.write_bytes(b"x")
    d = w.doc
    dlg = ExportDialog(d.path, have_flat=True, parent=w, formats=d.output_formats(), flat_problem=d.flat_problem)
    dlg.cal_path.setText(str(out))
    dlg._calibrate()
    kinds = [k for k, *_ in boxes]
    assert kinds and kinds[0] == "warning" and "rebuild the flat" in boxes[0][2]
    assert "question" not in kinds  # never asked "Replace file?" for a calibration that cannot run
    assert out.read_bytes() == b"x"
    dlg.deleteLater()


# ---------------------------------------------------------------- bug 1: quitting
def test_dialogs_do_not_outlive_their_exec(make_window, qtbot, demo, monkeypatch):
    """The export dialog left as a child of the window was destroyed in the window's teardown after
    Python had let go of it: 'QObject: shared QObject was deleted directly', then a bus error."""
    from aiflat_gui.gui import export_dialog

    w = make_window()
    w.open_path(demo)
    monkeypatch.setattr(export_dialog.ExportDialog, "exec", lambda self: 0)
    w.export_dialog()
    qtbot.waitUntil(lambda: not w.findChildren(export_dialog.ExportDialog), timeout=3000)


def test_quit_during_a_job_asks_then_cancels_and_waits(make_window, qtbot, demo, monkeypatch, boxes):
    import aiflat_gui.gui.steps as steps

    w = make_window()
    w.open_path(demo)
    real = steps.job_reference

    def slow(path, params, progress=None):
        import time

        for i in range(200):
            progress(i / 200, "slow")
            time.sleep(0.02)
        return real(path, params, progress)

    monkeypatch.setattr(steps, "job_reference", slow)
    job = w.run_reference()
    assert job.running
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", lambda *a, **k: QtWidgets.QMessageBox.No)
    assert not w.close()  # "No": the window stays and the job goes on
    assert w.isVisible() and job.running
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", lambda *a, **k: QtWidgets.QMessageBox.Yes)
    assert w.close()
    assert not job.running and job.state == "cancelled"


def test_the_detectors_specks_are_verified_as_searched(make_window, qtbot, demo, monkeypatch):
    """The verifier asks more of the specks the offline detector found by searching than of a drawn
    or AI-proposed mask (core.verify's search_sigmas): the window hands it what the detector found."""
    from aiflat_gui import pipeline

    w = prepared(make_window, qtbot, demo)
    doc = w.doc
    found = doc.searched_mask()
    assert found is not None and np.array_equal(found, doc.local_provider.scores.mask(doc.sensitivity))
    seen = []
    real = pipeline.verify_step

    def spy(mask, seq, *a, searched=None, **k):
        seen.append(searched)
        return real(mask, seq, *a, searched=searched, **k)

    monkeypatch.setattr(pipeline, "verify_step", spy)
    wv = wait_job(qtbot, w.run_verify())
    assert wv.state == "succeeded", wv.error
    assert seen and np.array_equal(seen[-1], found)
    doc.set_mask(doc.mask.as_bool(), "Imported mask")  # a mask from elsewhere: one hypothesis per speck
    assert doc.searched_mask() is None
    wv = wait_job(qtbot, w.run_verify())
    assert wv.state == "succeeded", wv.error
    assert seen[-1] is None
