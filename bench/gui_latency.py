"""GUI latency on a 3840x2160 16-bit frame (offscreen Qt), median and p95 over N repetitions.

1. brush dab + re-render: one MaskModel dab (begin/stroke_to/end = one undo step) followed by
   ``processEvents()`` (Qt repaints the dirty region) — target < 16 ms; also with a forced
   repaint of the whole viewport (worst case) and at 1:1 zoom.
2. frame change with stretch: ``ImageViewer.set_image`` of a new frame with the current
   StretchState, then a full repaint — target < 50 ms; also with a per-frame STF, through the
   StretchPanel (histogram + auto levels, the app's path) and for a raw Bayer frame.

Baselines run interleaved with ours (same iteration, so machine load hits both alike) in a
separate plain pyqtgraph view of the same size: the mask as a second ``ImageItem`` re-fed the
whole mask after each dab, and a new frame through ``ImageItem.setImage`` with its default
auto-levels.

Run: ``.venv/bin/python bench/gui_latency.py [--n 100] [--size 1280x800]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402

from aiflat_gui.core.maskedit import MaskModel  # noqa: E402
from aiflat_gui.core.stretch import StretchState  # noqa: E402
from aiflat_gui.gui.histogram import StretchPanel  # noqa: E402
from aiflat_gui.gui.viewer import ImageViewer  # noqa: E402

W, H = 3840, 2160


def frames(n: int, seed: int = 1) -> list[np.ndarray]:
    """``n`` distinct 16-bit solar-disc-like frames (noise + gradient + disc)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    disc = (((xx - W / 2) ** 2 + (yy - H / 2) ** 2) < (0.45 * H) ** 2).astype(np.float32)
    base = (8000 + 30000 * disc + 3 * xx).astype(np.float32)
    out = []
    for i in range(n):
        noise = rng.normal(0, 400, size=(H // 4, W // 4)).astype(np.float32)
        noise = np.repeat(np.repeat(noise, 4, axis=0), 4, axis=1)
        out.append(np.clip(base + noise + 500 * i, 0, 65535).astype(np.uint16))
    return out


def stats(ts: list[float]) -> str:
    a = np.asarray(ts) * 1000.0
    return f"median {np.median(a):7.2f} ms   p95 {np.percentile(a, 95):7.2f} ms"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="repetitions (default %(default)s)")
    ap.add_argument("--size", default="1280x800", help="viewer size (default %(default)s)")
    args = ap.parse_args(argv)
    vw, vh = (int(v) for v in args.size.split("x"))
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])

    n_frames = 8
    imgs = frames(n_frames)
    rng = np.random.default_rng(2)
    pts = rng.uniform([50, 50], [W - 50, H - 50], size=(args.n, 2))
    state = StretchState(mode="asinh", black=7000, white=40000, asinh_beta=20)

    viewer = ImageViewer()
    viewer.resize(vw, vh)
    viewer.show()
    viewer.set_stretch(state)
    viewer.set_image(imgs[0])
    model = MaskModel(shape=(H, W))
    viewer.set_mask_model(model)
    viewer.set_tool("paint")
    viewer.fit()
    vp = viewer.graphics_view.viewport()

    # the baseline: a plain pyqtgraph view of the same size
    base_view = pg.GraphicsView()
    base_view.resize(vw, vh)
    base_vb = pg.ViewBox(lockAspect=True, invertY=True)
    base_view.setCentralItem(base_vb)
    base_img = pg.ImageItem(axisOrder="row-major")
    base_mask_item = pg.ImageItem(axisOrder="row-major")
    base_mask_item.setZValue(10)
    base_vb.addItem(base_img)
    base_vb.addItem(base_mask_item)
    base_img.setImage(imgs[0])
    base_model = MaskModel(shape=(H, W))
    mask_lut = np.array([[0, 0, 0, 0], [255, 0, 0, 115]], np.uint8)
    base_mask_item.setImage(base_model.mask, lut=mask_lut, autoLevels=False, levels=(0, 1))
    base_view.show()
    base_vb.setRange(QtCore.QRectF(0, 0, W, H), padding=0)
    base_vp = base_view.viewport()
    for _ in range(5):
        app.processEvents()

    print(f"# gui_latency: {W}x{H} uint16, viewer {vw}x{vh}, zoom {viewer.zoom_factor():.3f}, "
          f"n={args.n}, Qt platform {os.environ.get('QT_QPA_PLATFORM')}, {os.cpu_count()} CPUs")

    def dab(m: MaskModel, x: float, y: float, mode: str = "paint") -> None:
        m.begin_stroke(mode, 12)
        m.stroke_to(x, y)
        m.end_stroke()

    # --- 1. dab + re-render
    t_dab_only = [timed(lambda: dab(model, x, y, "erase")) for x, y in pts]
    app.processEvents()
    t_dab, t_dab_base = [], []
    for x, y in pts:
        t_dab.append(timed(lambda: (dab(model, x, y), app.processEvents())))

        def base_dab():
            dab(base_model, x, y)
            base_mask_item.setImage(base_model.mask, lut=mask_lut, autoLevels=False, levels=(0, 1))
            app.processEvents()
        t_dab_base.append(timed(base_dab))
    model.clear_history()
    t_dab_full = [timed(lambda: (dab(model, x + 7, y), vp.repaint())) for x, y in pts]
    viewer.zoom_1to1()
    app.processEvents()
    t_dab_11 = [timed(lambda: (dab(model, x, y + 7), app.processEvents())) for x, y in pts]
    viewer.fit()
    app.processEvents()

    # --- 2. frame change with stretch (baseline interleaved)
    t_frame, t_frame_base = [], []
    for i in range(args.n):
        img = imgs[(i + 1) % n_frames]
        t_frame.append(timed(lambda: (viewer.set_image(img), vp.repaint())))
        t_frame_base.append(timed(lambda: (base_img.setImage(img), base_vp.repaint())))

    viewer.set_stretch(StretchState(mode="auto"))
    t_frame_stf = []
    for i in range(args.n):
        img = imgs[(i + 1) % n_frames]
        t_frame_stf.append(timed(lambda: (viewer.set_image(img, autolevel=True), vp.repaint())))

    # the app's path: the stretch panel's histogram + per-frame auto levels, then one render
    panel = StretchPanel()
    panel.set_state(state)
    panel.set_image(imgs[0], emit=False)
    t_panel = []
    for i in range(args.n):
        img = imgs[(i + 1) % n_frames]

        def panel_change():
            st = panel.set_image(img, emit=False)
            viewer.set_image(img, stretch=st)
            vp.repaint()
        t_panel.append(timed(panel_change))

    # colour: a raw RGGB frame debayered for display and stretched (fewer repetitions: slower)
    n_colour = max(5, min(args.n, 30))
    viewer.set_stretch(state)
    t_bayer = []
    for i in range(n_colour):
        img = imgs[(i + 1) % n_frames]
        t_bayer.append(timed(lambda: (viewer.set_image(img, color="RGGB"), vp.repaint())))

    med = lambda ts: float(np.median(ts))  # noqa: E731
    print(f"dab only (model, r=12)                  {stats(t_dab_only)}")
    print(f"dab + re-render (processEvents, fit)    {stats(t_dab)}   target < 16 ms: "
          f"{'PASS' if med(t_dab) < 0.016 else 'FAIL'}")
    print(f"  baseline: dab + whole-mask setImage   {stats(t_dab_base)}   "
          f"ratio ours/baseline {med(t_dab) / med(t_dab_base):.3f}")
    print(f"dab + re-render (processEvents, 1:1)    {stats(t_dab_11)}")
    print(f"dab + full viewport repaint (fit)       {stats(t_dab_full)}")
    print(f"frame change, fixed asinh stretch       {stats(t_frame)}   target < 50 ms: "
          f"{'PASS' if med(t_frame) < 0.050 else 'FAIL'}")
    print(f"  baseline: pyqtgraph setImage autolevels {stats(t_frame_base)} "
          f"ratio ours/baseline {med(t_frame) / med(t_frame_base):.3f}")
    print(f"frame change, per-frame STF auto        {stats(t_frame_stf)}")
    print(f"frame change + StretchPanel histogram   {stats(t_panel)}")
    print(f"frame change, Bayer RGGB -> RGB (n={n_colour:3d}) {stats(t_bayer)}")
    viewer.close()
    base_view.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
