"""Locate the read-only resources (prompts, icons) in a checkout, an installed package or a
PyInstaller bundle."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    """The folder holding ``prompts/`` and ``icons/``."""
    candidates = []
    if os.environ.get("AIFLAT_RESOURCES"):
        candidates.append(Path(os.environ["AIFLAT_RESOURCES"]))
    if getattr(sys, "_MEIPASS", None):  # PyInstaller bundle
        candidates.append(Path(sys._MEIPASS) / "resources")
    here = Path(__file__).resolve().parent
    candidates += [here.parent / "resources", here / "_resources"]
    for c in candidates:
        if (c / "prompts").is_dir():
            return c
    return candidates[-1]


def resource_path(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)
