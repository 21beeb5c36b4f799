"""The window's step runners: each step of the pipeline in a :class:`Worker` thread, its result
handed to the :class:`~aiflat_gui.document.Document` (which owns the state and staleness rules).

The jobs are plain functions calling :mod:`aiflat_gui.pipeline` (each opens its own sequence: the
document's memory map is never read from two threads). :class:`StepsMixin` is part of the main
window: it starts jobs, shows errors, and asks before spending money (Gemini).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PySide6 import QtCore, QtWidgets

from .. import pipeline
from ..document import DONE
from ..errors import AiflatError, InputError
from ..progress import sub_progress
from ..text import plural
from .workers import Worker, one_line

log = logging.getLogger("aiflat.gui")


# -- jobs run in worker threads ---------------------------------------------------------------------

def job_reference(path, params: pipeline.ReferenceParams, progress=None):
    return pipeline.compute_reference(path, params, progress=progress)


def job_detect(path, reference, sensitivity: float, progress=None):
    return pipeline.find_mask(path, reference, pipeline.MaskParams("local", sensitivity), progress=progress)


def job_gemini(provider, reference, progress=None):
    return pipeline.find_mask(None, reference, provider=provider, progress=progress)[1]


def job_flat(path, reference, mask, params: pipeline.FlatParams, clean=None, progress=None, verify=False,
             overrides=None, searched=None, measured=None):
    """The flat; with ``verify`` every speck is first checked against the video and the refused ones
    are left out: then ``{"flat": flat, "verify": VerifyOutcome}``. ``measured``: see
    :func:`pipeline.build_flat` (from the verification; ``verify`` sets its own)."""
    with pipeline.open_input(path) as seq:
        outcome = None
        if verify:
            outcome = pipeline.verify_step(mask, seq, overrides=overrides, progress=sub_progress(progress, 0.0, 0.3),
                                           searched=searched)
            mask, measured = outcome.mask, outcome.measured
            progress = sub_progress(progress, 0.3, 1.0)
        flat = pipeline.build_flat(seq, reference, mask, params, clean=clean, progress=progress, measured=measured)
    return flat if outcome is None else {"flat": flat, "verify": outcome}


def job_verify(path, mask, progress=None, searched=None):
    """Check every speck of ``mask`` against the video (the pipeline's verify step)."""
    with pipeline.open_input(path) as seq:
        return pipeline.verify_step(mask, seq, progress=progress, searched=searched)


def job_ai_flat(provider, path, reference, mask, params: pipeline.FlatParams, progress=None, measured=None):
    """Ask the AI for a dust-free image (80 % of the progress), then build the ``ai`` flat."""
    clean = pipeline.request_clean(provider, path, reference, mask, params.grow, progress=sub_progress(progress, 0.0, 0.8))
    flat = pipeline.build_flat(path, reference, mask, params, clean=clean, progress=sub_progress(progress, 0.8, 1.0),
                               measured=measured)
    return clean, flat


def job_calibrate(path, flat, output, fmt, pedestal, overwrite, progress=None):
    return pipeline.calibrate(path, flat, output, fmt=fmt, pedestal=pedestal, overwrite=overwrite, progress=progress)


def job_batch(inputs, flat, out_dir, fmt, pedestal, jobs=0, progress=None):
    return pipeline.batch_with_flat(inputs, flat, out_dir, fmt=fmt, pedestal=pedestal, jobs=jobs, progress=progress)


class StepsMixin:
    """Runs the steps for the main window (which provides ``doc``, ``workflow``, ``show_error``...)."""

    # -- workers --------------------------------------------------------------------------------
    def _start(self, worker: Worker, step: Optional[str], title: str, on_success: Callable[[Any], None],
               on_end: Optional[Callable[[], None]] = None) -> Worker:
        """Run ``worker`` with the progress panel; step state running -> done (or back)."""
        doc = self.doc
        previous = doc.set_running(step) if (doc is not None and step) else None
        self.workflow.set_busy(True)
        self.worker = self.last_worker = worker
        self.job_panel.attach(worker, title)
        worker.progress.connect(lambda f, m: self.statusBar().showMessage(f"{title}: {m}" if m else title))

        def back() -> None:
            if doc is not None and step:
                doc.restore_state(step, previous)

        def ok(result):
            if doc is not None and doc is not self.doc:
                return  # another file was opened meanwhile: the result belongs to a closed document
            try:
                on_success(result)
            except AiflatError as err:
                back()
                self.show_error(str(err))
            except Exception as exc:  # noqa: BLE001
                log.exception("%s: handling the result failed", title)
                back()
                self.show_error(one_line(exc), user_error=False)

        def failed(message: str, user_error: bool):
            back()
            self.show_error(message, title, user_error)

        def cancelled():
            back()
            self.log(f"{title}: cancelled")
            self.statusBar().showMessage(f"{title}: cancelled", 5000)

        def done():
            if self.worker is worker:  # (a success handler may already have started the next job)
                self.worker = None
                self.workflow.set_busy(False)
            self._update_actions()
            QtCore.QTimer.singleShot(0, self.fit_workflow_dock)
            if on_end:
                on_end()

        worker.succeeded.connect(ok)
        worker.failed.connect(failed)
        worker.cancelled.connect(cancelled)
        worker.done.connect(done)
        self.log(f"{title}: started")
        return worker.start()

    def _busy(self) -> bool:
        if self.worker is not None and self.worker.running:
            self.show_error("Another job is running; wait for it or cancel it.")
            return True
        return False

    def cancel_job(self) -> None:
        if self.worker is not None and self.worker.running:
            self.job_panel.cancel()

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Process events until no job runs (tests, --screenshot)."""
        if self.worker is None:
            return True
        return self.worker.wait(timeout)

    def _need(self, what: str) -> bool:
        doc = self.doc
        if doc is None:
            self.show_error("Open a video first.")
            return False
        if what == "reference" and doc.reference is None:
            self.show_error("Compute the reference first.")
            return False
        if what == "flat" and doc.flat_problem():
            # the mask or the flat settings changed after the flat was built: using it would change
            # pixels that are no longer in the mask
            self.show_error(doc.flat_problem())
            return False
        return True

    # -- reference --------------------------------------------------------------------------------
    def run_reference(self) -> Optional[Worker]:
        if not self._need("sequence") or self._busy():
            return None
        doc, params = self.doc, self.doc.params.reference
        w = Worker(job_reference, str(doc.path), params, name="reference")

        def ok(ref):
            doc.set_reference(ref, params)
            self.specks_timer.start()
            self.log("reference ready")

        return self._start(w, "reference", "Reference", ok)

    # -- mask: offline detector ----------------------------------------------------------------------
    def run_detection(self, scores_only: bool = False) -> Optional[Worker]:
        """Find dust offline; ``scores_only``: only get the detector's scores (a sensitivity move
        after a restored session), the mask stays."""
        if not self._need("reference") or self._busy():
            return None
        doc = self.doc
        w = Worker(job_detect, str(doc.path), doc.reference, doc.sensitivity, name="detect")

        def ok(res):
            provider, result = res
            doc.ai_report = dict(result.report or {})
            if scores_only:
                doc.set_scores(provider)
                doc.set_sensitivity(self.workflow.sensitivity_value())
                return
            doc.set_mask(result.mask, "Find dust (offline)", provider=provider)
            self.log(f"offline detector: {plural(int(np.count_nonzero(result.mask)), 'dust pixel')}")

        return self._start(w, None if scores_only else "mask", "Finding dust", ok)

    def set_sensitivity(self, value: float) -> None:
        """The sensitivity slider: re-threshold the detector's scores, keeping brush edits (one
        undo step per drag); without scores (a restored session) the detector runs first."""
        if self.doc is None:
            return
        if not self.doc.set_sensitivity(value) and self.doc.reference is not None and self.doc.has_mask() \
                and not (self.worker is not None and self.worker.running):
            self.run_detection(scores_only=True)
        self._schedule_autosave()

    # -- mask: Gemini ---------------------------------------------------------------------------
    def ask_ai(self) -> Optional[Worker]:
        if not self._need("reference") or self._busy():
            return None
        from .gemini_dialog import show_reply

        provider = self._ask_gemini_confirm("mask")
        if provider is None:
            return None
        return self._run_gemini(provider, show_reply)

    def _ask_gemini_confirm(self, purpose: str):
        """A GeminiProvider from the settings after the user has seen model, size and cost and
        clicked Send; None when cancelled or impossible (a message says why)."""
        from .gemini_dialog import GeminiAskDialog
        from .settings_dialog import gemini_options, stored_api_key

        if not self.interactive:
            self.show_error("An AI request needs your confirmation of its cost; run it from the window.")
            return None
        try:
            from ..ai.gemini import GeminiProvider

            opts = gemini_options(self.settings)
            provider = GeminiProvider(**opts)
            description = provider.describe_request(self.doc.reference)
        except AiflatError as err:
            self.show_error(str(err), "Ask AI")
            return None
        has_key = bool(opts.get("api_key") or stored_api_key() or os.environ.get("GEMINI_API_KEY")
                       or os.environ.get("GOOGLE_API_KEY"))
        dlg = GeminiAskDialog(description, self, has_key=has_key, purpose=purpose)
        accepted = self.run_dialog(dlg) == QtWidgets.QDialog.Accepted
        if not accepted:
            return None
        if dlg.reroll:
            provider.reroll = True
        self.log(f"asking the AI ({purpose}): {dlg.summary()}")
        return provider

    def _run_gemini(self, provider, show_reply_fn=None) -> Worker:
        doc = self.doc
        w = Worker(job_gemini, provider, doc.reference, name="gemini")

        def ok(result):
            doc.ai_report = dict(result.report or {})
            doc.set_mask(result.mask, "Find dust (AI)", clean=result.clean)
            self.log(f"AI answer: {plural(int(np.count_nonzero(result.mask)), 'dust pixel')}; "
                     f"{doc.ai_report.get('text') or 'no text'}")
            if show_reply_fn is not None and self.interactive:
                show_reply_fn(self, doc.ai_report)

        return self._start(w, "mask", "Asking the AI", ok)

    # -- mask: file ----------------------------------------------------------------------------------
    def import_mask_dialog(self) -> None:
        if not self._need("sequence"):
            return
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Import a mask", str(self.doc.path.parent),
                                                        "Masks (*.png *.tif *.tiff *.fits *.fit);;All files (*)")
        if path:
            self.import_mask(path)

    def import_mask(self, path) -> bool:
        """Load a mask file (any bit depth; soft masks thresholded). A wrong size shows a message
        box and leaves the current mask and session untouched."""
        if not self._need("sequence"):
            return False
        doc = self.doc
        try:
            mask, warnings = pipeline.load_mask(path, (doc.seq.height, doc.seq.width))
        except AiflatError as err:
            self.show_error(str(err), "Cannot import the mask")
            return False
        except Exception as exc:  # noqa: BLE001
            log.exception("mask import failed")
            self.show_error(f"{path}: {one_line(exc)}", "Cannot import the mask", user_error=False)
            return False
        for w in warnings:
            log.warning("%s: %s", path, w)
        doc.set_mask(mask, f"Import {Path(path).name}")
        self.log(f"imported mask {path}")
        return True

    def mask_op(self, op: str) -> None:
        if self.doc is not None:
            self.doc.mask_op(op)

    def undo(self) -> None:
        if self.doc is not None:
            self.doc.undo()

    def redo(self) -> None:
        if self.doc is not None:
            self.doc.redo()

    # -- verify (every speck against the video) and flat -------------------------------------------
    def run_verify(self, then: Optional[Callable[[], Any]] = None) -> Optional[Worker]:
        if not self._need("sequence") or self._busy():
            return None
        mask = self.doc.mask.as_bool()

        def ok(outcome):
            self._verified(outcome)
            if then is not None:
                then()

        return self._start(Worker(job_verify, str(self.doc.path), mask, name="verify",
                                  searched=self.doc.searched_mask()), None,
                           "Checking the specks against the video", ok)

    def _verified(self, outcome) -> None:
        self.speck_table.set_verification(outcome.verification)
        for line in [outcome.summary(), *outcome.refusals()]:
            self.log(f"verify: {line}")
        if outcome.verification is not None and outcome.verification.note:
            self.statusBar().showMessage(f"Specks not verified: {outcome.verification.note}", 15000)
        self.refresh_specks()

    def _on_overrides(self) -> None:
        if self.doc is not None:
            self.doc.state.changed("mask")  # the flat's mask changed: the flat is stale
            self._on_doc("state")
            self._schedule_autosave()  # the overrides are part of the session
        self.refresh_specks()

    def _remove_speck(self, x: int, y: int) -> None:
        if self.doc is not None:
            self.doc.mask.remove_component_at(x, y)

    def run_flat(self) -> Optional[Worker]:
        if not self._need("reference") or self._busy():
            return None
        doc = self.doc
        params = doc.params.flat
        generation = doc.mask_generation
        mask = doc.mask.as_bool()
        # the flat only corrects what the video shows to be dust: specks nobody checked yet are
        # checked first (in the flat's job)
        verify = self.speck_table.needs_verification(mask)
        measured = None
        if not verify:
            drawn = mask
            mask, refused, measured = self.speck_table.flat_mask(mask)
            if refused:
                self.log(f"flat: {plural(len(refused), 'speck')} left out (flat exactly 1.0 there); right-click one "
                         f"in the Specks table to override")
            trimmed = pipeline.trimmed_pixels(drawn, mask, refused)
            if trimmed:
                self.log(f"flat: {trimmed} px of specks judged dust show no shadow in the video and are left out "
                         f"(outlined in the overlay); set a speck to \"dust\" to keep it as drawn")
        if params.method == "ai" and not doc.fresh_clean():
            provider = self._ask_gemini_confirm("clean")
            if provider is None:
                return None
            w = Worker(job_ai_flat, provider, str(doc.path), doc.reference, mask, params, name="ai flat",
                       measured=measured)
        else:
            w = Worker(job_flat, str(doc.path), doc.reference, mask, params, doc.clean, name="flat", verify=verify,
                       overrides=dict(self.speck_table.overrides), searched=doc.searched_mask() if verify else None,
                       measured=measured)

        def ok(flat):
            clean = None
            if isinstance(flat, dict):  # the specks were checked first
                self._verified(flat["verify"])
                flat = flat["flat"]
            if isinstance(flat, tuple):  # (AI clean image, flat)
                clean, flat = flat
            doc.set_flat(flat, generation, params, clean=clean)
            n = int(np.count_nonzero(doc.flat != 1.0))
            self.log(f"flat ready: {plural(n, 'pixel')} below 1.0, minimum {float(doc.flat.min()):.3f}")
            self.specks_timer.start()  # depths from the flat now

        return self._start(w, "flat", "Building the flat", ok)

    # -- calibrate / export ----------------------------------------------------------------------
    def calibrate_to(self, output, fmt: Optional[str] = None, overwrite: bool = True) -> Optional[Worker]:
        """Calibrate the whole sequence into ``output`` in a worker (atomic: a cancel leaves nothing)."""
        if not self._need("flat") or self._busy():
            return None
        from .export_dialog import same_file

        doc = self.doc
        if same_file(output, doc.path):
            self.show_error(f"{output}: output path is the input file; choose another name")
            return None
        try:
            pipeline.check_calibration(doc.seq, output, fmt)
        except AiflatError as err:
            self.show_error(str(err), "Calibrate")
            return None
        doc.output_choices.update({"path": str(output), "format": fmt})
        w = Worker(job_calibrate, str(doc.path), doc.flat, str(output), fmt, doc.params.flat.pedestal, overwrite,
                   name="calibrate")

        def ok(stats):
            text = (f"{stats.output}: {plural(stats.frames, 'frame')} in {stats.seconds:.1f} s, "
                    f"{plural(stats.clipped, 'value')} clipped")
            doc.set_calibrated(text)
            self.log(f"calibrated {text}")
            self.statusBar().showMessage(f"Calibrated: {stats.output}", 10000)

        self._schedule_autosave()
        return self._start(w, "calibrate", "Calibrating", ok)

    def export_flat_to(self, path, target: str) -> bool:
        if not self._need("flat"):
            return False
        try:
            out = pipeline.export_flat(self.doc.flat, target, path, lights=self.doc.seq)  # row order for the video
        except AiflatError as err:
            self.show_error(str(err), "Export flat")
            return False
        self.doc.output_choices["target"] = target
        self._schedule_autosave()
        self.log(f"flat for {target} written to {out}")
        return True

    def save_mask_to(self, path) -> bool:
        if not self._need("sequence"):
            return False
        try:
            pipeline.save_mask(path, self.doc.mask.as_bool())
        except AiflatError as err:
            self.show_error(str(err), "Save mask")
            return False
        self.log(f"mask written to {path}")
        return True

    def run_batch(self, inputs: list[str], out_dir, fmt: Optional[str] = None, jobs: int = 0) -> Optional[Worker]:
        """Calibrate every video in ``inputs`` with the current flat (``jobs`` processes, 0: one per
        core); the flat is saved as ``out_dir/flat.fits`` beside the results."""
        if not self._need("flat") or self._busy():
            return None
        w = Worker(job_batch, list(inputs), self.doc.flat, str(out_dir), fmt, self.doc.params.flat.pedestal, jobs,
                   name="batch")

        def ok(summary):
            text = summary.text() if hasattr(summary, "text") else str(summary)
            for line in text.splitlines():  # one log line each (the summary line says "batch:")
                self.log(line.strip())
            if self.interactive:
                QtWidgets.QMessageBox.information(self, "Batch finished", text)

        return self._start(w, None, "Calibrating all videos", ok)

    def export_dialog(self, tab: Optional[int] = None) -> None:
        if not self._need("sequence"):
            return
        from .export_dialog import ExportDialog
        from .settings_dialog import get_setting

        doc = self.doc
        dlg = ExportDialog(doc.path, out_dir=str(get_setting("output/folder", self.settings) or "") or None,
                           have_flat=doc.flat is not None, have_mask=True, parent=self,
                           choices=doc.output_choices, formats=doc.output_formats(), flat_problem=doc.flat_problem)
        if tab is not None:  # else the tab the user chose last time
            dlg.tabs.setCurrentIndex(tab)
        dlg.exportRequested.connect(self._on_export_requested)
        self.run_dialog(dlg)

    def _on_export_requested(self, kind: str, opts: dict) -> None:
        if kind == "calibrate":
            self.calibrate_to(opts["path"], opts.get("fmt"), opts.get("overwrite", True))
        elif kind == "flat":
            self.export_flat_to(opts["path"], opts["target"])
        elif kind == "mask":
            self.save_mask_to(opts["path"])
        elif kind == "batch":
            self.run_batch(opts["inputs"], opts["out_dir"], opts.get("fmt"))

    def settings_dialog(self) -> None:
        from .settings_dialog import SettingsDialog

        dlg = SettingsDialog(self, self.settings)
        accepted = self.run_dialog(dlg) == QtWidgets.QDialog.Accepted
        if accepted and dlg.key_message:
            QtWidgets.QMessageBox.information(self, "API key", dlg.key_message)

    # -- everything, synchronously (used by --screenshot) ----------------------------------------
    def run_full_workflow(self, timeout: float = 600.0) -> None:
        """Reference (if missing), offline mask (if none), flat; each worker awaited. Raises
        AiflatError on the first failure."""
        if self.doc is None:
            raise InputError("no sequence open")
        self.wait_idle(timeout)
        if self.workflow.flat_method_key() == "ai" and not self.interactive:
            # an AI request needs the user's go-ahead (it costs money): use the offline fill here
            self.workflow.flat_method.setCurrentIndex(self.workflow.flat_method.findData("local"))
            self.log("flat method 'ai' needs a confirmed AI request; using the local fill")
        steps = []
        if self.doc.reference is None:
            steps.append(self.run_reference)
        steps.append(lambda: None if self.doc.state.states["mask"] == DONE else self.run_detection())
        steps.append(self.run_flat)
        for start in steps:
            n_errors = len(self.errors)
            w = start()
            if w is not None and not w.wait(timeout):
                w.cancel()
                raise AiflatError("the workflow did not finish in time", self.doc.path)
            if len(self.errors) > n_errors:
                raise AiflatError(self.errors[-1])
