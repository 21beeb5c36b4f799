"""The guided workflow panel: Sequence → Reference → Mask → Flat → Calibrate.

Each step shows its state (not done / running / done / stale) and the panel says what to do next.
The panel only asks: its buttons emit :attr:`WorkflowPanel.actionRequested` with an action name,
and the main window runs the work. :class:`WorkflowState` is the plain bookkeeping of the states,
including which later steps turn stale when an earlier one changes.
"""

from __future__ import annotations

from typing import Optional

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

from .widgets import guard_wheel

from .. import pipeline
from ..document import DONE, HINTS, NOT_DONE, RUNNING, STALE, WorkflowState  # noqa: F401 - the panel shows them

TITLES = {"sequence": "1  Sequence", "reference": "2  Reference", "mask": "3  Mask", "flat": "4  Flat",
          "calibrate": "5  Calibrate"}
_LABELS = {"local": "Offline detector", "gemini": "Gemini AI", "file": "Import a mask file"}
PROVIDERS = tuple((k, _LABELS[k]) for k in pipeline.PROVIDERS)
_FLAT_LABELS = {"auto": "Auto", "local": "Local fill", "multiframe": "Multi-frame", "ai": "AI clean image"}
FLAT_METHODS = tuple((k, _FLAT_LABELS[k]) for k in pipeline.FLAT_METHODS)
REFERENCE_METHODS = pipeline.REFERENCE_METHODS
#: what each button does (the window adds the shortcut of the menu action it shares)
BUTTON_TIPS = {
    "open": "Open a video (SER, AVI, FITS, TIFF) or an image",
    "open_folder": "Open a folder of frames (TIFF, FITS, PNG, JPEG; one frame per file)",
    "demo": "Open the built-in demo: a synthetic sun with dust",
    "reference": "Compute the reference frame from the video",
    "detect": "Find the dust with the offline detector (no network)",
    "ask_ai": "Ask Gemini to draw the dust mask (shows the cost before sending)",
    "import_mask": "Import a mask image (white = dust) of the video's size",
    "grow": "Grow the mask by 1 px", "shrink": "Shrink the mask by 1 px", "invert": "Invert the mask",
    "clear": "Clear the mask",
    "flat": "Build the flat: 1.0 outside the mask, the dust's shadow inside",
    "calibrate": "Divide every frame by the flat and save the calibrated video",
    "batch": "Calibrate more videos of the same night with this flat",
}
_COLORS = {NOT_DONE: "#888", RUNNING: "#2a7fd4", DONE: "#2e9d46", STALE: "#d08a1a"}


