"""Mask providers behind one small protocol: Gemini, the offline detector, a file. No Qt."""

from .base import PROVIDERS, MaskProvider, MaskResult, get_provider

__all__ = ["MaskProvider", "MaskResult", "get_provider", "PROVIDERS"]
