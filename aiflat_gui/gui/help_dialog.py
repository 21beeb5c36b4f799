"""Help ▸ Quick guide and Help ▸ Keyboard shortcuts.

The shortcut list is read from the window's own actions (so it is never out of date), plus the
mouse and the viewer's keys that are not menu actions."""

from __future__ import annotations

from typing import Optional

from PySide6 import QtGui, QtWidgets

GUIDE_HTML = """
<h3>AI Flat in five steps</h3>
<ol>
<li><b>Open</b> a video (SER, AVI, FITS, TIFF), a folder of frames (File ▸ Open Folder…), or the demo.
    Drop a file on the window to open it.</li>
<li><b>Reference</b>: the median of many frames. The sun or moon moves, the dust does not, so the
    reference keeps the dust and smooths the surface.</li>
<li><b>Mask</b>: <i>Find dust</i> (offline detector; the Sensitivity slider re-thresholds live),
    <i>Ask AI…</i> (Gemini; you see the cost first) or <i>Import…</i> a mask. Check it in
    <b>View ▸ Visualize dust</b> (key 8): dust shows as dark rings and spots. Fix the mask with
    Paint (B), Erase (E) and Remove speck (R); Mask outline (Shift+O) shows what is under it.</li>
<li><b>Flat</b>: exactly 1.0 outside the mask, the dust's shadow inside. Check it in the Flat view
    (its histogram is in flat units) and the Calibrated preview / Blink views.</li>
<li><b>Calibrate</b>: every frame divided by the flat, written as a new file (your input is never
    changed). Export ▸ Flat writes the flat for PixInsight, Siril, AutoStakkert! or PSS instead;
    Batch calibrates all the night's videos with the same flat.</li>
</ol>
<p>Pixels outside the mask are never changed, bit for bit. Your mask and choices are saved beside the
video and come back when you open it again. The mouse wheel scrolls the Workflow panel; click a
control first to change it with the wheel.</p>
"""

#: keys and mouse gestures that are not menu actions
EXTRA_KEYS = (
    ("Mouse wheel", "Zoom the image"),
    ("Middle-drag", "Pan (any tool)"),
    ("Right-drag", "Zoom (any tool)"),
    ("Ctrl+Y", "Redo (in the viewer)"),
)


def shortcut_rows(window) -> list[tuple[str, str]]:
    """(key, what it does) for every action of ``window`` that has a shortcut, menu order first."""
    seen = set()
    rows = []
    for a in window.findChildren(QtGui.QAction):
        sc = a.shortcut()
        if sc.isEmpty() or a.objectName() in seen:
            continue
        seen.add(a.objectName())
        text = (a.statusTip() or a.text()).replace("&&", "\0").replace("&", "").replace("\0", "&")
        rows.append((sc.toString(QtGui.QKeySequence.SequenceFormat.NativeText), text.rstrip("…")))
    rows.sort(key=lambda r: (len(r[0]) > 1, r[0]))
    return rows + list(EXTRA_KEYS)


class ShortcutsDialog(QtWidgets.QDialog):
    def __init__(self, window, parent: Optional[QtWidgets.QWidget] = None):
        super().__init__(parent or window)
        self.setWindowTitle("Keyboard shortcuts")
        lay = QtWidgets.QVBoxLayout(self)
        rows = shortcut_rows(window)
        self.table = QtWidgets.QTableWidget(len(rows), 2)
        self.table.setObjectName("shortcutTable")
        self.table.setHorizontalHeaderLabels(["Key", "Action"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        for i, (key, text) in enumerate(rows):
            self.table.setItem(i, 0, QtWidgets.QTableWidgetItem(key))
            self.table.setItem(i, 1, QtWidgets.QTableWidgetItem(text))
        self.table.setWordWrap(True)
        self.table.resizeColumnToContents(0)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(self.table)
        bb = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self.resize(640, 600)
        self.table.resizeRowsToContents()


class GuideDialog(QtWidgets.QDialog):
    def __init__(self, parent: Optional[QtWidgets.QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("Quick guide")
        lay = QtWidgets.QVBoxLayout(self)
        self.text = QtWidgets.QTextBrowser()
        self.text.setObjectName("guideText")
        self.text.setHtml(GUIDE_HTML)
        lay.addWidget(self.text)
        bb = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self.resize(560, 520)


def _show(dialog: QtWidgets.QDialog, window) -> QtWidgets.QDialog:
    if getattr(window, "interactive", True):
        dialog.setModal(False)
        dialog.show()
    return dialog


def show_shortcuts(window) -> QtWidgets.QDialog:
    return _show(ShortcutsDialog(window), window)


def show_guide(window) -> QtWidgets.QDialog:
    return _show(GuideDialog(window), window)
