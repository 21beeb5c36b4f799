"""The window's actions with their shortcuts, menus, toolbar, status bar, timers and the log
dock's handler. Built once by :class:`~aiflat_gui.gui.main_window.MainWindow` (a mixin: these
methods only create widgets and connect them to the window's slots)."""

from __future__ import annotations

import logging
from typing import Callable

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from ..document import VIEWS

TOOLS = (("pan", "Pan", "H"), ("paint", "Paint", "B"), ("erase", "Erase", "E"), ("remove", "Remove speck", "R"))
AUTOSAVE_MS = 500


class _LogHandler(logging.Handler):
    """Forwards log records (from any thread) to the log dock through a queued signal."""

    def __init__(self, emitter: "_LogEmitter"):
        super().__init__(logging.INFO)
        self.emitter = emitter
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            # a traceback is for the log file, the dock shows its first and last lines
            lines = msg.splitlines()
            if len(lines) > 2:
                msg = f"{lines[0]} … {lines[-1]}"
            self.emitter.line.emit(msg)
        except Exception:  # noqa: BLE001 - logging must never raise
            pass


class _LogEmitter(QtCore.QObject):
    line = Signal(str)


class ActionsMixin:
    """Actions, menus, toolbar, status bar, timers, log handler of the main window."""

    def _action(self, text: str, slot: Callable, shortcut=None, checkable: bool = False, name: str = "") -> QtGui.QAction:
        a = QtGui.QAction(text, self)
        if shortcut:
            a.setShortcut(QtGui.QKeySequence(shortcut))
        a.setCheckable(checkable)
        a.triggered.connect(lambda checked=False: slot(checked) if checkable else slot())
        a.setObjectName(name or text)
        self.addAction(a)
        return a

    def _build_actions(self) -> None:
        A = self._action
        self.act_open = A("&Open…", self.open_dialog, QtGui.QKeySequence.Open, name="open")
        self.act_open_folder = A("Open &Folder…", lambda: self.open_dialog(folder=True), "Ctrl+Shift+O",
                                 name="open_folder")
        self.act_demo = A("Open &demo", self.open_demo, name="demo")
        self.act_import_mask = A("&Import mask…", self.import_mask_dialog, "Ctrl+I", name="import_mask")
        self.act_export = A("&Export…", self.export_dialog, "Ctrl+E", name="export")
        self.act_batch = A("&Batch: calibrate all videos…", lambda: self.export_dialog(tab=3), name="batch")
        self.act_settings = A("&Settings…", self.settings_dialog, QtGui.QKeySequence.Preferences, name="settings")
        self.act_quit = A("&Quit", self.close, QtGui.QKeySequence.Quit, name="quit")
        self.act_undo = A("&Undo", self.undo, "Ctrl+Z", name="undo")
        self.act_redo = A("&Redo", self.redo, "Ctrl+Shift+Z", name="redo")
        self.act_grow = A("&Grow mask by 1 px", lambda: self.mask_op("grow"), "Ctrl+G", name="grow")
        self.act_shrink = A("&Shrink mask by 1 px", lambda: self.mask_op("shrink"), "Ctrl+Shift+G", name="shrink")
        self.act_invert = A("&Invert mask", lambda: self.mask_op("invert"), name="invert")
        self.act_clear = A("&Clear mask", lambda: self.mask_op("clear"), name="clear")
        self.act_small = A("Remove specks under &4 px", lambda: self.mask_op("remove_small"), name="remove_small")
        self.act_fit = A("&Fit", lambda: self.viewer.fit(), "F", name="fit")
        self.act_1to1 = A("&1:1", lambda: self.viewer.zoom_1to1(), "Ctrl+1", name="zoom_1to1")
        self.act_overlay = A("Mask &overlay", self.set_overlay_visible, "O", checkable=True, name="overlay")
        self.act_overlay.setChecked(True)
        self.act_play = A("&Play / pause", lambda: self.play_button.toggle(), "Space", name="play")
        self.act_about = A("&About", self.about, name="about")
        self.act_cancel = A("&Cancel the running job", self.cancel_job, "Esc", name="cancel_job")
        self.view_actions: dict[str, QtGui.QAction] = {}
        group = QtGui.QActionGroup(self)
        for i, (key, label) in enumerate(VIEWS):
            a = A(label, lambda checked, k=key: self.set_view(k), str(i + 1), checkable=True, name=f"view_{key}")
            group.addAction(a)
            self.view_actions[key] = a
        self.view_actions["frame"].setChecked(True)
        self.tool_actions: dict[str, QtGui.QAction] = {}
        tgroup = QtGui.QActionGroup(self)
        for key, label, key_sc in TOOLS:
            a = A(label, lambda checked, k=key: self.set_tool(k), key_sc, checkable=True, name=f"tool_{key}")
            tgroup.addAction(a)
            self.tool_actions[key] = a
        self.tool_actions["pan"].setChecked(True)
        self.act_brush_smaller = A("Smaller brush", lambda: self._step_brush(-1), "[", name="brush_smaller")
        self.act_brush_larger = A("Larger brush", lambda: self._step_brush(+1), "]", name="brush_larger")

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.act_open)
        m.addAction(self.act_open_folder)
        m.addAction(self.act_demo)
        self.recent_menu = m.addMenu("Open &recent")
        m.addSeparator()
        m.addAction(self.act_import_mask)
        m.addAction(self.act_export)
        m.addAction(self.act_batch)
        m.addSeparator()
        m.addAction(self.act_settings)
        m.addSeparator()
        m.addAction(self.act_cancel)
        m.addAction(self.act_quit)
        m = mb.addMenu("&Edit")
        for a in (self.act_undo, self.act_redo):
            m.addAction(a)
        m.addSeparator()
        for a in (self.act_grow, self.act_shrink, self.act_invert, self.act_clear, self.act_small):
            m.addAction(a)
        m.addSeparator()
        for a in self.tool_actions.values():
            m.addAction(a)
        m.addAction(self.act_brush_smaller)
        m.addAction(self.act_brush_larger)
        m = mb.addMenu("&View")
        m.addAction(self.act_fit)
        m.addAction(self.act_1to1)
        m.addAction(self.act_overlay)
        m.addAction(self.act_play)
        m.addSeparator()
        for a in self.view_actions.values():
            m.addAction(a)
        m.addSeparator()
        for d in (self.workflow_dock, self.stretch_dock, self.speck_dock, self.log_dock):
            m.addAction(d.toggleViewAction())
        m = mb.addMenu("&Help")
        m.addAction(self.act_about)
        self._refresh_recent_menu()

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Tools")
        tb.setObjectName("toolbar_tools")
        for a in self.tool_actions.values():
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" Brush "))
        self.brush_spin = QtWidgets.QSpinBox()
        self.brush_spin.setObjectName("brushSize")
        self.brush_spin.setRange(1, 500)
        self.brush_spin.setValue(int(self.settings.value("editor/brush", 6) or 6))
        self.brush_spin.setSuffix(" px")
        self.brush_spin.valueChanged.connect(self._on_brush)
        tb.addWidget(self.brush_spin)
        tb.addSeparator()
        tb.addAction(self.act_undo)
        tb.addAction(self.act_redo)
        tb.addSeparator()
        tb.addAction(self.act_overlay)
        self.opacity_slider = QtWidgets.QSlider(Qt.Horizontal)
        self.opacity_slider.setObjectName("overlayOpacity")
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setMaximumWidth(100)
        self.opacity_slider.setToolTip("Mask overlay opacity")
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        tb.addWidget(self.opacity_slider)
        tb.addSeparator()
        tb.addAction(self.act_fit)
        tb.addAction(self.act_1to1)
        self._on_brush(self.brush_spin.value())

    def _build_status(self) -> None:
        self.pixel_label = QtWidgets.QLabel("")
        self.pixel_label.setObjectName("pixelReadout")
        self.pixel_label.setMinimumWidth(380)
        self.statusBar().addPermanentWidget(self.pixel_label)
        self.statusBar().showMessage("Open a video to begin (File ▸ Open, or drop a file here).")

    def _build_timers(self) -> None:
        self.play_timer = QtCore.QTimer(self)
        self.play_timer.setInterval(100)
        self.play_timer.timeout.connect(self._next_frame)
        self.blink_timer = QtCore.QTimer(self)
        self.blink_timer.setInterval(500)
        self.blink_timer.timeout.connect(self._blink)
        self.autosave_timer = QtCore.QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.save_session)
        self.specks_timer = QtCore.QTimer(self)
        self.specks_timer.setSingleShot(True)
        self.specks_timer.setInterval(300)
        self.specks_timer.timeout.connect(self.refresh_specks)

    def _install_log(self) -> None:
        self._log_emitter = _LogEmitter()
        self._log_emitter.line.connect(self.log_view.appendPlainText)
        self._log_handler = _LogHandler(self._log_emitter)
        logging.getLogger("aiflat").addHandler(self._log_handler)
        if logging.getLogger("aiflat").level == logging.NOTSET:
            logging.getLogger("aiflat").setLevel(logging.INFO)
