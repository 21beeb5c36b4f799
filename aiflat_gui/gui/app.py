"""The ``aiflat-gui`` entry point: ``aiflat-gui [PATH] [--demo] [--screenshot OUT.png]``.

``--screenshot`` opens the input (or the demo), runs the workflow (reference, offline mask, flat)
with every worker awaited, shows the Visualize dust view with the mask as outlines,
renders the main window to OUT.png and exits 0. A bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from PySide6 import QtCore, QtGui, QtWidgets

from .. import APP_NAME, __version__
from ..errors import AiflatError, describe

ORG_NAME = "aiflat"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiflat-gui", description=f"{APP_NAME}: remove sensor dust from "
                                "solar, lunar and planetary videos.")
    p.add_argument("path", nargs="?", help="video, image stack or folder to open")
    p.add_argument("--demo", action="store_true", help="open the built-in demo sequence")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="run the workflow on the input (or the demo), save the window as a PNG and exit")
    p.add_argument("--size", default="1280x800", help="window size for --screenshot (default %(default)s)")
    p.add_argument("--version", action="version", version=f"aiflat-gui {__version__}")
    return p


_QT_NOISE = ("propagateSizeHints",)  # harmless warnings of the offscreen platform


def _qt_message(mode, context, message: str) -> None:
    if any(n in message for n in _QT_NOISE):
        return
    sys.stderr.write(message + "\n")


def make_app(argv: Optional[list[str]] = None) -> QtWidgets.QApplication:
    """The QApplication (reused if one exists) with the organisation/application names that
    QSettings uses."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        QtCore.qInstallMessageHandler(_qt_message)
        app = QtWidgets.QApplication(list(argv) if argv is not None else [sys.argv[0]])
    QtCore.QCoreApplication.setOrganizationName(ORG_NAME)
    QtCore.QCoreApplication.setApplicationName("aiflat-gui")
    QtCore.QCoreApplication.setApplicationVersion(__version__)
    # ties the windows to packaging/linux/io.github.aiflat.AIFlat.desktop (icon on Wayland)
    QtGui.QGuiApplication.setDesktopFileName("io.github.aiflat.AIFlat")
    gui_thread_gc(app)
    try:
        from ..resources import resource_path

        for name in ("aiflat.svg", "aiflat.png", "aiflat-256.png"):
            icon = resource_path("icons", name)
            if icon.is_file():
                app.setWindowIcon(QtGui.QIcon(str(icon)))
                break
    except Exception:  # noqa: BLE001 - an icon is cosmetic
        pass
    return app


def gui_thread_gc(app: QtWidgets.QApplication) -> None:
    """Run Python's cyclic garbage collector only in the GUI thread, on a timer (pyqtgraph's
    GarbageCollector), once per process. Left automatic, a collection can start in whichever
    thread happens to allocate -- a worker in the middle of a calibration -- and free a cycle
    holding Qt objects (a closed dialog, a finished worker) there, which crashes Qt (an Xvfb
    session died with SIGSEGV right after Export > Calibrate started its worker)."""
    if getattr(app, "_aiflat_gc", None) is not None:
        return
    from pyqtgraph.util.garbage_collector import GarbageCollector

    app._aiflat_gc = GarbageCollector(interval=1.0)  # noqa: SLF001 - lives as long as the app


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w < 200 or h < 150:
            raise ValueError
        return w, h
    except ValueError:
        raise AiflatError(f"--size must look like 1280x800, not '{text}'") from None


def screenshot(window, out: str | os.PathLike, path: Optional[str], demo: bool,
               size: tuple[int, int] = (1280, 800)) -> Path:
    """Open ``path`` (or the demo) in ``window``, run the whole workflow synchronously, save the
    rendered window to ``out`` (PNG, atomically) and return the path. Raises AiflatError."""
    from ..io.base import AtomicOutput, check_output_path

    out = Path(out)
    check_output_path(out, path)
    window.resize(*size)
    window.show()
    if path:
        window.open_path(path, interactive=False)
    else:
        window.open_demo(interactive=False)
    window.run_full_workflow()
    window.show_screenshot_views()
    window.resize(*size)
    from .polish import WIDE_SCREEN, arrange_docks

    arrange_docks(window, wide=size[0] >= WIDE_SCREEN)  # the layout a screen of this width gets
    window.default_dock_sizes()
    QtWidgets.QApplication.processEvents()
    image = window.grab().toImage()
    with AtomicOutput(out) as tmp:
        tmp_png = Path(str(tmp) + ".png")
        try:
            if not image.save(str(tmp_png), "PNG"):
                raise AiflatError("cannot write the screenshot", out)
            os.replace(tmp_png, tmp)
        finally:
            if tmp_png.exists():
                tmp_png.unlink()
    return out


def install_excepthook(window) -> None:
    """An exception escaping a slot becomes one line in a message box plus the full traceback in
    the log, never a crash or a traceback in the user's face (AIFLAT_DEBUG=1 keeps the default)."""
    if os.environ.get("AIFLAT_DEBUG") == "1":
        return
    import logging
    import traceback

    log = logging.getLogger("aiflat.gui")
    showing = []

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        from .workers import one_line

        log.error("unexpected error:\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
        if showing:  # never stack message boxes
            return
        showing.append(1)
        try:
            window.show_error(one_line(exc), user_error=isinstance(exc, AiflatError))
        except Exception:  # noqa: BLE001 - the hook itself must never raise
            pass
        finally:
            showing.clear()

    sys.excepthook = hook


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.screenshot:
        # a screenshot never needs a display: render offscreen unless told otherwise
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = make_app()
    from .main_window import MainWindow

    debug = os.environ.get("AIFLAT_DEBUG") == "1"
    if args.screenshot:
        import tempfile

        # a screenshot leaves the user's settings, recent files and sessions alone
        tmp_settings = tempfile.TemporaryDirectory(prefix="aiflat-shot-")
        settings = QtCore.QSettings(str(Path(tmp_settings.name) / "settings.ini"), QtCore.QSettings.IniFormat)
        window = MainWindow(autosave=False, remember_layout=False, settings=settings)
        window.interactive = False
        try:
            size = _parse_size(args.size)
            out = screenshot(window, args.screenshot, args.path, args.demo, size)
        except AiflatError as err:
            if debug:
                raise
            print(f"aiflat-gui: error: {err}", file=sys.stderr)
            return err.exit_code
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            if debug:
                raise
            print(f"aiflat-gui: error: {describe(exc)}", file=sys.stderr)
            return 1
        finally:
            window.close()
            window.deleteLater()
            tmp_settings.cleanup()
        print(str(out))
        return 0

    window = MainWindow()
    install_excepthook(window)
    if window._layout_restored:
        window.show()  # the size and place the user left it at
    else:
        window.showMaximized()  # the first start: the image gets the whole screen
    if args.path:
        QtCore.QTimer.singleShot(0, lambda: window.open_path(args.path))
    elif args.demo:
        QtCore.QTimer.singleShot(0, window.open_demo)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
