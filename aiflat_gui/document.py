"""The document under the app (no Qt): one open sequence and everything made from it.

A :class:`Document` holds the sequence, the reference, the mask (:class:`MaskModel`), the flat and
the AI's clean image, the typed parameters of every step (the pipeline's dataclasses), the workflow
state with its staleness rules, the display state (view, frame, overlay, stretch), the image each
view shows, and the conversion to and from a session. It notifies by callbacks, as MaskModel does:
``on_change(callback(what))`` with ``what`` in :data:`CHANGES`. The window only wires widgets and
workers to it (napari's ``Window(ViewerModel)``); opening a file makes a new Document, so nothing
of the old file survives by accident.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import pipeline
from .core.maskedit import MaskModel
from .core.verify import VERDICTS
from .core.stretch import StretchState
from .errors import InputError
from .session import SessionData, SessionStore

# -- the workflow and its staleness rules -----------------------------------------------------------

STEPS = ("sequence", "reference", "mask", "flat", "calibrate")
NOT_DONE, RUNNING, DONE, STALE = "not done", "running", "done", "stale"
STATES = (NOT_DONE, RUNNING, DONE, STALE)
#: what becomes stale when a step's result changes
DOWNSTREAM = {"sequence": ("reference", "mask", "flat", "calibrate"), "reference": ("flat", "calibrate"),
              "mask": ("flat", "calibrate"), "flat": ("calibrate",), "calibrate": ()}
HINTS = {
    "sequence": "Open a video (File ▸ Open, drag a file here) or try the demo.",
    "reference": "Compute the reference frame: the median of the video keeps the dust, smooths the sun.",
    "mask": "Find the dust: run the offline detector, ask the AI, or import a mask; then fix it with the brush.",
    "flat": "Build the flat: exactly 1.0 outside the mask, the dust's shadow inside.",
    "calibrate": "Calibrate: divide every frame by the flat and export the result.",
}


class WorkflowState:
    """States of the five steps."""

    def __init__(self) -> None:
        self.states = {s: NOT_DONE for s in STEPS}

    def set(self, step: str, state: str) -> None:
        if step not in self.states or state not in STATES:
            raise ValueError(f"unknown step/state {step!r}/{state!r}")
        self.states[step] = state

    def changed(self, step: str) -> list[str]:
        """``step`` produced a new result: mark it done and every done later step stale.
        Returns the steps that turned stale."""
        self.states[step] = DONE
        turned = []
        for s in DOWNSTREAM[step]:
            if self.states[s] == DONE:
                self.states[s] = STALE
                turned.append(s)
        return turned

    def reset(self) -> None:
        for s in STEPS:
            self.states[s] = NOT_DONE

    def next_step(self) -> Optional[str]:
        for s in STEPS:
            if self.states[s] != DONE:
                return s
        return None

    def hint(self) -> str:
        step = self.next_step()
        if step is None:
            return "All done. Export the flat or the mask, or calibrate more videos (File ▸ Batch)."
        state = self.states[step]
        if state == RUNNING:
            return f"Working on the {step} step…"
        prefix = "Out of date — redo: " if state == STALE else "Next: "
        return prefix + HINTS[step]


# -- what the document holds ------------------------------------------------------------------------

VIEWS = (("frame", "Frame"), ("reference", "Reference"), ("mask", "Mask"), ("flat", "Flat"),
         ("calibrated", "Calibrated preview"), ("difference", "Difference"), ("blink", "Blink before/after"),
         ("dust", "Visualize dust"))
#: what a change notification names
CHANGES = ("state", "params", "reference", "mask", "sensitivity", "flat", "calibrated", "display", "specks")


@dataclass
class Display:
    """How the document is shown (saved in the session): the one owner of the stretch."""

    view: str = "frame"
    frame_index: int = 0
    overlay_visible: bool = True
    overlay_opacity: float = 0.5
    stretch: Optional[StretchState] = None


@dataclass
class Params:
    """Every step's parameters, typed (defaults from the pipeline's dataclasses)."""

    reference: pipeline.ReferenceParams = field(default_factory=pipeline.ReferenceParams)
    mask: pipeline.MaskParams = field(default_factory=pipeline.MaskParams)
    flat: pipeline.FlatParams = field(default_factory=pipeline.FlatParams)

    def as_dict(self) -> dict[str, Any]:
        """The flat dict the workflow panel and the session use."""
        max_frames = self.reference.max_frames
        return {"reference_method": self.reference.method,
                "max_frames": pipeline.DEFAULT_MAX_FRAMES if max_frames is None else (max_frames or None),
                "provider": self.mask.provider, "sensitivity": self.mask.sensitivity,
                "flat_method": self.flat.method, "grow": self.flat.grow, "feather": self.flat.feather,
                "pedestal": self.flat.pedestal}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Params":
        """From the panel's or a session's dict (``max_frames`` None: every frame)."""
        p = cls()
        if d.get("reference_method") in pipeline.REFERENCE_METHODS:
            p.reference.method = d["reference_method"]
        if "max_frames" in d:
            mf = d["max_frames"]
            p.reference.max_frames = 0 if not mf else int(mf)
            p.flat.max_frames = p.reference.max_frames
        if d.get("provider") in pipeline.PROVIDERS:
            p.mask.provider = d["provider"]
        if d.get("sensitivity") is not None:
            p.mask.sensitivity = min(1.0, max(0.0, float(d["sensitivity"])))
        if d.get("flat_method") in pipeline.FLAT_METHODS:
            p.flat.method = d["flat_method"]
        for key in ("grow", "feather"):
            if d.get(key) is not None:
                setattr(p.flat, key, int(d[key]))
        if d.get("pedestal") is not None:
            p.flat.pedestal = float(d["pedestal"])
        return p


Listener = Callable[[str], None]


class Document:
    """One open sequence and what was made from it. ``Document.open(path)`` opens the file."""

    def __init__(self, path: str | Path, seq) -> None:
        self.path = Path(path)
        self.seq = seq
        self.reference: Optional[np.ndarray] = None
        self.mask = MaskModel(shape=(seq.height, seq.width))
        self.flat: Optional[np.ndarray] = None
        self.clean: Optional[np.ndarray] = None
        self.local_provider: Any = None
        self.ai_report: dict = {}
        self.params = Params()
        self.state = WorkflowState()
        self.state.set("sequence", DONE)
        self.display = Display()
        self.output_choices: dict = {}
        #: the user's verdicts that differ from the verifier's, by speck anchor (x, y) (saved in the session)
        self.overrides: dict[tuple[int, int], str] = {}
        self.calibrated_text = ""
        self.store: Optional[SessionStore] = None
        self._listeners: list[Listener] = []
        self._used: dict[str, Any] = {}
        self._mask_generation = 0
        self._clean_generation = -1
        self._flat_generation = -1
        self._calibrator: Any = None
        self._dust_view: tuple = (None, None, None)
        self._sens_at: dict[int, float] = {0: self.params.mask.sensitivity}
        self._quiet = False
        self.mask.on_change(self._mask_changed)

    @classmethod
    def open(cls, path: str | Path) -> "Document":
        """Open ``path`` (InputError for an unreadable file or one without frames)."""
        seq = pipeline.open_input(path)
        try:
            if seq.n_frames < 1:
                raise InputError("sequence has no frames", path)
            np.asarray(seq.frame(0))
        except BaseException:
            seq.close()
            raise
        return cls(path, seq)

    def close(self) -> None:
        self.mask.remove_listener(self._mask_changed)
        self._listeners.clear()
        self._calibrator = None
        try:
            self.seq.close()
        except Exception:  # noqa: BLE001 - closing must not fail
            pass

    # -- notifications --------------------------------------------------------------------------
    def on_change(self, callback: Listener) -> Listener:
        self._listeners.append(callback)
        return callback

    def _emit(self, what: str) -> None:
        for cb in list(self._listeners):
            cb(what)

    # -- parameters and staleness ---------------------------------------------------------------
    def set_params(self, values: dict[str, Any]) -> None:
        """New step parameters (the panel's dict). A reference or flat built with other settings
        turns stale; the sensitivity is not set here (:meth:`set_sensitivity` re-thresholds)."""
        values = {k: v for k, v in values.items() if k != "sensitivity"}
        new = Params.from_dict({**self.params.as_dict(), **values})
        new.mask.sensitivity = self.params.mask.sensitivity
        self.params = new
        for step in ("reference", "flat"):
            used = self._used.get(step)
            if used is not None and used != self._step_params(step) and self.state.states[step] == DONE:
                self.state.set(step, STALE)
        self._calibrator = None
        self._emit("params")
        self._emit("state")

    def _step_params(self, step: str) -> Any:
        if step == "reference":
            return dataclasses.replace(self.params.reference)
        f = self.params.flat
        return (f.method, f.grow, f.feather, f.pedestal)

    def set_running(self, step: Optional[str]) -> Optional[str]:
        """Mark ``step`` running; returns its previous state (to restore on failure)."""
        if step is None:
            return None
        previous = self.state.states[step]
        self.state.set(step, RUNNING)
        self._emit("state")
        return previous

    def restore_state(self, step: Optional[str], previous: Optional[str]) -> None:
        if step is not None and previous is not None:
            self.state.set(step, previous)
            self._emit("state")

    # -- results of the steps -------------------------------------------------------------------
    def set_reference(self, reference: np.ndarray, params: pipeline.ReferenceParams) -> None:
        self.reference = np.asarray(reference, np.float32)
        self._used["reference"] = dataclasses.replace(params)
        self.state.changed("reference")
        self._emit("reference")
        self._emit("state")

    def set_mask(self, mask: np.ndarray, label: str, provider: Any = None, clean: Optional[np.ndarray] = None) -> None:
        """A new mask from a provider (one undo step). ``provider``: the offline detector whose
        scores the sensitivity re-thresholds (None: the mask came from elsewhere); ``clean``: an AI
        clean image made for exactly this mask."""
        self.local_provider = provider
        self.mask.apply(np.asarray(mask, bool), label)
        if clean is not None:
            self.clean = np.asarray(clean, np.float32)
            self._clean_generation = self._mask_generation
        self.state.changed("mask")
        self._emit("state")

    @property
    def sensitivity(self) -> float:
        return self.params.mask.sensitivity

    def has_scores(self) -> bool:
        return getattr(self.local_provider, "scores", None) is not None

    def searched_mask(self) -> Optional[np.ndarray]:
        """What the offline detector's search found at the current sensitivity, or None when the
        mask did not come from it: the verifier asks stronger evidence of those specks (one drawn or
        proposed by the AI is a single hypothesis; the detector's are the best of hundreds)."""
        if not self.has_scores():
            return None
        return np.asarray(self.local_provider.scores.mask(self.sensitivity), bool)

    def set_scores(self, provider: Any) -> None:
        """The offline detector run again only for its scores (the mask stays as it is)."""
        self.local_provider = provider

    def set_sensitivity(self, value: float) -> bool:
        """The detector's sensitivity. With the detector's scores the mask is re-thresholded as
        one undo step (a run of moves folds into one) that keeps the user's brush edits: pixels
        painted in or erased since the detector's mask stay so. Returns False when there are no
        scores for the mask there is (a restored session: the caller runs the detector for its scores and
        calls again)."""
        value = min(1.0, max(0.0, float(value)))
        if not self.has_scores():
            if not self.has_mask():  # nothing to re-threshold: the value is for the next detection
                self.params.mask.sensitivity = value
                return True
            return False  # the mask came from the detector at the old value: keep it until scores come
        scores = self.local_provider.scores
        old_det = np.asarray(scores.mask(self.params.mask.sensitivity), bool)
        new_det = np.asarray(scores.mask(value), bool)
        cur = self.mask.mask.astype(bool)
        painted, erased = cur & ~old_det, old_det & ~cur
        self.params.mask.sensitivity = value
        self.mask.apply((new_det | painted) & ~erased, f"Sensitivity {value:.2f}", merge_key="sensitivity")
        self._sens_at[self.mask.serial] = value
        if self.state.states["mask"] != RUNNING:
            self.state.changed("mask")
        self._emit("state")
        return True

    def _mask_changed(self, box) -> None:
        self._mask_generation += 1
        serial = self.mask.serial
        if serial in self._sens_at or serial != self.mask.last_serial:
            # undo/redo (from the menu or the viewer's own keys): the step's sensitivity comes back
            value = self._sensitivity_at_top()
            if value != self.params.mask.sensitivity:
                self.params.mask.sensitivity = value
                self._emit("sensitivity")
        elif serial not in self._sens_at:
            self._sens_at[serial] = self.params.mask.sensitivity
        if self._quiet:
            return
        if self.state.states["mask"] != RUNNING:
            self.state.changed("mask")
            self._emit("state")
        self._emit("mask")

    def _sensitivity_at_top(self) -> float:
        """The sensitivity in effect at the mask's current step: the last one recorded among the
        steps that lead to it (a brush stroke keeps the sensitivity before it)."""
        for step in reversed(self.mask.undo_steps):
            if step.serial in self._sens_at:
                return self._sens_at[step.serial]
        return self._sens_at.get(0, self.params.mask.sensitivity)

    def undo(self) -> bool:
        return self.mask.undo()

    def redo(self) -> bool:
        return self.mask.redo()

    def mask_op(self, op: str) -> None:
        m = self.mask
        {"grow": lambda: m.grow(1), "shrink": lambda: m.shrink(1), "invert": m.invert, "clear": m.clear,
         "remove_small": lambda: m.remove_small(4)}[op]()

    @property
    def dust_pixels(self) -> int:
        return int(np.count_nonzero(self.mask.mask))

    @property
    def mask_generation(self) -> int:
        return self._mask_generation

    def fresh_clean(self) -> bool:
        """True when the AI clean image was made for the current mask."""
        return self.clean is not None and self._clean_generation == self._mask_generation

    def set_flat(self, flat: np.ndarray, generation: int, params: pipeline.FlatParams,
                 clean: Optional[np.ndarray] = None) -> None:
        """The flat built for the mask of ``generation`` with ``params``."""
        if clean is not None:
            self.clean = np.asarray(clean, np.float32)
            self._clean_generation = generation
        self.flat = np.asarray(flat, np.float32)
        self._flat_generation = generation
        self._calibrator = None
        self._used["flat"] = (params.method, params.grow, params.feather, params.pedestal)
        self.state.changed("flat")
        if generation != self._mask_generation:
            self.state.set("flat", STALE)
        self._emit("flat")
        self._emit("state")

    def flat_problem(self) -> Optional[str]:
        """Why the flat cannot be used now (None: it can): none yet, or built for another mask or
        other settings -- checked before anything is asked or written."""
        if self.flat is None:
            return "Build the flat first."
        if self.state.states["flat"] == STALE:
            return ("The mask or the flat settings changed after the flat was built: "
                    "rebuild the flat (step 4) first.")
        return None

    def flat_is_current(self) -> bool:
        return self.flat is not None and self.state.states["flat"] == DONE

    def set_calibrated(self, text: str) -> None:
        self.calibrated_text = text
        self.state.changed("calibrate")
        self._emit("calibrated")
        self._emit("state")

    def output_formats(self) -> tuple[str, ...]:
        """The formats the calibrated copy can be written in (no AVI for 12/16-bit data)."""
        return pipeline.writable_formats(self.seq)

    def specks(self) -> list:
        """The specks of the mask, depths from the flat when it was built for this mask."""
        flat = self.flat if self.flat_is_current() else None
        return pipeline.measure_specks(self.mask.mask, self.reference, flat)

    # -- views ----------------------------------------------------------------------------------
    def frame(self, index: Optional[int] = None) -> np.ndarray:
        return np.asarray(self.seq.frame(self.display.frame_index if index is None else index))

    def calibrated_frame(self, frame: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """The current frame divided by the flat, exactly as the calibration writes it."""
        if self.flat is None:
            return None
        if self._calibrator is None:
            self._calibrator = pipeline.preview_calibrator(self.flat, self.seq, self.params.flat.pedestal)
        return self._calibrator.frame(self.frame() if frame is None else frame)

    def view_image(self, view: Optional[str] = None, blink_phase: int = 0
                   ) -> tuple[np.ndarray, str, Optional[tuple[float, float]]]:
        """(array, colour layout, fixed levels or None for the stretch) for a view."""
        view = view or self.display.view
        color = self.seq.color
        frame = self.frame()
        if view == "frame":
            return frame, color, None
        if view == "reference":
            return (self.reference if self.reference is not None else frame), color, None
        if view == "dust":  # the reference (else this frame) over its smooth version, stretched hard
            from .core.stretch import visualize_dust

            src = self.reference if self.reference is not None else frame
            if self._dust_view[0] is not src:
                self._dust_view = (src, *visualize_dust(src, color))
            return self._dust_view[1], "mono", self._dust_view[2]
        if view == "mask":
            return (self.mask.mask * np.uint8(255)), "mono", (0.0, 255.0)
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
        return (frame if blink_phase == 0 else cal), color, None

    def blink_label(self, phase: int) -> str:
        if self.flat is None:
            return "Blink: no flat yet (build it in step 4); showing the raw frame"
        return "Blink: " + ("before (raw)" if phase == 0 else "after (calibrated)")

    def set_display(self, **values: Any) -> None:
        """Change how the document is shown (view, frame_index, overlay_visible, overlay_opacity,
        stretch) and notify ``"display"`` when anything changed. The one writer of
        :attr:`display`: widgets call it and refresh on the notification."""
        if "view" in values and values["view"] not in dict(VIEWS):
            raise ValueError(f"unknown view {values['view']!r}")
        if values.get("stretch") is not None:
            values["stretch"] = values["stretch"].copy()  # ours: nobody else holds it
        new = dataclasses.replace(self.display, **values)
        if new != self.display:
            self.display = new
            self._emit("display")

    @property
    def stretch(self) -> Optional[StretchState]:
        """The stretch of the data views (None until the first image was levelled)."""
        return self.display.stretch

    def set_stretch(self, state: StretchState) -> None:
        self.set_display(stretch=state)

    # -- sessions -------------------------------------------------------------------------------
    def to_session(self, gemini: Optional[dict] = None) -> SessionData:
        p = self.params.as_dict()
        d = self.display
        overrides = [[int(x), int(y), v] for (x, y), v in sorted(self.overrides.items())]
        return SessionData(provider=p["provider"], sensitivity=p["sensitivity"],
                           reference_method=p["reference_method"], max_frames=p["max_frames"],
                           flat_method=p["flat_method"], grow=p["grow"], feather=p["feather"], pedestal=p["pedestal"],
                           stretch=dataclasses.asdict(d.stretch) if d.stretch is not None else {}, view=d.view,
                           frame_index=d.frame_index, overlay_visible=d.overlay_visible,
                           overlay_opacity=d.overlay_opacity, output=dict(self.output_choices), gemini=gemini or {},
                           overrides=overrides)

    def has_mask(self) -> bool:
        return self.state.states["mask"] in (DONE, STALE) or bool(self.mask.mask.any())

    def save(self, gemini: Optional[dict] = None) -> None:
        """Write the session sidecar (mask + choices); AiflatError on a disk problem."""
        if self.store is None:
            self.store = SessionStore(self.path)
        self.store.save(self.to_session(gemini), self.mask.mask if self.has_mask() else None)
        self.mask.mark_saved()

    def restore(self) -> list[str]:
        """Restore the session saved beside the video (if any); returns its warnings."""
        self.store = SessionStore(self.path)
        data, mask, warnings = self.store.load((self.seq.height, self.seq.width))
        if data is None:
            return []
        self.apply_session(data, mask)
        return list(warnings)

    def apply_session(self, data: SessionData, mask: Optional[np.ndarray]) -> None:
        self.params = Params.from_dict(dataclasses.asdict(data))
        stretch = None
        if data.stretch:
            try:
                stretch = StretchState(**data.stretch)
            except Exception:  # noqa: BLE001 - an old/odd stretch is not worth an error
                stretch = None
        frame = data.frame_index if 0 <= data.frame_index < self.seq.n_frames else 0
        view = data.view if data.view in dict(VIEWS) else "frame"
        self.display = Display(view=view, frame_index=frame, overlay_visible=bool(data.overlay_visible),
                               overlay_opacity=float(data.overlay_opacity), stretch=stretch)
        self.output_choices = dict(data.output or {})
        self.overrides.clear()  # in place: the Specks table shows this very dict
        self.overrides.update({(x, y): v for x, y, v in data.overrides if v in VERDICTS})
        self._sens_at = {0: self.params.mask.sensitivity}  # the restored mask was made at this value
        self._quiet = True
        try:
            if mask is not None:
                self.mask.set_mask(mask)
                self.state.set("mask", DONE)
        finally:
            self._quiet = False
        for what in ("params", "sensitivity", "display", "mask", "state"):
            self._emit(what)
