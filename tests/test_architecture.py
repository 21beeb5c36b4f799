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
    mods = _modules("core") + _modules("io") + _modules("ai") + ["aiflat_gui.cli", "aiflat_gui.pipeline", "aiflat_gui.session",
                                                              "aiflat_gui.document"]
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


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import in a file of the package."""
    import ast

    pkg = Path(aiflat_gui.__file__).parent
    rel = path.relative_to(pkg.parent).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [a.name for a in node.names]
            out.append((mod, names))
            out += [(f"{mod}.{n}", []) for n in names]  # `from . import x` imports a module x
    return out


def _package_files(sub: str) -> list[Path]:
    return sorted((Path(aiflat_gui.__file__).parent / sub).glob("*.py"))


def test_core_imports_no_io_and_touches_no_files():
    """core is pure numpy/OpenCV science: no aiflat_gui.io import (files are io's job), in the
    source and at run time."""
    bad = [(f.name, m) for f in _package_files("core") for m, _ in _imports(f)
           if m == "aiflat_gui.io" or m.startswith("aiflat_gui.io.")]
    assert bad == [], f"core imports io: {bad}"
    mods = _modules("core")
    code = ("import importlib, sys\n"
            f"for m in {mods!r}:\n    importlib.import_module(m)\n"
            "print(','.join(sorted(m for m in sys.modules if m.startswith('aiflat_gui.io'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing core loads {out.stdout.strip()}"


def test_the_core_check_catches_an_io_import(tmp_path):
    """Guard against a vacuous check: a file importing io is caught."""
    f = Path(aiflat_gui.__file__).parent / "core" / "_probe_tmp.py"
    f.write_text("from ..io.single import read_image\n")
    try:
        assert any(m.startswith("aiflat_gui.io") for m, _ in _imports(f))
    finally:
        f.unlink()


#: the step modules: the GUI reaches them only through aiflat_gui.pipeline (and aiflat_gui.document)
STEP_MODULES = ("aiflat_gui.core.reference", "aiflat_gui.core.flat", "aiflat_gui.core.calibrate",
                "aiflat_gui.core.detect", "aiflat_gui.core.export", "aiflat_gui.core.report",
                "aiflat_gui.core.demo", "aiflat_gui.core.mask", "aiflat_gui.ai.local", "aiflat_gui.ai.file")


def _gui_step_imports() -> list[tuple[str, str]]:
    bad = []
    for f in _package_files("gui"):
        for m, names in _imports(f):
            if any(m == s or m.startswith(s + ".") for s in STEP_MODULES):
                bad.append((f.name, m))
            # readers and writers are steps too (open, write): only io.base's settings are the GUI's
            elif (m == "aiflat_gui.io" and names) or (m.startswith("aiflat_gui.io.") and not m.startswith("aiflat_gui.io.base")):
                bad.append((f.name, m))
    return bad


def test_gui_runs_every_step_through_the_pipeline():
    """gui/ never imports a step (reference, detector, flat, calibration, export, report, demo,
    mask files, readers/writers) directly: it calls aiflat_gui.pipeline (through the Document)."""
    assert _gui_step_imports() == []


#: calls that touch file bytes (io's job): builtins, pathlib, json, numpy and OpenCV file functions
_FILE_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "unlink", "mkdir", "rmdir",
               "fromfile", "tofile", "imread", "imwrite", "atomic_write_bytes", "replace", "rename"}


def _file_calls(path: Path) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            base = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            # dataclasses.replace(...) copies a dataclass; it is no file call
            if (name in _FILE_CALLS and base not in ("dataclasses", "cls")) or (base == "json" and name in ("load", "dump")):
                found.append(f"{path.name}:{node.lineno} {name}")
    return found


def test_the_session_and_the_document_touch_no_file_bytes():
    """The session's sidecar files (JSON, the mask through the one mask codec) are io.sidecar's: the
    session and the Document only say what a session means (issue 12)."""
    pkg = Path(aiflat_gui.__file__).parent
    assert _file_calls(pkg / "session.py") == []
    assert _file_calls(pkg / "document.py") == []
    # not vacuous: the io module that does the work is caught
    assert any("read_text" in c for c in _file_calls(pkg / "io" / "sidecar.py"))
