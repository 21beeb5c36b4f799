"""The image viewer: a pyqtgraph view of one frame with a stretch, a mask overlay and a brush.

Display only: the raw array handed to :meth:`ImageViewer.set_image` is kept (for the pixel
readout) and never modified; stretches come from :mod:`aiflat_gui.core.stretch` and every mask
edit goes through a :class:`~aiflat_gui.core.maskedit.MaskModel`.

Mouse: left-drag paints/erases in the paint/erase tools (gap-free, one undo step per drag),
a left click in the remove tool deletes the speck under the cursor, left-drag pans in the pan
tool; middle-drag pans and right-drag zooms in every tool, the wheel zooms. Keys: ``[``/``]``
shrink/grow the brush, Ctrl+Z / Ctrl+Shift+Z (or Ctrl+Y) undo/redo on the mask model.
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from ..core.maskedit import Box, MaskModel
from ..core.stretch import (BAYER_CODES, StretchState, apply_fast, auto_levels, make_lut, stf_auto,
                            stretch_bayer_for_display, to_display_rgb)
from ..errors import InputError

TOOLS = ("pan", "paint", "erase", "remove")
MIN_BRUSH, MAX_BRUSH = 1, 500


def _grow_radius(r: int) -> int:
    return min(MAX_BRUSH, r + 1 if r < 10 else int(round(r * 1.25)))


def _shrink_radius(r: int) -> int:
    return max(MIN_BRUSH, r - 1 if r <= 10 else int(round(r / 1.25)))


class MaskOverlayItem(QtWidgets.QGraphicsObject):
    """A coloured, semi-transparent rendering of a 0/1 uint8 mask.

    Holds an ARGB32-premultiplied buffer the size of the mask; a change re-colours only the
    changed box and repaints only that part of the viewport. A coarse map of which 64x64 tiles
    hold any mask pixel lets paint skip the empty parts (a few specks cost almost nothing).

    Zoomed out, nearest-neighbour scaling would skip small specks, so below 1:1 the overlay is
    drawn from a max-pooled copy (2x2, 4x4, ... blocks, at least one screen pixel each): every
    masked pixel stays visible at any zoom. The pooled copies are built lazily and refreshed
    per changed box."""

    TILE = 64
    MAX_POOL = 16

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self._buf: Optional[np.ndarray] = None      # (H, W) uint32 premultiplied ARGB
        self._qimage: Optional[QtGui.QImage] = None
        self._w = 0
        self._h = 0
        self._color = (255, 0, 0)
        self._opacity = 0.45
        self._lut = self._make_lut()
        self._source: Optional[np.ndarray] = None
        self._occ: Optional[np.ndarray] = None     # (tiles_y, tiles_x) bool: tile holds mask
        self._pooled: dict[int, list] = {}         # factor -> [buffer, QImage, dirty boxes]
        self._outline = False                      # draw the mask's boundary pixels only
        self._edges: Optional[np.ndarray] = None   # (H, W) uint8 boundary map in outline mode

    def _occupancy(self, mask: np.ndarray) -> np.ndarray:
        t = self.TILE
        h, w = mask.shape
        rows = np.maximum.reduceat(mask, np.arange(0, h, t), axis=0)
        return np.maximum.reduceat(rows, np.arange(0, w, t), axis=1) > 0

    def _make_lut(self) -> np.ndarray:
        a = int(round(255 * min(max(self._opacity, 0.0), 1.0)))
        r, g, b = (int(round(c * a / 255.0)) for c in self._color)
        return np.array([0, (a << 24) | (r << 16) | (g << 8) | b], dtype=np.uint32)

    def boundingRect(self) -> QtCore.QRectF:
        # a pooled block at the right/bottom edge may reach past the mask (never a full pixel
        # on screen): keep it inside the item's bounds so Qt repaints it properly
        pad = self.MAX_POOL - 1 if self._w else 0
        return QtCore.QRectF(0, 0, self._w + pad, self._h + pad)

    def _colorize(self, mask: np.ndarray, out: np.ndarray) -> None:
        # the LUT's entry 0 is transparent (0), so colour = mask * entry 1 (faster than a take)
        np.multiply(mask, self._lut[1], out=out, casting="unsafe")

    def shows(self, mask: Optional[np.ndarray]) -> bool:
        """Whether the overlay currently mirrors exactly this mask array."""
        return mask is not None and self._source is mask and self._buf is not None \
            and self._buf.shape == mask.shape

    def has_mask(self) -> bool:
        return self._buf is not None

    def set_mask(self, mask: Optional[np.ndarray]) -> None:
        """Show ``mask`` (uint8 0/1, (H, W)); None removes the overlay."""
        self.prepareGeometryChange()
        if mask is None:
            self._buf = None
            self._qimage = None
            self._w = self._h = 0
            self._source = None
            self._occ = None
        else:
            h, w = mask.shape
            if self._buf is None or self._buf.shape != (h, w):
                self._buf = np.empty((h, w), np.uint32)
                self._qimage = QtGui.QImage(self._buf.data, w, h, w * 4,
                                            QtGui.QImage.Format.Format_ARGB32_Premultiplied)
            self._edges = _outline(mask, (0, 0, w, h)) if self._outline else None
            self._colorize(self._edges if self._outline else mask, self._buf)
            self._occ = self._occupancy(mask)
            self._w, self._h = w, h
        self._source = mask
        self._pooled.clear()
        self.update()

    def update_box(self, mask: np.ndarray, box: Box) -> None:
        """Re-colour ``box`` (x0, y0, x1, y1) from ``mask`` and repaint only that region."""
        if not self.shows(mask):
            self.set_mask(mask)
            return
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        if self._outline:
            # a pixel's outline state depends on its 4 neighbours: redo a 1-pixel wider box
            x0, y0, x1, y1 = box = (max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, self._w), min(y1 + 1, self._h))
            self._edges[y0:y1, x0:x1] = _outline(mask, box)
            self._colorize(self._edges[y0:y1, x0:x1], self._buf[y0:y1, x0:x1])
        else:
            self._colorize(mask[y0:y1, x0:x1], self._buf[y0:y1, x0:x1])
        t = self.TILE
        ty0, tx0 = y0 // t, x0 // t
        ty1, tx1 = (y1 - 1) // t + 1, (x1 - 1) // t + 1
        self._occ[ty0:ty1, tx0:tx1] = self._occupancy(mask[ty0 * t:ty1 * t, tx0 * t:tx1 * t])
        for level in self._pooled.values():
            dirty = level[2]
            dirty.append(box)
            if len(dirty) > 256:  # a long time zoomed in: rebuild that level once when needed
                dirty[:] = [(0, 0, self._w, self._h)]
        self.update(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))

    def _pooled_image(self, f: int) -> QtGui.QImage:
        """The overlay max-pooled by ``f`` (a power of two), refreshed where the mask changed."""
        level = self._pooled.get(f)
        if level is None:
            hh, ww = -(-self._h // f), -(-self._w // f)
            buf = np.empty((hh, ww), np.uint32)
            qimg = QtGui.QImage(buf.data, ww, hh, ww * 4, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
            level = self._pooled[f] = [buf, qimg, [(0, 0, self._w, self._h)]]
        buf, qimg, dirty = level
        mask = self._edges if self._outline else self._source
        for x0, y0, x1, y1 in dirty:
            lx0, ly0, lx1, ly1 = x0 // f, y0 // f, -(-x1 // f), -(-y1 // f)
            self._colorize(_max_pool(mask[ly0 * f:ly1 * f, lx0 * f:lx1 * f], f), buf[ly0:ly1, lx0:lx1])
        dirty.clear()
        return qimg

    def set_color(self, rgb, mask: Optional[np.ndarray]) -> None:
        self._color = tuple(int(min(max(c, 0), 255)) for c in rgb)[:3]
        self._lut = self._make_lut()
        if mask is not None and self._buf is not None:
            self.set_mask(mask)

    def set_overlay_opacity(self, opacity: float, mask: Optional[np.ndarray]) -> None:
        self._opacity = float(min(max(opacity, 0.0), 1.0))
        self._lut = self._make_lut()
        if mask is not None and self._buf is not None:
            self.set_mask(mask)

    def set_outline(self, outline: bool, mask: Optional[np.ndarray]) -> None:
        """Draw only the boundary pixels of the mask (True) or fill it (False)."""
        self._outline = bool(outline)
        if mask is not None and self._buf is not None:
            self.set_mask(mask)

    @property
    def outline(self) -> bool:
        return self._outline

    @property
    def color(self) -> tuple[int, int, int]:
        return self._color  # type: ignore[return-value]

    @property
    def overlay_opacity(self) -> float:
        return self._opacity

    def pixel_argb(self, x: int, y: int) -> int:
        """The premultiplied ARGB value shown at pixel (x, y) (0 = transparent)."""
        return int(self._buf[y, x]) if self._buf is not None else 0

    def paint(self, painter: QtGui.QPainter, option, widget=None) -> None:
        if self._qimage is None:
            return
        exposed = option.exposedRect
        if exposed.isEmpty():
            return
        src = exposed.toAlignedRect().intersected(QtCore.QRect(0, 0, self._w, self._h))
        if src.isEmpty():
            return
        t = self.TILE
        ty0, tx0 = src.top() // t, src.left() // t
        ty1, tx1 = src.bottom() // t + 1, src.right() // t + 1
        occ = self._occ[ty0:ty1, tx0:tx1]
        # one rectangle per run of tile rows with the same occupied column span
        spans = []
        for i, row in enumerate(occ):
            cols = np.flatnonzero(row)
            if cols.size == 0:
                continue
            span = (int(cols[0]), int(cols[-1]) + 1)
            if spans and spans[-1][1] == i and spans[-1][2] == span:
                spans[-1][1] = i + 1
            else:
                spans.append([i, i + 1, span])
        if not spans:
            return
        scale = abs(painter.deviceTransform().m11()) or 1.0   # device pixels per mask pixel
        f = 1
        while f * scale < 1.0 and f < self.MAX_POOL:
            f *= 2
        image = self._qimage if f == 1 else self._pooled_image(f)
        for r0, r1, (c0, c1) in spans:
            rect = QtCore.QRect((tx0 + c0) * t, (ty0 + r0) * t, (c1 - c0) * t, (r1 - r0) * t).intersected(src)
            if rect.isEmpty():
                continue
            if f == 1:
                painter.drawImage(QtCore.QRectF(rect), image, QtCore.QRectF(rect))
                continue
            # whole pooled blocks (the last ones may reach up to f-1 pixels past the mask, less
            # than a screen pixel: a speck in the last row/column stays visible)
            bx0, by0 = (rect.left() // f) * f, (rect.top() // f) * f
            bx1 = -(-(rect.right() + 1) // f) * f
            by1 = -(-(rect.bottom() + 1) // f) * f
            target = QtCore.QRectF(bx0, by0, bx1 - bx0, by1 - by0)
            source = QtCore.QRectF(bx0 / f, by0 / f, (bx1 - bx0) / f, (by1 - by0) / f)
            painter.drawImage(target, image, source)


def _outline(mask: np.ndarray, box: Box) -> np.ndarray:
    """The boundary of ``mask`` inside ``box`` (x0, y0, x1, y1): mask pixels with at least one
    4-neighbour outside the mask (the image border counts as outside); uint8 0/1."""
    x0, y0, x1, y1 = box
    h, w = mask.shape
    # the box with a 1-pixel margin of real neighbours (zeros past the image border)
    pad = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint8)
    sy0, sy1, sx0, sx1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
    pad[sy0 - (y0 - 1):sy1 - (y0 - 1), sx0 - (x0 - 1):sx1 - (x0 - 1)] = mask[sy0:sy1, sx0:sx1] != 0
    core = pad[1:-1, 1:-1]
    inner = core & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return core & (inner ^ 1)


def _max_pool(a: np.ndarray, f: int) -> np.ndarray:
    """Max over f x f blocks (the last partial blocks padded with 0)."""
    h, w = a.shape
    ph, pw = -(-h // f) * f, -(-w // f) * f
    if (ph, pw) != (h, w):
        padded = np.zeros((ph, pw), a.dtype)
        padded[:h, :w] = a
        a = padded
    return a.reshape(ph // f, f, pw // f, f).max(axis=(1, 3))


class RefusedOverlayItem(QtWidgets.QGraphicsPathItem):
    """The specks the flat leaves out (judged not dust, or not shown to be dust): drawn over the
    red mask overlay as grey, hatched, with a dashed grey outline, so they read as "in your mask
    but not corrected". Outlines are traced on pixel edges (cv2 contours of the 2x upsampled
    mask), holes included (donuts)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        pen = QtGui.QPen(QtGui.QColor(230, 230, 230, 240))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        pen.setStyle(Qt.PenStyle.DashLine)
        self.setPen(pen)
        self.setBrush(QtGui.QBrush(QtGui.QColor(150, 150, 150, 215)))
        self._hatch = QtGui.QBrush(QtGui.QColor(60, 60, 60, 230), Qt.BrushStyle.BDiagPattern)
        self.pixels = 0

    def set_mask(self, mask: Optional[np.ndarray]) -> None:
        path = QtGui.QPainterPath()
        path.setFillRule(Qt.FillRule.OddEvenFill)
        self.pixels = 0
        if mask is not None and np.any(mask):
            m = np.asarray(mask, dtype=bool)
            self.pixels = int(m.sum())
            up = np.kron(m.view(np.uint8), np.ones((2, 2), np.uint8))  # contours on pixel edges
            contours, _h = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            for c in contours:
                pts = (c[:, 0, :].astype(np.float64) + 0.5) / 2.0
                if len(pts) < 2:
                    continue
                path.moveTo(float(pts[0, 0]), float(pts[0, 1]))
                for x, y in pts[1:]:
                    path.lineTo(float(x), float(y))
                path.closeSubpath()
        self.setPath(path)
        self.setVisible(self.pixels > 0)

    def paint(self, painter: QtGui.QPainter, option, widget=None) -> None:
        super().paint(painter, option, widget)
        painter.save()
        painter.setPen(Qt.PenStyle.NoPen)
        b = QtGui.QBrush(self._hatch)
        b.setTransform(QtGui.QTransform(painter.worldTransform().inverted()[0]))  # hatch in screen pixels
        painter.setBrush(b)
        painter.drawPath(self.path())
        painter.restore()