class WorkflowPanel(QtWidgets.QWidget):
    """The dock widget. Signals: ``actionRequested(name)`` with name in ``open``, ``demo``,
    ``open_folder``, ``reference``, ``detect``, ``ask_ai``, ``import_mask``, ``flat``, ``calibrate``, ``batch``,
    ``grow``, ``shrink``, ``invert``, ``clear``; ``sensitivityChanged(float)``; ``paramsChanged()``
    when a flat/reference option changes; ``providerChanged(str)``."""

    actionRequested = Signal(str)
    sensitivityChanged = Signal(float)
    paramsChanged = Signal()
    providerChanged = Signal(str)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None):
        super().__init__(parent)
        self.model = WorkflowState()
        self.state_labels: dict[str, QtWidgets.QLabel] = {}
        self.boxes: dict[str, QtWidgets.QGroupBox] = {}
        self.buttons: dict[str, QtWidgets.QPushButton] = {}

        outer = QtWidgets.QVBoxLayout(self)
        self.hint_label = QtWidgets.QLabel()
        self.hint_label.setObjectName("hint")
        self.hint_label.setWordWrap(True)
        self.hint_label.setStyleSheet("QLabel#hint { font-weight: bold; padding: 4px; }")
        outer.addWidget(self.hint_label)

        # 1 sequence
        box, lay = self._box("sequence")
        self.sequence_info = QtWidgets.QLabel("No sequence open.")
        self.sequence_info.setWordWrap(True)
        lay.addWidget(self.sequence_info)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self._button("open", "Open…"))
        row.addWidget(self._button("open_folder", "Folder…"))
        row.addWidget(self._button("demo", "Demo"))
        lay.addLayout(row)

        # 2 reference
        box, lay = self._box("reference")
        form = QtWidgets.QFormLayout()
        self.reference_method = QtWidgets.QComboBox()
        self.reference_method.addItems(REFERENCE_METHODS)
        self.max_frames = QtWidgets.QSpinBox()
        self.max_frames.setRange(0, 100000)
        self.max_frames.setSpecialValueText("all")
        self.max_frames.setValue(pipeline.DEFAULT_MAX_FRAMES)  # as the CLI: 128 evenly spaced frames, 0 = all
        form.addRow("Method", self.reference_method)
        form.addRow("Frames", self.max_frames)
        lay.addLayout(form)
        lay.addWidget(self._button("reference", "Compute reference"))

        # 3 mask
        box, lay = self._box("mask")
        form = QtWidgets.QFormLayout()
        self.provider = QtWidgets.QComboBox()
        for key, label in PROVIDERS:
            self.provider.addItem(label, key)
        form.addRow("Find dust with", self.provider)
        self.sensitivity = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.sensitivity.setObjectName("sensitivity")
        self.sensitivity.setRange(0, 100)
        self.sensitivity.setValue(50)
        self.sensitivity_label = QtWidgets.QLabel("0.50")
        srow = QtWidgets.QHBoxLayout()
        srow.addWidget(self.sensitivity, 1)
        srow.addWidget(self.sensitivity_label)
        form.addRow("Sensitivity", srow)
        lay.addLayout(form)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self._button("detect", "Find dust"))
        row.addWidget(self._button("ask_ai", "Ask AI…"))
        row.addWidget(self._button("import_mask", "Import…"))
        lay.addLayout(row)
        row = QtWidgets.QHBoxLayout()
        for name, label in (("grow", "Grow"), ("shrink", "Shrink"), ("invert", "Invert"), ("clear", "Clear")):
            row.addWidget(self._button(name, label))
        lay.addLayout(row)
        self.mask_info = QtWidgets.QLabel("")
        self.mask_info.setWordWrap(True)
        lay.addWidget(self.mask_info)

        # 4 flat
        box, lay = self._box("flat")
        form = QtWidgets.QFormLayout()
        self.flat_method = QtWidgets.QComboBox()
        for key, label in FLAT_METHODS:
            self.flat_method.addItem(label, key)
        self.flat_method.setToolTip(
            "Auto: multi-frame when the video has at least 8 frames (the sun drifts under the fixed dust),"
            " else local fill.\nLocal fill: smooth fill of each speck from its surroundings.\n"
            "AI clean image: ratio to Gemini's dust-free image, only inside the mask.")
        self.grow = QtWidgets.QSpinBox()
        self.grow.setRange(0, 50)
        self.grow.setValue(pipeline.FlatParams.grow)
        self.grow.setSuffix(" px")
        self.feather = QtWidgets.QSpinBox()
        self.feather.setRange(0, 50)
        self.feather.setSuffix(" px")
        self.pedestal = QtWidgets.QDoubleSpinBox()
        self.pedestal.setRange(0, 65535)
        self.pedestal.setDecimals(1)
        self.pedestal.setSuffix(" ADU")
        form.addRow("Method", self.flat_method)
        form.addRow("Grow mask", self.grow)
        form.addRow("Feather", self.feather)
        form.addRow("Pedestal", self.pedestal)
        lay.addLayout(form)
        lay.addWidget(self._button("flat", "Build flat"))

        # 5 calibrate
        box, lay = self._box("calibrate")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self._button("calibrate", "Calibrate…"))
        row.addWidget(self._button("batch", "Batch…"))
        lay.addLayout(row)
        self.calibrate_info = QtWidgets.QLabel("")
        self.calibrate_info.setWordWrap(True)
        lay.addWidget(self.calibrate_info)
        outer.addStretch(1)

        self._sens_timer = QtCore.QTimer(self)
        self._sens_timer.setSingleShot(True)
        self._sens_timer.setInterval(40)  # coalesce a fast drag into a few live updates
        self._sens_timer.timeout.connect(lambda: self.sensitivityChanged.emit(self.sensitivity_value()))
        self.sensitivity.valueChanged.connect(self._on_sensitivity)
        for w in (self.grow, self.feather, self.pedestal):
            w.valueChanged.connect(lambda *_: self.paramsChanged.emit())
        self.flat_method.currentIndexChanged.connect(lambda *_: self.paramsChanged.emit())
        self.reference_method.currentIndexChanged.connect(lambda *_: self.paramsChanged.emit())
        self.provider.currentIndexChanged.connect(self._on_provider)
        self._on_provider()
        for w, tip in ((self.reference_method, "How the frames are combined: median (default) keeps the dust and "
                                                "drops the moving surface; sigmaclip also rejects outliers"),
                       (self.max_frames, "Frames used for the reference, evenly spaced (all: every frame)"),
                       (self.provider, "Who draws the dust mask"),
                       (self.sensitivity, "Offline detector threshold: higher finds fainter dust "
                                          "(re-thresholds live; the wheel scrolls the panel unless clicked)"),
                       (self.grow, "Grow the mask by this many pixels before the flat (covers soft edges)"),
                       (self.feather, "Soften the flat's edge over this many pixels (0: sharp)"),
                       (self.pedestal, "ADU subtracted before dividing and added back (the camera's offset)")):
            w.setToolTip(tip)
        # the wheel scrolls the panel; it edits a value only once the control has the focus
        guard_wheel(self)
        self.refresh()

    # -- construction helpers -------------------------------------------------------------------
    def _box(self, step: str):
        box = QtWidgets.QGroupBox(TITLES[step])
        box.setObjectName(f"step_{step}")
        lay = QtWidgets.QVBoxLayout(box)
        state = QtWidgets.QLabel()
        state.setObjectName(f"state_{step}")
        lay.addWidget(state)
        self.state_labels[step] = state
        self.boxes[step] = box
        self.layout().addWidget(box)
        return box, lay

    def _button(self, name: str, text: str) -> QtWidgets.QPushButton:
        b = QtWidgets.QPushButton(text)
        b.setObjectName(f"action_{name}")
        # the style's 80 px minimum would make the panel (and its dock) wide: the text is enough
        b.setMinimumWidth(b.fontMetrics().horizontalAdvance(text) + 16)
        b.clicked.connect(lambda *_: self.actionRequested.emit(name))
        b.setToolTip(BUTTON_TIPS.get(name, text))
        self.buttons[name] = b
        return b

    # -- values -------------------------------------------------------------------------------
    def sensitivity_value(self) -> float:
        return self.sensitivity.value() / 100.0

    def set_sensitivity(self, value: float, emit: bool = False) -> None:
        with QtCore.QSignalBlocker(self.sensitivity):
            self.sensitivity.setValue(int(round(100 * float(value))))
        self.sensitivity_label.setText(f"{self.sensitivity_value():.2f}")
        if emit:
            self.sensitivityChanged.emit(self.sensitivity_value())

    def _on_sensitivity(self, _value: int) -> None:
        self.sensitivity_label.setText(f"{self.sensitivity_value():.2f}")
        self._sens_timer.start()

    def _on_provider(self, *_):
        key = self.provider_key()
        self.buttons["detect"].setVisible(key == "local")
        self.buttons["ask_ai"].setVisible(key == "gemini")
        self.buttons["import_mask"].setVisible(True)
        self.sensitivity.setEnabled(key == "local")
        self.providerChanged.emit(key)

    def provider_key(self) -> str:
        return self.provider.currentData()

    def set_provider(self, key: str) -> None:
        i = self.provider.findData(key)
        if i >= 0:
            self.provider.setCurrentIndex(i)

    def flat_method_key(self) -> str:
        return self.flat_method.currentData()

    def params(self) -> dict:
        return {"reference_method": self.reference_method.currentText(),
                "max_frames": self.max_frames.value() or None,
                "provider": self.provider_key(), "sensitivity": self.sensitivity_value(),
                "flat_method": self.flat_method_key(), "grow": self.grow.value(),
                "feather": self.feather.value(), "pedestal": self.pedestal.value()}

    def set_params(self, p: dict) -> None:
        """Restore choices (from a session) without emitting change signals."""
        widgets = (self.reference_method, self.max_frames, self.provider, self.flat_method, self.grow,
                   self.feather, self.pedestal)
        blockers = [QtCore.QSignalBlocker(w) for w in widgets]
        try:
            if p.get("reference_method") in REFERENCE_METHODS:
                self.reference_method.setCurrentText(p["reference_method"])
            self.max_frames.setValue(int(p.get("max_frames") or 0))
            if p.get("provider"):
                self.set_provider(p["provider"])
            i = self.flat_method.findData(p.get("flat_method"))
            if i >= 0:
                self.flat_method.setCurrentIndex(i)
            self.grow.setValue(int(p.get("grow", self.grow.value())))
            self.feather.setValue(int(p.get("feather", self.feather.value())))
            self.pedestal.setValue(float(p.get("pedestal", self.pedestal.value())))
        finally:
            del blockers
        if "sensitivity" in p:
            self.set_sensitivity(p["sensitivity"])
        self._on_provider()

    # -- states -------------------------------------------------------------------------------
    def set_state(self, step: str, state: str) -> None:
        self.model.set(step, state)
        self.refresh()

    def state(self, step: str) -> str:
        return self.model.states[step]

    def step_changed(self, step: str) -> list[str]:
        turned = self.model.changed(step)
        self.refresh()
        return turned

    def reset(self) -> None:
        self.model.reset()
        self.refresh()

    def set_busy(self, busy: bool) -> None:
        """Disable the buttons that start work while a job runs (editing stays possible)."""
        for name in ("reference", "detect", "ask_ai", "flat", "calibrate", "batch", "open", "open_folder", "demo",
                     "import_mask"):
            self.buttons[name].setEnabled(not busy)
        if not busy:
            self.refresh()

    def refresh(self) -> None:
        st = self.model.states
        shown = getattr(self, "_shown", {})
        for step, label in self.state_labels.items():
            state = st[step]
            if shown.get(step) != state:  # style sheets are slow: only touch what changed
                label.setText(f"● {state}")
                label.setStyleSheet(f"color: {_COLORS[state]};")
                label.setToolTip(HINTS[step])
        self._shown = dict(st)
        have_seq = st["sequence"] == DONE
        have_ref = st["reference"] in (DONE, STALE)
        have_mask = st["mask"] in (DONE, STALE)
        have_flat = st["flat"] in (DONE, STALE)
        running = any(s == RUNNING for s in st.values())
        if not running:
            self.buttons["open"].setEnabled(True)
            self.buttons["open_folder"].setEnabled(True)
            self.buttons["demo"].setEnabled(True)
            self.buttons["reference"].setEnabled(have_seq)
            self.buttons["detect"].setEnabled(have_ref)
            self.buttons["ask_ai"].setEnabled(have_ref)
            self.buttons["import_mask"].setEnabled(have_seq)
            for name in ("grow", "shrink", "invert", "clear"):
                self.buttons[name].setEnabled(have_mask)
            self.buttons["flat"].setEnabled(have_ref and have_mask)
            self.buttons["calibrate"].setEnabled(have_flat)
            self.buttons["batch"].setEnabled(have_flat)
        nxt = self.model.next_step()
        if getattr(self, "_shown_next", 0) != nxt:
            for step, box in self.boxes.items():
                box.setStyleSheet("QGroupBox { font-weight: bold; }" if step == nxt else "")
            self._shown_next = nxt
        hint = self.model.hint()
        if self.hint_label.text() != hint:
            self.hint_label.setText(hint)
