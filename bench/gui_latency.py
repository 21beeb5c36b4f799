"""GUI latency on a 3840x2160 16-bit frame (offscreen Qt), median and p95 over N repetitions.

1. brush dab + re-render: one MaskModel dab (begin/stroke_to/end = one undo step) followed by
   ``processEvents()`` (Qt repaints the dirty region) — target < 16 ms; also with a forced
   repaint of the whole viewport (worst case).
2. frame change with stretch: ``ImageViewer.set_image`` of a new frame with the current
   StretchState, then a full repaint — target < 50 ms; also with a per-frame STF auto stretch.

Baselines measured in the same run: a naive overlay (a second pyqtgraph ImageItem given the whole
mask again after each dab, the plain ``setImage`` route) and pyqtgraph's own ImageItem with its
default auto-levels on each new frame.

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
from PySide6 import QtWidgets  # noqa: E402

from aiflat_gui.core.maskedit import MaskModel  # noqa: E402
from aiflat_gui.core.stretch import StretchState  # noqa: E402
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

    viewer = ImageViewer()
    viewer.resize(vw, vh)
    viewer.show()
    state = StretchState(mode="asinh", black=7000, white=40000, asinh_beta=20)
    viewer.set_stretch(state)
    viewer.set_image(imgs[0])
    model = MaskModel(shape=(H, W))
    viewer.set_mask_model(model)
    viewer.set_tool("paint")
    viewer.fit()
    for _ in range(5):
        app.processEvents()
    vp = viewer.graphics_view.viewport()

    print(f"# gui_latency: {W}x{H} uint16, viewer {vw}x{vh}, zoom {viewer.zoom_factor():.3f}, "
          f"n={args.n}, Qt platform {os.environ.get('QT_QPA_PLATFORM')}")

    # --- 1. dab + re-render
    def dab_loop(repaint_all: bool, radius: float = 12.0) -> list[float]:
        ts = []
        for x, y in pts:
            t0 = time.perf_counter()
            model.begin_stroke("paint", radius)
            model.stroke_to(x, y)
            model.end_stroke()
            if repaint_all:
                vp.repaint()
            else:
                app.processEvents()
            ts.append(time.perf_counter() - t0)
        return ts

    t_dab_only = []
    for x, y in pts:
        t0 = time.perf_counter()
        model.begin_stroke("erase", 12)
        model.stroke_to(x, y)
        model.end_stroke()
        t_dab_only.append(time.perf_counter() - t0)
    app.processEvents()
    t_dab = dab_loop(False)
    t_dab_full = dab_loop(True)
    viewer.zoom_1to1()
    app.processEvents()
    t_dab_11 = dab_loop(False)
    viewer.fit()
    app.processEvents()

    # baseline: the plain pyqtgraph route, a second ImageItem re-fed the whole mask each dab
    base_item = pg.ImageItem(axisOrder="row-major")
    lut = np.array([[0, 0, 0, 0], [255, 0, 0, 115]], np.uint8)
    base_item.setZValue(15)
    viewer.view_box.addItem(base_item, ignoreBounds=True)
    viewer.overlay_item.setVisible(False)
    base_item.setImage(model.mask, lut=lut, autoLevels=False, levels=(0, 1))
    app.processEvents()
    t_dab_base = []
    for x, y in pts:
        t0 = time.perf_counter()
        model.begin_stroke("paint", 12)
        model.stroke_to(x, y)
        model.end_stroke()
        base_item.setImage(model.mask, lut=lut, autoLevels=False, levels=(0, 1))
        app.processEvents()
        t_dab_base.append(time.perf_counter() - t0)
    viewer.view_box.removeItem(base_item)
    viewer.overlay_item.setVisible(True)
    app.processEvents()

    # --- 2. frame change with stretch
    def frame_loop(autolevel: bool) -> list[float]:
        ts = []
        for i in range(args.n):
            img = imgs[(i + 1) % n_frames]
            t0 = time.perf_counter()
            viewer.set_image(img, autolevel=autolevel)
            vp.repaint()
            ts.append(time.perf_counter() - t0)
        return ts

    t_frame = frame_loop(False)

    # the app's path: the stretch panel's histogram + per-frame auto levels, then one render
    from aiflat_gui.gui.histogram import StretchPanel

    panel = StretchPanel()
    panel.set_state(state)
    panel.set_image(imgs[0], emit=False)
    t_panel = []
    for i in range(args.n):
        img = imgs[(i + 1) % n_frames]
        t0 = time.perf_counter()
        st = panel.set_image(img, emit=False)
        viewer.set_image(img, stretch=st)
        vp.repaint()
        t_panel.append(time.perf_counter() - t0)
    viewer.set_stretch(state)
    viewer.set_stretch(StretchState(mode="auto"))
    t_frame_stf = frame_loop(True)

    # colour: a raw RGGB frame debayered for display and stretched (fewer repetitions: slower)
    n_colour = max(5, min(args.n, 30))
    viewer.set_stretch(state)
    t_bayer = []
    for i in range(n_colour):
        img = imgs[(i + 1) % n_frames]
        t0 = time.perf_counter()
        viewer.set_image(img, color="RGGB")
        vp.repaint()
        t_bayer.append(time.perf_counter() - t0)
    viewer.set_image(imgs[0])

    # baseline: pyqtgraph ImageItem with its default auto-levels, no LUT
    plain = pg.ImageItem(axisOrder="row-major")
    viewer.view_box.addItem(plain)
    viewer.image_item.setVisible(False)
    viewer.overlay_item.setVisible(False)
    t_frame_base = []
    for i in range(args.n):
        img = imgs[(i + 1) % n_frames]
        t0 = time.perf_counter()
        plain.setImage(img)
        vp.repaint()
        t_frame_base.append(time.perf_counter() - t0)

    med = lambda ts: float(np.median(ts))  # noqa: E731
    print(f"dab only (model, r=12)                  {stats(t_dab_only)}")
    print(f"dab + re-render (processEvents, fit)    {stats(t_dab)}   target < 16 ms: "
          f"{'PASS' if med(t_dab) < 0.016 else 'FAIL'}")
    print(f"dab + re-render (processEvents, 1:1)    {stats(t_dab_11)}")
    print(f"dab + full viewport repaint (fit)       {stats(t_dab_full)}")
    print(f"baseline: dab + whole-mask setImage     {stats(t_dab_base)}   "
          f"ratio ours/baseline {med(t_dab) / med(t_dab_base):.3f}")
    print(f"frame change, fixed asinh stretch       {stats(t_frame)}   target < 50 ms: "
          f"{'PASS' if med(t_frame) < 0.050 else 'FAIL'}")
    print(f"frame change, per-frame STF auto        {stats(t_frame_stf)}")
    print(f"frame change + StretchPanel histogram   {stats(t_panel)}")
    print(f"frame change, Bayer RGGB -> RGB (n={n_colour:3d}) {stats(t_bayer)}")
    print(f"baseline: pyqtgraph setImage autolevels {stats(t_frame_base)}   "
          f"ratio ours/baseline {med(t_frame) / med(t_frame_base):.3f}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
