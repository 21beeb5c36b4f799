"""The main window: viewer, guided workflow, docks, menus, workers, sessions.

No science here: references, masks, flats and calibration come from ``core``/``io``/``ai`` and run
in :class:`~aiflat_gui.gui.workers.Worker` threads. The window keeps the document (sequence,
reference, mask model, flat), shows it, and saves every choice and the mask to the session sidecar
(:mod:`aiflat_gui.session`) shortly after each change and on close.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from .. import APP_NAME, __version__
from .. import pipeline
from ..errors import AiflatError, InputError
from ..session import SessionData, SessionStore
from ..text import plural, sequence_summary
from .workers import JobPanel, Worker, one_line
from .workflow import DONE, RUNNING, STALE, WorkflowPanel

log = logging.getLogger("aiflat.gui")

VIEWS = (("frame", "Frame"), ("reference", "Reference"), ("mask", "Mask"), ("flat", "Flat"),
         ("calibrated", "Calibrated preview"), ("difference", "Difference"), ("blink", "Blink before/after"),
         ("dust", "Visualize dust"))
TOOLS = (("pan", "Pan", "H"), ("paint", "Paint", "B"), ("erase", "Erase", "E"), ("remove", "Remove speck", "R"))
MAX_RECENT = 10
AUTOSAVE_MS = 500


# -- jobs run in worker threads: the pipeline's steps, each opening its own sequence ---------------

def job_reference(path, method: str, max_frames: Optional[int], progress=None):
    return pipeline.compute_reference(path, pipeline.ReferenceParams(method, max_frames), progress=progress)


def job_detect(path, reference, sensitivity: float, progress=None):
    return pipeline.find_mask(path, reference, pipeline.MaskParams("local", sensitivity), progress=progress)


def job_gemini(provider, reference, progress=None):
    return pipeline.find_mask(None, reference, provider=provider, progress=progress)[1]


def job_flat(path, reference, mask, method, clean, grow, feather, pedestal, max_frames=None, progress=None,
             verify=False, overrides=None):
    """The flat; with ``verify`` every speck is first checked against the video and the refused ones
    are left out: then ``{"flat": flat, "verify": VerifyOutcome}``."""
    from ..progress import sub_progress

    params = pipeline.FlatParams(method, grow, feather, pedestal, max_frames)
    with pipeline.open_input(path) as seq:
        outcome = None
        if verify:
            outcome = pipeline.verify_step(mask, seq, overrides=overrides, progress=sub_progress(progress, 0.0, 0.3))
            mask = outcome.mask
            progress = sub_progress(progress, 0.3, 1.0)
        flat = pipeline.build_flat(seq, reference, mask, params, clean=clean, progress=progress)
    return flat if outcome is None else {"flat": flat, "verify": outcome}


def job_verify(path, mask, progress=None):
    """Check every speck of ``mask`` against the video (the pipeline's verify step)."""
    with pipeline.open_input(path) as seq:
        return pipeline.verify_step(mask, seq, progress=progress)


def job_ai_flat(provider, path, reference, mask, grow, feather, pedestal, max_frames=None, progress=None):
    """Ask the AI for a dust-free image (80 % of the progress), then build the ``ai`` flat."""
    from ..progress import sub_progress

    clean = pipeline.request_clean(provider, path, reference, mask, grow, progress=sub_progress(progress, 0.0, 0.8))
    flat = pipeline.build_flat(path, reference, mask, pipeline.FlatParams("ai", grow, feather, pedestal, max_frames),
                               clean=clean, progress=sub_progress(progress, 0.8, 1.0))
    return clean, flat


def job_calibrate(path, flat, output, fmt, pedestal, overwrite, progress=None):
    return pipeline.calibrate(path, flat, output, fmt=fmt, pedestal=pedestal, overwrite=overwrite, progress=progress)


def job_batch(inputs, flat, out_dir, fmt, pedestal, jobs=0, progress=None):
    return pipeline.batch_with_flat(inputs, flat, out_dir, fmt=fmt, pedestal=pedestal, jobs=jobs, progress=progress)


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


class MainWindow(QtWidgets.QMainWindow):
    """The AI Flat main window.

    Parameters: ``autosave`` (write the session sidecar after changes), ``remember_layout`` (dock
    layout and geometry via QSettings), ``auto_reference`` (compute the reference right after
    opening), ``settings`` (a QSettings to use instead of the application's).
    """

    documentChanged = Signal()
    viewChanged = Signal(str)

    def __init__(self, autosave: bool = True, remember_layout: bool = True, auto_reference: bool = True,
                 settings: Optional[QtCore.QSettings] = None, parent: Optional[QtWidgets.QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle(APP_NAME)
        self.setObjectName("MainWindow")
        self.settings = settings or QtCore.QSettings()
        from .settings_dialog import apply_output_settings

        apply_output_settings(self.settings)
        self.autosave = autosave
        self.remember_layout = remember_layout
        self.auto_reference = auto_reference
        self.interactive = True
        # the document
        self.path: Optional[Path] = None
        self.seq = None
        self.reference: Optional[np.ndarray] = None
        self.mask_model = None
        self.flat: Optional[np.ndarray] = None
        self.clean: Optional[np.ndarray] = None
        self.local_provider = None
        self.ai_report: dict = {}
        self.session_store: Optional[SessionStore] = None
        self.output_choices: dict = {}
        self.frame_index = 0
        self.view = "frame"
        self._calibrator = None
        self._mask_generation = 0
        self._clean_generation = -1
        self._used_params: dict[str, dict] = {}
        self._blink_phase = 0
        self._display_kind = ""
        self._restoring = False
        self.worker: Optional[Worker] = None
        self.last_worker: Optional[Worker] = None
        self.errors: list[str] = []  # every error shown to the user (tests and --screenshot read it)

        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status()
        self._build_timers()
        self._install_log()
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._layout_restored = remember_layout and self._restore_layout()
        from .polish import polish

        polish(self)  # icons, tooltips, Help menu, outline toggle, default dock layout
        self._update_actions()

    def default_dock_sizes(self) -> None:
        """Docks as narrow as their content allows: the image gets most of the window."""
        from .polish import default_dock_sizes

        default_dock_sizes(self)

    def fit_workflow_dock(self) -> None:
        """Widen the workflow dock when its panel no longer fits (the main window hands width to
        the viewer as docks fill up after a job); never narrows it, never sets a minimum, so the
        user can still drag it narrower (and scroll)."""
        need = self.workflow.minimumSizeHint().width()
        have = self.workflow_scroll.viewport().width()
        if self.workflow_dock.isVisible() and not self.workflow_dock.isFloating() and have < need:
            self.resizeDocks([self.workflow_dock], [self.workflow_dock.width() + need - have], Qt.Horizontal)

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if not getattr(self, "_shown_once", False):
            self._shown_once = True
            if not self._layout_restored:
                self.default_dock_sizes()
                QtCore.QTimer.singleShot(200, self.default_dock_sizes)  # again once the layout has settled

    # ================================================================== construction
    def _build_central(self) -> None:
        from .viewer import ImageViewer

        central = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(2, 2, 2, 2)
        self.viewer = ImageViewer()
        lay.addWidget(self.viewer, 1)
        bar = QtWidgets.QHBoxLayout()
        self.play_button = QtWidgets.QToolButton()
        self.play_button.setObjectName("playButton")
        self.play_button.setCheckable(True)
        self.play_button.setIcon(self.style().standardIcon(QtWidgets.QStyle.SP_MediaPlay))
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.toggled.connect(self.set_playing)
        self.frame_slider = QtWidgets.QSlider(Qt.Horizontal)
        self.frame_slider.setObjectName("frameSlider")
        self.frame_slider.setRange(0, 0)
        self.frame_slider.valueChanged.connect(self.set_frame)
        self.frame_label = QtWidgets.QLabel("–")
        self.frame_label.setMinimumWidth(90)
        self.view_combo = QtWidgets.QComboBox()
        self.view_combo.setObjectName("viewCombo")
        for key, label in VIEWS:
            self.view_combo.addItem(label, key)
        self.view_combo.currentIndexChanged.connect(lambda i: self.set_view(self.view_combo.itemData(i)))
        bar.addWidget(self.play_button)
        bar.addWidget(self.frame_slider, 1)
        bar.addWidget(self.frame_label)
        bar.addWidget(QtWidgets.QLabel("View"))
        bar.addWidget(self.view_combo)
        lay.addLayout(bar)
        self.job_panel = JobPanel()
        lay.addWidget(self.job_panel)
        self.setCentralWidget(central)
        self.viewer.pixelHovered.connect(self._on_hover)
        self.viewer.strokeFinished.connect(self._on_stroke_finished)
        self.viewer.speckClicked.connect(self._on_speck_clicked)
        self.viewer.brushRadiusChanged.connect(self._on_viewer_brush)

    def _dock(self, name: str, title: str, widget: QtWidgets.QWidget, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock_{name}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        from .histogram import StretchPanel
        from .speck_table import SpeckTable

        self.workflow = WorkflowPanel()
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        # the vertical bar always takes its room: when a job adds rows and the panel grows taller
        # than the dock, the bar no longer narrows the panel into a horizontal scroll bar
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOn)
        scroll.setWidget(self.workflow)
        self.workflow_dock = self._dock("workflow", "Workflow", scroll, Qt.LeftDockWidgetArea)
        self.stretch_panel = StretchPanel()
        self.stretch_dock = self._dock("stretch", "Stretch", self.stretch_panel, Qt.RightDockWidgetArea)
        self.speck_table = SpeckTable()
        self.speck_dock = self._dock("specks", "Specks", self.speck_table, Qt.RightDockWidgetArea)
        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_dock = self._dock("log", "Log", self.log_view, Qt.BottomDockWidgetArea)
        self.workflow_scroll = scroll

        self.workflow.actionRequested.connect(self._on_workflow_action)
        self.workflow.sensitivityChanged.connect(self.set_sensitivity)
        self.workflow.paramsChanged.connect(self._on_params_changed)
        self.workflow.providerChanged.connect(lambda *_: self._schedule_autosave())
        self.stretch_panel.stretchChanged.connect(self._on_stretch)
        self.speck_table.speckActivated.connect(self._on_speck_activated)
        self.speck_table.speckRemoveRequested.connect(self._remove_speck)
        self.speck_table.overridesChanged.connect(self._on_overrides)
        self.speck_table.verifyRequested.connect(self.run_verify)

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

    # ================================================================== messages
    def log(self, text: str) -> None:
        log.info(text)

    def show_error(self, text: str, title: str = "AI Flat", user_error: bool = True) -> None:
        """A readable message box (never a traceback). In non-interactive mode (--screenshot) the
        error is recorded and logged only."""
        self.errors.append(text)
        log.warning(text)
        self.statusBar().showMessage(text, 10000)
        if not self.interactive:
            return
        if user_error:
            QtWidgets.QMessageBox.warning(self, title, text)
        else:
            QtWidgets.QMessageBox.critical(self, title, text + "\n\nDetails are in the log.")

    def about(self) -> None:
        QtWidgets.QMessageBox.about(
            self, f"About {APP_NAME}",
            f"<b>{APP_NAME}</b> {__version__}<br>Removes sensor-dust shadows from solar, lunar and planetary "
            "videos. The AI (or the offline detector) only draws a mask; the flat is exactly 1.0 outside it, "
            "so pixels without dust never change.")

    # ================================================================== opening
    def open_dialog(self, folder: bool = False) -> None:
        """File ▸ Open (a file; one frame of a numbered series offers its folder) or Open Folder."""
        from .open_dialogs import choose_file, choose_folder, offer_series_folder

        start = str(self.path.parent) if self.path else str(self.settings.value("paths/last_dir", "") or "")
        path = choose_folder(self, start) if folder else choose_file(self, start)
        if path:
            self.open_path(path if folder else offer_series_folder(self, path))

    def open_demo(self, interactive: bool = True) -> bool:
        """Open the built-in demo (generated on first use: in a worker when interactive, so the
        window stays responsive)."""
        if not interactive:
            return self.open_path(pipeline.ensure_demo(), interactive=False)
        if self._busy():
            return False
        self.statusBar().showMessage("Preparing the demo sequence…")
        w = Worker(lambda: pipeline.ensure_demo(), pass_progress=False, name="demo")
        self._start(w, None, "Preparing the demo", lambda path: self.open_path(path))
        return True

    def open_path(self, path, interactive: bool = True) -> bool:
        """Open a sequence and restore its session. On error: a message box (or, non-interactive,
        the error is raised) and the current document stays as it was."""
        if self.worker is not None and self.worker.running:
            if interactive:
                self.show_error("Wait for the running job to finish (or cancel it) before opening another file.")
                return False
            self.worker.cancel()
            self.worker.wait(30)
        try:
            seq = pipeline.open_input(path)
            if seq.n_frames < 1:
                raise InputError("sequence has no frames", path)
            first = np.asarray(seq.frame(0))
        except AiflatError as err:
            if not interactive:
                raise
            self.show_error(str(err), "Cannot open")
            return False
        except Exception as exc:  # noqa: BLE001 - a reader bug must not take the window down
            log.exception("opening %s failed", path)
            if not interactive:
                raise AiflatError(one_line(exc), path) from None
            self.show_error(f"{path}: {one_line(exc)}", "Cannot open", user_error=False)
            return False

        self._close_document()
        from ..core.maskedit import MaskModel

        self.path = Path(path)
        self.seq = seq
        self.mask_model = MaskModel(shape=(seq.height, seq.width))
        self.mask_model.on_change(self._on_mask_changed)
        self.viewer.set_mask_model(self.mask_model)
        self.frame_index = 0
        with QtCore.QSignalBlocker(self.frame_slider):
            self.frame_slider.setRange(0, max(0, seq.n_frames - 1))
            self.frame_slider.setValue(0)
        self.workflow.reset()
        self.workflow.set_state("sequence", DONE)
        d = seq.describe()
        self.workflow.sequence_info.setText(f"{self.path.name}\n{sequence_summary(d)}")
        for w in seq.warnings:
            log.warning("%s: %s", self.path, w)
        self.stretch_panel.set_image(first, seq.color, emit=False)
        self.setWindowTitle(f"{self.path.name} — {APP_NAME}")
        self._add_recent(self.path)
        self.settings.setValue("paths/last_dir", str(self.path.parent))
        self.log(f"opened {self.path} ({sequence_summary(d)})")

        self.session_store = SessionStore(self.path)
        try:
            self._restore_session(interactive)
        except Exception as exc:  # noqa: BLE001 - a hand-edited/odd session must not block opening
            self._restoring = False
            log.warning("%s: session not restored (%s)", self.session_store.json_path, one_line(exc))
        self._update_frame_label()
        self.render()
        self.viewer.fit()
        self._update_actions()
        self.documentChanged.emit()
        if self.auto_reference:
            self.run_reference()
        return True

    def _close_document(self) -> None:
        if self.seq is not None:
            if self.autosave and self.autosave_timer.isActive():
                self.autosave_timer.stop()
                self.save_session()
            if self.mask_model is not None:
                self.mask_model.remove_listener(self._on_mask_changed)
            try:
                self.seq.close()
            except Exception:  # noqa: BLE001
                pass
        self.set_playing(False)
        self.seq = None
        self.path = None
        self.reference = None
        self.flat = None
        self.clean = None
        self.local_provider = None
        self.ai_report = {}
        self._calibrator = None
        self.session_store = None
        self.output_choices = {}
        self._used_params = {}
        self.speck_table.set_verification(None)
        self.speck_table.set_specks([])

    # ================================================================== sessions
    def session_data(self) -> SessionData:
        p = self.workflow.params()
        stretch = {}
        try:
            stretch = dataclasses.asdict(self.stretch_panel.state())
        except Exception:  # noqa: BLE001 - a stretch panel without a dataclass state
            pass
        from .settings_dialog import get_setting

        gem = {"model": str(get_setting("gemini/model", self.settings)),
               "image_size": str(get_setting("gemini/image_size", self.settings))}
        return SessionData(provider=p["provider"], sensitivity=p["sensitivity"], reference_method=p["reference_method"],
                           max_frames=p["max_frames"], flat_method=p["flat_method"], grow=p["grow"],
                           feather=p["feather"], pedestal=p["pedestal"], stretch=stretch, view=self.view,
                           frame_index=self.frame_index, overlay_visible=self.act_overlay.isChecked(),
                           overlay_opacity=self.opacity_slider.value() / 100.0, output=dict(self.output_choices),
                           gemini=gem)

    def save_session(self) -> bool:
        """Write the sidecar now (mask + choices). Errors go to the log and status bar: autosave
        must never interrupt the user."""
        self.autosave_timer.stop()
        if not self.autosave or self.session_store is None or self.mask_model is None or self._restoring:
            return False
        has_mask = self.workflow.state("mask") in (DONE, STALE) or bool(self.mask_model.mask.any())
        try:
            self.session_store.save(self.session_data(), self.mask_model.mask if has_mask else None)
            self.mask_model.mark_saved()
            return True
        except AiflatError as err:
            log.warning("session not saved: %s", err)
            self.statusBar().showMessage(f"Session not saved: {err}", 10000)
        except Exception as exc:  # noqa: BLE001
            log.exception("session not saved")
            self.statusBar().showMessage(f"Session not saved: {one_line(exc)}", 10000)
        return False

    def _schedule_autosave(self) -> None:
        if self.autosave and self.session_store is not None and not self._restoring:
            self.autosave_timer.start()

    def _restore_session(self, interactive: bool) -> None:
        store = self.session_store
        try:
            data, mask, warnings = store.load((self.seq.height, self.seq.width))
        except AiflatError as err:
            log.warning("%s", err)
            return
        if data is None:
            return
        self._restoring = True
        try:
            self.workflow.set_params(dataclasses.asdict(data))
            if data.stretch:
                try:
                    from ..core.stretch import StretchState

                    state = StretchState(**data.stretch)
                    self.stretch_panel.set_state(state)
                    self.viewer.set_stretch(state)
                except Exception as exc:  # noqa: BLE001 - an old/odd stretch is not worth an error
                    log.info("stretch not restored: %s", one_line(exc))
            self.output_choices = dict(data.output or {})
            self.act_overlay.setChecked(bool(data.overlay_visible))
            self.set_overlay_visible(bool(data.overlay_visible))
            self.opacity_slider.setValue(int(round(100 * data.overlay_opacity)))
            if 0 <= data.frame_index < self.seq.n_frames:
                self.frame_index = data.frame_index
                with QtCore.QSignalBlocker(self.frame_slider):
                    self.frame_slider.setValue(self.frame_index)
            if mask is not None:
                self.mask_model.set_mask(mask)
                self.workflow.set_state("mask", DONE)
                self._update_mask_info()
                self.specks_timer.start()
            if data.view in dict(VIEWS):
                self.set_view(data.view, render=False)
        finally:
            self._restoring = False
        for w in warnings:
            log.warning("%s: %s", store.json_path, w)
            self.statusBar().showMessage(f"Session: {w}", 15000)
        self.log(f"session restored from {store.json_path}")

    # ================================================================== workers
    def _start(self, worker: Worker, step: Optional[str], title: str, on_success: Callable[[Any], None],
               on_end: Optional[Callable[[], None]] = None) -> Worker:
        """Run ``worker`` with the progress panel; step state running -> done (or back)."""
        previous = self.workflow.state(step) if step else None
        if step:
            self.workflow.set_state(step, RUNNING)
        self.workflow.set_busy(True)
        self.worker = self.last_worker = worker
        self.job_panel.attach(worker, title)
        worker.progress.connect(lambda f, m: self.statusBar().showMessage(f"{title}: {m}" if m else title))

        def ok(result):
            try:
                on_success(result)
            except AiflatError as err:
                if step:
                    self.workflow.set_state(step, previous)
                self.show_error(str(err))
            except Exception as exc:  # noqa: BLE001
                log.exception("%s: handling the result failed", title)
                if step:
                    self.workflow.set_state(step, previous)
                self.show_error(one_line(exc), user_error=False)

        def failed(message: str, user_error: bool):
            if step:
                self.workflow.set_state(step, previous)
            self.show_error(message, title, user_error)

        def cancelled():
            if step:
                self.workflow.set_state(step, previous)
            self.log(f"{title}: cancelled")
            self.statusBar().showMessage(f"{title}: cancelled", 5000)

        def done():
            if self.worker is worker:  # (a success handler may already have started the next job)
                self.worker = None
                self.workflow.set_busy(False)
            self._update_actions()
            QtCore.QTimer.singleShot(0, self.fit_workflow_dock)
            if on_end:
                on_end()

        worker.succeeded.connect(ok)
        worker.failed.connect(failed)
        worker.cancelled.connect(cancelled)
        worker.done.connect(done)
        self.log(f"{title}: started")
        return worker.start()

    def _busy(self) -> bool:
        if self.worker is not None and self.worker.running:
            self.show_error("Another job is running; wait for it or cancel it.")
            return True
        return False

    def cancel_job(self) -> None:
        if self.worker is not None and self.worker.running:
            self.job_panel.cancel()

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Process events until no job runs (tests, --screenshot)."""
        if self.worker is None:
            return True
        return self.worker.wait(timeout)

    def _need(self, what: str) -> bool:
        ok = {"sequence": self.seq is not None, "reference": self.reference is not None,
              "flat": self.flat is not None, "mask": self.mask_model is not None}[what]
        if not ok:
            self.show_error({"sequence": "Open a video first.", "reference": "Compute the reference first.",
                             "flat": "Build the flat first.", "mask": "Open a video first."}[what])
        elif what == "flat" and self.workflow.state("flat") == STALE:
            # the mask or the flat settings changed after the flat was built: using it would change
            # pixels that are no longer in the mask
            self.show_error("The mask or the flat settings changed after the flat was built: "
                            "rebuild the flat (step 4) first.")
            return False
        return ok

    # -- reference
    def run_reference(self) -> Optional[Worker]:
        if not self._need("sequence") or self._busy():
            return None
        p = self.workflow.params()
        w = Worker(job_reference, str(self.path), p["reference_method"], p["max_frames"], name="reference")

        def ok(ref):
            self.reference = np.asarray(ref, np.float32)
            self._used_params["reference"] = {k: p[k] for k in ("reference_method", "max_frames")}
            self.workflow.step_changed("reference")
            self.specks_timer.start()
            self.log("reference ready")
            if self.view == "reference":
                self.render()

        return self._start(w, "reference", "Reference", ok)

    # -- mask: offline detector
    def run_detection(self) -> Optional[Worker]:
        if not self._need("reference") or self._busy():
            return None
        s = self.workflow.sensitivity_value()
        w = Worker(job_detect, str(self.path), self.reference, s, name="detect")

        def ok(res):
            provider, result = res
            self.local_provider = provider
            self.ai_report = dict(result.report or {})
            self.mask_model.apply(np.asarray(result.mask, bool), "Find dust (offline)")
            self.workflow.step_changed("mask")
            self._update_mask_info()
            self.log(f"offline detector: {int(np.count_nonzero(result.mask))} dust pixels")

        return self._start(w, "mask", "Finding dust", ok)

    def set_sensitivity(self, value: float) -> None:
        """Re-threshold the detector's cached score map live (no new detection run)."""
        self._schedule_autosave()
        scores = getattr(self.local_provider, "scores", None)
        if scores is None or self.mask_model is None:
            return
        try:
            new = np.asarray(scores.mask(float(value)), bool)
        except Exception as exc:  # noqa: BLE001
            log.warning("re-threshold failed: %s", one_line(exc))
            return
        self.mask_model.apply(new, f"Sensitivity {value:.2f}", merge_key="sensitivity")
        self.workflow.step_changed("mask")
        self._update_mask_info()

    # -- mask: Gemini
    def ask_ai(self) -> Optional[Worker]:
        if not self._need("reference") or self._busy():
            return None
        from .gemini_dialog import show_reply

        provider = self._ask_gemini_confirm("mask")
        if provider is None:
            return None
        return self._run_gemini(provider, show_reply)

    def _ask_gemini_confirm(self, purpose: str):
        """A GeminiProvider from the settings after the user has seen model, size and cost and
        clicked Send; None when cancelled or impossible (a message says why)."""
        from .gemini_dialog import GeminiAskDialog
        from .settings_dialog import gemini_options, stored_api_key

        if not self.interactive:
            self.show_error("An AI request needs your confirmation of its cost; run it from the window.")
            return None

        try:
            from ..ai.gemini import GeminiProvider

            opts = gemini_options(self.settings)
            provider = GeminiProvider(**opts)
            description = provider.describe_request(self.reference)
        except AiflatError as err:
            self.show_error(str(err), "Ask AI")
            return None
        has_key = bool(opts.get("api_key") or stored_api_key() or os.environ.get("GEMINI_API_KEY")
                       or os.environ.get("GOOGLE_API_KEY"))
        dlg = GeminiAskDialog(description, self, has_key=has_key, purpose=purpose)
        if dlg.exec() != QtWidgets.QDialog.Accepted:
            return None
        if dlg.reroll:
            provider.reroll = True
        self.log(f"asking the AI ({purpose}): {dlg.summary()}")
        return provider

    def _run_gemini(self, provider, show_reply_fn=None) -> Worker:
        w = Worker(job_gemini, provider, self.reference, name="gemini")

        def ok(result):
            self.ai_report = dict(result.report or {})
            self.mask_model.apply(np.asarray(result.mask, bool), "Find dust (AI)")
            if result.clean is not None:  # a clean image made for exactly this mask
                self.clean = np.asarray(result.clean, np.float32)
                self._clean_generation = self._mask_generation
            self.workflow.step_changed("mask")
            self._update_mask_info()
            self.log(f"AI answer: {int(np.count_nonzero(result.mask))} dust pixels; "
                     f"{self.ai_report.get('text') or 'no text'}")
            if show_reply_fn is not None and self.interactive:
                show_reply_fn(self, self.ai_report)

        return self._start(w, "mask", "Asking the AI", ok)

    # -- mask: file
    def import_mask_dialog(self) -> None:
        if not self._need("sequence"):
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Import a mask", str(self.path.parent),
                                                        "Masks (*.png *.tif *.tiff *.fits *.fit);;All files (*)")
        if path:
            self.import_mask(path)

    def import_mask(self, path) -> bool:
        """Load a mask file (any bit depth; soft masks thresholded). A wrong size shows a message
        box and leaves the current mask and session untouched."""
        if not self._need("sequence"):
            return False
        load_mask = pipeline.load_mask

        try:
            mask, warnings = load_mask(path, (self.seq.height, self.seq.width))
        except AiflatError as err:
            self.show_error(str(err), "Cannot import the mask")
            return False
        except Exception as exc:  # noqa: BLE001
            log.exception("mask import failed")
            self.show_error(f"{path}: {one_line(exc)}", "Cannot import the mask", user_error=False)
            return False
        for w in warnings:
            log.warning("%s: %s", path, w)
        self.mask_model.apply(np.asarray(mask, bool), f"Import {Path(path).name}")
        self.workflow.step_changed("mask")
        self._update_mask_info()
        self.log(f"imported mask {path}")
        return True

    def mask_op(self, op: str) -> None:
        if self.mask_model is None:
            return
        m = self.mask_model
        if op == "grow":
            m.grow(1)
        elif op == "shrink":
            m.shrink(1)
        elif op == "invert":
            m.invert()
        elif op == "clear":
            m.clear()
        elif op == "remove_small":
            m.remove_small(4)
        self._update_mask_info()

    def undo(self) -> None:
        if self.mask_model is not None and self.mask_model.undo():
            self._update_mask_info()

    def redo(self) -> None:
        if self.mask_model is not None and self.mask_model.redo():
            self._update_mask_info()

    # -- verify (every speck against the video) and flat
    def run_verify(self, then: Optional[Callable[[], Any]] = None) -> Optional[Worker]:
        if not self._need("sequence") or self._busy():
            return None
        mask = self.mask_model.mask.astype(bool)

        def ok(outcome):
            self._verified(outcome)
            if then is not None:
                then()

        return self._start(Worker(job_verify, str(self.path), mask, name="verify"), None,
                           "Checking the specks against the video", ok)

    def _verified(self, outcome) -> None:
        self.speck_table.set_verification(outcome.verification)
        for line in [outcome.summary(), *outcome.refusals()]:
            self.log(f"verify: {line}")
        if outcome.verification is not None and outcome.verification.note:
            self.statusBar().showMessage(f"Specks not verified: {outcome.verification.note}", 15000)
        self.refresh_specks()

    def _on_overrides(self) -> None:
        self.workflow.step_changed("mask")  # the flat's mask changed: the flat is stale
        self.refresh_specks()

    def _remove_speck(self, x: int, y: int) -> None:
        if self.mask_model is not None and self.mask_model.remove_component_at(x, y) is not None:
            self._update_mask_info()

    def run_flat(self) -> Optional[Worker]:
        if not self._need("reference") or self._busy():
            return None
        p = self.workflow.params()
        generation = self._mask_generation
        mask = self.mask_model.mask.astype(bool)
        # the flat only corrects what the video shows to be dust: specks nobody checked yet are
        # checked first (in the flat's job)
        verify = self.seq is not None and self.speck_table.needs_verification(mask)
        if not verify:
            mask, refused = self.speck_table.flat_mask(mask)
            if refused:
                self.log(f"flat: {len(refused)} specks left out (flat exactly 1.0 there); right-click one in "
                         f"the Specks table to override")
        fresh_clean = self.clean is not None and self._clean_generation == generation
        if p["flat_method"] == "ai" and not fresh_clean:
            provider = self._ask_gemini_confirm("clean")
            if provider is None:
                return None
            w = Worker(job_ai_flat, provider, str(self.path), self.reference, mask, p["grow"], p["feather"],
                       p["pedestal"], p["max_frames"], name="ai flat")
        else:
            w = Worker(job_flat, str(self.path), self.reference, mask, p["flat_method"], self.clean, p["grow"],
                       p["feather"], p["pedestal"], p["max_frames"], name="flat", verify=verify,
                       overrides=dict(self.speck_table.overrides))

        def ok(flat):
            if isinstance(flat, dict):  # the specks were checked first
                self._verified(flat["verify"])
                flat = flat["flat"]
            if isinstance(flat, tuple):  # (AI clean image, flat)
                self.clean, flat = np.asarray(flat[0], np.float32), flat[1]
                self._clean_generation = generation
            self.flat = np.asarray(flat, np.float32)
            self._calibrator = None
            self._used_params["flat"] = {k: p[k] for k in ("flat_method", "grow", "feather", "pedestal")}
            self.workflow.step_changed("flat")
            if generation != self._mask_generation:
                self.workflow.set_state("flat", STALE)
            n = int(np.count_nonzero(self.flat != 1.0))
            self.log(f"flat ready: {n} pixels below 1.0, minimum {float(self.flat.min()):.3f}")
            self.specks_timer.start()  # depths from the flat now
            if self.view in ("flat", "calibrated", "difference", "blink"):
                self.render()

        return self._start(w, "flat", "Building the flat", ok)

    # -- calibrate / export
    def calibrate_to(self, output, fmt: Optional[str] = None, overwrite: bool = True) -> Optional[Worker]:
        """Calibrate the whole sequence into ``output`` in a worker (atomic: a cancel leaves nothing)."""
        if not self._need("flat") or self._busy():
            return None
        from .export_dialog import same_file

        if same_file(output, self.path):
            self.show_error(f"{output}: output path is the input file; choose another name")
            return None
        pedestal = self.workflow.params()["pedestal"]
        self.output_choices.update({"path": str(output), "format": fmt})
        w = Worker(job_calibrate, str(self.path), self.flat, str(output), fmt, pedestal, overwrite, name="calibrate")

        def ok(stats):
            self.workflow.step_changed("calibrate")
            text = (f"{stats.output}: {plural(stats.frames, 'frame')} in {stats.seconds:.1f} s, "
                    f"{plural(stats.clipped, 'value')} clipped")
            self.workflow.calibrate_info.setText(text)
            self.log(f"calibrated {text}")
            self.statusBar().showMessage(f"Calibrated: {stats.output}", 10000)

        self._schedule_autosave()
        return self._start(w, "calibrate", "Calibrating", ok)

    def export_flat_to(self, path, target: str) -> bool:
        if not self._need("flat"):
            return False
        export_flat = pipeline.export_flat

        try:
            out = export_flat(self.flat, target, path, lights=self.seq)  # row order for the open video
        except AiflatError as err:
            self.show_error(str(err), "Export flat")
            return False
        self.output_choices["target"] = target
        self._schedule_autosave()
        self.log(f"flat for {target} written to {out}")
        return True

    def save_mask_to(self, path) -> bool:
        if not self._need("mask"):
            return False
        save_mask = pipeline.save_mask

        try:
            save_mask(path, self.mask_model.mask.astype(bool))
        except AiflatError as err:
            self.show_error(str(err), "Save mask")
            return False
        self.log(f"mask written to {path}")
        return True

    def run_batch(self, inputs: list[str], out_dir, fmt: Optional[str] = None, jobs: int = 0) -> Optional[Worker]:
        """Calibrate every video in ``inputs`` with the current flat (``jobs`` processes, 0: one per
        core); the flat is saved as ``out_dir/flat.fits`` beside the results."""
        if not self._need("flat") or self._busy():
            return None
        pedestal = self.workflow.params()["pedestal"]
        w = Worker(job_batch, list(inputs), self.flat, str(out_dir), fmt, pedestal, jobs, name="batch")

        def ok(summary):
            text = summary.text() if hasattr(summary, "text") else str(summary)
            for line in text.splitlines():  # one log line each (the summary line says "batch:")
                self.log(line.strip())
            if self.interactive:
                QtWidgets.QMessageBox.information(self, "Batch finished", text)

        return self._start(w, None, "Calibrating all videos", ok)

    def export_dialog(self, tab: Optional[int] = None) -> None:
        if not self._need("sequence"):
            return
        from .export_dialog import ExportDialog
        from .settings_dialog import get_setting

        dlg = ExportDialog(self.path, out_dir=str(get_setting("output/folder", self.settings) or "") or None,
                           have_flat=self.flat is not None, have_mask=self.mask_model is not None, parent=self,
                           choices=self.output_choices)
        if tab is not None:  # else the tab the user chose last time
            dlg.tabs.setCurrentIndex(tab)
        dlg.exportRequested.connect(self._on_export_requested)
        dlg.exec()

    def _on_export_requested(self, kind: str, opts: dict) -> None:
        if kind == "calibrate":
            self.calibrate_to(opts["path"], opts.get("fmt"), opts.get("overwrite", True))
        elif kind == "flat":
            self.export_flat_to(opts["path"], opts["target"])
        elif kind == "mask":
            self.save_mask_to(opts["path"])
        elif kind == "batch":
            self.run_batch(opts["inputs"], opts["out_dir"], opts.get("fmt"))

    def settings_dialog(self) -> None:
        from .settings_dialog import SettingsDialog

        dlg = SettingsDialog(self, self.settings)
        if dlg.exec() == QtWidgets.QDialog.Accepted and dlg.key_message:
            QtWidgets.QMessageBox.information(self, "API key", dlg.key_message)

    # -- everything, synchronously (used by --screenshot)
    def run_full_workflow(self, timeout: float = 600.0) -> None:
        """Reference (if missing), offline mask (if none), flat; each worker awaited. Raises
        AiflatError on the first failure."""
        if self.seq is None:
            raise InputError("no sequence open")
        self.wait_idle(timeout)
        if self.workflow.flat_method_key() == "ai" and not self.interactive:
            # an AI request needs the user's go-ahead (it costs money): use the offline fill here
            self.workflow.flat_method.setCurrentIndex(self.workflow.flat_method.findData("local"))
            self.log("flat method 'ai' needs a confirmed AI request; using the local fill")
        steps = []
        if self.reference is None:
            steps.append(self.run_reference)
        steps.append(lambda: None if self.workflow.state("mask") == DONE else self.run_detection())
        steps.append(self.run_flat)
        for start in steps:
            n_errors = len(self.errors)
            w = start()
            if w is not None and not w.wait(timeout):
                w.cancel()
                raise AiflatError("the workflow did not finish in time", self.path)
            if len(self.errors) > n_errors:
                raise AiflatError(self.errors[-1])

    def show_screenshot_views(self) -> None:
        """What the README screenshot shows: Visualize dust with the mask drawn as outlines."""
        self.set_overlay_visible(True)
        self.act_overlay.setChecked(True)
        self.act_outline.setChecked(True)
        self.set_view("dust")
        self.refresh_specks()
        self.viewer.fit()

    # ================================================================== viewing
    def set_view(self, view: str, render: bool = True) -> None:
        if view not in dict(VIEWS):
            raise ValueError(f"unknown view {view!r}")
        self.view = view
        if view in self.view_actions:
            self.view_actions[view].setChecked(True)
        i = self.view_combo.findData(view)
        if i >= 0 and self.view_combo.currentIndex() != i:
            with QtCore.QSignalBlocker(self.view_combo):
                self.view_combo.setCurrentIndex(i)
        if view == "blink":
            self.blink_timer.start()
        else:
            self.blink_timer.stop()
        if render:
            self.render()
        self._schedule_autosave()
        self.viewChanged.emit(view)

    def set_frame(self, i: int) -> None:
        if self.seq is None:
            return
        i = int(max(0, min(self.seq.n_frames - 1, i)))
        self.frame_index = i
        if self.frame_slider.value() != i:
            with QtCore.QSignalBlocker(self.frame_slider):
                self.frame_slider.setValue(i)
        self._update_frame_label()
        if self.view in ("frame", "calibrated", "difference", "blink"):
            # new levels for this frame unless "apply to all frames" is on (the panel decides);
            # during playback with fixed levels the histogram waits until the pause
            if not (self.play_timer.isActive() and self.stretch_panel.apply_to_all()):
                self.stretch_panel.set_image(self.current_frame(), self.seq.color, emit=False)
            self.render()

    def _update_frame_label(self) -> None:
        if self.seq is None:
            self.frame_label.setText("–")
            return
        text = f"{self.frame_index + 1} / {self.seq.n_frames}"
        ts = self.seq.timestamp(self.frame_index) if self.seq.timestamps is not None else None
        if ts is not None:
            self.frame_label.setToolTip(ts.isoformat())
        self.frame_label.setText(text)

    def set_playing(self, playing: bool) -> None:
        if playing and self.seq is not None and self.seq.n_frames > 1:
            self.play_timer.start()
            icon = QtWidgets.QStyle.SP_MediaPause
        else:
            if self.play_timer.isActive() and self.seq is not None:
                self.stretch_panel.set_image(self.current_frame(), self.seq.color, emit=False)
            self.play_timer.stop()
            icon = QtWidgets.QStyle.SP_MediaPlay
            if self.play_button.isChecked():
                with QtCore.QSignalBlocker(self.play_button):
                    self.play_button.setChecked(False)
        self.play_button.setIcon(self.style().standardIcon(icon))

    def _next_frame(self) -> None:
        if self.seq is None:
            return
        self.set_frame((self.frame_index + 1) % self.seq.n_frames)

    def _blink(self) -> None:
        self._blink_phase ^= 1
        if self.view == "blink":
            self.render()

    def current_frame(self) -> Optional[np.ndarray]:
        return None if self.seq is None else np.asarray(self.seq.frame(self.frame_index))

    def calibrated_frame(self, frame: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """The current frame divided by the flat, exactly as the calibration writes it."""
        if self.flat is None or self.seq is None:
            return None
        if self._calibrator is None:
            self._calibrator = pipeline.preview_calibrator(self.flat, self.seq, self.workflow.params()["pedestal"])
        return self._calibrator.frame(self.current_frame() if frame is None else frame)

    def view_image(self, view: Optional[str] = None) -> tuple[Optional[np.ndarray], str, Optional[tuple[float, float]]]:
        """(array, colour layout, fixed levels or None for the stretch) for a view."""
        view = view or self.view
        if self.seq is None:
            return None, "mono", None
        color = self.seq.color
        frame = self.current_frame()
        if view == "frame":
            return frame, color, None
        if view == "reference":
            return (self.reference if self.reference is not None else frame), color, None
        if view == "dust":  # the reference (else this frame) over its smooth version, stretched hard
            from ..core.stretch import visualize_dust

            src = self.reference if self.reference is not None else frame
            if getattr(self, "_dust_view", (None,))[0] is not src:
                self._dust_view = (src, *visualize_dust(src, color))
            return self._dust_view[1], "mono", self._dust_view[2]
        if view == "mask":
            return (self.mask_model.mask * np.uint8(255)), "mono", (0.0, 255.0)
        if view == "flat":
            if self.flat is None:
                return np.ones(frame.shape, np.float32), "mono" if frame.ndim == 2 else color, (0.0, 1.0)
            lo = float(self.flat.min())
            return self.flat, ("mono" if self.flat.ndim == 2 and color not in ("RGB", "BGR") else color), \
                (min(lo, 0.999), 1.0)
        cal = self.calibrated_frame(frame)
        if cal is None:
            cal = frame
        if view == "calibrated":
            return cal, color, None
        if view == "difference":
            diff = cal.astype(np.float32) - frame.astype(np.float32)
            m = float(np.abs(diff).max()) or 1.0
            return diff, ("mono" if diff.ndim == 2 else color), (-m, m)
        # blink: alternate before/after under the same stretch
        return (frame if self._blink_phase == 0 else cal), color, None

    def stretch_state(self):
        """The display stretch of the data views (from the stretch panel)."""
        return self.stretch_panel.state()

    def render(self) -> None:
        """Show the current view. Data views (frame, reference, calibrated, blink) use the stretch
        panel's state; mask/flat/difference use fixed linear levels. Display only: no data changes."""
        img, color, levels = self.view_image()
        if img is None:
            return
        from ..core.stretch import StretchState

        if levels is None:
            self.stretch_panel.show_data()
            state = self.stretch_state()
            self._display_kind = "stretch"
            self.viewer.set_image(img, color=color, stretch=state)  # one render
        else:
            self.stretch_panel.show_levels(img, levels, dict(VIEWS)[self.view])  # e.g. the flat in flat units
            if self._display_kind != "fixed":
                self.viewer.set_stretch(StretchState(mode="linear", black=levels[0], white=levels[1]))
                self._display_kind = "fixed"
            self.viewer.set_image(img, color=color, levels=levels)
        if self.view == "blink":
            self.statusBar().showMessage("Blink: " + ("before (raw)" if self._blink_phase == 0 else "after (calibrated)"))

    def set_overlay_visible(self, visible: bool) -> None:
        self.viewer.set_overlay_visible(bool(visible))
        self._schedule_autosave()

    def _on_opacity(self, v: int) -> None:
        self.viewer.set_overlay_opacity(v / 100.0)
        self._schedule_autosave()

    def set_tool(self, tool: str) -> None:
        self.viewer.set_tool(tool)
        if tool in self.tool_actions and not self.tool_actions[tool].isChecked():
            self.tool_actions[tool].setChecked(True)

    def _step_brush(self, direction: int) -> None:
        """``[`` / ``]``: +-1 px for small brushes, +-25 % for large ones (as the viewer does)."""
        from .viewer import _grow_radius, _shrink_radius

        r = self.brush_spin.value()
        self.brush_spin.setValue(_grow_radius(r) if direction > 0 else _shrink_radius(r))

    def _on_viewer_brush(self, r: int) -> None:
        if self.brush_spin.value() != r:
            with QtCore.QSignalBlocker(self.brush_spin):
                self.brush_spin.setValue(int(r))
            self.settings.setValue("editor/brush", int(r))

    def _on_brush(self, r: int) -> None:
        self.viewer.set_brush_radius(int(r))
        self.settings.setValue("editor/brush", int(r))

    def _on_stretch(self, state) -> None:
        if self._display_kind == "stretch":
            self.viewer.set_stretch(state)
        self._schedule_autosave()

    # ================================================================== events from widgets
    def _on_workflow_action(self, name: str) -> None:
        {"open": self.open_dialog, "open_folder": self.act_open_folder.trigger, "demo": self.open_demo, "reference": self.run_reference,
         "detect": self.run_detection, "ask_ai": self.ask_ai, "import_mask": self.import_mask_dialog,
         "flat": self.run_flat, "calibrate": lambda: self.export_dialog(0), "batch": lambda: self.export_dialog(3),
         "grow": lambda: self.mask_op("grow"), "shrink": lambda: self.mask_op("shrink"),
         "invert": lambda: self.mask_op("invert"), "clear": lambda: self.mask_op("clear")}[name]()

    def _on_params_changed(self) -> None:
        p = self.workflow.params()
        for step, keys in (("reference", ("reference_method", "max_frames")),
                           ("flat", ("flat_method", "grow", "feather", "pedestal"))):
            used = self._used_params.get(step)
            if used and any(used[k] != p[k] for k in keys) and self.workflow.state(step) == DONE:
                self.workflow.set_state(step, STALE)
        self._calibrator = None
        if self.view in ("calibrated", "difference", "blink") and self.flat is not None:
            self.render()
        self._schedule_autosave()

    def _on_mask_changed(self, box) -> None:
        self._mask_generation += 1
        if self._restoring:
            return
        if self.workflow.state("mask") != RUNNING:
            self.workflow.step_changed("mask")
        self._schedule_autosave()
        self.specks_timer.start()
        self._update_actions()
        if self.view == "mask":
            self.render()

    def _on_stroke_finished(self) -> None:
        self._update_mask_info()
        self._update_actions()

    def _on_speck_clicked(self, x: int, y: int) -> None:
        # the viewer's remove tool has already removed the speck from the model (one undo step)
        self._update_mask_info()

    def _on_speck_activated(self, x: int, y: int) -> None:
        # centre the speck, close enough to judge it (at least 2 screen pixels per image pixel)
        self.viewer.center_on(x, y, zoom=max(self.viewer.zoom_factor(), 2.0))
        box = None
        for sp in self.speck_table.specks:
            bx, by, bw, bh = (sp["bbox"] if isinstance(sp, dict) else sp.bbox)
            if bx <= x < bx + bw and by <= y < by + bh:
                box = (bx, by, bx + bw, by + bh)
                break
        self.viewer.set_highlight(box)  # outline the chosen speck (None hides it)

    def _on_hover(self, x: int, y: int) -> None:
        if self.seq is None or not (0 <= x < self.seq.width and 0 <= y < self.seq.height):
            self.pixel_label.setText("")
            return
        parts = [f"x {x}  y {y}"]
        try:
            v = self.viewer.value_at(x, y)
        except Exception:  # noqa: BLE001
            v = None
        if v is not None:
            arr = np.atleast_1d(np.asarray(v))
            parts.append("value " + " ".join(f"{float(t):.6g}" for t in arr))
        parts.append(f"mask {int(self.mask_model.mask[y, x])}")
        if self.flat is not None:
            fv = np.atleast_1d(self.flat[y, x])
            parts.append("flat " + " ".join(f"{float(t):.4f}" for t in fv))
        self.pixel_label.setText("   ".join(parts))

    def refresh_specks(self) -> None:
        if self.mask_model is None:
            self.speck_table.set_specks([])
            return
        # a flat built for this very mask measures each speck's depth; else the reference estimates it
        flat = self.flat if (self.flat is not None and self.workflow.state("flat") == DONE) else None
        try:
            mask = self.mask_model.mask.astype(bool)
            specks = pipeline.measure_specks(mask, self.reference, flat)
        except Exception as exc:  # noqa: BLE001
            log.warning("speck table not updated: %s", one_line(exc))
            return
        self.speck_table.set_specks(specks, mask=mask)
        self.viewer.set_refused(self.speck_table.refused_mask(mask))
        self.speck_dock.setWindowTitle(f"Specks ({len(specks)})")

    def _update_mask_info(self) -> None:
        if self.mask_model is None:
            self.workflow.mask_info.setText("")
            return
        n = int(np.count_nonzero(self.mask_model.mask))
        self.workflow.mask_info.setText(f"{n} dust pixels")
        self._update_actions()

    def _update_actions(self) -> None:
        m = self.mask_model
        self.act_undo.setEnabled(bool(m is not None and m.can_undo))
        self.act_redo.setEnabled(bool(m is not None and m.can_redo))
        if m is not None:
            self.act_undo.setText(f"&Undo {m.undo_label}".rstrip() if m.can_undo else "&Undo")
            self.act_redo.setText(f"&Redo {m.redo_label}".rstrip() if m.can_redo else "&Redo")
        have = self.seq is not None
        for a in (self.act_grow, self.act_shrink, self.act_invert, self.act_clear, self.act_small,
                  self.act_import_mask, self.act_export):
            a.setEnabled(have)
        self.act_batch.setEnabled(self.flat is not None)

    # ================================================================== recent files, drag and drop
    def recent_files(self) -> list[str]:
        v = self.settings.value("recent/files", []) or []
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in v]

    def _add_recent(self, path: Path) -> None:
        p = str(Path(path).resolve())
        files = [f for f in self.recent_files() if f != p]
        files.insert(0, p)
        self.settings.setValue("recent/files", files[:MAX_RECENT])
        self._refresh_recent_menu()

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        for f in files:
            a = self.recent_menu.addAction(f)
            a.triggered.connect(lambda checked=False, f=f: self.open_path(f))
        self.recent_menu.setEnabled(bool(files))

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.drop_paths(paths)

    def drop_paths(self, paths: list[str]) -> None:
        """A dropped mask image (PNG/TIFF/FITS with 'mask' in its name) is imported into the open
        video; anything else is opened."""
        p = paths[0]
        if self.seq is not None and "mask" in Path(p).name.lower() and \
                Path(p).suffix.lower() in (".png", ".tif", ".tiff", ".fits", ".fit"):
            self.import_mask(p)
        else:
            self.open_path(p)

    # ================================================================== layout, close
    def _restore_layout(self) -> bool:
        geo = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geo is not None:
            self.restoreGeometry(geo)
        return bool(state is not None and self.restoreState(state))

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.play_timer.stop()
        self.blink_timer.stop()
        if self.worker is not None and self.worker.running:
            self.worker.cancel()
            self.worker.wait(10)
        if self.autosave:
            self.save_session()  # immediately: a crash after close loses nothing
        if self.remember_layout:
            self.save_layout()
        logging.getLogger("aiflat").removeHandler(self._log_handler)
        if self.seq is not None:
            try:
                self.seq.close()
            except Exception:  # noqa: BLE001
                pass
        super().closeEvent(event)
