"""The table of specks (connected components of the mask): area, depth and the verifier's verdict;
a click selects and centres the speck in the viewer (the main window connects
:attr:`SpeckTable.speckActivated`).

After a verification (``set_verification``) each speck shows its verdict (dust / not dust /
unverified) and its measured depth ± uncertainty; the reason is the verdict's tooltip. The user
overrides a verdict from the right-click menu ("Treat as dust", "Not dust", "Use the measured
verdict"); Delete removes the selected speck from the mask, N / P select the next / previous
speck. :meth:`SpeckTable.flat_mask` is the mask the flat is built from (refused specks left out,
the user's mask untouched)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Signal

COLUMNS = ("#", "Area", "Depth %", "Verdict", "x, y")
DEPTH_COL, VERDICT_COL = 2, 3
DEPTH_TIPS = {
    "flat": "Mean darkening of the speck in the flat: what calibration removes.",
    "reference": "Darkening estimated on the reference against its surroundings (solar texture under a "
                 "faint speck can make it slightly negative); build the flat to measure it.",
    "verified": "Darkening measured from the video: the static shadow in sensor coordinates (mean over the "
                "speck) ± its 1-sigma uncertainty.",
}
VERDICT_TIP = ("Checked against the video: dust stays still on the sensor while the target moves. "
               "Right-click to override; specks not shown to be dust keep a flat of exactly 1.0.")
DUST, NOT_DUST, UNVERIFIED = "dust", "not dust", "unverified"
VERDICT_COLOURS = {DUST: QtGui.QColor(200, 40, 40), NOT_DUST: QtGui.QColor(110, 110, 110),
                   UNVERIFIED: QtGui.QColor(170, 120, 0)}


def _get(speck: Any, name: str, default=None):
    if isinstance(speck, dict):
        return speck.get(name, default)
    return getattr(speck, name, default)


class _Item(QtWidgets.QTableWidgetItem):
    """Sorts numerically."""

    def __init__(self, value: float, text: str):
        super().__init__(text)
        self.value = value
        self.setTextAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
        self.setFlags(self.flags() & ~QtCore.Qt.ItemIsEditable)

    def __lt__(self, other):
        if isinstance(other, _Item):
            return self.value < other.value
        return super().__lt__(other)


class SpeckTable(QtWidgets.QTableWidget):
    """``set_specks(specks, mask)`` fills the table from ``core.mask.components`` results (objects
    or dicts with label, area, centroid (x, y), bbox, attenuation) of ``mask``.
    ``speckActivated(x, y)`` on click / N / P; ``speckRemoveRequested(x, y)`` on Delete;
    ``overridesChanged()`` when the user overrides a verdict; ``verifyRequested()`` from the menu."""

    speckActivated = Signal(int, int)
    speckRemoveRequested = Signal(int, int)
    overridesChanged = Signal()
    verifyRequested = Signal()

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None, max_rows: int = 2000):
        super().__init__(0, len(COLUMNS), parent)
        self.max_rows = max_rows
        self.specks: list[Any] = []
        self.verification = None  # core.verify.Verification of the mask it was measured on
        self.overrides: dict[tuple[int, int], str] = {}  # speck anchor (x, y) -> the user's verdict
        self.keep_unverified = False
        self._labels: Optional[np.ndarray] = None
        self._checks: dict[int, Any] = {}  # component label of the shown mask -> its check
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        # every column as wide as its header and values (nothing clipped); the centre is one
        # "x, y" column so that the whole row fits the right dock without scrolling sideways
        self.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        ha = self.horizontalHeaderItem(1)
        if ha is not None:
            ha.setToolTip("Area of the speck in pixels")
        hc = self.horizontalHeaderItem(4)
        if hc is not None:
            hc.setToolTip("Centre of the speck (x, y) in pixels; click a row to go there")
        hv = self.horizontalHeaderItem(VERDICT_COL)
        if hv is not None:
            hv.setToolTip(VERDICT_TIP)
        self.setSortingEnabled(True)
        self.sortByColumn(0, QtCore.Qt.AscendingOrder)
        self.setContextMenuPolicy(QtCore.Qt.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.cellClicked.connect(self._on_click)
        self.cellActivated.connect(self._on_click)

    # -- contents ---------------------------------------------------------------------------------
    def set_specks(self, specks: Sequence[Any], mask: Optional[np.ndarray] = None) -> None:
        self.setSortingEnabled(False)
        self.specks = list(specks)[: self.max_rows]
        if mask is not None:
            self._match(mask)
        self.setRowCount(len(self.specks))
        verified = False
        for row, s in enumerate(self.specks):
            cx, cy = self.centroid_xy(s)
            label = int(_get(s, "label", row + 1))
            check = self._checks.get(label)
            if check is not None and check.depth is not None:
                verified = True
                depth = 100.0 * float(check.depth)
                dtext = f"{depth:.1f} ± {100.0 * float(check.depth_err or 0.0):.1f}"
            else:
                att = _get(s, "attenuation", None)
                depth = float("nan") if att is None else 100.0 * float(att)
                dtext = "—" if depth != depth else f"{depth:.1f}"
            verdict = self.verdict_of(check)
            vtext = "—" if verdict is None else verdict + (" (you)" if self._overridden(check) else "")
            items = [_Item(label, str(label)), _Item(float(_get(s, "area", 0)), f"{int(_get(s, 'area', 0))}"),
                     _Item(depth if depth == depth else -1.0, dtext),
                     _Item({DUST: 0, UNVERIFIED: 1, NOT_DUST: 2}.get(verdict, 3), vtext),
                     _Item(round(cy) * 1e6 + cx, f"{cx:.0f}, {cy:.0f}")]
            items[0].setData(QtCore.Qt.UserRole, row)
            if verdict is not None:
                items[VERDICT_COL].setForeground(VERDICT_COLOURS[verdict])
                items[VERDICT_COL].setTextAlignment(QtCore.Qt.AlignLeft | QtCore.Qt.AlignVCenter)
                reason = check.reason
                if self._overridden(check):
                    reason = f"set by you; measured: {check.verdict} ({check.reason})"
                items[VERDICT_COL].setToolTip(reason)
            for col, it in enumerate(items):
                self.setItem(row, col, it)
        sources = {_get(s, "depth_from", None) for s in self.specks}
        header = self.horizontalHeaderItem(DEPTH_COL)
        if header is not None:
            header.setToolTip(DEPTH_TIPS["verified"] if verified else
                              DEPTH_TIPS["flat"] if sources == {"flat"} else DEPTH_TIPS["reference"])
        self.setSortingEnabled(True)

    def _match(self, mask: np.ndarray) -> None:
        """Which check belongs to which component of ``mask`` (through the checks' anchors)."""
        import cv2

        m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
        _n, self._labels = cv2.connectedComponents(m.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        self._checks = {}
        if self.verification is None or tuple(self.verification.shape) != m.shape:
            return
        for c in self.verification.checks:
            ax, ay = c.anchor
            k = int(self._labels[ay, ax]) if (0 <= ay < m.shape[0] and 0 <= ax < m.shape[1]) else 0
            if k and (k not in self._checks or self.verdict_of(c) == DUST):
                self._checks[k] = c

    # -- verification -------------------------------------------------------------------------------
    def set_verification(self, verification, keep_unverified: bool = False) -> None:
        """Show ``verification`` (a ``core.verify.Verification``; None clears it). Overrides of specks
        that are still there are kept."""
        self.verification = verification
        self.keep_unverified = bool(keep_unverified)
        if verification is not None:  # (none yet, e.g. a restored session: the overrides wait for one)
            anchors = {tuple(c.anchor) for c in verification.checks}
            for a in [a for a in self.overrides if a not in anchors]:
                del self.overrides[a]  # in place: the dict is the Document's

    def bind_overrides(self, overrides: dict) -> None:
        """Show and edit ``overrides`` (the open Document's dict, its one owner)."""
        self.overrides = overrides

    def verdict_of(self, check) -> Optional[str]:
        if check is None:
            return None
        return self.overrides.get(tuple(check.anchor), check.verdict)

    def _overridden(self, check) -> bool:
        return check is not None and tuple(check.anchor) in self.overrides \
            and self.overrides[tuple(check.anchor)] != check.verdict

    def needs_verification(self, mask: np.ndarray) -> bool:
        """True when ``mask`` holds a speck no verification has looked at yet."""
        import cv2

        m = np.ascontiguousarray(np.asarray(mask, dtype=bool))
        if not m.any():
            return False
        if self.verification is None or tuple(self.verification.shape) != m.shape:
            return True
        n, lab = cv2.connectedComponents(m.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        seen = np.zeros(n, bool)
        for c in self.verification.checks:
            ax, ay = c.anchor
            seen[lab[ay, ax]] = True
        seen[0] = True
        return not seen.all()

    def flat_mask(self, mask: np.ndarray) -> tuple[np.ndarray, list, Optional[np.ndarray]]:
        """The mask the flat is built from, the refused checks (the user's overrides applied), and
        its pixels outlined by their measured shadow (None before a verification; see
        ``pipeline.build_flat``)."""
        from ..pipeline import verified_mask

        if self.verification is None:
            return np.asarray(mask, dtype=bool).copy(), [], None
        return verified_mask(mask, self.verification, self.overrides, keep_unverified=self.keep_unverified)

    def refused_mask(self, mask: np.ndarray) -> Optional[np.ndarray]:
        """The pixels of ``mask`` the flat leaves out (None when none): refused specks, and the part
        of a speck judged dust where the video shows no shadow (see ``Verification.shadow``)."""
        kept, _refused, _measured = self.flat_mask(mask)
        out = np.asarray(mask, dtype=bool) & ~kept
        return out if out.any() else None

    def set_override(self, row: int, verdict: Optional[str]) -> None:
        """The user's verdict for the speck in ``row`` (None: back to the measured one)."""
        check = self.check_at(row)
        if check is None:
            return
        key = tuple(check.anchor)
        if verdict is None or verdict == check.verdict:
            self.overrides.pop(key, None)
        else:
            self.overrides[key] = verdict
        self.set_specks(self.specks)
        self.overridesChanged.emit()

    def check_at(self, row: int):
        s = self.speck_at(row)
        return None if s is None else self._checks.get(int(_get(s, "label", 0)))

    def speck_at(self, row: int):
        it = self.item(row, 0)
        if it is None:
            return None
        return self.specks[int(it.data(QtCore.Qt.UserRole))]

    # -- interaction -------------------------------------------------------------------------------
    def _menu(self, pos: QtCore.QPoint) -> None:
        row = self.rowAt(pos.y())
        menu = QtWidgets.QMenu(self)
        check = self.check_at(row) if row >= 0 else None
        if row >= 0:
            self.selectRow(row)
            a_dust = menu.addAction("Treat as dust")
            a_not = menu.addAction("Not dust")
            a_auto = menu.addAction("Use the measured verdict")
            for a in (a_dust, a_not, a_auto):
                a.setEnabled(check is not None)
            a_dust.triggered.connect(lambda: self.set_override(row, DUST))
            a_not.triggered.connect(lambda: self.set_override(row, NOT_DUST))
            a_auto.triggered.connect(lambda: self.set_override(row, None))
            menu.addSeparator()
            menu.addAction("Remove speck from the mask\tDel", lambda: self._remove(row))
            menu.addSeparator()
        menu.addAction("Verify specks against the video", self.verifyRequested.emit)
        menu.popup(self.viewport().mapToGlobal(pos))
        self._last_menu = menu

    def _remove(self, row: int) -> None:
        s = self.speck_at(row)
        if s is None:
            return
        x, y = self.pixel_of(s)
        self.speckRemoveRequested.emit(x, y)

    def pixel_of(self, speck) -> tuple[int, int]:
        """A pixel inside the speck (its anchor when verified, else its first pixel in its box)."""
        check = self._checks.get(int(_get(speck, "label", 0)))
        if check is not None:
            return int(check.anchor[0]), int(check.anchor[1])
        bx, by, bw, bh = _get(speck, "bbox", (0, 0, 1, 1))
        if self._labels is not None:
            sub = self._labels[by:by + bh, bx:bx + bw] == int(_get(speck, "label", 0))
            if sub.any():
                iy, ix = divmod(int(np.argmax(sub.ravel())), bw)
                return bx + ix, by + iy
        cx, cy = self.centroid_xy(speck)
        return int(round(cx)), int(round(cy))

    def step(self, delta: int) -> None:
        """Select and centre the next (+1) / previous (-1) speck in the table's order."""
        n = self.rowCount()
        if n == 0:
            return
        cur = self.currentRow()
        row = (0 if delta > 0 else n - 1) if cur < 0 else (cur + delta) % n
        self.selectRow(row)
        self.setCurrentCell(row, 0)
        self._on_click(row, 0)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        key = event.key()
        if key in (QtCore.Qt.Key_Delete, QtCore.Qt.Key_Backspace):
            if self.currentRow() >= 0:
                self._remove(self.currentRow())
            return
        if key == QtCore.Qt.Key_N:
            self.step(1)
            return
        if key == QtCore.Qt.Key_P:
            self.step(-1)
            return
        super().keyPressEvent(event)

    @staticmethod
    def centroid_xy(speck: Any) -> tuple[float, float]:
        """(x, y) of a speck (``core.mask.Speck.centroid`` is (x, y))."""
        c = _get(speck, "centroid", (0.0, 0.0))
        return float(c[0]), float(c[1])

    def _on_click(self, row: int, _col: int) -> None:
        s = self.speck_at(row)
        if s is None:
            return
        x, y = self.centroid_xy(s)
        self.speckActivated.emit(int(round(x)), int(round(y)))
