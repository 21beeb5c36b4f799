"""The offline mask provider: the detector of :mod:`aiflat_gui.core.detect` behind the
:class:`~aiflat_gui.ai.base.MaskProvider` protocol. No network, no key, no Qt."""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from ..core.detect import ScoreMap, compute_scores
from ..errors import InputError
from ..progress import ProgressFn
from .base import MaskResult


class LocalProvider:
    """Finds dust offline. ``sensitivity`` (0..1, default 0.5; higher finds more) thresholds the
    detector's score map; ``max_frames`` bounds how many frames of the sequence are used.

    The last :class:`~aiflat_gui.core.detect.ScoreMap` stays on ``self.scores`` so a GUI slider can
    call ``provider.remask(s)`` (or ``provider.scores.mask(s)``) without recomputing."""

    name = "local"

    def __init__(self, sensitivity: float = 0.5, max_frames: int = 200):
        try:
            sensitivity = float(sensitivity)
            max_frames = int(max_frames)
        except (TypeError, ValueError):
            raise InputError(f"sensitivity must be a number in 0..1 and max_frames an integer, "
                             f"got {sensitivity!r} and {max_frames!r}") from None
        if not 0.0 <= sensitivity <= 1.0 or sensitivity != sensitivity:
            raise InputError(f"sensitivity must be between 0 and 1, got {sensitivity}")
        if max_frames < 1:
            raise InputError(f"max_frames must be at least 1, got {max_frames}")
        self.sensitivity = sensitivity
        self.max_frames = max_frames
        self.scores: Optional[ScoreMap] = None

    def find_mask(self, reference: np.ndarray, sequence: Any = None,
                  progress: Optional[ProgressFn] = None) -> MaskResult:
        t0 = time.perf_counter()
        self.scores = compute_scores(reference, sequence, max_frames=self.max_frames, progress=progress)
        result = self.remask(self.sensitivity)
        result.report["seconds"] = round(time.perf_counter() - t0, 3)
        return result

    def remask(self, sensitivity: float) -> MaskResult:
        """Re-threshold the cached scores at ``sensitivity`` (instant)."""
        if self.scores is None:
            raise InputError("no detection has run yet: call find_mask first")
        import cv2

        self.sensitivity = min(1.0, max(0.0, float(sensitivity)))
        mask = self.scores.mask(self.sensitivity)
        n_specks = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)[0] - 1
        info = self.scores.info
        report = {
            "provider": self.name,
            "sensitivity": round(self.sensitivity, 3),
            "mode": info.get("mode"),
            "frames_used": int(self.scores.frames_used),
            "drift_px": round(float(info.get("drift_px", 0.0)), 2),
            "seconds": info.get("seconds"),
            "specks": int(n_specks),
            "dust_pixels": int(mask.sum()),
        }
        return MaskResult(mask=mask, soft=self.scores.soft(), report=report)
