"""Run the core's long operations in worker threads without freezing the window.

A :class:`Worker` calls ``fn(*args, progress=callback, **kwargs)`` on a :class:`QThreadPool` thread.
The callback turns the core's ``progress(fraction, message)`` calls into the Qt signal
:attr:`Worker.progress` (delivered to the GUI thread by a queued connection) and raises
:class:`~aiflat_gui.errors.Cancelled` the next time it is called after :meth:`Worker.cancel`
(except for a final report of 1.0: the work is then complete and counts as a success).
The core never knows about threads.

Outcomes arrive as signals in the GUI thread: ``succeeded(result)``, ``failed(message, user_error)``
(``user_error`` True for an :class:`~aiflat_gui.errors.AiflatError`, whose one-line message is shown
as is; False for an unexpected exception, shown as one line and logged with its traceback),
``cancelled()``, and always ``done()`` last.

:class:`JobPanel` is the progress bar + message + Cancel button bound to a worker.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Callable, Optional

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

from ..errors import AiflatError, Cancelled, describe

log = logging.getLogger("aiflat.gui")

_POOL: Optional[QtCore.QThreadPool] = None


def thread_pool() -> QtCore.QThreadPool:
    """The pool every worker runs on (two threads: a long calibration never blocks a mask job)."""
    global _POOL
    if _POOL is None:
        _POOL = QtCore.QThreadPool()
        _POOL.setMaxThreadCount(2)
    return _POOL


one_line = describe  # the one describe(exception) of aiflat_gui.errors


class _Runnable(QtCore.QRunnable):
    def __init__(self, worker: "Worker"):
        super().__init__()
        self.worker = worker
        self.setAutoDelete(True)

    def run(self) -> None:  # runs in a pool thread
        self.worker._execute()


class Worker(QtCore.QObject):
    """One background job. Create in the GUI thread, connect signals, then :meth:`start`."""

    progress = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(str, bool)
    cancelled = Signal()
    done = Signal()
    _finished_internal = Signal(str, object)

    def __init__(self, fn: Callable[..., Any], *args, name: str = "", pass_progress: bool = True,
                 min_interval: float = 0.05, **kwargs):
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = name or getattr(fn, "__name__", "job")
        self.pass_progress = pass_progress
        self.min_interval = float(min_interval)
        self._cancel = threading.Event()
        self._last_emit = 0.0
        self.state = "idle"  # idle, running, succeeded, failed, cancelled
        self.result: Any = None
        self.error: Optional[str] = None
        self.exception: Optional[BaseException] = None
        self.fraction = 0.0
        self.message = ""
        # results are handed from the pool thread to the GUI thread through a queued signal
        self._finished_internal.connect(self._on_finished, QtCore.Qt.QueuedConnection)

    # -- control (GUI thread) ---------------------------------------------------------------------
    def start(self, pool: Optional[QtCore.QThreadPool] = None) -> "Worker":
        if self.state == "running":
            return self
        self.state = "running"
        self._cancel.clear()
        _LIVE.add(self)  # keep the QObject alive until the job has finished
        (pool or thread_pool()).start(_Runnable(self))
        return self

    def cancel(self) -> None:
        """Ask the job to stop: its progress callback raises Cancelled the next time it is called."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def wait(self, timeout: float = 60.0) -> bool:
        """Process events until the job has finished (for scripts, --screenshot and tests).
        True when finished within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        app = QtCore.QCoreApplication.instance()
        while self.state == "running":
            if time.monotonic() > deadline:
                return False
            if app is not None:
                app.processEvents(QtCore.QEventLoop.AllEvents, 20)
            time.sleep(0.002)
        return True

    # -- the pool thread ----------------------------------------------------------------------------
    def _callback(self, fraction: float, message: str = "") -> None:
        # a report of 1.0 means the work is done (outputs may already be committed): cancelling
        # there would only turn a finished job into a "cancelled" one that left its file behind
        if self._cancel.is_set() and fraction < 1.0:
            raise Cancelled()
        now = time.monotonic()
        if fraction >= 1.0 or now - self._last_emit >= self.min_interval:
            self._last_emit = now
            self.progress.emit(float(fraction), str(message))

    def _execute(self) -> None:
        try:
            if self._cancel.is_set():
                raise Cancelled()
            if self.pass_progress:
                result = self.fn(*self.args, progress=self._callback, **self.kwargs)
            else:
                result = self.fn(*self.args, **self.kwargs)
            # returned normally: the job finished (even if Cancel was clicked at the very end)
            self._finished_internal.emit("succeeded", result)
        except Cancelled:
            self._finished_internal.emit("cancelled", None)
        except AiflatError as err:
            self._finished_internal.emit("failed", err)
        except BaseException as exc:  # noqa: BLE001 - never let a worker crash the app
            log.error("%s failed:\n%s", self.name, traceback.format_exc())
            self._finished_internal.emit("failed", exc)

    # -- back in the GUI thread ---------------------------------------------------------------------
    def _on_finished(self, outcome: str, payload: Any) -> None:
        self.state = outcome
        try:
            if outcome == "succeeded":
                self.result = payload
                self.fraction = 1.0
                self.succeeded.emit(payload)
            elif outcome == "cancelled":
                self.cancelled.emit()
            else:
                self.exception = payload
                self.error = one_line(payload)
                self.failed.emit(self.error, isinstance(payload, AiflatError))
        finally:
            self.done.emit()
            _LIVE.discard(self)


_LIVE: set[Worker] = set()


def active_workers() -> list[Worker]:
    return [w for w in _LIVE if w.running]


class JobPanel(QtWidgets.QWidget):
    """Progress bar, message and Cancel button for the current worker (hidden when idle)."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None):
        super().__init__(parent)
        self.worker: Optional[Worker] = None
        from .widgets import ElidedLabel

        # a long message (an AI retry, a path) is elided, never widening the window or moving the bar
        self.label = ElidedLabel("", min_chars=20)
        self.label.setObjectName("jobLabel")
        self.bar = QtWidgets.QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.clicked.connect(self.cancel)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.bar, 2)
        lay.addWidget(self.cancel_button)
        # idle, the panel keeps its room: the viewer above it does not resize (and the image does
        # not jump) each time a job starts and ends
        policy = self.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.setSizePolicy(policy)
        self.setVisible(False)

    def attach(self, worker: Worker, title: str) -> None:
        self.worker = worker
        self.title = title
        self.label.setText(title)
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.cancel_button.setEnabled(True)
        worker.progress.connect(self._on_progress)
        worker.done.connect(self._on_done)
        self.setVisible(True)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.bar.setValue(int(round(1000 * max(0.0, min(1.0, fraction)))))
        self.label.setText(f"{self.title}: {message}" if message else self.title)

    def _on_done(self) -> None:
        if self.sender() is not None and self.sender() is not self.worker:
            return
        self.worker = None
        self.setVisible(False)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.label.setText(f"{self.title}: cancelling…")
