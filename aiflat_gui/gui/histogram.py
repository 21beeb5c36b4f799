"""Stretch controls: a histogram with draggable black/white points, the stretch mode, its
strength, percentile auto-levels and "apply to all frames". Display only.

The panel holds no stretch of its own: it is a view of a *stretch model*, any object with a
``stretch`` attribute (a :class:`~aiflat_gui.core.stretch.StretchState` or None) and a
``set_stretch(state)`` method -- in the app the :class:`~aiflat_gui.document.Document`, whose
``display.stretch`` is the one owner. Edits go to the model (which notifies; the window then
calls :meth:`StretchPanel.refresh` and renders); :meth:`StretchPanel.refresh` shows the model's
state (after an undo, a restored session, another file). Without a model (``bind(None)``) the
panel keeps a private one, for the panel on its own. ``stretchChanged`` still reports every edit::

    panel.bind(document)
    document.on_change(lambda what: what == "display" and (panel.refresh(), viewer.set_stretch(document.stretch)))
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Qt, Signal

from ..core.stretch import MODES, StretchState, auto_levels, stf_auto, subsample
from .widgets import guard_wheel

SLIDER_MAX = 1000

#: per mode: (label, slider -> value, value -> slider, StretchState field)
_STRENGTH = {
    "gamma": ("Gamma", lambda s: 10 ** ((s - 500) / 500.0), lambda v: 500 + 500 * math.log10(v), "gamma"),
    "asinh": ("Strength", lambda s: 10 ** (-1 + 4 * s / 1000.0), lambda v: (math.log10(v) + 1) * 250, "asinh_beta"),
    "log": ("Strength", lambda s: 10 ** (4 * s / 1000.0), lambda v: math.log10(v) * 250, "log_a"),
    # "auto": the slider is the target background brightness (0.02 .. 0.6), the STF is recomputed
    "auto": ("Background", lambda s: 0.02 + 0.58 * s / 1000.0, lambda v: (v - 0.02) / 0.58 * 1000, None),
}


class _OwnStretch:
    """The stretch model of a panel bound to nothing."""

    def __init__(self) -> None:
        self.stretch: Optional[StretchState] = None

    def set_stretch(self, state: StretchState) -> None:
        self.stretch = state.copy()


class StretchPanel(QtWidgets.QWidget):
    """Histogram (log counts of a subsample) + black/white region + mode + strength + Auto."""

    stretchChanged = Signal(object)  # StretchState

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._model: Any = _OwnStretch()
        self._sample: Optional[np.ndarray] = None    # small copy of the image's subsample
        self._target_background = 0.25
        self._updating = False
        self._has_image = False
        self._fixed: Optional[tuple[float, float]] = None  # levels of a fixed-levels view (flat, mask…)
        self._saved_sample: Optional[np.ndarray] = None    # the data view's sample meanwhile

        self.plot = pg.PlotWidget(background=None)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.hideAxis("left")
        self.plot.setMinimumHeight(90)
        self.plot.getPlotItem().setContentsMargins(0, 0, 0, 0)
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(120, 160, 220, 120),
                                     pen=pg.mkPen((160, 190, 240), width=1))
        self.plot.addItem(self.curve)
        self.region = pg.LinearRegionItem(values=(0, 1), movable=True, swapMode="sort",
                                          brush=(255, 255, 255, 25))
        self.region.setZValue(10)
        for line, colour, tip in zip(self.region.lines, ((30, 30, 30), (250, 250, 250)),
                                     ("Black point: drag", "White point: drag")):
            line.setPen(pg.mkPen((230, 160, 40), width=2))
            line.setHoverPen(pg.mkPen(colour, width=3))
            line.setToolTip(tip)
        self.plot.addItem(self.region)

        self.mode_combo = QtWidgets.QComboBox()
        for m in MODES:
            self.mode_combo.addItem(m.capitalize() if m != "auto" else "Auto (STF)", m)
        self.strength_label = QtWidgets.QLabel("Strength")
        self.strength_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(0, SLIDER_MAX)
        self.strength_slider.setToolTip("Strength of the curve (gamma, asinh, log) or the background level (Auto)")
        self.mode_combo.setToolTip("Display curve: Linear, Auto (screen transfer function), asinh, log, gamma. "
                                   "Display only: the data never changes")
        self.strength_value = QtWidgets.QLabel("")
        self.strength_value.setMinimumWidth(44)
        self.auto_button = QtWidgets.QPushButton("Auto")
        self.auto_button.setToolTip("Percentile black/white points (0.1% / 99.9%) of this frame "
                                    "(in Auto mode: the screen transfer function)")
        self.apply_all_check = QtWidgets.QCheckBox("Apply to all frames")
        self.apply_all_check.setToolTip("Keep these levels when the frame changes "
                                        "(off: automatic levels for every frame)")
        self.black_spin = QtWidgets.QDoubleSpinBox()
        self.white_spin = QtWidgets.QDoubleSpinBox()
        for sp, tip in ((self.black_spin, "Black point (data units)"), (self.white_spin, "White point (data units)")):
            sp.setRange(-1e12, 1e12)
            sp.setDecimals(4)
            sp.setKeyboardTracking(False)
            sp.setToolTip(tip)
            sp.setMinimumWidth(sp.fontMetrics().horizontalAdvance("00000.0000") + 20)  # not the ±1e12 range

        row1 = QtWidgets.QHBoxLayout()
        row1.addWidget(QtWidgets.QLabel("Mode"))
        row1.addWidget(self.mode_combo, 1)
        row1.addWidget(self.auto_button)
        row2 = QtWidgets.QHBoxLayout()
        row2.addWidget(self.strength_label)
        row2.addWidget(self.strength_slider, 1)
        row2.addWidget(self.strength_value)
        row3 = QtWidgets.QHBoxLayout()
        row3.addWidget(QtWidgets.QLabel("Black"))
        row3.addWidget(self.black_spin, 1)
        row3.addWidget(QtWidgets.QLabel("White"))
        row3.addWidget(self.white_spin, 1)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.plot, 1)
        lay.addLayout(row3)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.apply_all_check)
        self.fixed_label = QtWidgets.QLabel("")
        self.fixed_label.setObjectName("fixedLevels")
        self.fixed_label.setWordWrap(True)
        self.fixed_label.setVisible(False)
        lay.addWidget(self.fixed_label)

        self.region.sigRegionChanged.connect(self._on_region)
        self.mode_combo.currentIndexChanged.connect(self._on_mode)
        self.strength_slider.valueChanged.connect(self._on_slider)
        self.auto_button.clicked.connect(self.auto)
        self.apply_all_check.toggled.connect(self._on_apply_all)
        self.black_spin.valueChanged.connect(self._on_spins)
        self.white_spin.valueChanged.connect(self._on_spins)
        guard_wheel(self)  # in a scrolling dock the wheel scrolls unless the control has the focus
        self._sync_widgets()

    # ------------------------------------------------------------------ API
    def bind(self, model: Any) -> None:
        """Show and edit ``model``'s stretch (see the module's docstring); None: a private one."""
        self._model = model if model is not None else _OwnStretch()
        self.refresh()

    @property
    def _state(self) -> StretchState:
        """The model's stretch (the default one while it has none)."""
        st = self._model.stretch
        return st if st is not None else StretchState()

    def _put(self, state: StretchState) -> None:
        self._model.set_stretch(state)

    def has_state(self) -> bool:
        """True when the model holds a stretch (else the first image auto-levels)."""
        return self._model.stretch is not None

    def state(self) -> StretchState:
        return self._state.copy()

    def refresh(self) -> None:
        """Show the model's stretch in the controls (after it changed elsewhere)."""
        self._sync_widgets()
        if self._sample is not None and self._fixed is None:
            b, w = self._state.levels
            lo, hi = self.plot.getViewBox().viewRange()[0]
            if b < lo or w > hi:
                self._update_histogram()

    def set_state(self, state: StretchState, emit: bool = False) -> None:
        """Set the model's stretch to ``state`` and show it (emits stretchChanged only when ``emit``)."""
        self._put(state.copy())
        self._sync_widgets()
        if emit:
            self.stretchChanged.emit(self.state())

    def apply_to_all(self) -> bool:
        return self.apply_all_check.isChecked()

    def set_apply_to_all(self, on: bool) -> None:
        self.apply_all_check.setChecked(bool(on))

    def set_image(self, array: Optional[np.ndarray], color: str = "mono", emit: bool = True,
                  keep: bool = False) -> StretchState:
        """Show the histogram of ``array`` (a subsample, so it is fast on 4K frames).

        Unless "apply to all frames" is on, the levels are recomputed for this frame (also for
        the first image unless the model already holds a stretch) (STF in Auto mode, percentiles
        otherwise), into the model; ``keep``: show the histogram, keep the model's stretch. Returns the state to display this frame with; emits
        stretchChanged if it changed and ``emit``."""
        if array is None:
            self._sample = None
            self._has_image = False
            self.curve.setData([0, 1], [0])
            return self.state()
        # all channels (or raw CFA values) together; the stride is odd so CFA colours all count
        shown = self._sample
        self._sample = np.ascontiguousarray(subsample(np.asarray(array)))
        self._has_image = True
        old = self._state
        if not self.has_state() or not (keep or self.apply_to_all()):
            new = self._auto_state(old)
            if new != old or not self.has_state():
                self._put(new)
        if self._fixed is not None:  # a fixed-levels view is shown: keep its histogram until show_data()
            self._saved_sample, self._sample = self._sample, shown
            return self.state()
        self._update_histogram()
        self._sync_widgets()
        if emit and self._state != old:
            self.stretchChanged.emit(self.state())
        return self.state()

    def show_levels(self, array: Optional[np.ndarray], levels: tuple[float, float], what: str = "") -> None:
        """Show the histogram of an image the viewer draws with fixed ``levels`` (the flat, the
        mask, the difference, Visualize dust) in that image's own units, e.g. the flat from 0.9 to
        1.0. The stretch controls wait (disabled) until :meth:`show_data`; the data views' state and
        levels are kept."""
        if array is None:
            return
        if self._fixed is None:
            self._saved_sample = self._sample
        self._fixed = (float(levels[0]), float(levels[1]))
        self._sample = np.ascontiguousarray(subsample(np.asarray(array)))
        self._update_histogram()
        self._updating = True
        try:
            self.region.setRegion(self._fixed)
            self.black_spin.setValue(self._fixed[0])
            self.white_spin.setValue(self._fixed[1])
        finally:
            self._updating = False
        self._set_controls_enabled(False)
        self.fixed_label.setText(f"{what or 'This view'}: fixed levels {self._fixed[0]:.4g} … {self._fixed[1]:.4g} "
                                 "(its own units; the stretch applies to the data views)")
        self.fixed_label.setVisible(True)

    def show_data(self) -> None:
        """Back to the data views after :meth:`show_levels`: their histogram, state and controls."""
        if self._fixed is None:
            return
        self._fixed = None
        self._sample, self._saved_sample = self._saved_sample, None
        self._set_controls_enabled(True)
        self.fixed_label.setVisible(False)
        if self._sample is not None:
            self._update_histogram()
        else:
            self.curve.setData([0, 1], [0])
        self._sync_widgets()

    def showing_levels(self) -> Optional[tuple[float, float]]:
        """The fixed levels shown by :meth:`show_levels`, or None for the data views."""
        return self._fixed

    def _set_controls_enabled(self, on: bool) -> None:
        for w in (self.mode_combo, self.strength_slider, self.auto_button, self.apply_all_check,
                  self.black_spin, self.white_spin):
            w.setEnabled(on)
        self.region.setMovable(on)
        if on:
            self.strength_slider.setEnabled(_STRENGTH.get(self._state.mode) is not None)

    def auto(self) -> StretchState:
        """Recompute the levels from the current image (the "Auto" button) and emit."""
        if self._fixed is not None:
            return self.state()
        self._put(self._auto_state(self._state))
        self._sync_widgets()
        self.stretchChanged.emit(self.state())
        return self.state()

    def histogram_data(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin edges, log10(1 + counts)) currently drawn."""
        x, y = self.curve.getData()
        return (np.asarray(x) if x is not None else np.zeros(0)), (np.asarray(y) if y is not None else np.zeros(0))

    # ------------------------------------------------------------ internals
    def _auto_state(self, base: StretchState) -> StretchState:
        if self._sample is None:
            return base
        if base.mode == "auto":
            return stf_auto(self._sample, target_background=self._target_background, base=base)
        b, w = auto_levels(self._sample)
        return base.copy(black=b, white=w)

    def _update_histogram(self) -> None:
        v = self._sample.ravel()
        if v.dtype.kind == "f":
            v = v[np.isfinite(v)]
        if v.size == 0:
            self.curve.setData([0, 1], [0])
            return
        lo, hi = float(v.min()), float(v.max())
        if not hi > lo:
            hi = lo + 1.0
        counts, edges = np.histogram(v, bins=256, range=(lo, hi))
        self.curve.setData(edges, np.log10(1.0 + counts))
        b, w = self._fixed if self._fixed is not None else self._state.levels
        self.plot.setXRange(min(lo, b), max(hi, w), padding=0.02)

    def _sync_widgets(self) -> None:
        if self._fixed is not None:  # the fixed-levels view keeps its region; the state waits
            return
        self._updating = True
        try:
            st = self._state
            self.region.setRegion(st.levels)
            self.black_spin.setValue(st.black)
            self.white_spin.setValue(st.white)
            idx = self.mode_combo.findData(st.mode)
            self.mode_combo.setCurrentIndex(idx)
            spec = _STRENGTH.get(st.mode)
            self.strength_slider.setEnabled(spec is not None)
            if spec is None:
                self.strength_label.setText("Strength")
                self.strength_value.setText("")
            else:
                label, _, inverse, field = spec
                value = getattr(st, field) if field else self._target_background
                self.strength_label.setText(label)
                self.strength_slider.setValue(int(round(min(max(inverse(value), 0), SLIDER_MAX))))
                self.strength_value.setText(f"{value:.3g}")
        finally:
            self._updating = False

    def _emit(self) -> None:
        self._sync_widgets()
        self.stretchChanged.emit(self.state())

    def _on_apply_all(self, on: bool) -> None:
        # switching "apply to all frames" off means: automatic levels, starting with this frame
        if not on and self._sample is not None:
            self.auto()

    def _on_region(self) -> None:
        if self._updating:
            return
        b, w = self.region.getRegion()
        self._put(self._state.copy(black=float(b), white=float(w)))
        self._emit()

    def _on_spins(self) -> None:
        if self._updating:
            return
        self._put(self._state.copy(black=self.black_spin.value(), white=self.white_spin.value()))
        self._emit()

    def _on_mode(self, index: int) -> None:
        if self._updating:
            return
        mode = self.mode_combo.itemData(index)
        new = self._state.copy(mode=mode)
        self._put(self._auto_state(new) if mode == "auto" else new)
        self._emit()

    def _on_slider(self, value: int) -> None:
        if self._updating:
            return
        spec = _STRENGTH.get(self._state.mode)
        if spec is None:
            return
        _, forward, _, field = spec
        v = float(forward(value))
        if field is None:  # auto: target background -> recompute the STF
            self._target_background = v
            self._put(self._auto_state(self._state))
        else:
            self._put(self._state.copy(**{field: v}))
        self._emit()

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(280, 220)
