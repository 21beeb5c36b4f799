"""The verifier in the app: the Specks table's verdict column, the grey hatched overlay of the specks
the flat leaves out, the user's override changing the flat, Delete / N / P in the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from test_gui_workflow import boxes, wait_job  # noqa: F401
from test_verify import _scene

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, boxes):  # noqa: F811
    """The main window on a drifting scene holding one static dust disc and one dark feature that
    moves with the target, with a mask marking both (as an over-eager AI would)."""
    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "userdata"))
    from aiflat_gui.gui.main_window import MainWindow
    from aiflat_gui.io.ser import write_ser

    frames, dust, feature = _scene()
    path = write_ser(tmp_path / "v.ser", frames, bit_depth=16)
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)
    w = MainWindow(settings=settings, auto_reference=False)
    qtbot.addWidget(w)
    w.resize(1100, 700)
    w.show()
    assert w.open_path(path)
    wait_job(qtbot, w.run_reference())
    w.mask_model.apply((dust | feature).astype(np.uint8), "AI mask")
    w.workflow.grow.setValue(0)
    yield w, dust, feature
    if w.worker is not None:
        w.worker.cancel()
        w.wait_idle(10)


def _rows(table):
    out = {}
    for r in range(table.rowCount()):
        x, y = (float(v) for v in table.item(r, 4).text().split(","))
        out[(round(x), round(y))] = (table.item(r, 3).text(), table.item(r, 2).text(), r)
    return out


def _row_near(table, x, y):
    return min(_rows(table).items(), key=lambda kv: abs(kv[0][0] - x) + abs(kv[0][1] - y))[1]


def test_verdicts_overlay_and_override_change_the_flat(window, qtbot):
    w, dust, feature = window
    wf = wait_job(qtbot, w.run_flat())
    assert wf.state == "succeeded", wf.error
    t = w.speck_table
    assert t.horizontalHeaderItem(3).text() == "Verdict"
    qtbot.waitUntil(lambda: t.rowCount() == 2 and t.verification is not None, timeout=5000)
    v_dust, d_dust, _ = _row_near(t, 60, 90)
    v_feat, d_feat, row_feat = _row_near(t, 150, 50)
    assert v_dust == "dust" and v_feat == "not dust", _rows(t)
    assert "±" in d_dust and abs(float(d_dust.split("±")[0]) - 25.0) < 3.0  # measured depth ± uncertainty
    assert "moves with the target" in t.item(row_feat, 3).toolTip()
    # the flat leaves the feature out: exactly 1.0 there; the mask itself keeps it
    assert np.all(w.flat[feature] == 1.0) and w.flat[dust].mean() < 0.85
    assert w.mask_model.mask[feature].all()
    # the overlay draws the refused speck grey and hatched over the red mask
    assert w.viewer.refused_item.isVisible() and w.viewer.refused_item.pixels == int(feature.sum())
    box = w.viewer.refused_item.boundingRect()
    assert 140 <= box.center().x() <= 160 and 40 <= box.center().y() <= 60

    # the user overrides: "Treat as dust" -> the flat is stale, and rebuilt it corrects the feature too
    t.set_override(row_feat, "dust")
    assert w.workflow.state("flat") == "stale"
    assert _row_near(t, 150, 50)[0] == "dust (you)"
    assert not w.viewer.refused_item.isVisible()
    wait_job(qtbot, w.run_flat())
    assert np.any(w.flat[feature] != 1.0)
    # the override is part of the session: reopened, the video keeps it; the flat's job verifies
    # the specks again and still corrects the feature
    path = w.doc.path
    assert w.save_session()
    saved = json.loads(Path(str(path) + ".aiflat.json").read_text())
    assert [v for *_xy, v in saved["overrides"]] == ["dust"]
    assert w.open_path(path)
    t = w.speck_table
    assert t.verification is None and list(t.overrides.values()) == ["dust"]
    wait_job(qtbot, w.run_reference())
    wait_job(qtbot, w.run_flat())
    qtbot.waitUntil(lambda: t.rowCount() == 2 and t.verification is not None, timeout=5000)
    assert _row_near(t, 150, 50)[0] == "dust (you)"
    assert np.any(w.flat[feature] != 1.0)
    # ... and back to the measured verdict
    t.set_override(_row_near(t, 150, 50)[2], None)
    assert w.doc.overrides == {}
    wait_job(qtbot, w.run_flat())
    assert np.all(w.flat[feature] == 1.0)


def test_table_keys_delete_next_previous(window, qtbot):
    w, dust, feature = window
    wait_job(qtbot, w.run_flat())
    t = w.speck_table
    qtbot.waitUntil(lambda: t.rowCount() == 2, timeout=5000)
    seen = []
    t.speckActivated.connect(lambda x, y: seen.append((x, y)))
    t.setFocus()
    QTest.keyClick(t, Qt.Key_N)
    QTest.keyClick(t, Qt.Key_N)
    QTest.keyClick(t, Qt.Key_P)
    assert len(seen) == 3 and seen[0] != seen[1] and seen[2] == seen[0]
    # Delete removes the selected speck from the mask (one undo step)
    row = _row_near(t, 150, 50)[2]
    t.selectRow(row)
    t.setCurrentCell(row, 0)
    QTest.keyClick(t, Qt.Key_Delete)
    assert not w.mask_model.mask[feature].any() and w.mask_model.mask[dust].all()
    w.undo()
    assert w.mask_model.mask[feature].all()


def test_single_image_says_nothing_was_verified(qtbot, tmp_path, monkeypatch, boxes):  # noqa: F811
    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "userdata"))
    from aiflat_gui.gui.main_window import MainWindow
    from aiflat_gui.io.single import write_image

    frames, dust, feature = _scene(frames=1)
    write_image(tmp_path / "frame.tif", frames[0])
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)
    w = MainWindow(settings=settings, auto_reference=False)
    qtbot.addWidget(w)
    w.show()
    assert w.open_path(tmp_path / "frame.tif")
    wait_job(qtbot, w.run_reference())
    w.mask_model.apply((dust | feature).astype(np.uint8), "AI mask")
    wait_job(qtbot, w.run_flat())
    t = w.speck_table
    qtbot.waitUntil(lambda: t.rowCount() == 2, timeout=5000)
    assert {v[0] for v in _rows(t).values()} == {"unverified"}
    assert "single image" in w.statusBar().currentMessage()
    assert "single image" in w.log_view.toPlainText()
    assert not w.viewer.refused_item.isVisible()
    assert w.flat[feature].mean() < 0.9  # nothing refused


def test_speck_table_headers_are_never_clipped(qtbot):
    """Each column is at least as wide as its header text ("Area px" was cut to "Area p" in the
    right dock at 1600x1000)."""
    from aiflat_gui.gui.speck_table import COLUMNS, SpeckTable

    t = SpeckTable()
    qtbot.addWidget(t)
    t.resize(300, 400)
    t.show()
    t.set_specks([{"label": 1, "area": 12345, "x": 1234.0, "y": 987.0, "w": 9, "h": 9}])
    hh = t.horizontalHeader()
    fm = hh.fontMetrics()
    for c, text in enumerate(COLUMNS):
        assert hh.sectionSize(c) >= fm.horizontalAdvance(text), (text, hh.sectionSize(c))


def test_speck_table_fits_the_right_dock_without_scrolling_sideways(qtbot, tmp_path, monkeypatch):
    """In a 1600x1000 window with its default dock sizes, the widest rows a user meets (a 5-digit
    area, a measured depth with its uncertainty, an overridden verdict, a 4-digit centre, more
    rows than fit) fit the Specks dock: nothing to scroll sideways to (the centre's "y" was
    off-screen)."""
    from aiflat_gui.core.verify import NOT_DUST, SpeckCheck, Verification
    from aiflat_gui.gui.main_window import MainWindow

    monkeypatch.setenv("AIFLAT_DATA_DIR", str(tmp_path / "userdata"))
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat)
    w = MainWindow(settings=settings, auto_reference=False)
    qtbot.addWidget(w)
    w.resize(1600, 1000)
    w.show()
    from aiflat_gui.gui.polish import arrange_docks
    arrange_docks(w, wide=True)  # a 1600 px screen's layout (the offscreen screen is smaller)
    qtbot.wait(100)
    w.default_dock_sizes()
    qtbot.wait(100)
    t = w.speck_table
    mask = np.zeros((1200, 1920), bool)
    checks, specks = [], []
    for k in range(40):
        y0, x0 = 20 + 28 * k, 1200 + (k % 5) * 130
        mask[y0:y0 + 20, x0:x0 + 110] = True
        checks.append(SpeckCheck(label=k + 1, anchor=(x0, y0), area=2200, centroid=(x0 + 54.5, y0 + 9.5),
                                 bbox=(x0, y0, 110, 20), verdict=NOT_DUST, depth=0.123, depth_err=0.045,
                                 reason="no static shadow"))
        specks.append({"label": k + 1, "area": 22000 + k, "centroid": (x0 + 54.5, y0 + 9.5)})
    t.set_verification(Verification(shape=mask.shape, checks=checks))
    t.overrides[checks[0].anchor] = "dust"
    t.set_specks(specks, mask)
    assert t.item(0, 3).text() == "dust (you)" and t.item(0, 4).text() == "1254, 30"
    qtbot.waitUntil(lambda: t.verticalScrollBar().isVisible(), timeout=2000)
    qtbot.waitUntil(lambda: t.horizontalScrollBar().maximum() == 0, timeout=2000)
