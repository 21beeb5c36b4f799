"""Choosing what to open: a video or image file, a folder of frames, and the offer to open the
whole folder when the file picked is one frame of a numbered series (``sun_0001.tif``).

The dialogs are the platform's own (Qt's fallback only where the platform has none)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6 import QtWidgets

VIDEO_FILTER = ("Videos and images (*.ser *.avi *.fits *.fit *.fts *.tif *.tiff *.png *.jpg *.jpeg);;"
                "All files (*)")


def choose_file(parent: Optional[QtWidgets.QWidget], start: str = "") -> Optional[str]:
    """A video, image stack or one frame (the platform's file dialog); None when cancelled."""
    path, _ = QtWidgets.QFileDialog.getOpenFileName(
        parent, "Open a video or an image (for a folder of frames: File ▸ Open Folder…)", start, VIDEO_FILTER)
    return path or None


def choose_folder(parent: Optional[QtWidgets.QWidget], start: str = "") -> Optional[str]:
    """A folder of TIFF/FITS/PNG/JPEG frames, one frame per file; None when cancelled."""
    path = QtWidgets.QFileDialog.getExistingDirectory(parent, "Open a folder of frames (TIFF, FITS, PNG, JPEG)",
                                                      start)
    return path or None


def offer_series_folder(parent: Optional[QtWidgets.QWidget], path: str) -> str:
    """``path``, or its folder when ``path`` is one frame of a numbered series and the user says
    to open the whole folder."""
    from ..pipeline import numbered_series

    found = numbered_series(path)
    if found is None:
        return path
    folder, n = found
    answer = QtWidgets.QMessageBox.question(
        parent, "Open the whole folder?",
        f"{Path(path).name} looks like one frame of a series of {n} in\n{folder}.\n\n"
        "Open the folder as one sequence (recommended: the dust is found from many frames)?",
        QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No, QtWidgets.QMessageBox.Yes)
    return str(folder) if answer == QtWidgets.QMessageBox.Yes else path
