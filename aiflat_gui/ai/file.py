"""The ``file`` mask provider: import a mask drawn elsewhere (PNG/TIFF/FITS, any bit depth).
Loading, thresholding and resampling are :func:`aiflat_gui.io.masks.load_mask`'s job. No Qt."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..progress import ProgressFn, report
from .base import MaskResult


class FileProvider:
    """Reads the mask at ``path`` and fits it to the reference's size (with warnings when it had
    to be resampled or thresholded)."""

    name = "file"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def find_mask(self, reference: np.ndarray, sequence: Any = None,
                  progress: Optional[ProgressFn] = None) -> MaskResult:
        from ..io.masks import load_mask

        t0 = time.perf_counter()
        report(progress, 0.0, f"mask: reading {self.path.name}")
        shape = tuple(np.asarray(reference).shape[:2])
        mask, warnings = load_mask(self.path, shape)
        mask = np.asarray(mask, dtype=bool)
        report(progress, 1.0, "mask: read")
        return MaskResult(mask=mask, report={
            "provider": self.name,
            "path": str(self.path),
            "warnings": [str(w) for w in warnings],
            "dust_pixels": int(mask.sum()),
            "seconds": round(time.perf_counter() - t0, 3),
        })
