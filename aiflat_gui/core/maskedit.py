"""The mask-editing model (napari style): brush strokes, whole-mask operations, undo/redo.

No Qt here: the view subscribes with :meth:`MaskModel.on_change` and re-renders only the box
each notification names. Coordinates are pixel indices: ``x`` is the column, ``y`` the row,
and pixel ``(x, y)`` has its centre at ``(x, y)`` (float positions are allowed). Boxes are
``(x0, y0, x1, y1)``, half-open, clipped to the mask.

A whole brush drag (``begin_stroke`` ... ``stroke_to`` ... ``end_stroke``) is ONE undo step, and
every step keeps only the bounding box of the pixels it changed, before and after (bit-packed).
History is unlimited within ``memory_budget`` bytes; the oldest steps are dropped beyond it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

from ..errors import InputError

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (half-open)
ChangeCallback = Callable[[Box], None]

#: a stroke saves the original content of each TILE x TILE tile it touches, once: its memory is
#: bounded by the mask size however long the drag lasts
TILE = 64

#: a brush segment is drawn in pieces whose bounding box holds at most this many pixels
MAX_PIECE_AREA = 16384

#: default history budget: 256 MiB of packed before/after boxes (a 4K whole-mask step is 2 MB)
DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024


@dataclass(frozen=True)
class EditStep:
    """One undoable change: the changed box and its contents before and after (packed bits)."""

    label: str
    x0: int
    y0: int
    width: int
    height: int
    before_bits: np.ndarray
    after_bits: np.ndarray
    serial: int
    merge_key: Optional[str] = None

    @property
    def box(self) -> Box:
        return self.x0, self.y0, self.x0 + self.width, self.y0 + self.height

    @property
    def nbytes(self) -> int:
        return int(self.before_bits.nbytes + self.after_bits.nbytes)

    def _unpack(self, bits: np.ndarray) -> np.ndarray:
        n = self.width * self.height
        return np.unpackbits(bits, count=n).reshape(self.height, self.width)

    def before(self) -> np.ndarray:
        """The box's pixels (uint8 0/1, shape (height, width)) before the step."""
        return self._unpack(self.before_bits)

    def after(self) -> np.ndarray:
        """The box's pixels (uint8 0/1, shape (height, width)) after the step."""
        return self._unpack(self.after_bits)


def _as_mask(mask: np.ndarray, shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"a mask must be 2-D, not of shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(f"the mask is {arr.shape[1]}x{arr.shape[0]} but the image is "
                         f"{shape[1]}x{shape[0]}")
    return np.ascontiguousarray(arr != 0, dtype=np.uint8) if arr.dtype != np.uint8 or arr.max(initial=0) > 1 \
        else np.array(arr, dtype=np.uint8, copy=True, order="C")


