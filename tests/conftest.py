import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never let a test reach a real Gemini endpoint or a developer's key.
for _var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
    os.environ.pop(_var, None)
# ... nor a developer's real OS keyring (tests that need one patch aiflat_gui.ai.keys).
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
# Outputs are not fsynced unless a test asks (a developer's AIFLAT_FSYNC=1 must not change results).
os.environ.pop("AIFLAT_FSYNC", None)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_fsync_choice(monkeypatch):
    """`aiflat --fsync` and the GUI setting change AIFLAT_FSYNC for the process: undo it after each test."""
    monkeypatch.delenv("AIFLAT_FSYNC", raising=False)
    yield


def pytest_collection_modifyitems(config, items):
    """The slow tests (the bundle build, minutes of mostly waiting on pip and PyInstaller) go first:
    run in parallel (pytest-xdist), one worker builds while the others take the rest of the suite,
    instead of the build starting last and the whole run waiting for it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
