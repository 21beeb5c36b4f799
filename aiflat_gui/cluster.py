"""``aiflat batch --cluster``: the session batch on a Dask (``distributed``) cluster. No Qt.

One task per input video. The flat and the batch's choices (output folder, format, pedestal,
resume, fsync) go to every worker once (one shared task result, see :func:`cluster_batch`); each task runs
the same :func:`~aiflat_gui.pipeline._calibrate_one` as the local batch, so every output is written
exactly as there: a temporary ``.NAME.*.partial`` sibling renamed into place on success, the input
never touched. A shared filesystem is assumed: the client, the scheduler's workers and the outputs
see the same paths.

Faults. A bad file fails alone (its task *returns* a failed item with the one-line error; Dask does
not retry it). A worker that dies mid-file (killed, out of memory, node lost) is the scheduler's to
handle: it reschedules the task on another worker (up to its ``distributed.scheduler.allowed-failures``,
3 by default, then the file is reported failed). The new attempt writes its own temporary file and
renames it, so the final name only ever holds one complete output; the dead attempt's temporary
file is removed when the batch ends. Each attempt announces itself (``Worker.log_event``), which
gives the report its ``worker`` and ``retries`` columns.

Dask is an optional dependency (``pip install 'aiflat-gui[cluster]'``), imported only here and only
when a cluster batch runs (by name, so that the desktop bundle's static analysis does not pull it in).
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from .errors import AiflatError, Cancelled, InputError, ProcessingError
from .pipeline import BatchItem, BatchSummary, _calibrate_one, prepare_batch
from .progress import ProgressFn, report

#: How long to try reaching a remote scheduler (seconds).
CONNECT_TIMEOUT = 20.0
#: How long to wait for the first worker of a remote scheduler before giving up (seconds).
WORKER_WAIT = 60.0
#: Seconds between two progress events of one task (and between two looks at the cancel flag).
EVENT_INTERVAL = 0.5
#: A LocalCluster's scheduler: no dashboard, and its small HTTP server (health, metrics) on a free
#: port of 127.0.0.1 (by default it takes 8787, and a second cluster on the machine warns).
LOCAL_HTTP = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
INSTALL_HINT = "--cluster needs Dask's distributed package: pip install 'aiflat-gui[cluster]'"


def _distributed():
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise InputError(INSTALL_HINT) from None


@dataclass(frozen=True)
class _Job:
    """What every task of one batch shares; scattered to each worker once."""
    flat: np.ndarray
    flat_name: str
    out_dir: Path
    fmt: Optional[str]
    pedestal: float
    resume: bool
    durable: bool
    topic: str  # the run's event topic (progress; attempt starts on topic + "-start")
    cancel: str  # name of the run's distributed.Event; set = stop at the next chunk
    hold: dict = field(default_factory=dict)  # tests only: {input name: a file}; see cluster_batch
    row_order: Optional[str] = None  # FITS inputs' stored row order (--row-order)


def _shared(job: _Job) -> _Job:
    return job


def _task(k: int, src: Path, stem: str, job: _Job) -> BatchItem:
    """One input on a worker: announce the attempt, calibrate, return the item."""
    distributed = _distributed()
    from .io.base import set_durable

    worker = distributed.get_worker()
    # starts on a topic of their own, so that the many progress events never push them out of the
    # scheduler's short log of each topic (distributed.admin.low-level-log-length)
    worker.log_event(job.topic + "-start", {"k": k, "event": "start", "pid": os.getpid()})
    if job.durable:
        set_durable(True)
    state = {"t": time.monotonic(), "held": False}
    cancel = distributed.Event(job.cancel)

    def prog(fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if now - state["t"] >= EVENT_INTERVAL:
            state["t"] = now
            if cancel.is_set():
                raise Cancelled()
            worker.log_event(job.topic, {"k": k, "event": "progress", "fraction": float(fraction)})
        hold = job.hold.get(src.name)
        if hold and fraction >= 1.0 and not state["held"]:  # the output is complete, not yet renamed
            state["held"] = True
            open(f"{hold}.waiting", "w").close()  # (tells the test which outputs are held)
            end = time.monotonic() + 120.0
            while os.path.exists(hold) and time.monotonic() < end:
                time.sleep(0.05)
                if time.monotonic() - state["t"] >= EVENT_INTERVAL:
                    state["t"] = time.monotonic()
                    if cancel.is_set():
                        raise Cancelled()

    try:
        item = _calibrate_one(src, job.flat, job.out_dir, stem, job.fmt, job.pedestal, prog,
                              resume=job.resume, flat_name=job.flat_name, row_order=job.row_order)
    except Cancelled:
        item = BatchItem(input=src, status="cancelled", note="cancelled; no output written")
    item.worker = worker.address
    return item


@contextlib.contextmanager
def connect(spec: str):
    """A Dask client for ``spec``: ``local:N`` starts a LocalCluster of N single-threaded worker
    processes on 127.0.0.1 (closed on exit); a scheduler address (``tcp://host:8786``, ``host:8786``)
    or a scheduler file (``.json``, as ``dask scheduler --scheduler-file`` and dask-jobqueue write)
    connects to a running scheduler and waits up to :data:`WORKER_WAIT` s for a worker."""
    distributed = _distributed()
    spec = str(spec).strip()
    m = re.fullmatch(r"local:(\d+)", spec)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise InputError("--cluster local:N needs N >= 1 worker processes", spec)
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=logging.ERROR,
                                           scheduler_kwargs=LOCAL_HTTP)
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    if spec.endswith(".json"):
        if not Path(spec).is_file():
            raise InputError("no such scheduler file", spec)
        kwargs: dict[str, Any] = {"scheduler_file": spec}
    elif re.fullmatch(r"(tcp|tls|ws|wss|inproc|ucx)://\S+", spec) or re.fullmatch(r"[\w.\-\[\]:]+:\d+", spec):
        kwargs = {"address": spec}
    else:
        raise InputError("--cluster takes a scheduler address (tcp://HOST:8786), a scheduler file (.json) "
                         "or local:N", spec)
    try:
        client = distributed.Client(timeout=f"{CONNECT_TIMEOUT}s", **kwargs)
    except (OSError, TimeoutError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProcessingError(f"cannot reach the Dask scheduler: {first}", spec) from None
    try:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT)
        except (TimeoutError, OSError):
            raise ProcessingError(f"no Dask worker joined the scheduler within {WORKER_WAIT:g} s", spec) from None
        yield client
    finally:
        client.close()


def _size(p: Path) -> int:
    try:
        return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.iterdir() if f.is_file())
    except OSError:
        return 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


def _remove_dead_attempts(out_dir: Path, stem: str, since: float) -> None:
    """Remove the temporary files that attempts of this run left for the output ``stem.*`` (a
    worker died while writing). Only entries created after ``since`` (this run's start), once every
    attempt is over; a temporary file never has the final name, so --resume never trusts one."""
    for tmp in Path(out_dir).glob(f".{glob.escape(stem)}.*.partial"):
        with contextlib.suppress(OSError):
            if tmp.lstat().st_mtime >= since:
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def cluster_batch(inputs: Iterable[str | os.PathLike], flat_path: str | os.PathLike, out_dir: str | os.PathLike,
                  cluster: str, fmt: Optional[str] = None, pedestal: float = 0.0, resume: bool = False,
                  progress: Optional[ProgressFn] = None, on_item: Optional[Callable[[BatchItem], None]] = None,
                  retries: int = 1, _hold: Optional[dict] = None, row_order: Optional[str] = None) -> BatchSummary:
    """:func:`~aiflat_gui.pipeline.batch_calibrate` on a Dask cluster (``cluster``: see :func:`connect`).

    ``progress(fraction of the input bytes, "F/N files, B/T")``; ``on_item(item)`` is called as each
    file finishes (errors as they happen). ``retries``: Dask retries of a task that raised (a task
    only raises on a worker-side surprise; a bad file returns its error and is not retried).
    ``_hold``: tests only ({input name: path}): a task for that input that has written its whole
    temporary output waits before the rename while the file at ``path`` exists (at most 2 min), so
    that a test can kill the worker writing it; not reachable from the command line.
    Ctrl-C / Cancelled from ``progress``: running tasks stop at their next chunk, leaving no output.
    """
    distributed = _distributed()
    from .io.base import durable_default

    t0, wall0 = time.perf_counter(), time.time()
    files, stems, flat_p, flat, out = prepare_batch(inputs, flat_path, out_dir, fmt)
    sizes = [_size(f) for f in files]
    total = max(1, sum(sizes))
    n = len(files)
    run = uuid.uuid4().hex[:12]
    job = _Job(flat=np.ascontiguousarray(flat), flat_name=str(flat_p), out_dir=out.absolute(), fmt=fmt,
               pedestal=float(pedestal), resume=bool(resume), durable=durable_default(),
               topic=f"aiflat-batch-{run}", cancel=f"aiflat-cancel-{run}", hold=dict(_hold or {}),
               row_order=row_order)
    fractions: dict[int, float] = {}
    starts: dict[tuple, tuple[int, str]] = {}  # (time, k, pid) -> (k, worker) for every attempt
    lock = threading.Lock()

    def on_event(event) -> None:  # runs in the client's event loop thread
        when, msg = event
        if not isinstance(msg, dict):
            return
        k = int(msg.get("k", -1))
        with lock:
            if msg.get("event") == "progress":
                fractions[k] = max(fractions.get(k, 0.0), float(msg["fraction"]))
            elif msg.get("event") == "start":
                starts[(when, k, msg.get("pid"))] = (k, str(msg.get("worker", "")))

    summary = BatchSummary()
    results: dict[int, BatchItem] = {}
    with connect(cluster) as client:
        nworkers = len(client.scheduler_info().get("workers", {}))
        report(progress, 0.0, f"{n} files, {_human(total)}, {nworkers} workers")
        client.subscribe_topic(job.topic, on_event)
        client.subscribe_topic(job.topic + "-start", on_event)
        # The job reaches the workers once, not once per task: as the result of a task that only
        # returns it (each worker fetches it from a peer the first time a file needs it, and keeps
        # it). Not Client.scatter: scattered data has no recipe, and when the workers holding it die
        # every remaining file fails with it ("lost scattered data", seen in the kill test); a task
        # result lost with its worker is simply recomputed.
        shared = client.submit(_shared, job, key=f"aiflat-job-{run}", pure=False)
        with contextlib.suppress(Exception):
            client.replicate([shared])  # to every worker now rather than at each one's first file
        pending = {}
        for k, (src, stem) in enumerate(zip(files, stems)):
            fut = client.submit(_task, k, src.absolute(), stem, shared, key=f"aiflat-{run}-{k}", pure=False,
                                retries=retries)
            pending[fut.key] = (k, fut)
        try:
            while pending:
                for key, (k, fut) in list(pending.items()):
                    if not fut.done():
                        continue
                    del pending[key]
                    try:
                        item = fut.result()
                    except Exception as exc:  # noqa: BLE001 - KilledWorker, a lost scheduler, a worker-side surprise
                        name = type(exc).__name__
                        note = ("a worker died on this file at every attempt (the scheduler's allowed-failures)"
                                if name == "KilledWorker" else f"task failed on the cluster ({name})")
                        item = BatchItem(input=files[k], status="failed", note=note)
                    # forget the result on the cluster: a finished file held in a worker's memory
                    # would otherwise be recomputed (rewritten) when that worker dies
                    fut.release()
                    item.input, item.bytes = files[k], sizes[k]
                    results[k] = item
                    with lock:
                        fractions[k] = 1.0
                    if on_item is not None:
                        on_item(item)
                with lock:
                    done_bytes = sum(sizes[k] * min(1.0, f) for k, f in fractions.items())
                report(progress, done_bytes / total,
                       f"{len(results)}/{n} files, {_human(done_bytes)}/{_human(total)}")
                if pending:
                    time.sleep(0.2)
        except (Cancelled, KeyboardInterrupt):
            with contextlib.suppress(Exception):
                distributed.Event(job.cancel, client=client).set()
                client.cancel([f for _, f in pending.values()])
                time.sleep(2 * EVENT_INTERVAL + 0.5)  # running tasks see the flag and remove their temp files
            raise
        # every attempt announced itself before its result reached the scheduler; the scheduler's
        # own log of the topic (its last 1000 events) backs up the subscription
        for event in client.get_events(job.topic + "-start"):
            on_event(event)
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(job.topic)
            client.unsubscribe_topic(job.topic + "-start")
    attempts_of: dict[int, list[str]] = {}
    with lock:
        ordered = sorted(starts.items(), key=lambda kv: kv[0][0])
    for _, (k, worker) in ordered:
        attempts_of.setdefault(k, []).append(worker)
    for k in range(n):
        item = results[k]
        attempts = attempts_of.get(k, [])
        item.retries = max(0, len(attempts) - 1)
        item.worker = item.worker or (attempts[-1] if attempts else "")
        if item.retries:
            _remove_dead_attempts(out, stems[k], wall0 - 1.0)
        summary.items.append(item)
    summary.seconds = time.perf_counter() - t0
    report(progress, 1.0, "batch done")
    return summary
