import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never let a test reach a real Gemini endpoint or a developer's key.
for _var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
    os.environ.pop(_var, None)
# ... nor a developer's real OS keyring (tests that need one patch aiflat_gui.ai.keys).
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
# Outputs are not fsynced unless a test asks (a developer's AIFLAT_FSYNC=1 must not change results).
os.environ.pop("AIFLAT_FSYNC", None)


import gc  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _gc_in_the_main_thread_only():
    """As in the app (``gui.app.gui_thread_gc``): no automatic cyclic garbage collection, which can
    start in whichever thread allocates -- a worker's, or one a test left running -- and free Qt
    objects of earlier tests there (a worker process of the parallel suite crashed once that way in
    test_viewer). The per-test fixture below collects in the main thread instead."""
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


@pytest.fixture(autouse=True)
def _collect_in_the_main_thread():
    yield
    # pyqtgraph's GarbageCollector rule: each generation when its count passed its threshold
    counts, limits = gc.get_count(), gc.get_threshold()
    if counts[0] > limits[0]:
        gen = 2 if counts[1] > limits[1] and counts[2] > limits[2] else 1 if counts[1] > limits[1] else 0
        gc.collect(gen)


@pytest.fixture(autouse=True)
def _restore_fsync_choice(monkeypatch):
    """`aiflat --fsync` and the GUI setting change AIFLAT_FSYNC for the process: undo it after each test."""
    monkeypatch.delenv("AIFLAT_FSYNC", raising=False)
    yield



#: real material (tests skip what is absent): <repo root>/../shared/real-data
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-data"


@pytest.fixture(scope="session")
def moon_scan():
    """The real lunar video (moon-45frames.avi) as several acceptance tests start from it, computed
    once: its median reference, and the offline detector run on it as the user runs it
    (``LocalProvider().find_mask(reference, video)``: its mask, and the score map it computed with
    ``compute_scores(reference, video)``). ~20 s of CPU each time."""
    from types import SimpleNamespace

    from aiflat_gui.ai.local import LocalProvider
    from aiflat_gui.core.reference import compute_reference
    from aiflat_gui.io import open_sequence

    path = REAL / "moon-45frames.avi"
    if not path.exists():
        pytest.skip("no ../shared/real-data/moon-45frames.avi")
    provider = LocalProvider()
    with open_sequence(path) as seq:
        ref = compute_reference(seq, "median")
        found = provider.find_mask(ref, seq)
    ref.flags.writeable = False  # shared: a test that changed it in place would fail, not mislead the next
    return SimpleNamespace(path=path, reference=ref, local=found, scores=provider.scores)


MYPY_TEST = "test_types.py::test_mypy_finds_nothing"
BUNDLE_TEST = "test_packaging.py::test_bundle_builds_from_a_clean_checkout_and_runs"


@pytest.hookimpl(trylast=True)  # after -m/-k deselected what will not run
def pytest_collection_modifyitems(config, items):
    """mypy (tests/test_types.py) starts now, in the background, when its test will run: it checks
    the sources on the machine's other core while the suite runs, and its test waits for the answer."""
    if any(item.nodeid.endswith(MYPY_TEST) for item in items):
        from test_types import start_mypy

        config._aiflat_mypy = start_mypy()
    # the bundle's build likewise (tests/test_packaging.py): it starts now and its test runs last
    bundle = [item for item in items if item.nodeid.endswith(BUNDLE_TEST)]
    if bundle:
        from test_packaging import start_bundle_build

        items[:] = [item for item in items if item not in bundle] + bundle
        config._aiflat_bundle = start_bundle_build()


def pytest_unconfigure(config):
    for name in ("_aiflat_mypy", "_aiflat_bundle"):
        run = getattr(config, name, None)
        if run is not None:
            run.stop()
