"""Pure numpy/OpenCV science: reference frames, masks, flats, calibration, stretches, the offline
detector and the demo generator. No Qt, no files (that is :mod:`aiflat_gui.io`), no threads: long
operations take a progress callback."""

#: The Bayer mosaics (the one list; readers, detector and flats use it).
BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")