class _ImageItem(pg.ImageItem):
    """pyqtgraph's ImageItem that draws only the exposed part of the image, so a brush
    repaint of a small region does not rescale the whole 4K frame."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def paint(self, painter, option=None, widget=None):  # noqa: D401 - Qt override
        if self.image is None:
            return
        if self._renderRequired:
            self.render()
            if self._unrenderable:
                return
        if self.qimage is None:
            return
        h, w = self.image.shape[:2]
        bounds = QtCore.QRect(0, 0, w, h)
        src = bounds
        if option is not None:
            exposed = option.exposedRect
            if not exposed.isEmpty():
                src = exposed.toAlignedRect().intersected(bounds)
        if src.isEmpty():
            return
        painter.drawImage(QtCore.QRectF(src), self.qimage, QtCore.QRectF(src))


class ImageViewer(QtWidgets.QWidget):
    """A zoomable, pannable image with a stretch, a mask overlay and a mask brush."""

    pixelHovered = Signal(int, int)     # x, y under the cursor; -1, -1 outside the image
    strokeFinished = Signal()           # a paint/erase drag (or click) ended
    speckClicked = Signal(int, int)     # the remove tool was clicked at x, y
    viewChanged = Signal()              # pan or zoom changed
    brushRadiusChanged = Signal(int)
    toolChanged = Signal(str)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.graphics_view = pg.GraphicsView(self)
        self.graphics_view.setBackground(QtGui.QColor(24, 24, 24))
        self.graphics_view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.view_box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view_box.setMouseMode(pg.ViewBox.PanMode)
        self.graphics_view.setCentralItem(self.view_box)

        self.image_item = _ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        self.overlay_item = MaskOverlayItem()
        self.overlay_item.setZValue(10)
        self.view_box.addItem(self.overlay_item, ignoreBounds=True)
        self.refused_item = RefusedOverlayItem()
        self.refused_item.setZValue(11)
        self.refused_item.setVisible(False)
        self.view_box.addItem(self.refused_item, ignoreBounds=True)
        # the brush circle: black solid under white dashes, visible on dark and bright data
        self.cursor_item = QtWidgets.QGraphicsEllipseItem()
        pen = QtGui.QPen(QtGui.QColor(0, 0, 0, 230))
        pen.setCosmetic(True)
        pen.setWidthF(1.0)
        self.cursor_item.setPen(pen)
        self._cursor_dashes = QtWidgets.QGraphicsEllipseItem(self.cursor_item)
        dash = QtGui.QPen(QtGui.QColor(255, 255, 255, 240))
        dash.setCosmetic(True)
        dash.setWidthF(1.0)
        dash.setStyle(Qt.PenStyle.DashLine)
        self._cursor_dashes.setPen(dash)
        self.cursor_item.setZValue(20)
        # a highlighted box (e.g. the speck selected in a table)
        self.highlight_item = QtWidgets.QGraphicsRectItem()
        hpen = QtGui.QPen(QtGui.QColor(255, 220, 0, 230))
        hpen.setCosmetic(True)
        hpen.setWidthF(2.0)
        self.highlight_item.setPen(hpen)
        self.highlight_item.setZValue(15)
        self.highlight_item.setVisible(False)
        self.view_box.addItem(self.highlight_item, ignoreBounds=True)
        self.cursor_item.setVisible(False)
        self.view_box.addItem(self.cursor_item, ignoreBounds=True)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics_view)

        self._raw: Optional[np.ndarray] = None
        self._color = "mono"
        self._display: Optional[np.ndarray] = None   # mono data, raw CFA, or RGB (display order)
        self._bayer: Optional[str] = None
        self._is_colour = False
        self._state = StretchState()
        self._have_levels = False
        self._colour_pending = False
        self._model: Optional[MaskModel] = None
        self._overlay_visible = True
        self._tool = "pan"
        self._brush = 8
        self._painting = False
        self._press_pos: Optional[QtCore.QPointF] = None
        self._last_hover = (-2, -2)
        self._cursor_pos: Optional[tuple[float, float]] = None

        self.view_box.sigRangeChanged.connect(lambda *_: self.viewChanged.emit())
        self.graphics_view.viewport().installEventFilter(self)
        self.graphics_view.installEventFilter(self)
        self._update_cursor_shape()

    # ----------------------------------------------------------------- image
    def set_image(self, array: Optional[np.ndarray], color: str = "mono", levels=None,
                  autolevel: bool = False, stretch: Optional[StretchState] = None) -> None:
        """Show ``array`` ((H, W) mono or raw Bayer, or (H, W, 3) RGB/BGR) with layout ``color``.

        ``levels=(black, white)`` sets the black/white points; ``autolevel`` recomputes them from
        this frame (the STF for the "auto" mode, else percentiles); ``stretch`` replaces the whole
        display state (one render, e.g. from ``StretchPanel.set_image``); otherwise the current
        stretch is kept (the first image is auto-levelled). The array is kept, not copied or
        modified."""
        if array is None:
            self._raw = None
            self._display = None
            self.image_item.clear()
            self._sync_overlay()
            return
        arr = np.asarray(array)
        bayer = str(color).upper() if arr.ndim == 2 and str(color).upper() in BAYER_CODES else None
        if bayer:
            # stretched first, demosaiced after (cheaper); statistics come from the raw CFA values
            display, is_colour = arr, True
        else:
            display, is_colour = to_display_rgb(arr, color)
        self._bayer = bayer
        self._raw = arr
        self._color = color
        self._display = display
        self._is_colour = is_colour
        if stretch is not None:
            self._state = stretch.copy()
            self._have_levels = True
        if levels is not None:
            b, w = (float(v) for v in levels)
            self._state = self._state.copy(black=b, white=w)
            self._have_levels = True
        elif stretch is None and (autolevel or not self._have_levels):
            self._state = self._auto_state(self._state)
            self._have_levels = True
        self._render(new_data=True)
        self._sync_overlay()
        if self._last_hover[0] >= 0:
            # the readout under a still cursor now refers to the new image
            x, y = self._last_hover
            h, w = arr.shape[:2]
            self._last_hover = (x, y) if (x < w and y < h) else (-1, -1)
            self.pixelHovered.emit(*self._last_hover)

    def _auto_state(self, base: StretchState) -> StretchState:
        if self._display is None:
            return base
        if base.mode == "auto":
            return stf_auto(self._display, base=base)
        b, w = auto_levels(self._display)
        return base.copy(black=b, white=w)

    def auto_levels(self) -> StretchState:
        """Recompute the levels (or the STF in "auto" mode) from the shown image; returns the state."""
        self._state = self._auto_state(self._state)
        self._have_levels = True
        self._render(new_data=False)
        return self._state

    def _render(self, new_data: bool) -> None:
        if self._display is None:
            return
        st = self._state
        if self._is_colour:
            if new_data:
                self._flush_colour()
            else:
                # colour is stretched here, not by pyqtgraph: defer it to the next paint so that
                # set_stretch() followed by set_image() costs one stretch, not two
                self._colour_pending = True
                self.image_item.update()
        elif new_data:
            self.image_item.setImage(self._display, levels=st.levels, lut=make_lut(st), autoLevels=False)
        else:
            self.image_item.setLookupTable(make_lut(st), update=False)
            self.image_item.setLevels(st.levels)

    def _flush_colour(self) -> None:
        self._colour_pending = False
        if self._display is not None and self._is_colour:
            if self._bayer:
                rgb8 = stretch_bayer_for_display(self._display, self._bayer, self._state)
            else:
                rgb8 = apply_fast(self._display, self._state)
            # uint8 RGB without levels: pyqtgraph hands it to Qt as is (no rescale pass)
            self.image_item.setImage(rgb8, levels=None, lut=None, autoLevels=False)

    def image(self) -> Optional[np.ndarray]:
        """The raw array last passed to :meth:`set_image` (not a copy)."""
        return self._raw

    def color(self) -> str:
        return self._color

    def display_array(self) -> Optional[np.ndarray]:
        """What is being stretched: the mono data, the raw CFA frame (Bayer) or the RGB image."""
        return self._display

    def image_shape(self) -> Optional[tuple[int, int]]:
        return None if self._raw is None else tuple(self._raw.shape[:2])  # type: ignore[return-value]

    def set_levels(self, black: float, white: float) -> None:
        self._state = self._state.copy(black=float(black), white=float(white))
        self._have_levels = True
        self._render(new_data=False)

    def levels(self) -> tuple[float, float]:
        return self._state.levels

    def set_stretch(self, state: StretchState) -> None:
        """Change the display curve and levels only (the data is not touched)."""
        self._state = state.copy()
        self._have_levels = True
        self._render(new_data=False)

    def stretch(self) -> StretchState:
        return self._state.copy()

    def value_at(self, x: int, y: int):
        """The raw value at pixel (x, y): a number for mono/Bayer, a tuple (storage order) for
        colour; None outside the image."""
        if self._raw is None:
            return None
        h, w = self._raw.shape[:2]
        x, y = int(x), int(y)
        if not (0 <= x < w and 0 <= y < h):
            return None
        v = self._raw[y, x]
        if np.ndim(v):
            return tuple(v.tolist())
        return v.item()

    # ------------------------------------------------------------------ mask
    def set_mask_model(self, model: Optional[MaskModel]) -> None:
        """Show and edit ``model`` (None: no overlay, no painting)."""
        if self._model is not None:
            self._model.remove_listener(self._on_mask_changed)
            if self._painting:
                self._model.end_stroke()
                self._painting = False
        self._model = model
        if model is not None:
            model.on_change(self._on_mask_changed)
        self._sync_overlay()

    def mask_model(self) -> Optional[MaskModel]:
        return self._model

    def _mask_matches(self) -> bool:
        if self._model is None:
            return False
        shape = self.image_shape()
        return shape is None or tuple(self._model.shape) == shape

    def _sync_overlay(self) -> None:
        if self._model is not None and self._mask_matches():
            if not self.overlay_item.shows(self._model.mask):
                self.overlay_item.set_mask(self._model.mask)
        else:
            self.overlay_item.set_mask(None)
        self.overlay_item.setVisible(self._overlay_visible)

    def _on_mask_changed(self, box: Box) -> None:
        if self._model is None or not self._mask_matches():
            return
        self.overlay_item.update_box(self._model.mask, box)

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay_visible = bool(visible)
        self.overlay_item.setVisible(self._overlay_visible)
        self.refused_item.setVisible(self._overlay_visible and self.refused_item.pixels > 0)

    def set_refused(self, mask: Optional[np.ndarray]) -> None:
        """Draw the specks the flat leaves out (bool (H, W); None or empty: none) grey and hatched
        over the mask overlay."""
        self.refused_item.set_mask(mask)
        self.refused_item.setVisible(self._overlay_visible and self.refused_item.pixels > 0)

    def overlay_visible(self) -> bool:
        return self._overlay_visible

    def set_overlay_opacity(self, opacity: float) -> None:
        self.overlay_item.set_overlay_opacity(opacity, self._model.mask if self._mask_matches() else None)

    def set_overlay_outline(self, outline: bool) -> None:
        """Draw the mask as outlines (its boundary pixels) instead of a filled overlay."""
        self.overlay_item.set_outline(outline, self._model.mask if self._mask_matches() else None)

    def overlay_outline(self) -> bool:
        return self.overlay_item.outline

    def set_overlay_color(self, rgb) -> None:
        self.overlay_item.set_color(rgb, self._model.mask if self._mask_matches() else None)

    # ----------------------------------------------------------------- tools
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise InputError(f"unknown viewer tool '{tool}' (choose from {', '.join(TOOLS)})")
        if self._painting:
            self._finish_stroke(None)
        self._tool = tool
        self._update_cursor_shape()
        self.toolChanged.emit(tool)

    def tool(self) -> str:
        return self._tool

    def set_brush_radius(self, radius: int) -> None:
        r = int(min(max(int(round(radius)), MIN_BRUSH), MAX_BRUSH))
        if r != self._brush:
            self._brush = r
            self._update_cursor_shape()
            self.brushRadiusChanged.emit(r)

    def brush_radius(self) -> int:
        return self._brush

    def _update_cursor_shape(self) -> None:
        brush_tool = self._tool in ("paint", "erase")
        r = float(self._brush)
        self.cursor_item.setRect(QtCore.QRectF(-r, -r, 2 * r, 2 * r))
        self._cursor_dashes.setRect(QtCore.QRectF(-r, -r, 2 * r, 2 * r))
        if self._cursor_pos is not None:
            self.cursor_item.setPos(*self._cursor_pos)
        self.cursor_item.setVisible(brush_tool and self._cursor_pos is not None)
        cursor = Qt.CursorShape.CrossCursor if self._tool in ("paint", "erase", "remove") else Qt.CursorShape.OpenHandCursor
        self.graphics_view.viewport().setCursor(cursor)

    def set_highlight(self, box: Optional[Box], margin: int = 3) -> None:
        """Outline ``box`` (x0, y0, x1, y1, half-open pixel box) with ``margin`` pixels around it,
        e.g. the speck selected in a table; None hides the outline."""
        if box is None:
            self.highlight_item.setVisible(False)
            return
        x0, y0, x1, y1 = (float(v) for v in box)
        m = float(margin)
        self.highlight_item.setRect(QtCore.QRectF(x0 - m, y0 - m, x1 - x0 + 2 * m, y1 - y0 + 2 * m))
        self.highlight_item.setVisible(True)

    # ------------------------------------------------------------------ view
    def fit(self) -> None:
        """Show the whole image."""
        shape = self.image_shape()
        if shape is None:
            return
        h, w = shape
        self.view_box.setRange(QtCore.QRectF(0, 0, w, h), padding=0)

    def zoom_factor(self) -> float:
        """Screen pixels per image pixel."""
        (x0, x1), _ = self.view_box.viewRange()
        width = max(self.view_box.width(), 1.0)
        return width / max(x1 - x0, 1e-9)

    def zoom_1to1(self) -> None:
        """One image pixel per screen pixel, keeping the centre of the view."""
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        self._set_view((x0 + x1) / 2.0, (y0 + y1) / 2.0, 1.0)

    def center_on(self, x: float, y: float, zoom: Optional[float] = None) -> None:
        """Centre pixel (x, y); ``zoom`` in screen pixels per image pixel (None keeps it)."""
        self._set_view(float(x) + 0.5, float(y) + 0.5, zoom if zoom is not None else self.zoom_factor())

    def _set_view(self, cx: float, cy: float, zoom: float) -> None:
        zoom = max(float(zoom), 1e-6)
        vw = max(self.view_box.width(), 1.0) / zoom
        vh = max(self.view_box.height(), 1.0) / zoom
        self.view_box.setRange(QtCore.QRectF(cx - vw / 2.0, cy - vh / 2.0, vw, vh), padding=0)

    def view_to_pixel(self, pos: QtCore.QPointF) -> tuple[float, float]:
        """Image coordinates (pixel centres at integers) of a point in view coordinates."""
        return pos.x() - 0.5, pos.y() - 0.5

    def pixel_to_viewport(self, x: float, y: float) -> QtCore.QPoint:
        """The viewport widget position of the centre of image pixel (x, y) (for tests/tools)."""
        scene = self.view_box.mapViewToScene(QtCore.QPointF(float(x) + 0.5, float(y) + 0.5))
        return self.graphics_view.mapFromScene(scene)

    # ----------------------------------------------------------------- input
    def _image_pos(self, viewport_pos: QtCore.QPointF) -> tuple[float, float, QtCore.QPointF]:
        scene = self.graphics_view.mapToScene(viewport_pos.toPoint())
        view = self.view_box.mapSceneToView(scene)
        return view.x() - 0.5, view.y() - 0.5, view

    def _hover(self, fx: float, fy: float, view: QtCore.QPointF) -> None:
        self._cursor_pos = (view.x(), view.y())
        self.cursor_item.setPos(view.x(), view.y())
        self.cursor_item.setVisible(self._tool in ("paint", "erase"))
        shape = self.image_shape()
        px, py = int(math.floor(view.x())), int(math.floor(view.y()))
        if shape is None or not (0 <= px < shape[1] and 0 <= py < shape[0]):
            px, py = -1, -1
        if (px, py) != self._last_hover:
            self._last_hover = (px, py)
            self.pixelHovered.emit(px, py)

    def _leave(self) -> None:
        self._cursor_pos = None
        self.cursor_item.setVisible(False)
        if self._last_hover != (-1, -1):
            self._last_hover = (-1, -1)
            self.pixelHovered.emit(-1, -1)

    def _can_edit(self) -> bool:
        return self._model is not None and self._raw is not None and self._mask_matches()

    def _finish_stroke(self, pos: Optional[tuple[float, float]]) -> None:
        self._painting = False
        if self._model is None:
            return
        if pos is not None and self._model.stroke_active:
            self._model.stroke_to(*pos)
        self._model.end_stroke()
        self.strokeFinished.emit()

    def eventFilter(self, obj, event) -> bool:  # noqa: C901 - one dispatcher for the mouse
        et = event.type()
        if obj is self.graphics_view and et == QtCore.QEvent.Type.KeyPress:
            return self._key(event)
        if obj is not self.graphics_view.viewport():
            return False
        if et == QtCore.QEvent.Type.Paint:
            if self._colour_pending:
                self._flush_colour()
            return False
        if et == QtCore.QEvent.Type.MouseMove:
            fx, fy, view = self._image_pos(event.position())
            self._hover(fx, fy, view)
            if self._painting and self._model is not None:
                self._model.stroke_to(fx, fy)
                return True
            return self._tool == "remove" and self._press_pos is not None
        if et == QtCore.QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            if self._tool in ("paint", "erase"):
                if not self._can_edit():
                    return True
                fx, fy, view = self._image_pos(event.position())
                self._hover(fx, fy, view)
                self._model.begin_stroke(self._tool, self._brush)
                self._model.stroke_to(fx, fy)
                self._painting = True
                self.graphics_view.setFocus(Qt.FocusReason.MouseFocusReason)
                return True
            if self._tool == "remove":
                self._press_pos = event.position()
                return True
            return False
        if et == QtCore.QEvent.Type.MouseButtonRelease and event.button() == Qt.MouseButton.LeftButton:
            if self._painting:
                fx, fy, _ = self._image_pos(event.position())
                self._finish_stroke((fx, fy))
                return True
            if self._tool == "remove" and self._press_pos is not None:
                start, self._press_pos = self._press_pos, None
                d = event.position() - start
                if abs(d.x()) + abs(d.y()) <= 6:
                    fx, fy, view = self._image_pos(event.position())
                    px, py = int(math.floor(view.x())), int(math.floor(view.y()))
                    shape = self.image_shape()
                    if shape is not None and 0 <= px < shape[1] and 0 <= py < shape[0]:
                        if self._can_edit():
                            self._model.remove_component_at(px, py)
                        self.speckClicked.emit(px, py)
                return True
            return False
        if et == QtCore.QEvent.Type.MouseButtonDblClick and event.button() == Qt.MouseButton.LeftButton \
                and self._tool != "pan":
            return True
        if et == QtCore.QEvent.Type.Leave:
            self._leave()
        return False

    def _key(self, event: QtGui.QKeyEvent) -> bool:
        key = event.key()
        mods = event.modifiers()
        text = event.text()
        if text == "[" or key == Qt.Key.Key_BracketLeft:
            self.set_brush_radius(_shrink_radius(self._brush))
            return True
        if text == "]" or key == Qt.Key.Key_BracketRight:
            self.set_brush_radius(_grow_radius(self._brush))
            return True
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        if ctrl and self._model is not None and not self._painting:
            if key == Qt.Key.Key_Z and not (mods & Qt.KeyboardModifier.ShiftModifier):
                self._model.undo()
                return True
            if key == Qt.Key.Key_Y or (key == Qt.Key.Key_Z and mods & Qt.KeyboardModifier.ShiftModifier):
                self._model.redo()
                return True
        return False

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if not self._key(event):
            super().keyPressEvent(event)
