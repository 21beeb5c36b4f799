"""AI Flat: remove sensor-dust shadows from solar, lunar and planetary videos.

The AI (or the offline detector) only finds the dust and returns a mask; deterministic math builds a
flat that is exactly 1.0 outside the mask and divides every frame by it.
"""

__version__ = "0.1.0"
APP_NAME = "AI Flat"
