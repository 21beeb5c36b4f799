"""Entry point of the frozen bundle: one program, two names.

The bundle's two programs come from this one script, so PyInstaller analyses the code once and
both share every library in the folder. On Linux ``aiflat-gui`` is a symlink to ``aiflat``; on
Windows and macOS they are two executables (the GUI one windowed). The name the program was
started under (argv[0]) picks it: ``aiflat-gui`` starts the desktop app, anything else is the
``aiflat`` command.

``AIFLAT_SELFTEST=1 aiflat`` checks the bundle instead: it loads every native library family the
app relies on, runs a tiny sparse solve, a FITS round trip and an offscreen Qt render, prints one
line per check and exits 0 only if all passed (for bug reports and the packaging test).
"""

import os
import sys


def _program_name() -> str:
    name = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else sys.executable).lower()
    for suffix in (".exe", ".py"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _check_fits() -> str:
    import tempfile

    import numpy as np
    from astropy.io import fits

    data = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "selftest.fits")
        fits.writeto(path, data)
        back = fits.getdata(path)
    if not np.array_equal(back, data):
        raise RuntimeError("FITS round trip changed the data")
    return "uint16 round trip"


def _check_sparse() -> str:
    import numpy as np
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    a = sp.diags([-1.0, 4.0, -1.0], [-1, 0, 1], shape=(20, 20), format="csc")
    x = spla.splu(a, permc_spec="COLAMD").solve(np.ones(20))
    if not np.allclose(a @ x, 1.0):
        raise RuntimeError("splu gave a wrong answer")
    return "splu"


def _check_cv2() -> str:
    import cv2
    import numpy as np

    img = np.zeros((8, 8), np.uint8)
    img[3:5, 3:5] = 255
    ok, png = cv2.imencode(".png", img)
    back = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)
    if not ok or not np.array_equal(back, img):
        raise RuntimeError("PNG round trip failed")
    return f"OpenCV {cv2.__version__}"


def _check_qt() -> str:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtGui, QtSvg, QtWidgets  # noqa: F401
    import pyqtgraph  # noqa: F401

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    from aiflat_gui.resources import resource_path

    icon = resource_path("icons", "aiflat.svg")
    renderer = QtSvg.QSvgRenderer(str(icon))
    if not renderer.isValid():
        raise RuntimeError(f"{icon}: icon not found or invalid")
    image = QtGui.QImage(32, 32, QtGui.QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QtGui.QPainter(image)
    renderer.render(painter)
    painter.end()
    if QtGui.QColor(image.pixel(16, 16)).alpha() == 0:
        raise RuntimeError("the icon rendered empty")
    return f"Qt {QtCore.qVersion()} platform {app.platformName()}"


def _check_imports() -> str:
    import importlib

    names = ["google.genai", "google.genai.types", "keyring", "keyring.backends.SecretService",
             "secretstorage", "cryptography.hazmat.bindings._rust", "tifffile",
             "platformdirs", "aiflat_gui.cli", "aiflat_gui.gui.app"]
    for name in names:
        importlib.import_module(name)
    return f"{len(names)} modules"


def selftest() -> int:
    from aiflat_gui import __version__
    from aiflat_gui.resources import resources_dir

    print(f"aiflat {__version__} selftest; resources {resources_dir()}")
    failed = 0
    for name, check in (("fits", _check_fits), ("sparse", _check_sparse), ("opencv", _check_cv2),
                        ("qt", _check_qt), ("imports", _check_imports)):
        try:
            print(f"ok   {name}: {check()}")
        except Exception as exc:  # noqa: BLE001 - report every failure, one line each
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return 1 if failed else 0


def main() -> int:
    if os.environ.get("AIFLAT_SELFTEST") == "1":
        return selftest()
    if _program_name().endswith("aiflat-gui"):
        from aiflat_gui.gui.app import main as gui_main

        return int(gui_main() or 0)
    from aiflat_gui.cli import main as cli_main

    return int(cli_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
