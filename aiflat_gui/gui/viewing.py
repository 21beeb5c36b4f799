"""The window's views: which image the viewer shows (the document's view, frame, overlay and
stretch), playback and blink, tools and brush. Part of the main window (a mixin); the images come
from :meth:`aiflat_gui.document.Document.view_image`.

The document's ``display`` is the one owner of the view, frame, overlay and stretch: the widgets
(view menu and combo, frame slider, overlay action and opacity slider, stretch panel) write it
with :meth:`~aiflat_gui.document.Document.set_display` and are set from it by
:meth:`ViewMixin._sync_display` on its ``"display"`` notification, which pushes to the viewer
only what changed since the last sync."""

from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np
from PySide6 import QtCore, QtWidgets

from ..core.stretch import StretchState
from ..document import VIEWS


class ViewMixin:
    """Viewing for the main window."""

    # -- the document's display: written by the widgets, shown from its notifications ----------
    @contextlib.contextmanager
    def _display_batch(self):
        """Several display changes, then one sync (one render)."""
        self._display_batching = getattr(self, "_display_batching", 0) + 1
        try:
            yield
        finally:
            self._display_batching -= 1

    def _on_display_changed(self) -> None:
        if not getattr(self, "_display_batching", 0):
            self._sync_display()

    def _sync_display(self, render: bool = True) -> None:
        """Set the widgets and the viewer from ``doc.display``: only what changed since the last
        sync (``self._shown``) is pushed; a new view or frame renders (unless ``render`` is False)."""
        doc = self.doc
        if doc is None:
            return
        dsp, shown = doc.display, getattr(self, "_shown", None)

        def changed(name: str) -> bool:
            return shown is None or getattr(shown, name) != getattr(dsp, name)

        if changed("overlay_visible"):
            with QtCore.QSignalBlocker(self.act_overlay):
                self.act_overlay.setChecked(dsp.overlay_visible)
            self.viewer.set_overlay_visible(dsp.overlay_visible)
        if changed("overlay_opacity"):
            with QtCore.QSignalBlocker(self.opacity_slider):
                self.opacity_slider.setValue(int(round(100 * dsp.overlay_opacity)))
            self.viewer.set_overlay_opacity(dsp.overlay_opacity)
        if changed("frame_index"):
            if self.frame_slider.value() != dsp.frame_index:
                with QtCore.QSignalBlocker(self.frame_slider):
                    self.frame_slider.setValue(dsp.frame_index)
            self._update_frame_label()
        if changed("view"):
            view = dsp.view
            if view in self.view_actions:
                self.view_actions[view].setChecked(True)
            i = self.view_combo.findData(view)
            if i >= 0 and self.view_combo.currentIndex() != i:
                with QtCore.QSignalBlocker(self.view_combo):
                    self.view_combo.setCurrentIndex(i)
            (self.blink_timer.start if view == "blink" else self.blink_timer.stop)()
        if changed("stretch"):
            self.stretch_panel.refresh()
        self._shown = dsp
        if render and (changed("view") or changed("frame_index") or self.viewer.image() is None):
            self.render()
        elif self._display_kind == "stretch" and dsp.stretch is not None and self.viewer.stretch() != dsp.stretch:
            self.viewer.set_stretch(dsp.stretch)
        if shown is not None and shown != dsp:
            self._schedule_autosave()
        if changed("view"):
            self.viewChanged.emit(dsp.view)

    def set_view(self, view: str, render: bool = True) -> None:
        if view not in dict(VIEWS):
            raise ValueError(f"unknown view {view!r}")
        if self.doc is None:
            return
        with self._display_batch():
            self.doc.set_display(view=view)
        self._sync_display(render=render)

    def set_frame(self, i: int) -> None:
        if self.doc is None:
            return
        i = int(max(0, min(self.doc.seq.n_frames - 1, i)))
        with self._display_batch():
            self.doc.set_display(frame_index=i)
            if self.view in ("frame", "calibrated", "difference", "blink"):
                # new levels for this frame unless "apply to all frames" is on (the panel decides);
                # during playback with fixed levels the histogram waits until the pause
                if not (self.play_timer.isActive() and self.stretch_panel.apply_to_all()):
                    self.stretch_panel.set_image(self.current_frame(), self.seq.color, emit=False)
        self._sync_display()

    def _update_frame_label(self) -> None:
        if self.doc is None:
            self.frame_label.setText("–")
            return
        seq, i = self.doc.seq, self.frame_index
        ts = seq.timestamp(i) if seq.timestamps is not None else None
        if ts is not None:
            self.frame_label.setToolTip(ts.isoformat())
        self.frame_label.setText(f"{i + 1} / {seq.n_frames}")

    def set_playing(self, playing: bool) -> None:
        if playing and self.doc is not None and self.doc.seq.n_frames > 1:
            self.play_timer.start()
            icon = QtWidgets.QStyle.SP_MediaPause
        else:
            if self.play_timer.isActive() and self.doc is not None:
                self.stretch_panel.set_image(self.current_frame(), self.seq.color, emit=False)
            self.play_timer.stop()
            icon = QtWidgets.QStyle.SP_MediaPlay
            if self.play_button.isChecked():
                with QtCore.QSignalBlocker(self.play_button):
                    self.play_button.setChecked(False)
        self.play_button.setIcon(self.style().standardIcon(icon))

    def _next_frame(self) -> None:
        if self.doc is not None:
            self.set_frame((self.frame_index + 1) % self.doc.seq.n_frames)

    def _blink(self) -> None:
        self._blink_phase ^= 1
        if self.view == "blink":
            self.render()

    def current_frame(self) -> Optional[np.ndarray]:
        return None if self.doc is None else self.doc.frame()

    def calibrated_frame(self, frame: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """The current frame divided by the flat, exactly as the calibration writes it."""
        return None if self.doc is None else self.doc.calibrated_frame(frame)

    def view_image(self, view: Optional[str] = None):
        """(array, colour layout, fixed levels or None for the stretch) for a view."""
        if self.doc is None:
            return None, "mono", None
        return self.doc.view_image(view, self._blink_phase)

    def render(self) -> None:
        """Show the current view. Data views (frame, reference, calibrated, blink) use the
        document's stretch; mask/flat/difference fixed linear levels. Display only."""
        img, color, levels = self.view_image()
        if img is None:
            return
        if levels is None:
            self.stretch_panel.show_data()
            self._display_kind = "stretch"
            self.viewer.set_image(img, color=color, stretch=self.doc.stretch)  # one render
        else:
            self.stretch_panel.show_levels(img, levels, dict(VIEWS)[self.view])  # e.g. the flat in flat units
            if self._display_kind != "fixed":
                self.viewer.set_stretch(StretchState(mode="linear", black=levels[0], white=levels[1]))
                self._display_kind = "fixed"
            self.viewer.set_image(img, color=color, levels=levels)
        if self.view == "blink":
            self.statusBar().showMessage(self.doc.blink_label(self._blink_phase))

    def show_screenshot_views(self) -> None:
        """What the README screenshot shows: Visualize dust with the mask drawn as outlines."""
        self.set_overlay_visible(True)
        self.act_overlay.setChecked(True)
        self.act_outline.setChecked(True)
        self.set_view("dust")
        self.refresh_specks()
        self.viewer.fit()

    def set_overlay_visible(self, visible: bool) -> None:
        if self.doc is None:
            self.viewer.set_overlay_visible(bool(visible))
        else:
            self.doc.set_display(overlay_visible=bool(visible))

    def _on_opacity(self, v: int) -> None:
        if self.doc is None:
            self.viewer.set_overlay_opacity(v / 100.0)
        else:
            self.doc.set_display(overlay_opacity=v / 100.0)

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
