"""The ``aiflat`` command: the same core the GUI uses, for batches at the terminal.

Every user error prints one line ``aiflat: error: FILE: problem`` and exits 2; runtime failures
(disk full, AI refusal) exit 1; Ctrl-C cancels cleanly (no partial output) and exits 130.
No traceback ever reaches the user (``AIFLAT_DEBUG=1`` shows them for developers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from . import __version__
from .errors import AiflatError, Cancelled, InputError, describe
from .text import plural

from .pipeline import (EXPORT_TARGETS, FLAT_METHODS, OUTPUT_FORMATS, PROVIDERS, REFERENCE_METHODS, FlatParams,
                       MaskParams, ReferenceParams)


class TerminalProgress:
    """A progress bar with ETA on stderr (only redrawn when stderr is a terminal, else a line per
    10%). Usable as a ``ProgressFn``."""

    def __init__(self, label: str, stream=None, quiet: bool = False):
        self.label = label
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.start = time.monotonic()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw = 0.0
        self._last_decile = -1

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.quiet:
            return
        now = time.monotonic()
        elapsed = now - self.start
        eta = (elapsed / fraction - elapsed) if fraction > 0.01 else None
        eta_s = f" ETA {int(eta // 60):d}:{int(eta % 60):02d}" if eta is not None else ""
        if self.tty:
            if now - self._last_draw < 0.1 and fraction < 1.0:
                return
            self._last_draw = now
            width = 30
            filled = int(round(width * fraction))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {fraction * 100:5.1f}%{eta_s} {message[:40]:<40}")
            if fraction >= 1.0:
                self.stream.write("\n")
            self.stream.flush()
        else:
            decile = int(fraction * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(f"{self.label}: {fraction * 100:.0f}%{eta_s} {message}\n")
                self.stream.flush()


def _progress(args, label: str) -> TerminalProgress:
    return TerminalProgress(label, quiet=getattr(args, "quiet", False))


def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


def _open_options(args, path) -> dict:
    """Reader options from the command line for ``path``: ``--row-order`` for FITS (a warning, and
    nothing, for other inputs)."""
    from .io import fits_options

    opts = fits_options(path, row_order=getattr(args, "row_order", None))
    if getattr(args, "row_order", None) and not opts:
        print(f"aiflat: warning: {path}: --row-order applies to FITS only; ignored", file=sys.stderr)
    return opts


def _open(args, path):
    from .pipeline import open_input

    seq = open_input(path, getattr(args, "byte_order", None), **_open_options(args, path))
    for w in seq.warnings:
        print(f"aiflat: warning: {seq.path}: {w}", file=sys.stderr)
    return seq


def _reference_params(args):
    from .pipeline import ReferenceParams

    return ReferenceParams(method=getattr(args, "reference_method", None) or ReferenceParams.method,
                           max_frames=getattr(args, "max_frames", None))


def _flat_params(args):
    from .pipeline import FlatParams

    return FlatParams(method=args.method, grow=args.grow, feather=args.feather, pedestal=args.pedestal,
                      max_frames=getattr(args, "max_frames", None))


def _mask_params(args):
    from .pipeline import MaskParams

    opts: dict = {}
    if args.provider == "gemini":
        for key in ("model", "prompt_file", "image_size", "timeout", "cache_dir"):
            v = getattr(args, key, None)
            if v is not None:
                opts[key] = v
        opts["reroll"] = bool(getattr(args, "reroll", False))
    elif args.provider == "file":
        if not getattr(args, "mask_file", None):
            raise InputError("--provider file needs --mask-file MASK")
        opts["path"] = args.mask_file
    if args.provider == "local" and args.sensitivity is not None:
        return MaskParams(provider="local", sensitivity=args.sensitivity)
    return MaskParams(provider=args.provider, options=opts)


# -- commands --------------------------------------------------------------------------------

def cmd_info(args) -> int:
    with _open(args, args.path) as seq:
        d = seq.describe()
        rows = (seq.metadata or {}).get("roworder_reason")
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    ts = d["timestamps"]
    print(f"{d['path']}")
    print(f"  format      {d['format']}")
    print(f"  frames      {d['frames']}")
    print(f"  size        {d['width']} x {d['height']} x {d['channels']}")
    print(f"  samples     {d['dtype']} ({d['bit_depth']} bits used)")
    print(f"  colour      {d['color']}")
    if rows:
        print(f"  row order   {rows}")
    if d["byte_order"]:
        print(f"  byte order  {d['byte_order']} ({d['byte_order_reason']})")
    print(f"  timestamps  {ts['first'] + ' .. ' + ts['last'] if ts else 'none'}")
    for w in d["warnings"]:
        print(f"  warning     {w}")
    return 0


def cmd_demo(args) -> int:
    from .io.demo import write_demo

    paths = write_demo(args.out_dir, frames=args.frames, width=args.width, height=args.height,
                       seed=args.seed, offset=args.offset, difficulty=args.difficulty)
    for name, p in paths.items():
        _say(args, f"{name:10s} {p}")
    return 0


#: option -> (lowest, highest) accepted value; checked before any work (None: no bound)
OPTION_RANGES = {
    "grow": (0, 1000), "feather": (0, 1000), "pedestal": (0.0, 1e7), "max_frames": (0, 10 ** 9),
    "jobs": (0, 1024), "sensitivity": (0.0, 1.0), "timeout": (0.001, 86400.0),
    "frames": (1, 100000), "width": (16, 16384), "height": (16, 16384), "offset": (0, 60000),
    "seed": (0, 2 ** 32 - 1),
}

#: options naming files the run reads (every one is protected from being an output)
INPUT_OPTIONS = ("path", "flat", "mask", "reference", "clean", "prompt_file", "mask_file", "inputs", "manifest", "lights")


def _check_ranges(args) -> None:
    import math

    for name, (lo, hi) in OPTION_RANGES.items():
        v = getattr(args, name, None)
        if v is None or isinstance(v, bool):
            continue
        flag = "--" + name.replace("_", "-")
        if not math.isfinite(v) or not lo <= v <= hi:
            raise InputError(f"{flag} must be between {lo:g} and {hi:g}, not {v}")


def _output_kind(args) -> str:
    """How -o is written: a file, a folder replaced as a whole (a TIFF-folder video) or a folder
    that results are written into (run, batch)."""
    if args.command in ("run", "batch"):
        return "folder"
    if args.command == "calibrate":
        ext = Path(args.output).suffix if args.output else ""
        if args.format == "tiff-folder" or (not args.format and not ext and Path(args.path).is_dir()):
            return "replace-folder"
    return "file"


def _check_args(args) -> None:
    """Every check that needs no file read, in one place, before any work: numeric ranges, and the
    output guard (-o may not be any input of the run: path, hard link or symlink; nor a name that
    cannot be written)."""
    from .io.outputs import guard_outputs

    _check_ranges(args)
    if getattr(args, "output", None) is None:
        return
    inputs: list = []
    for name in INPUT_OPTIONS:
        v = getattr(args, name, None)
        inputs.extend(v if isinstance(v, list) else [v])
    guard_outputs([(args.output, _output_kind(args))], inputs)


def cmd_reference(args) -> int:
    from .io.single import write_image
    from .pipeline import compute_reference

    with _open(args, args.path) as seq:
        ref = compute_reference(seq, _reference_params(args), progress=_progress(args, "reference"))
    write_image(args.output, ref)
    _say(args, f"reference  {args.output}")
    return 0


def _reference_for(args, seq):
    from .io.single import read_image
    from .pipeline import compute_reference

    if getattr(args, "reference", None):
        ref = read_image(args.reference)
        if ref.shape[:2] != (seq.height, seq.width):
            raise InputError(f"reference is {ref.shape[1]}x{ref.shape[0]} but the video is "
                             f"{seq.width}x{seq.height}", args.reference)
        return ref.astype("float32")
    return compute_reference(seq, _reference_params(args), progress=_progress(args, "reference"))


def cmd_mask(args) -> int:
    from .pipeline import find_mask, save_mask

    with _open(args, args.path) as seq:
        ref = _reference_for(args, seq)
        _, result = find_mask(seq, ref, _mask_params(args), progress=_progress(args, "mask"))
    save_mask(args.output, result.mask)
    rep = result.report or {}
    text = rep.get("text")
    if text:
        print(f"model says: {text}", file=sys.stderr)
    _say(args, f"mask       {args.output}  ({int(result.mask.sum())} dust pixels)")
    return 0


def _verify_options(args):
    from .pipeline import VerifyOptions

    return VerifyOptions(enabled=not getattr(args, "no_verify", False),
                         keep_unverified=bool(getattr(args, "keep_unverified", False)))


def _tell_verify(args, outcome) -> None:
    """What the verify step refused and why on stderr (also with -q: it changes the result); its
    summary with the other summaries."""
    for line in outcome.refusals():
        print(f"aiflat: verify: {line}", file=sys.stderr)
    _say(args, f"verify     {outcome.summary()}")


def _verified(args, seq):
    """A mask filter for ``seq``: the verify step, reporting on stderr."""
    from .pipeline import verify_step

    def check(mask):
        outcome = verify_step(mask, seq, _verify_options(args), progress=_progress(args, "verify"))
        _tell_verify(args, outcome)
        return outcome

    return check


def cmd_flat(args) -> int:
    from .io.single import read_image
    from .pipeline import build_flat, load_mask, write_flat

    with _open(args, args.path) as seq:
        # every input is checked before the reference (the long part) is computed
        mask, warnings = load_mask(args.mask, (seq.height, seq.width))
        for w in warnings:
            print(f"aiflat: warning: {args.mask}: {w}", file=sys.stderr)
        if args.method == "ai" and not args.clean:
            raise InputError("--method ai needs --clean CLEAN (the AI's dust-free image)")
        clean = read_image(args.clean) if args.clean else None
        outcome = _verified(args, seq)(mask)
        ref = _reference_for(args, seq)
        flat = build_flat(seq, ref, outcome.mask, _flat_params(args), clean=clean, progress=_progress(args, "flat"),
                          measured=outcome.measured)
    write_flat(args.output, flat, args.pedestal)
    _say(args, f"flat       {args.output}")
    return 0


def cmd_calibrate(args) -> int:
    from .pipeline import calibrate_sequence, check_calibration, flat_from_mask_file, load_flat, raw_output_note

    with _open(args, args.path) as seq:
        check_calibration(seq, args.output, args.format)
        if args.flat:
            flat = load_flat(args.flat, seq)
            _warn_pedestal(args)
        else:
            flat = flat_from_mask_file(seq, args.mask, _flat_params(args), _reference_params(args),
                                       progress=_progress(args, "flat"),
                                       warn=lambda w: print(f"aiflat: warning: {args.mask}: {w}", file=sys.stderr),
                                       mask_filter=_verified(args, seq))
        note = raw_output_note(seq, args.output, args.format)
        if note:
            print(f"aiflat: note: {seq.path}: {note}", file=sys.stderr)
        stats = calibrate_sequence(seq, flat, args.output, fmt=args.format, pedestal=args.pedestal,
                                   overwrite=not args.no_overwrite, progress=_progress(args, "calibrate"))
    _say(args, f"calibrated {stats.output}  ({plural(stats.frames, 'frame')}, {plural(stats.clipped, 'pixel')} clipped)")
    return 0


def cmd_export_flat(args) -> int:
    from .io.single import read_image
    from .pipeline import export_flat

    flat = read_image(args.flat)
    out = export_flat(flat, args.target, args.output, source=args.flat, lights=args.lights)
    _say(args, f"{args.target:10s} {out}")
    return 0


def cmd_run(args) -> int:
    from .pipeline import MaskParams, run_pipeline

    mask = _mask_params(args) if (not args.mask or args.provider == "gemini") else MaskParams(provider=args.provider)
    result = run_pipeline(args.path, args.output, mask=mask, flat=_flat_params(args),
                          reference=_reference_params(args), mask_path=args.mask, clean_path=args.clean,
                          fmt=args.format, byte_order=args.byte_order, progress=_progress(args, "run"),
                          verify=_verify_options(args), open_options=_open_options(args, args.path))
    _tell_verify(args, result["verify"])
    for name, p in result.items():
        if isinstance(p, (str, Path)):
            _say(args, f"{name:10s} {p}")
    _say(args, f"{plural(result['specks'], 'speck')}, {plural(result['dust_pixels'], 'dust pixel')}, "
               f"{plural(result['frames'], 'frame')}, {plural(result['clipped'], 'pixel')} clipped")
    for w in result.get("warnings", []):
        print(f"aiflat: warning: {w}", file=sys.stderr)
    return 0


def _warn_pedestal(args) -> None:
    from .pipeline import pedestal_warning

    w = pedestal_warning(args.flat, args.pedestal)
    if w:
        print(f"aiflat: warning: {args.flat}: {w}", file=sys.stderr)


def cmd_batch(args) -> int:
    from .pipeline import batch_calibrate

    _warn_pedestal(args)
    inputs = list(args.inputs) + [f"@{m}" for m in args.manifest or []]
    if args.cluster:
        from .cluster import cluster_batch

        def said(item) -> None:  # per-file errors as they happen, on a line of their own
            if item.status == "failed":
                note = item.note if Path(item.input).name in item.note else f"{item.input}: {item.note}"
                print(f"{chr(10) if sys.stderr.isatty() else ''}aiflat: error: {note}", file=sys.stderr)

        summary = cluster_batch(inputs, args.flat, args.output, args.cluster, fmt=args.format, pedestal=args.pedestal,
                                resume=args.resume, progress=_progress(args, "batch"), on_item=said,
                                row_order=args.row_order)
    else:
        summary = batch_calibrate(inputs, args.flat, args.output, fmt=args.format, jobs=args.jobs,
                                  pedestal=args.pedestal, progress=_progress(args, "batch"), resume=args.resume,
                                  row_order=args.row_order)
    print(summary.text())
    if args.cluster or args.report:
        js, cs = summary.write_report(args.report or Path(args.output) / "batch_report")
        _say(args, f"report     {js}\n           {cs}")
    if summary.items and all(it.status == "skipped" for it in summary.items):  # nothing done
        print("aiflat: error: no file was calibrated (every one was skipped)", file=sys.stderr)
        return 2
    return 0 if summary.ok else 1


# -- parser ------------------------------------------------------------------------------------

METHOD_HELP = ("flat method (default auto: multiframe when the video has at least 8 frames -- the sun's drift "
               "under the fixed dust measures the shadows best -- else local)")


def _add_verify(p):
    p.add_argument("--no-verify", action="store_true",
                   help="use every speck of the mask as it is (default: check each speck against the video -- "
                        "dust stays still on the sensor while the target moves -- and leave out of the flat what "
                        "the video does not show to be dust)")
    p.add_argument("--keep-unverified", action="store_true",
                   help="keep specks the video cannot decide (e.g. much wider than the drift); still leave out "
                        "those shown not to be dust")


def _add_byte_order(p):
    p.add_argument("--byte-order", choices=("auto", "little", "big"), default="auto",
                   help="SER byte order (auto: sniffed from the data)")


def _add_row_order(p):
    p.add_argument("--row-order", choices=("top-down", "bottom-up"),
                   help="FITS row order (default: the ROWORDER card; FITS written by Siril without one are "
                        "bottom-up; else stored order)")


MAX_FRAMES_HELP = "frames for the reference (default 128) and the multiframe flat (default 64), evenly spaced; 0 = all"


def _add_reference(p, flat: bool = True):
    p.add_argument("--reference-method", choices=REFERENCE_METHODS, default=ReferenceParams.method,
                   help="how the reference is made (default %(default)s)")
    p.add_argument("--max-frames", type=int, help=MAX_FRAMES_HELP if flat else
                   "reference from N evenly spaced frames (default 128; 0 = all frames)")


def _add_flat(p, methods=FLAT_METHODS, method_help: str = METHOD_HELP):
    p.add_argument("--method", choices=methods, default=FlatParams.method, help=method_help)
    p.add_argument("--grow", type=int, default=FlatParams.grow, help="dilate the mask by PX (default %(default)s)")
    p.add_argument("--feather", type=int, default=FlatParams.feather,
                   help="soften the flat's edge over PX inside the mask")
    p.add_argument("--pedestal", type=float, default=FlatParams.pedestal, help="camera offset in ADU")


def _add_provider(p, default=MaskParams.provider):
    p.add_argument("--provider", choices=PROVIDERS, default=default,
                   help="who finds the dust (default: %(default)s, offline)")
    p.add_argument("--sensitivity", type=float,
                   help=f"local detector sensitivity 0..1 (default {MaskParams.sensitivity})")
    p.add_argument("--model", help="Gemini model id (default gemini-3-pro-image)")
    p.add_argument("--prompt-file", help="text file with the prompt to send")
    p.add_argument("--image-size", choices=("1K", "2K", "4K"), help="Gemini output size")
    p.add_argument("--timeout", type=float, help="Gemini request timeout in seconds")
    p.add_argument("--cache-dir", help="where Gemini answers are cached")
    p.add_argument("--reroll", action="store_true", help="ask Gemini again, bypassing the cache")
    p.add_argument("--mask-file", help="mask to import with --provider file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiflat", description="Remove sensor-dust shadows from solar, lunar and planetary videos.")
    parser.add_argument("--version", action="version", version=f"aiflat {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or summaries")
    parser.add_argument("--fsync", action="store_true",
                        help="flush every output to disk before it gets its final name (complete even after a "
                             "power cut; writing runs at disk speed). Also AIFLAT_FSYNC=1")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="describe a video or image sequence")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_byte_order(p)
    _add_row_order(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="write a synthetic dusty solar SER and its ground truth")
    p.add_argument("out_dir")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--offset", type=int, default=0, help="camera pedestal in ADU")
    p.add_argument("--difficulty", choices=("easy", "normal", "hard"), default="normal")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("reference", help="build a reference frame")
    p.add_argument("path")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--method", dest="reference_method", choices=REFERENCE_METHODS, default=ReferenceParams.method)
    p.add_argument("--max-frames", type=int,
                   help="use N evenly spaced frames (default 128: the dust is static and the median of 128 "
                        "frames is ample; 0 = all frames, exact but slower on long videos)")
    _add_byte_order(p)
    _add_row_order(p)
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("mask", help="find the dust and write a mask (PNG, 255 = dust)")
    p.add_argument("path")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--reference", help="use this reference frame instead of computing one")
    _add_reference(p, flat=False)
    _add_provider(p)
    _add_byte_order(p)
    _add_row_order(p)
    p.set_defaults(func=cmd_mask)

    p = sub.add_parser("flat", help="synthesise a flat that is exactly 1.0 outside the mask")
    p.add_argument("path")
    p.add_argument("--mask", required=True)
    p.add_argument("-o", "--output", required=True)
    _add_flat(p)
    p.add_argument("--clean", help="AI dust-free image for --method ai")
    p.add_argument("--reference", help="reference frame (default: median of the video)")
    _add_reference(p)
    _add_verify(p)
    _add_byte_order(p)
    _add_row_order(p)
    p.set_defaults(func=cmd_flat)

    p = sub.add_parser("calibrate", help="divide every frame by the flat")
    p.add_argument("path")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--flat")
    g.add_argument("--mask")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--format", choices=OUTPUT_FORMATS, help="output format (default: from -o, else the input's)")
    _add_flat(p, FLAT_METHODS[:-1], "with --mask: the " + METHOD_HELP)
    _add_reference(p)
    p.add_argument("--no-overwrite", action="store_true", help="refuse to replace an existing output")
    _add_verify(p)
    _add_byte_order(p)
    _add_row_order(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("export-flat", help="write the flat for another program")
    p.add_argument("flat")
    p.add_argument("--target", choices=EXPORT_TARGETS, required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--lights", metavar="FILE|KIND",
                   help="what the flat will calibrate, for the row order the program reads them in: the video "
                        "or FITS file/folder itself, or ser, avi, fits-top-down, fits-bottom-up (default ser: "
                        "Siril reads SER and AVI bottom-up, so the Siril flat is stored flipped; FITS lights "
                        "in their stored order)")
    p.set_defaults(func=cmd_export_flat)

    p = sub.add_parser("run", help="reference, mask, flat, calibration and report in one go")
    p.add_argument("path")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--mask", help="use this mask instead of a provider")
    p.add_argument("--clean", help="AI dust-free image for --method ai")
    p.add_argument("--format", choices=OUTPUT_FORMATS)
    _add_flat(p, method_help=METHOD_HELP + "; ai: the clean image from --clean, or from Gemini with --provider gemini")
    _add_reference(p)
    _add_verify(p)
    _add_provider(p)
    _add_byte_order(p)
    _add_row_order(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("batch", help="calibrate every video of a session with one flat")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--flat", required=True)
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--format", choices=OUTPUT_FORMATS)
    p.add_argument("--pedestal", type=float, default=FlatParams.pedestal)
    p.add_argument("--jobs", type=int, default=0, help="parallel jobs (0: one per core; not with --cluster)")
    p.add_argument("--manifest", action="append", metavar="FILE",
                   help="a file listing inputs, one path or glob pattern a line (also @FILE among the inputs)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run on a Dask cluster: a scheduler address (tcp://HOST:8786), its scheduler file (.json), "
                        "or local:N for N worker processes here (needs pip install 'aiflat-gui[cluster]')")
    p.add_argument("--resume", action="store_true",
                   help="keep outputs that are already complete and were made with this flat from this input "
                        "(checked against the input's frames and size and the output's receipt)")
    p.add_argument("--report", metavar="STEM",
                   help="write the run report to STEM.json and STEM.csv (default with --cluster: "
                        "OUTPUT/batch_report)")
    _add_row_order(p)
    p.set_defaults(func=cmd_batch)
    for subparser in sub.choices.values():  # `aiflat run -q ...` works as well as `aiflat -q run ...`
        subparser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                               help="no progress or summaries")
        subparser.add_argument("--fsync", action="store_true", default=argparse.SUPPRESS,
                               help="flush outputs to disk before renaming them into place")
    return parser


def _quiet_libraries() -> None:
    """Library chatter never reaches the user: OpenCV's native log (libpng/JPEG warnings), Python
    warnings (numpy's RuntimeWarning with its source line) and library log records (tifffile's
    "invalid page offset") are dropped; every problem that matters reaches the user as our own
    one-line error or warning. AIFLAT_DEBUG=1 shows them all."""
    import logging
    import warnings

    from .io import inputs

    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")  # read when cv2 is imported (lazily, later)
    inputs.QUIET_NATIVE = True  # libpng/libjpeg print to stderr themselves
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())  # else logging's last resort prints WARNING records to stderr


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP, handled like Ctrl-C: the stack unwinds, temporary outputs are removed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        import signal

        return signal.Signals(self.signum).name


@contextlib.contextmanager
def _signals_cancel():
    """While a command runs, SIGTERM and SIGHUP (a closed terminal, ``kill``) unwind like Ctrl-C, so
    no hidden temporary output is left behind (only the main thread can install handlers)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Terminated(signum)

    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        s = getattr(signal, name, None)
        if s is not None:
            old[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = os.environ.get("AIFLAT_DEBUG") == "1"
    if not debug:
        _quiet_libraries()
    if getattr(args, "fsync", False):
        from .io.base import set_durable

        set_durable(True)  # through the environment, so batch workers inherit it
    try:
        with _signals_cancel():
            _check_args(args)
            return int(args.func(args) or 0)
    except Terminated as sig:
        print(f"\naiflat: stopped by {sig}; no output was written", file=sys.stderr)
        return 128 + sig.signum
    except AiflatError as err:
        if debug:
            raise
        print(f"aiflat: error: {err}", file=sys.stderr)
        return err.exit_code
    except (KeyboardInterrupt, Cancelled):
        print("\naiflat: cancelled; no output was written", file=sys.stderr)
        return 130
    except MemoryError:
        print("aiflat: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if debug:
            raise
        print(f"aiflat: error: {describe(exc)}; rerun with AIFLAT_DEBUG=1 and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
