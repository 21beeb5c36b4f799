"""The main window: wires the viewer, the docks and the workers to a :class:`Document`.

No science and no state of its own: the document (:mod:`aiflat_gui.document`) holds the sequence,
reference, mask, flat, parameters, workflow state and display state, and notifies the window of
each change; the steps run through :mod:`aiflat_gui.pipeline` in workers (:mod:`.steps`). Opening a
file makes a new Document. Every choice and the mask are saved to the session sidecar shortly
after each change and on close.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from .. import APP_NAME, __version__, pipeline
from ..document import VIEWS, Document
from ..errors import AiflatError
from ..text import plural, sequence_summary
from .actions import ActionsMixin
from .steps import StepsMixin
from .viewing import ViewMixin
from .workers import JobPanel, Worker, active_workers, one_line
from .workflow import WorkflowPanel

log = logging.getLogger("aiflat.gui")
MAX_RECENT = 10


class MainWindow(StepsMixin, ViewMixin, ActionsMixin, QtWidgets.QMainWindow):
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
        self.doc: Optional[Document] = None
        self.worker: Optional[Worker] = None
        self.last_worker: Optional[Worker] = None
        self.errors: list[str] = []  # every error shown to the user (tests and --screenshot read it)
        self._blink_phase = 0
        self._display_kind = ""
        self._closing = False
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

    # the document's parts, for readers of the window (tests, --screenshot)
    seq = property(lambda self: self.doc.seq if self.doc else None)
    path = property(lambda self: self.doc.path if self.doc else None)
    reference = property(lambda self: self.doc.reference if self.doc else None)
    flat = property(lambda self: self.doc.flat if self.doc else None)
    clean = property(lambda self: self.doc.clean if self.doc else None)
    mask_model = property(lambda self: self.doc.mask if self.doc else None)
    local_provider = property(lambda self: self.doc.local_provider if self.doc else None)
    session_store = property(lambda self: self.doc.store if self.doc else None)
    view = property(lambda self: self.doc.display.view if self.doc else "frame")
    frame_index = property(lambda self: self.doc.display.frame_index if self.doc else 0)

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
        for w in (self.play_button, self.frame_slider, self.frame_label, QtWidgets.QLabel("View"), self.view_combo):
            bar.addWidget(w, 1 if w is self.frame_slider else 0)
        lay.addLayout(bar)
        self.job_panel = JobPanel()
        lay.addWidget(self.job_panel)
        self.setCentralWidget(central)
        self.viewer.pixelHovered.connect(self._on_hover)
        self.viewer.strokeFinished.connect(self._update_actions)
        self.viewer.speckClicked.connect(lambda x, y: self._update_actions())
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
        self.workflow.providerChanged.connect(lambda *_: self._on_params_changed())
        self.speck_table.speckActivated.connect(self._on_speck_activated)
        self.speck_table.speckRemoveRequested.connect(self._remove_speck)
        self.speck_table.overridesChanged.connect(self._on_overrides)
        self.speck_table.verifyRequested.connect(self.run_verify)

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
        box = QtWidgets.QMessageBox.warning if user_error else QtWidgets.QMessageBox.critical
        box(self, title, text if user_error else text + "\n\nDetails are in the log.")

    def run_dialog(self, dlg: QtWidgets.QDialog) -> int:
        """exec() a dialog and free it at once: a parented dialog left to die with the window was
        destroyed during the window's teardown after Python had let go of it ('shared QObject was
        deleted directly', then a bus error on quit)."""
        try:
            return dlg.exec()
        finally:
            dlg.deleteLater()

    def about(self) -> None:
        QtWidgets.QMessageBox.about(
            self, f"About {APP_NAME}",
            f"<b>{APP_NAME}</b> {__version__}<br>Removes sensor-dust shadows from solar, lunar and planetary "
            "videos. The AI (or the offline detector) only draws a mask; the flat is exactly 1.0 outside it, "
            "so pixels without dust never change.")

    # ================================================================== opening: a new Document
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
        """Open a sequence (a new Document) and restore its session. On error: a message box (or,
        non-interactive, the error is raised) and the current document stays as it was."""
        if self.worker is not None and self.worker.running:
            if interactive:
                self.show_error("Wait for the running job to finish (or cancel it) before opening another file.")
                return False
            self.worker.cancel()
            self.worker.wait(30)
        try:
            doc = Document.open(path)
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
        try:
            warnings = doc.restore()
        except Exception as exc:  # noqa: BLE001 - a hand-edited/odd session must not block opening
            warnings = []
            log.warning("%s: session not restored (%s)", doc.path, one_line(exc))
        self._set_document(doc)
        d = doc.seq.describe()
        for w in doc.seq.warnings:
            log.warning("%s: %s", doc.path, w)
        for w in warnings:
            log.warning("%s: %s", doc.store.json_path, w)
            self.statusBar().showMessage(f"Session: {w}", 15000)
        self.workflow.sequence_info.setText(f"{doc.path.name}\n{sequence_summary(d)}")
        self.setWindowTitle(f"{doc.path.name} — {APP_NAME}")
        self._add_recent(doc.path)
        self.settings.setValue("paths/last_dir", str(doc.path.parent))
        self.log(f"opened {doc.path} ({sequence_summary(d)})")
        self.viewer.fit()
        self.documentChanged.emit()
        if self.auto_reference:
            self.run_reference()
        return True

    def _set_document(self, doc: Document) -> None:
        """Show ``doc``: every widget is set from it (nothing of the previous file stays)."""
        self.doc = doc
        doc.on_change(self._on_doc)
        self.workflow.model = doc.state
        self.workflow.set_params(doc.params.as_dict())
        self.workflow.mask_info.setText("")
        self.workflow.calibrate_info.setText("")
        self.viewer.set_mask_model(doc.mask)
        self.speck_table.bind_overrides(doc.overrides)
        with QtCore.QSignalBlocker(self.frame_slider):
            self.frame_slider.setRange(0, max(0, doc.seq.n_frames - 1))
        # the display is the document's (a new file: the defaults; else its restored session):
        # the stretch panel edits it, the first image is auto-levelled unless it holds a stretch
        self.stretch_panel.bind(doc)
        self.stretch_panel.set_image(doc.frame(), doc.seq.color, emit=False, keep=doc.stretch is not None)
        self._display_kind = ""
        self._shown = None  # nothing of the previous file's display is assumed shown
        self._update_mask_info()
        self.specks_timer.start()
        self._sync_display()
        self.workflow.refresh()
        self._update_actions()

    def _close_document(self) -> None:
        self.set_playing(False)
        if self.doc is not None:
            if self.autosave and self.autosave_timer.isActive():
                self.save_session()
            self.doc.close()
        self.doc = None
        self._shown = None
        self.stretch_panel.bind(None)
        self.speck_table.set_verification(None)
        self.speck_table.bind_overrides({})
        self.speck_table.set_specks([])

    # ================================================================== the document's news
    def _on_doc(self, what: str) -> None:
        doc = self.doc
        if doc is None:
            return
        if what == "state":
            self.workflow.refresh()
            self._update_actions()
        elif what == "mask":
            self._schedule_autosave()
            self.specks_timer.start()
            self._update_mask_info()
            if doc.display.view == "mask":
                self.render()
        elif what == "sensitivity":
            self.workflow.set_sensitivity(doc.sensitivity)
            self._schedule_autosave()
        elif what == "display":
            self._on_display_changed()
        elif what == "calibrated":
            self.workflow.calibrate_info.setText(doc.calibrated_text)
        elif what in ("reference", "flat", "params"):
            self._schedule_autosave()
            if (what == "reference" and doc.display.view == "reference") or \
                    (what != "reference" and doc.display.view in ("flat", "calibrated", "difference", "blink")):
                self.render()

    def _on_params_changed(self) -> None:
        if self.doc is not None:
            self.doc.set_params(self.workflow.params())

    def _on_workflow_action(self, name: str) -> None:
        {"open": self.open_dialog, "open_folder": self.act_open_folder.trigger, "demo": self.open_demo,
         "reference": self.run_reference, "detect": self.run_detection, "ask_ai": self.ask_ai,
         "import_mask": self.import_mask_dialog, "flat": self.run_flat, "calibrate": lambda: self.export_dialog(0),
         "batch": lambda: self.export_dialog(3), "grow": lambda: self.mask_op("grow"),
         "shrink": lambda: self.mask_op("shrink"), "invert": lambda: self.mask_op("invert"),
         "clear": lambda: self.mask_op("clear")}[name]()

    # ================================================================== sessions
    def save_session(self) -> bool:
        """Write the sidecar now (mask + choices). Errors go to the log and status bar: autosave
        must never interrupt the user."""
        self.autosave_timer.stop()
        if not self.autosave or self.doc is None:
            return False
        from .settings_dialog import get_setting

        gem = {"model": str(get_setting("gemini/model", self.settings)),
               "image_size": str(get_setting("gemini/image_size", self.settings))}
        try:
            self.doc.save(gem)
            return True
        except Exception as exc:  # noqa: BLE001 - AiflatError (disk) or a surprise: never interrupt
            log.warning("session not saved: %s", one_line(exc))
            self.statusBar().showMessage(f"Session not saved: {one_line(exc)}", 10000)
        return False

    def _schedule_autosave(self) -> None:
        if self.autosave and self.doc is not None:
            self.autosave_timer.start()

    # ================================================================== specks, pixel readout
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
        doc = self.doc
        if doc is None or not (0 <= x < doc.seq.width and 0 <= y < doc.seq.height):
            self.pixel_label.setText("")
            return
        parts = [f"x {x}  y {y}"]
        try:
            v = self.viewer.value_at(x, y)
        except Exception:  # noqa: BLE001
            v = None
        if v is not None:
            parts.append("value " + " ".join(f"{float(t):.6g}" for t in np.atleast_1d(np.asarray(v))))
        parts.append(f"mask {int(doc.mask.mask[y, x])}")
        if doc.flat is not None:
            parts.append("flat " + " ".join(f"{float(t):.4f}" for t in np.atleast_1d(doc.flat[y, x])))
        self.pixel_label.setText("   ".join(parts))

    def refresh_specks(self) -> None:
        if self.doc is None:
            self.speck_table.set_specks([])
            return
        try:
            specks = self.doc.specks()  # depths from a flat built for this very mask, else the reference
        except Exception as exc:  # noqa: BLE001
            log.warning("speck table not updated: %s", one_line(exc))
            return
        mask = self.doc.mask.as_bool()
        self.speck_table.set_specks(specks, mask=mask)
        self.viewer.set_refused(self.speck_table.refused_mask(mask))
        self.speck_dock.setWindowTitle(f"Specks ({len(specks)})")

    def _update_mask_info(self) -> None:
        doc = self.doc
        shown = doc is not None and doc.has_mask()
        self.workflow.mask_info.setText(plural(doc.dust_pixels, "dust pixel") if shown else "")
        self._update_actions()

    def _update_actions(self) -> None:
        m = self.mask_model
        self.act_undo.setEnabled(bool(m is not None and m.can_undo))
        self.act_redo.setEnabled(bool(m is not None and m.can_redo))
        self.act_undo.setText(f"&Undo {m.undo_label}".rstrip() if m is not None and m.can_undo else "&Undo")
        self.act_redo.setText(f"&Redo {m.redo_label}".rstrip() if m is not None and m.can_redo else "&Redo")
        for a in (self.act_grow, self.act_shrink, self.act_invert, self.act_clear, self.act_small,
                  self.act_import_mask, self.act_export):
            a.setEnabled(self.doc is not None)
        self.act_batch.setEnabled(self.flat is not None)

    # ================================================================== recent files, drag and drop
    def recent_files(self) -> list[str]:
        v = self.settings.value("recent/files", []) or []
        return [str(x) for x in ([v] if isinstance(v, str) else v)]

    def _add_recent(self, path: Path) -> None:
        p = str(Path(path).resolve())
        files = [p] + [f for f in self.recent_files() if f != p]
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
        if paths:
            event.acceptProposedAction()
            self.drop_paths(paths)

    def drop_paths(self, paths: list[str]) -> None:
        """A dropped mask image (PNG/TIFF/FITS with 'mask' in its name) is imported into the open
        video; anything else is opened."""
        p = paths[0]
        if self.doc is not None and "mask" in Path(p).name.lower() and \
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
        """Quit: during a job ask first, then cancel it and wait for every worker to end (a worker
        finishing after the window is gone would signal a deleted object); save; close the file."""
        running = [w for w in active_workers() if w.running]
        if running and self.interactive and not self._closing:
            answer = QtWidgets.QMessageBox.question(
                self, "Quit AI Flat?", f"{running[0].name or 'A job'} is still running. Cancel it and quit?",
                QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No, QtWidgets.QMessageBox.No)
            if answer != QtWidgets.QMessageBox.Yes:
                event.ignore()
                return
        self._closing = True
        self.play_timer.stop()
        self.blink_timer.stop()
        for w in running:
            w.cancel()
        for w in running:
            w.wait(60)  # processes events until its signals are delivered
        if self.autosave:
            self.save_session()  # immediately: a crash after close loses nothing
        if self.remember_layout:
            self.save_layout()
        logging.getLogger("aiflat").removeHandler(self._log_handler)
        if self.doc is not None:
            self.viewer.set_mask_model(None)
            self.doc.close()
        super().closeEvent(event)
