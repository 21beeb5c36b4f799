"""The numeric core, the readers/writers and the AI providers must never import Qt."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import aiflat_gui

QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "PySide2", "pyqtgraph", "superqt", "qtpy", "shiboken6")


def _modules(subpackage: str) -> list[str]:
    root = Path(aiflat_gui.__file__).parent / subpackage
    return [f"aiflat_gui.{subpackage}"] + [
        f"aiflat_gui.{subpackage}.{m.name}" for m in pkgutil.iter_modules([str(root)])
    ]


def test_core_io_ai_and_cli_do_not_import_qt():
    mods = _modules("core") + _modules("io") + _modules("ai") + ["aiflat_gui.cli", "aiflat_gui.pipeline", "aiflat_gui.session"]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"Qt imported by core/io/ai/cli: {out.stdout.strip()}"


def test_the_check_itself_catches_qt(tmp_path):
    """Guard against a vacuous check: importing the GUI does pull Qt in."""
    code = "import sys, aiflat_gui.gui.app; print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__('os').environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.stdout.strip() == "True", out.stderr


def test_outputs_get_ordinary_file_permissions(tmp_path):
    """Atomic outputs are created by mkstemp (mode 0600); the final file gets the umask's mode."""
    import os

    from aiflat_gui.io.base import atomic_write_bytes

    out = tmp_path / "x.bin"
    old = os.umask(0o022)
    try:
        atomic_write_bytes(out, b"abc")
    finally:
        os.umask(old)
    assert out.read_bytes() == b"abc"
    assert (out.stat().st_mode & 0o777) == 0o644