def _changed_box(before: np.ndarray, after: np.ndarray) -> Optional[Box]:
    """Tight box (relative to the arrays) of the pixels that differ, or None."""
    diff = before != after
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(diff.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


class MaskModel:
    """A binary (H, W) mask with brush strokes, whole-mask operations and undo/redo.

    ``mask`` is a C-contiguous uint8 array of 0/1 that the model edits in place (a view can
    display it directly without copying); treat it as read-only outside the model."""

    def __init__(self, mask: Optional[np.ndarray] = None, shape: Optional[tuple[int, int]] = None,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        if mask is None:
            if shape is None:
                raise InputError("a MaskModel needs a mask or a shape")
            self._mask = np.zeros(tuple(int(s) for s in shape), np.uint8)
        else:
            self._mask = _as_mask(mask, shape)
        self.memory_budget = int(memory_budget)
        self._undo: list[EditStep] = []
        self._redo: list[EditStep] = []
        self._listeners: list[ChangeCallback] = []
        self._serial = 0          # serial of the last created step
        self._saved_serial = 0    # serial of the state that was last saved (0 = initial)
        self._stroke: Optional[dict] = None

    # ------------------------------------------------------------------ state
    @property
    def mask(self) -> np.ndarray:
        return self._mask

    @property
    def shape(self) -> tuple[int, int]:
        return self._mask.shape  # type: ignore[return-value]

    def as_bool(self) -> np.ndarray:
        """A copy of the mask as a bool array."""
        return self._mask.astype(bool)

    @property
    def full_box(self) -> Box:
        h, w = self._mask.shape
        return 0, 0, w, h

    def set_mask(self, mask: np.ndarray, clear_history: bool = True) -> None:
        """Replace the whole mask (e.g. a restored session) without an undo step; the result
        counts as saved. Use :meth:`apply` for an undoable replacement."""
        self.end_stroke()
        self._mask = _as_mask(mask)
        if clear_history:
            self._undo.clear()
            self._redo.clear()
        self._saved_serial = self._current_serial()
        self._notify(self.full_box)

    # -------------------------------------------------------------- listeners
    def on_change(self, callback: ChangeCallback) -> ChangeCallback:
        """Call ``callback(box)`` after every change of the mask; returns the callback."""
        self._listeners.append(callback)
        return callback

    def remove_listener(self, callback: ChangeCallback) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self, box: Box) -> None:
        for cb in list(self._listeners):
            cb(box)

    # ---------------------------------------------------------------- history
    def _current_serial(self) -> int:
        return self._undo[-1].serial if self._undo else 0

    @property
    def serial(self) -> int:
        """Serial of the step the mask is at now (0: the initial mask); undo/redo move it."""
        return self._current_serial()

    @property
    def last_serial(self) -> int:
        """Serial of the newest step ever made (undo does not lower it)."""
        return self._serial

    @property
    def changed_since_save(self) -> bool:
        return self._current_serial() != self._saved_serial

    def mark_saved(self) -> None:
        self._saved_serial = self._current_serial()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_steps(self) -> tuple[EditStep, ...]:
        return tuple(self._undo)

    @property
    def redo_steps(self) -> tuple[EditStep, ...]:
        return tuple(self._redo)

    @property
    def history_nbytes(self) -> int:
        return sum(s.nbytes for s in self._undo) + sum(s.nbytes for s in self._redo)

    @property
    def undo_label(self) -> str:
        return self._undo[-1].label if self._undo else ""

    @property
    def redo_label(self) -> str:
        return self._redo[-1].label if self._redo else ""

    def _push(self, label: str, ox: int, oy: int, before: np.ndarray, after: np.ndarray,
              merge_key: Optional[str] = None) -> Optional[EditStep]:
        """Record a change of the region at (ox, oy) from ``before`` to ``after`` (already applied),
        trimmed to the pixels that changed. Returns the step, or None when nothing changed."""
        box = _changed_box(before, after)
        if box is None:
            return None
        bx0, by0, bx1, by1 = box
        b = before[by0:by1, bx0:bx1]
        a = after[by0:by1, bx0:bx1]
        self._serial += 1
        step = EditStep(label=label, x0=ox + bx0, y0=oy + by0, width=bx1 - bx0, height=by1 - by0,
                        before_bits=np.packbits(b, axis=None), after_bits=np.packbits(a, axis=None),
                        serial=self._serial, merge_key=merge_key)
        self._undo.append(step)
        self._redo.clear()
        self._enforce_budget()
        return step

    def _enforce_budget(self) -> None:
        total = self.history_nbytes
        while total > self.memory_budget and len(self._undo) > 1:
            dropped = self._undo.pop(0)
            total -= dropped.nbytes
            if dropped.serial == self._saved_serial:
                self._saved_serial = -1  # the saved state can no longer be reached by undo

    def undo(self) -> bool:
        """Revert the last step; returns False when there is nothing to undo."""
        self.end_stroke()
        if not self._undo:
            return False
        step = self._undo.pop()
        x0, y0, x1, y1 = step.box
        self._mask[y0:y1, x0:x1] = step.before()
        self._redo.append(step)
        self._notify(step.box)
        return True

    def redo(self) -> bool:
        """Re-apply the last undone step; returns False when there is nothing to redo."""
        self.end_stroke()
        if not self._redo:
            return False
        step = self._redo.pop()
        x0, y0, x1, y1 = step.box
        self._mask[y0:y1, x0:x1] = step.after()
        self._undo.append(step)
        self._notify(step.box)
        return True

    def clear_history(self) -> None:
        self._undo.clear()
        self._redo.clear()

    # ----------------------------------------------------------------- brush
    @property
    def stroke_active(self) -> bool:
        return self._stroke is not None

    @property
    def stroke_backup_nbytes(self) -> int:
        """Bytes the running stroke keeps to build its undo step (0 outside a stroke)."""
        if self._stroke is None:
            return 0
        return sum(t.nbytes for t in self._stroke["tiles"].values())

    def begin_stroke(self, mode: str = "paint", radius: float = 5.0) -> None:
        """Start a brush stroke ("paint" sets pixels, "erase" clears them) of ``radius`` pixels."""
        if mode not in ("paint", "erase"):
            raise InputError(f"unknown brush mode '{mode}' (choose paint or erase)")
        radius = float(radius)
        if not radius > 0:
            raise InputError(f"the brush radius must be positive, not {radius}")
        self.end_stroke()
        self._stroke = {"value": 1 if mode == "paint" else 0, "radius": radius, "last": None,
                        "tiles": {}, "box": None, "label": "Paint" if mode == "paint" else "Erase"}

    def stroke_to(self, x: float, y: float) -> Optional[Box]:
        """Extend the current stroke to (x, y): a disc there and a gap-free capsule from the
        previous point. Returns the box that was touched (None if outside the mask)."""
        st = self._stroke
        if st is None:
            raise InputError("stroke_to() called outside a stroke (call begin_stroke first)")
        x, y = float(x), float(y)
        last = st["last"] if st["last"] is not None else (x, y)
        st["last"] = (x, y)
        return self._draw_capsule(last, (x, y), st)

    def _draw_capsule(self, p0, p1, st) -> Optional[Box]:
        r = max(st["radius"], 0.71)  # at least the nearest pixel of any centre
        x0, y0 = p0
        x1, y1 = p1
        # long diagonal moves: split into pieces whose boxes stay small (the union of the pieces'
        # capsules is exactly the whole segment's capsule)
        adx, ady = abs(x1 - x0), abs(y1 - y0)
        pieces = 1
        while (adx / pieces + 2 * r + 1) * (ady / pieces + 2 * r + 1) > MAX_PIECE_AREA \
                and max(adx, ady) / pieces > r:
            pieces *= 2
        touched: Optional[Box] = None
        for k in range(pieces):
            ax = x0 + (x1 - x0) * k / pieces
            ay = y0 + (y1 - y0) * k / pieces
            bx = x0 + (x1 - x0) * (k + 1) / pieces
            by = y0 + (y1 - y0) * (k + 1) / pieces
            box = self._dab_segment(ax, ay, bx, by, r, st)
            if box is not None:
                touched = box if touched is None else (min(touched[0], box[0]), min(touched[1], box[1]),
                                                       max(touched[2], box[2]), max(touched[3], box[3]))
        if touched is not None:
            self._notify(touched)
        return touched

    def _dab_segment(self, ax, ay, bx, by, r, st) -> Optional[Box]:
        h, w = self._mask.shape
        bx0 = max(0, int(math.floor(min(ax, bx) - r)))
        by0 = max(0, int(math.floor(min(ay, by) - r)))
        bx1 = min(w, int(math.ceil(max(ax, bx) + r)) + 1)
        by1 = min(h, int(math.ceil(max(ay, by) + r)) + 1)
        if bx0 >= bx1 or by0 >= by1:
            return None
        xs = np.arange(bx0, bx1, dtype=np.float32)[None, :]
        ys = np.arange(by0, by1, dtype=np.float32)[:, None]
        dx, dy = bx - ax, by - ay
        seg2 = dx * dx + dy * dy
        if seg2 > 1e-12:
            t = ((xs - ax) * dx + (ys - ay) * dy) / seg2
            np.clip(t, 0.0, 1.0, out=t)
            px = xs - (ax + t * dx)
            py = ys - (ay + t * dy)
        else:
            px = xs - ax
            py = ys - ay
        inside = (px * px + py * py) <= r * r
        if not inside.any():
            return None
        tiles = st["tiles"]
        for ty in range(by0 // TILE, (by1 - 1) // TILE + 1):
            for tx in range(bx0 // TILE, (bx1 - 1) // TILE + 1):
                if (ty, tx) not in tiles:
                    tiles[(ty, tx)] = self._mask[ty * TILE:(ty + 1) * TILE, tx * TILE:(tx + 1) * TILE].copy()
        region = self._mask[by0:by1, bx0:bx1]
        region[inside] = st["value"]
        box = (bx0, by0, bx1, by1)
        sb = st["box"]
        st["box"] = box if sb is None else (min(sb[0], bx0), min(sb[1], by0), max(sb[2], bx1), max(sb[3], by1))
        return box

    def end_stroke(self) -> Optional[EditStep]:
        """Finish the current stroke: ONE undo step with the changed box (None if nothing changed
        or no stroke is active)."""
        st = self._stroke
        self._stroke = None
        if st is None or st["box"] is None:
            return None
        ux0, uy0, ux1, uy1 = st["box"]
        after = self._mask[uy0:uy1, ux0:ux1].copy()
        before = after.copy()
        for (ty, tx), old in st["tiles"].items():  # put back the originals of the touched tiles
            x0, y0 = max(tx * TILE, ux0), max(ty * TILE, uy0)
            x1, y1 = min(tx * TILE + old.shape[1], ux1), min(ty * TILE + old.shape[0], uy1)
            if x1 > x0 and y1 > y0:
                before[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0] = old[y0 - ty * TILE:y1 - ty * TILE,
                                                                     x0 - tx * TILE:x1 - tx * TILE]
        return self._push(st["label"], ux0, uy0, before, after)

    def dab(self, x: float, y: float, mode: str = "paint", radius: float = 5.0) -> Optional[EditStep]:
        """A single-click brush dab: a whole one-point stroke (one undo step)."""
        self.begin_stroke(mode, radius)
        self.stroke_to(x, y)
        return self.end_stroke()

    # -------------------------------------------------------- whole-mask ops
    def apply(self, new_mask: np.ndarray, label: str = "Edit mask",
              merge_key: Optional[str] = None) -> Optional[EditStep]:
        """Replace the mask with ``new_mask`` (same shape) as one undo step that stores only
        the changed box. Returns the step, or None when nothing changed.

        ``merge_key``: consecutive applies with the same key (e.g. "sensitivity" while a slider
        moves) fold into the last step, so one undo goes back to before the first of them (not
        across a save point). A run that ends where it started leaves no step at all."""
        self.end_stroke()
        new = np.asarray(new_mask)
        if new.shape != self._mask.shape:
            raise InputError(f"the new mask is {new.shape[1] if new.ndim > 1 else '?'}x{new.shape[0]} "
                             f"but the mask is {self._mask.shape[1]}x{self._mask.shape[0]}")
        new_u8 = new if (new.dtype == np.uint8 and new.max(initial=0) <= 1) else (new != 0).astype(np.uint8)
        box = _changed_box(self._mask, new_u8)
        if box is None:
            return None
        top = self._undo[-1] if self._undo else None
        if merge_key is not None and top is not None and top.merge_key == merge_key \
                and top.serial != self._saved_serial:
            self._undo.pop()
            tx0, ty0, tx1, ty1 = top.box
            x0, y0 = min(box[0], tx0), min(box[1], ty0)
            x1, y1 = max(box[2], tx1), max(box[3], ty1)
            before = self._mask[y0:y1, x0:x1].copy()
            before[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0] = top.before()  # the state before the run
        else:
            x0, y0, x1, y1 = box
            before = self._mask[y0:y1, x0:x1].copy()
        after = np.array(new_u8[y0:y1, x0:x1], dtype=np.uint8, copy=True)
        self._mask[y0:y1, x0:x1] = after
        step = self._push(label, x0, y0, before, after, merge_key)
        self._notify(box)
        return step

    def grow(self, pixels: int = 1) -> Optional[EditStep]:
        """Dilate the mask by ``pixels`` (the disc of :func:`aiflat_gui.core.mask.grow`, the one
        the flat's grow uses; one undo step)."""
        from .mask import grow

        return self.apply(grow(self._mask.astype(bool), _pixels(pixels)), f"Grow {int(pixels)} px")

    def shrink(self, pixels: int = 1) -> Optional[EditStep]:
        """Erode the mask by ``pixels`` (disc; one undo step)."""
        from .mask import shrink

        return self.apply(shrink(self._mask.astype(bool), _pixels(pixels)), f"Shrink {int(pixels)} px")

    def remove_small(self, min_area: int) -> Optional[EditStep]:
        """Drop specks of fewer than ``min_area`` pixels (one undo step)."""
        from .mask import remove_small

        return self.apply(remove_small(self._mask.astype(bool), int(min_area)), f"Remove specks under {int(min_area)} px")

    def invert(self) -> Optional[EditStep]:
        return self.apply(1 - self._mask, "Invert mask")

    def clear(self) -> Optional[EditStep]:
        return self.apply(np.zeros_like(self._mask), "Clear mask")

    def remove_component_at(self, x: float, y: float) -> Optional[EditStep]:
        """Remove the whole connected (8-neighbour) speck under pixel (x, y) as one undo step.
        Returns the step, or None when (x, y) is outside the mask or not on a speck."""
        self.end_stroke()
        h, w = self._mask.shape
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < w and 0 <= yi < h) or self._mask[yi, xi] == 0:
            return None
        # flood the speck with a marker value in place; the returned rect is its bounding box
        _, _, _, rect = cv2.floodFill(self._mask, None, (xi, yi), 2, 0, 0, flags=8)
        rx, ry, rw, rh = (int(v) for v in rect)
        region = self._mask[ry:ry + rh, rx:rx + rw]
        before = (region != 0).astype(np.uint8)
        region[region == 2] = 0
        after = region.copy()
        step = self._push("Remove speck", rx, ry, before, after)
        self._notify((rx, ry, rx + rw, ry + rh))
        return step


def _pixels(pixels: int) -> int:
    p = int(pixels)
    if p < 1:
        raise InputError(f"grow/shrink needs at least 1 pixel, not {pixels}")
    return p
