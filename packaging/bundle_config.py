"""What goes into the PyInstaller bundle and what stays out.

Shared by ``packaging/aiflat.spec`` and ``tests/test_packaging.py`` (which checks, without building,
that nothing AI Flat imports is excluded). No PyInstaller import here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

APP_ID = "io.github.aiflat.AIFlat"
APP_NAME = "AI Flat"
ROOT = Path(__file__).resolve().parent.parent

# resources/<dir> -> bundle _internal/resources/<dir>, found by aiflat_gui/resources.py via
# sys._MEIPASS/resources.
RESOURCE_DIRS = ("prompts", "icons")

HIDDEN_IMPORTS = [
    "aiflat_gui.cli",
    "aiflat_gui.gui.app",
    "astropy.io.fits",
    "tifffile",
    "cv2",
    "scipy.sparse",
    "scipy.sparse.linalg",
    "google.genai",
    "google.genai.types",
    "google.genai.errors",
    "keyring.backends",
    "keyring.backends.SecretService",
    "keyring.backends.fail",
    "keyring.backends.null",
    "pyqtgraph",
    "platformdirs",
    "PySide6.QtSvg",
]

# Modules that optional imports would drag in but AI Flat never runs. Each group was checked by
# importing every aiflat_gui module and running FITS I/O, splu and the Gemini client with the
# group blocked (tests/test_packaging.py::test_excluded_modules_are_not_needed repeats it).
EXCLUDES = [
    # GNU readline is GPL-3 (the app has no interactive prompt): keep it out of an MIT bundle
    "readline", "rlcompleter",
    # GUI toolkits and tools we do not use
    "tkinter", "_tkinter", "turtle", "idlelib", "matplotlib", "IPython", "ipykernel",
    "jupyter_client", "notebook", "PyQt5", "PyQt6", "PySide2",
    # test frameworks
    "pytest", "_pytest", "pytestqt", "hypothesis", "nose",
    # heavy libraries reachable only through optional imports; build tools
    "pandas", "dask", "h5py", "bottleneck", "sympy", "numba", "torch", "yaml",
    "setuptools", "pkg_resources", "_distutils_hack", "pydoc_data",
    # Qt modules (pyqtgraph needs QtOpenGL/QtOpenGLWidgets/QtSvg/QtTest: they stay)
    "PySide6.QtWebEngineCore", "PySide6.QtWebEngineWidgets", "PySide6.QtWebEngineQuick",
    "PySide6.Qt3DCore", "PySide6.Qt3DRender", "PySide6.Qt3DExtras", "PySide6.Qt3DInput",
    "PySide6.Qt3DLogic", "PySide6.Qt3DAnimation", "PySide6.QtMultimedia",
    "PySide6.QtMultimediaWidgets", "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets",
    "PySide6.QtQuickControls2", "PySide6.QtQuickTest", "PySide6.QtQmlFeatures",
    "PySide6.QtDesigner", "PySide6.QtHelp", "PySide6.QtUiTools", "PySide6.QtSql",
    "PySide6.QtLabsStyleKit", "PySide6.QtPdf", "PySide6.QtCharts", "PySide6.QtDataVisualization",
    "PySide6.QtBluetooth", "PySide6.QtPositioning", "PySide6.QtLocation", "PySide6.QtNetworkAuth",
    "PySide6.QtRemoteObjects", "PySide6.QtScxml", "PySide6.QtSensors", "PySide6.QtSerialPort",
    "PySide6.QtTextToSpeech", "PySide6.QtWebChannel", "PySide6.QtWebSockets", "PySide6.scripts",
    "pyqtgraph.opengl", "pyqtgraph.examples", "pyqtgraph.jupyter", "OpenGL",
    # astropy: AI Flat uses astropy.io.fits only (which needs astropy.units/constants/utils)
    "astropy.visualization", "astropy.samp", "astropy.cosmology", "astropy.timeseries",
    "astropy.io.votable", "astropy.io.ascii", "astropy.io.misc", "astropy.modeling",
    "astropy.convolution", "astropy.wcs", "astropy.stats", "astropy.table", "astropy.time",
    "astropy.coordinates", "astropy.nddata", "astropy.uncertainty", "astropy.tests.figures",
    "astropy.conftest",
    # scipy: AI Flat uses scipy.sparse and scipy.sparse.linalg (splu); not scipy.fft, which imports
    # scipy.special (14 MB: the bundle would pass its 400 MB limit)
    "scipy.optimize", "scipy.stats", "scipy.signal", "scipy.integrate", "scipy.interpolate",
    "scipy.io", "scipy.datasets", "scipy.odr", "scipy.cluster", "scipy.spatial", "scipy.special",
    "scipy.fft", "scipy.fftpack", "scipy.ndimage", "scipy.sparse.csgraph", "scipy.misc",
    "scipy.conftest",
    "numpy.tests", "numpy.f2py.tests", "numpy.distutils",
]

# Files collected by the hooks that the app never opens (regular expressions on the path inside
# the bundle, with a leading "/"). The app needs QtCore/Gui/Widgets/Svg, the platform plugins
# offscreen + xcb + wayland, and the image-format and icon-engine plugins.
DROP_FILES = [
    r"/Qt/translations/",          # Qt's own dialog translations: the app is English only
    r"/Qt/plugins/(sqldrivers|qmltooling|designer|networkinformation|tls|generic|"
    r"printsupport|vectorimageformats)/",
    r"/Qt/plugins/platforms/lib(qeglfs|qlinuxfb|qminimalegl|qvkkhrdisplay|qvnc)",
    r"/Qt/plugins/egldeviceintegrations/",
    r"/Qt/plugins/platformthemes/libqgtk3",   # would pull GTK from the build machine
    r"/Qt/plugins/imageformats/libq(tiff|webp|tga|wbmp|icns)",  # Qt never reads these formats here
    r"/Qt/qml/",
    r"libQt6(Quick|Qml|Pdf|Designer|Help|Sql|LabsStyleKit|Multimedia|WebEngine|3D|"
    r"VirtualKeyboard|ShaderTools|Charts|DataVisualization|QuickControls2|QuickTemplates2)",
    r"/cv2/data/",                 # OpenCV's face-detection cascades
    r"/astropy_iers_data/data/",   # Earth-rotation tables for astropy.time (not used)
]
DROP_RE = re.compile("|".join(DROP_FILES))


def keep_file(dest: str, excludes=None) -> bool:
    """False for a bundle path (a PyInstaller TOC destination) that matches DROP_FILES or lies
    inside the folder of an excluded package (hooks collect data files of whole packages)."""
    path = "/" + dest.replace("\\", "/")
    if DROP_RE.search(path):
        return False
    for ex in EXCLUDES if excludes is None else excludes:
        if path.startswith("/" + ex.replace(".", "/") + "/"):
            return False
    return True


def imported_modules(package_dir: Path = ROOT / "aiflat_gui") -> set[str]:
    """Every absolute module name imported anywhere in the package's source (any depth)."""
    names: set[str] = set()
    for py in Path(package_dir).rglob("*.py"):
        try:
            tree = ast.parse(py.read_text(encoding="utf-8"), str(py))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def conflicts(excludes=EXCLUDES, used=None) -> list[tuple[str, str]]:
    """(excluded, used) pairs where the package imports an excluded module or one inside it."""
    used = imported_modules() if used is None else used
    out = []
    for ex in excludes:
        for u in sorted(used):
            if u == ex or u.startswith(ex + "."):
                out.append((ex, u))
    return out


def effective_excludes(used=None) -> list[str]:
    """EXCLUDES minus anything AI Flat's own code imports (a safety net for new code)."""
    bad = {ex for ex, _ in conflicts(EXCLUDES, used)}
    return [ex for ex in EXCLUDES if ex not in bad]
