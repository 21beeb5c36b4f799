"""The mask-provider protocol (no Qt).

A provider looks at a reference image (and, where useful, the whole sequence) and returns a binary
dust mask the size of the frame. Providers never change pixels: the engine does that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np

from ..progress import ProgressFn


@dataclass
class MaskResult:
    """What a provider returns.

    mask: bool array (H, W), True = dust.
    soft: optional float32 (H, W) score/probability in [0, 1] (e.g. the model's grey mask, the
          detector's score map) kept as an optional layer.
    report: short, JSON-serialisable account: provider, what was asked, what came back, seconds,
            cost in USD if known, cache hit, the model's text. Never contains the API key.
    clean: optional dust-free estimate (same shape as the reference) for the ``ai`` flat method.
    """

    mask: np.ndarray
    soft: Optional[np.ndarray] = None
    report: dict[str, Any] = field(default_factory=dict)
    clean: Optional[np.ndarray] = None


@runtime_checkable
class MaskProvider(Protocol):
    name: str

    def find_mask(self, reference: np.ndarray, sequence: Any = None,
                  progress: Optional[ProgressFn] = None) -> MaskResult:
        """``reference``: float32 (H, W) or (H, W, C) reference frame; ``sequence``: the
        :class:`~aiflat_gui.io.base.Sequence` it came from, or None (single image)."""
        ...


PROVIDERS = ("local", "gemini", "file")


def get_provider(name: str, **options) -> MaskProvider:
    """Build a provider by name: ``local`` (offline detector, default), ``gemini``, ``file``."""
    from ..errors import InputError

    if name == "local":
        from .local import LocalProvider

        return LocalProvider(**options)
    if name == "gemini":
        from .gemini import GeminiProvider

        return GeminiProvider(**options)
    if name == "file":
        from .file import FileProvider

        return FileProvider(**options)
    raise InputError(f"unknown mask provider '{name}' (choose from {', '.join(PROVIDERS)})")
