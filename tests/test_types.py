"""mypy on the layers without Qt (core, io, ai, the Document), with the configuration in
pyproject.toml ([tool.mypy]): part of the one test command CI runs.

mypy takes ~40 s of CPU on a fresh clone (no cache), nearly all of it on one core while the rest of
the suite runs on the other: tests/conftest.py starts it in the background (``start_mypy``) as soon
as the tests are collected, when this test is among them, and this test waits for its answer."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900


class MypyRun:
    """``python -m mypy`` on the project's configuration, running in the background."""

    def __init__(self):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
                                     cwd=ROOT, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
                                     preexec_fn=lambda: os.nice(5))  # the suite's own core comes first

    def result(self, timeout=TIMEOUT):
        """(exit code, stdout, stderr) once mypy has finished."""
        code = self.proc.wait(timeout)
        self.out.seek(0)
        self.err.seek(0)
        return code, self.out.read().decode(errors="replace"), self.err.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def start_mypy():
    """The background run, or None when mypy is not installed."""
    try:
        import mypy  # noqa: F401
    except ImportError:
        return None
    return MypyRun()


@pytest.mark.timeout(TIMEOUT)
def test_mypy_finds_nothing(request):
    pytest.importorskip("mypy")
    run = getattr(request.config, "_aiflat_mypy", None)
    if run is None:  # started by hand, without tests/conftest.py's hook
        run = request.config._aiflat_mypy = MypyRun()
    code, out, err = run.result()
    assert code == 0, out[-4000:] + err[-2000:]
    assert "Success" in out
