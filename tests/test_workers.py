"""Workers: progress as signals, cancel through the callback, errors as one line, UI responsive."""

import time

import pytest
from PySide6 import QtCore

from aiflat_gui.errors import Cancelled, InputError
from aiflat_gui.gui.workers import JobPanel, Worker, one_line


def slow(n, delay, progress=None):
    for i in range(n):
        time.sleep(delay)
        if progress:
            progress((i + 1) / n, f"step {i + 1}")
    return n * 2


def test_progress_signals_and_result(qtbot):
    seen = []
    w = Worker(slow, 5, 0.01, min_interval=0.0)
    w.progress.connect(lambda f, m: seen.append((f, m)))
    with qtbot.waitSignal(w.succeeded, timeout=5000) as blocker:
        w.start()
    assert blocker.args == [10]
    qtbot.waitUntil(lambda: len(seen) == 5, timeout=10000)
    assert seen[-1] == (1.0, "step 5")
    assert w.state == "succeeded" and w.result == 10


def test_event_loop_keeps_running_during_a_long_job(qtbot):
    ticks = []
    timer = QtCore.QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    w = Worker(slow, 20, 0.02)  # ~0.4 s of "work" in the pool thread
    with qtbot.waitSignal(w.done, timeout=10000):
        w.start()
    timer.stop()
    assert len(ticks) >= 8, f"the GUI thread was blocked: only {len(ticks)} timer ticks"


def test_cancel_makes_the_callback_raise(qtbot):
    reached = []

    def job(progress=None):
        for i in range(1000):
            time.sleep(0.005)
            try:
                progress(i / 1000, "")
            except Cancelled:
                reached.append(i)
                raise
        return "finished"

    w = Worker(job)
    got = []
    w.succeeded.connect(got.append)
    with qtbot.waitSignal(w.cancelled, timeout=10000):
        w.start()
        qtbot.wait(50)
        w.cancel()
    assert w.state == "cancelled" and not got and reached and reached[0] < 900


def test_user_error_is_one_line_and_flagged(qtbot):
    def bad(progress=None):
        raise InputError("no such file", "/data/x.ser")

    w = Worker(bad)
    with qtbot.waitSignal(w.failed, timeout=5000) as blocker:
        w.start()
    assert blocker.args == ["/data/x.ser: no such file", True]


def test_unexpected_error_is_one_line_and_logged(qtbot, caplog):
    def boom(progress=None):
        raise ValueError("broken\nsecond line")

    w = Worker(boom)
    with qtbot.waitSignal(w.failed, timeout=5000) as blocker:
        w.start()
    msg, user = blocker.args
    assert user is False and "\n" not in msg and "ValueError: broken" in msg
    assert "Traceback" in caplog.text


def test_job_panel_cancel_button(qtbot):
    panel = JobPanel()
    qtbot.addWidget(panel)

    def forever(progress=None):
        while True:
            time.sleep(0.005)
            progress(0.5, "working")

    w = Worker(forever)
    panel.attach(w, "Calibrating")
    assert panel.isVisibleTo(panel.parentWidget() or panel)
    with qtbot.waitSignal(w.cancelled, timeout=10000):
        w.start()
        qtbot.waitUntil(lambda: panel.bar.value() == 500, timeout=10000)
        qtbot.mouseClick(panel.cancel_button, QtCore.Qt.LeftButton)
    assert panel.worker is None and not panel.isVisible()


def test_one_line():
    assert one_line(InputError("bad", "f.ser")) == "f.ser: bad"
    assert one_line(MemoryError()) == "out of memory"


def test_cancel_at_the_final_report_counts_as_success(qtbot):
    import threading

    go, half = threading.Event(), threading.Event()

    def job(progress=None):
        progress(0.5, "half")
        half.set()
        go.wait(5)
        progress(1.0, "done")  # the output is committed by now
        return "written"

    w = Worker(job, min_interval=0.0)
    with qtbot.waitSignal(w.succeeded, timeout=10000) as blocker:
        w.start()
        qtbot.waitUntil(half.is_set, timeout=5000)
        w.cancel()
        go.set()
    assert blocker.args == ["written"] and w.state == "succeeded"
