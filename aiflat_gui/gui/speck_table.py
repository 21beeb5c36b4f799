"""The table of specks (connected components of the mask): area and depth; a click selects and
centres the speck in the viewer (the main window connects :attr:`SpeckTable.speckActivated`)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

COLUMNS = ("#", "Area px", "Depth %", "x", "y")
DEPTH_TIPS = {
    "flat": "Mean darkening of the speck in the flat: what calibration removes.",
    "reference": "Darkening estimated on the reference against its surroundings (solar texture under a "
                 "faint speck can make it slightly negative); build the flat to measure it.",
}


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
    """``set_specks(specks)`` fills the table from ``core.mask.components`` results (objects or dicts
    with label, area, centroid (x, y), bbox, attenuation). ``speckActivated(x, y)`` on click."""

    speckActivated = Signal(int, int)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None, max_rows: int = 2000):
        super().__init__(0, len(COLUMNS), parent)
        self.max_rows = max_rows
        self.specks: list[Any] = []
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
        self.setSortingEnabled(True)
        self.sortByColumn(0, QtCore.Qt.AscendingOrder)
        self.cellClicked.connect(self._on_click)
        self.cellActivated.connect(self._on_click)

    def set_specks(self, specks: Sequence[Any]) -> None:
        self.setSortingEnabled(False)
        self.specks = list(specks)[: self.max_rows]
        self.setRowCount(len(self.specks))
        for row, s in enumerate(self.specks):
            cx, cy = self.centroid_xy(s)
            att = _get(s, "attenuation", None)
            depth = float("nan") if att is None else 100.0 * float(att)
            label = int(_get(s, "label", row + 1))
            items = [_Item(label, str(label)), _Item(float(_get(s, "area", 0)), f"{int(_get(s, 'area', 0))}"),
                     _Item(depth if depth == depth else -1.0, "—" if depth != depth else f"{depth:.1f}"),
                     _Item(cx, f"{cx:.0f}"), _Item(cy, f"{cy:.0f}")]
            items[0].setData(QtCore.Qt.UserRole, row)
            for col, it in enumerate(items):
                self.setItem(row, col, it)
        sources = {_get(s, "depth_from", None) for s in self.specks}
        header = self.horizontalHeaderItem(2)
        if header is not None:
            header.setToolTip(DEPTH_TIPS["flat"] if sources == {"flat"} else DEPTH_TIPS["reference"])
        self.setSortingEnabled(True)

    @staticmethod
    def centroid_xy(speck: Any) -> tuple[float, float]:
        """(x, y) of a speck (``core.mask.Speck.centroid`` is (x, y))."""
        c = _get(speck, "centroid", (0.0, 0.0))
        return float(c[0]), float(c[1])

    def _on_click(self, row: int, _col: int) -> None:
        it = self.item(row, 0)
        if it is None:
            return
        s = self.specks[int(it.data(QtCore.Qt.UserRole))]
        x, y = self.centroid_xy(s)
        self.speckActivated.emit(int(round(x)), int(round(y)))
