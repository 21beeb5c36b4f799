"""Export: the calibrated sequence, the flat for another program, the mask, and a one-click batch
("calibrate all videos of this session").

The dialog only collects and checks choices (never the input as output; asks before replacing a
file) and emits :attr:`ExportDialog.exportRequested(kind, options)`; the main window runs the work
in workers. ``kind`` is ``calibrate`` (path, fmt, overwrite), ``flat`` (path, target), ``mask``
(path) or ``batch`` (inputs, out_dir, fmt).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from ..pipeline import OUTPUT_FORMATS as WRITER_FORMATS

EXPORT_TARGETS = (("pixinsight", "PixInsight ImageCalibration"), ("pixelmath", "PixInsight PixelMath"),
                  ("siril", "Siril"), ("autostakkert", "AutoStakkert!"), ("pss", "PlanetarySystemStacker"))
TARGET_EXT = {"pixinsight": ".fits", "pixelmath": ".fits", "siril": ".fits", "autostakkert": ".tif", "pss": ".tif"}
FORMAT_EXT = {"ser": ".ser", "fits": ".fits", "tiff": ".tif", "tiff-folder": "", "avi": ".avi"}
VIDEO_EXTS = (".ser", ".avi", ".fits", ".fit", ".fts", ".tif", ".tiff")
#: how to use the exported flat in each program (shown under the Program choice)
TARGET_HELP = {
    "pixinsight": "PixInsight ▸ Process ▸ ImageCalibration: tick <b>Master Flat</b>, pick this file and untick "
                  "its <i>Calibrate</i> (it is a finished master). The file holds the flat × 0.5 on purpose: "
                  "ImageCalibration rescales a flat by its own statistic, and this keeps that statistic honest "
                  "(1.9: exactly our calibration; 1.8: ours times one constant ≈ 0.999).",
    "pixelmath": "PixInsight ▸ Process ▸ PixelMath: open this file (its identifier, e.g. <tt>flat</tt>), "
                 "expression <tt>$T / flat</tt>, apply it to each frame. Bit for bit what AI Flat's own "
                 "calibration computes.",
    "siril": "Siril: in the calibration (Pre-processing) tab tick <b>Flat</b> and pick this file, then "
             "calibrate the video's sequence; in a script: <tt>preprocess NAME -flat=FILE</tt>. Siril scales "
             "by the flat's mean (one constant ≈ 0.999). The rows are stored the way Siril reads this video.",
    "autostakkert": "AutoStakkert!: load this 16-bit TIFF as the master flat (65535 = 1.0) before you analyse "
                    "the video. How AutoStakkert! normalises a flat is not documented: compare a stacked "
                    "result with AI Flat's Calibrated preview.",
    "pss": "PlanetarySystemStacker: Calibrate ▸ load this 16-bit TIFF as the master flat (65535 = 1.0) and "
           "switch flat correction on. PSS divides by the flat normalised to its mean (one constant ≈ 0.999).",
}


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        if Path(a).exists() and Path(b).exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return Path(a).resolve() == Path(b).resolve()


def confirm_overwrite(parent: Optional[QtWidgets.QWidget], path: str | os.PathLike) -> bool:
    """True when ``path`` does not exist or the user agrees to replace it."""
    if not Path(path).exists():
        return True
    answer = QtWidgets.QMessageBox.question(
        parent, "Replace file?", f"{path} already exists. Replace it?",
        QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No, QtWidgets.QMessageBox.No)
    return answer == QtWidgets.QMessageBox.Yes


def collect_inputs(paths: list[str]) -> list[str]:
    """Videos among ``paths``; folders contribute the videos directly inside them."""
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [str(f) for f in sorted(p.iterdir()) if f.is_file() and f.suffix.lower() in VIDEO_EXTS
                    and not f.name.startswith(".")]
        elif p.is_file():
            out.append(str(p))
    return out


class _PathRow(QtWidgets.QWidget):
    def __init__(self, text: str, save: bool = True, directory: bool = False, filt: str = ""):
        super().__init__()
        self.edit = QtWidgets.QLineEdit(text)
        self.save, self.directory, self.filt = save, directory, filt
        b = QtWidgets.QPushButton("…")
        b.clicked.connect(self._browse)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit, 1)
        lay.addWidget(b)

    def _browse(self) -> None:
        if self.directory:
            p = QtWidgets.QFileDialog.getExistingDirectory(self, "Choose a folder", self.edit.text())
        else:
            p, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save as", self.edit.text(), self.filt)
        if p:
            self.edit.setText(p)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, t: str) -> None:
        self.edit.setText(t)


class ExportDialog(QtWidgets.QDialog):
    exportRequested = Signal(str, dict)

    def __init__(self, input_path: str | os.PathLike, out_dir: Optional[str] = None, have_flat: bool = True,
                 have_mask: bool = True, parent: Optional[QtWidgets.QWidget] = None, choices: Optional[dict] = None,
                 formats: Optional[tuple] = None, flat_problem: Optional[Callable[[], Optional[str]]] = None):
        """``formats``: the formats the calibrated copy can be written in (only these are offered:
        no AVI for 12/16-bit data); ``flat_problem()``: why the flat cannot be used (a stale flat),
        told before anything is asked (the "Replace file?" prompt) or written."""
        super().__init__(parent)
        self.formats = tuple(formats or WRITER_FORMATS)
        self.flat_problem = flat_problem or (lambda: None)
        self.setWindowTitle("Export")
        self.input_path = Path(input_path)
        self.settings = getattr(parent, "settings", None) or QtCore.QSettings()
        self._input_size = None
        seq = getattr(parent, "seq", None)
        if seq is not None:
            self._input_size = (seq.width, seq.height)
        choices = choices or {}
        folder = Path(out_dir) if out_dir else self.input_path.parent
        stem = self.input_path.name.split(".")[0] if self.input_path.name else "output"
        in_fmt = {".ser": "ser", ".avi": "avi", ".fits": "fits", ".fit": "fits", ".tif": "tiff",
                  ".tiff": "tiff"}.get(self.input_path.suffix.lower(), "tiff")
        lay = QtWidgets.QVBoxLayout(self)
        self.tabs = QtWidgets.QTabWidget()
        lay.addWidget(self.tabs)

        # calibrated sequence
        w = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(w)
        self.format = QtWidgets.QComboBox()
        self.format.addItems(self.formats)
        want = choices.get("format") or in_fmt
        self.format.setCurrentText(want if want in self.formats else self.formats[0])
        self.cal_path = _PathRow(choices.get("path") or str(folder / f"{stem}_calibrated{FORMAT_EXT[self.format.currentText()]}"))
        self.format.currentTextChanged.connect(self._format_changed)
        form.addRow("Format", self.format)
        form.addRow("Save as", self.cal_path)
        self.cal_button = QtWidgets.QPushButton("Calibrate")
        self.cal_button.setEnabled(have_flat)
        self.cal_button.clicked.connect(self._calibrate)
        form.addRow("", self.cal_button)
        self.tabs.addTab(w, "Calibrated video")

        # flat for a program
        w = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(w)
        self.target = QtWidgets.QComboBox()
        for key, label in EXPORT_TARGETS:
            self.target.addItem(label, key)
        i = self.target.findData(choices.get("target", "pixinsight"))
        self.target.setCurrentIndex(max(i, 0))
        self.flat_path = _PathRow(str(folder / f"{stem}_flat_{self.target_key()}{TARGET_EXT[self.target_key()]}"))
        self.target.currentIndexChanged.connect(self._target_changed)
        form.addRow("Program", self.target)
        form.addRow("Save as", self.flat_path)
        self.target_help = QtWidgets.QLabel()
        self.target_help.setObjectName("targetHelp")
        self.target_help.setWordWrap(True)
        self.target_help.setTextFormat(Qt.TextFormat.RichText)
        self.target_help.setText(TARGET_HELP[self.target_key()])
        form.addRow("How to use it", self.target_help)
        rows = QtWidgets.QLabel("The flat is written in the row order the program reads this video in "
                                "(Siril reads SER and AVI bottom-up, so its flat is stored flipped; FITS "
                                "frames in their stored order).")
        rows.setWordWrap(True)
        form.addRow("", rows)
        self.flat_button = QtWidgets.QPushButton("Export flat")
        self.flat_button.setEnabled(have_flat)
        self.flat_button.clicked.connect(self._flat)
        form.addRow("", self.flat_button)
        self.tabs.addTab(w, "Flat")

        # mask
        w = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(w)
        self.mask_path = _PathRow(str(folder / f"{stem}_mask.png"), filt="PNG (*.png)")
        form.addRow("Save as", self.mask_path)
        self.mask_button = QtWidgets.QPushButton("Save mask")
        self.mask_button.setEnabled(have_mask)
        self.mask_button.clicked.connect(self._mask)
        form.addRow("", self.mask_button)
        self.tabs.addTab(w, "Mask")

        # batch
        w = QtWidgets.QWidget()
        v = QtWidgets.QVBoxLayout(w)
        v.addWidget(QtWidgets.QLabel("Calibrate every video of this session with this flat (the dust does not "
                                     "move between the videos of a night). Videos of another size are skipped."))
        self.batch_list = QtWidgets.QTreeWidget()
        self.batch_list.setObjectName("batchList")
        self.batch_list.setHeaderLabels(["Video", "Frames", "Size", ""])
        self.batch_list.setRootIsDecorated(False)
        self.batch_list.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.batch_list.setToolTip("The videos to calibrate (Delete removes the selected ones)")
        v.addWidget(self.batch_list, 1)
        delete = QtGui.QShortcut(QtGui.QKeySequence.StandardKey.Delete, self.batch_list)
        delete.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete.activated.connect(self.remove_selected)
        row = QtWidgets.QHBoxLayout()
        add_files = QtWidgets.QPushButton("Add files…")
        add_files.clicked.connect(self._add_files)
        add_folder = QtWidgets.QPushButton("Add folder…")
        add_folder.clicked.connect(self._add_folder)
        same = QtWidgets.QPushButton("All videos in this folder")
        same.clicked.connect(lambda: self.add_batch_inputs([str(self.input_path.parent)]))
        self.remove_button = QtWidgets.QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected videos from the list (Delete)")
        self.remove_button.clicked.connect(self.remove_selected)
        for b in (add_files, add_folder, same, self.remove_button):
            row.addWidget(b)
        v.addLayout(row)
        form = QtWidgets.QFormLayout()
        self.batch_dir = _PathRow(str(folder / "calibrated"), directory=True)
        self.batch_format = QtWidgets.QComboBox()
        self.batch_format.addItem("same as input", None)
        for f in self.formats:
            self.batch_format.addItem(f, f)
        form.addRow("Output folder", self.batch_dir)
        form.addRow("Format", self.batch_format)
        v.addLayout(form)
        self.batch_button = QtWidgets.QPushButton("Calibrate all")
        self.batch_button.setEnabled(have_flat)
        self.batch_button.clicked.connect(self._batch)
        v.addWidget(self.batch_button)
        self.tabs.addTab(w, "Batch")

        bb = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Close)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self.resize(620, 440)
        # the tab the user chose last time (the window may still pick one for a specific button)
        last = int(self.settings.value("export/tab", 0) or 0)
        self.tabs.setCurrentIndex(last if 0 <= last < self.tabs.count() else 0)
        self.tabs.currentChanged.connect(lambda i: self.settings.setValue("export/tab", int(i)))

    # -- helpers ---------------------------------------------------------------------------------
    def target_key(self) -> str:
        return self.target.currentData()

    def _format_changed(self, fmt: str) -> None:
        p = Path(self.cal_path.text())
        base = p.with_suffix("") if p.suffix else p
        self.cal_path.setText(str(base) + FORMAT_EXT.get(fmt, ""))

    def _target_changed(self, *_):
        self.target_help.setText(TARGET_HELP[self.target_key()])
        p = Path(self.flat_path.text())
        stem = p.name.split("_flat_")[0] if "_flat_" in p.name else p.stem
        self.flat_path.setText(str(p.parent / f"{stem}_flat_{self.target_key()}{TARGET_EXT[self.target_key()]}"))

    def _error(self, text: str) -> None:
        QtWidgets.QMessageBox.warning(self, "Export", text)

    def _check_out(self, path: str) -> bool:
        if not path:
            self._error("Choose where to save.")
            return False
        if same_file(path, self.input_path):
            self._error(f"{path}: this is the input; choose another name (inputs are never overwritten).")
            return False
        if not Path(path).resolve().parent.is_dir():
            self._error(f"{path}: the folder {Path(path).resolve().parent} does not exist.")
            return False
        return confirm_overwrite(self, path)

    # -- actions ---------------------------------------------------------------------------------
    def _flat_ok(self) -> bool:
        problem = self.flat_problem()
        if problem:
            self._error(problem)
        return not problem

    def _calibrate(self) -> None:
        path = self.cal_path.text()
        if self._flat_ok() and self._check_out(path):
            self.exportRequested.emit("calibrate", {"path": path, "fmt": self.format.currentText(), "overwrite": True})
            self.accept()

    def _flat(self) -> None:
        path = self.flat_path.text()
        if self._flat_ok() and self._check_out(path):
            self.exportRequested.emit("flat", {"path": path, "target": self.target_key()})
            self.accept()

    def _mask(self) -> None:
        path = self.mask_path.text()
        if self._check_out(path):
            self.exportRequested.emit("mask", {"path": path})
            self.accept()

    def add_batch_inputs(self, paths: list[str]) -> None:
        """Add videos (folders: the videos in them) with their frame count and size; a video of
        another size than the open one is marked (the batch skips it)."""
        have = set(self.batch_inputs())
        for p in collect_inputs(paths):
            if p not in have and ".aiflat" not in Path(p).name:
                self.batch_list.addTopLevelItem(self._batch_item(p))
                have.add(p)
        for c in range(3):
            self.batch_list.resizeColumnToContents(c)

    def _batch_item(self, path: str) -> QtWidgets.QTreeWidgetItem:
        from ..pipeline import open_input as open_sequence

        frames = size = note = ""
        try:
            with open_sequence(path) as seq:
                frames, size = str(seq.n_frames), f"{seq.width}×{seq.height}"
                if self._input_size is not None and (seq.width, seq.height) != self._input_size:
                    note = "other size: skipped"
        except Exception as exc:  # noqa: BLE001 - listed anyway: the batch reports it per video
            note = f"cannot read: {exc}".splitlines()[0]
        item = QtWidgets.QTreeWidgetItem([Path(path).name, frames, size, note])
        item.setData(0, Qt.ItemDataRole.UserRole, path)
        item.setToolTip(0, path)
        item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return item

    def remove_selected(self) -> None:
        for item in self.batch_list.selectedItems():
            self.batch_list.takeTopLevelItem(self.batch_list.indexOfTopLevelItem(item))

    def batch_inputs(self) -> list[str]:
        return [self.batch_list.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole)
                for i in range(self.batch_list.topLevelItemCount())]

    def _add_files(self) -> None:
        files, _ = QtWidgets.QFileDialog.getOpenFileNames(self, "Videos to calibrate", str(self.input_path.parent),
                                                          "Videos (*.ser *.avi *.fits *.fit *.tif *.tiff)")
        self.add_batch_inputs(files)

    def _add_folder(self) -> None:
        d = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder of videos", str(self.input_path.parent))
        if d:
            self.add_batch_inputs([d])

    def _batch(self) -> None:
        if not self._flat_ok():
            return
        inputs = self.batch_inputs()
        out_dir = self.batch_dir.text()
        if not inputs:
            self._error("Add the videos to calibrate first.")
            return
        if not out_dir:
            self._error("Choose an output folder.")
            return
        if any(same_file(out_dir, Path(i).parent) for i in inputs):
            self._error(f"{out_dir}: choose a folder other than the inputs' own, so nothing can be overwritten.")
            return
        self.exportRequested.emit("batch", {"inputs": inputs, "out_dir": out_dir,
                                            "fmt": self.batch_format.currentData()})
        self.accept()
