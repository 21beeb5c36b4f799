"""Pure numpy/OpenCV science: reference frames, masks, flats, calibration, stretches, the offline
detector and the demo generator. No Qt, no threads: long operations take a progress callback."""
