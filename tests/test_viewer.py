"""The image viewer and the stretch panel, driven with real (simulated) mouse and key events."""

import hashlib

import cv2
import numpy as np
import pytest
from PySide6 import QtCore
from PySide6.QtCore import Qt

from aiflat_gui.core.maskedit import MaskModel
from aiflat_gui.core.stretch import StretchState
from aiflat_gui.errors import InputError
from aiflat_gui.gui.histogram import StretchPanel
from aiflat_gui.gui.viewer import ImageViewer

H, W = 120, 160


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def frame(seed=0, h=H, w=W):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 2000 + 20 * xx + rng.normal(0, 30, (h, w))
    return np.clip(img, 0, 65535).astype(np.uint16)


def shown_viewer(qtbot, width: int, height: int) -> ImageViewer:
    """An ImageViewer of this size, shown and exposed."""
    v = ImageViewer()
    qtbot.addWidget(v)
    v.resize(width, height)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def viewer(qtbot):
    v = shown_viewer(qtbot, 480, 360)
    v.set_image(frame())
    v.set_mask_model(MaskModel(shape=(H, W)))
    v.fit()
    qtbot.wait(1)
    return v


def vp(v):
    return v.graphics_view.viewport()


def grab_rgb(v, x, y):
    """The colour the screen shows at the centre of image pixel (x, y)."""
    img = v.graphics_view.viewport().grab().toImage()
    p = v.pixel_to_viewport(x, y)
    c = img.pixelColor(p)
    return c.red(), c.green(), c.blue()


def drag(qtbot, v, points, button=Qt.MouseButton.LeftButton, pause=0):
    """Press at the first point, move through the others, release at the last. ``pause`` (ms)
    between moves lets pyqtgraph's 100 Hz mouse-move rate limit through (needed for panning)."""
    w = vp(v)
    pos = [v.pixel_to_viewport(x, y) for x, y in points]
    qtbot.mouseMove(w, pos[0])
    qtbot.mousePress(w, button, pos=pos[0])
    for p in pos[1:]:
        if pause:
            qtbot.wait(pause)
        qtbot.mouseMove(w, p)
    qtbot.mouseRelease(w, button, pos=pos[-1])


def test_set_image_keeps_the_raw_array_and_reads_values(viewer):
    img = frame(3)
    viewer.set_image(img)
    assert viewer.image() is img
    assert viewer.value_at(10, 20) == int(img[20, 10])
    assert viewer.value_at(-1, 0) is None and viewer.value_at(W, 0) is None
    assert np.shares_memory(viewer.image_item.image, img)  # mono data goes to pyqtgraph as is (no copy)
    assert viewer.image_item.lut.shape == (256,)


def test_float_nan_and_unusual_types_display_and_none_clears(viewer):
    f = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    f[5, 5] = np.nan
    viewer.set_image(f, autolevel=True)
    assert 0 <= viewer.levels()[0] < viewer.levels()[1] <= 1
    assert grab_rgb(viewer, 150, 110)[0] > grab_rgb(viewer, 10, 10)[0] + 100
    assert np.isnan(viewer.value_at(5, 5))
    u32 = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 1000)
    viewer.set_image(u32, levels=(0, int(u32.max())))
    assert grab_rgb(viewer, 150, 110)[0] > 200
    viewer.set_image(None)
    assert viewer.image() is None and viewer.value_at(0, 0) is None
    viewer.fit()  # no image: nothing to do, no error


def test_stretch_changes_the_screen_but_never_the_data(viewer, qtbot):
    img = viewer.image()
    before = digest(img)
    viewer.set_levels(2000, 5200)
    dark = grab_rgb(viewer, 40, 60)
    viewer.set_stretch(StretchState(mode="asinh", black=2000, white=5200, asinh_beta=50))
    bright = grab_rgb(viewer, 40, 60)
    assert bright[0] > dark[0] + 40
    viewer.set_stretch(StretchState(mode="linear", black=0, white=1000))
    assert grab_rgb(viewer, 40, 60)[0] == 255  # everything above white
    assert viewer.levels() == (0.0, 1000.0)
    viewer.set_image(img, autolevel=True)
    assert viewer.levels()[0] > 1000
    assert digest(img) == before and viewer.image() is img


def test_auto_mode_uses_the_stf_per_frame(viewer):
    viewer.set_stretch(StretchState(mode="auto"))
    st = viewer.auto_levels()
    img = viewer.image()
    assert st.mode == "auto" and st.black >= img.min() and st.white == img.max()
    # the frame's median lands at a quarter of the screen range
    shown = viewer.image_item.lut[int(255 * (np.median(img) - st.black) / (st.white - st.black))]
    assert abs(int(shown) - 64) <= 6
    viewer.set_image(frame(1) // 2, autolevel=True)
    assert viewer.stretch().white < st.white


def test_drag_paints_a_gap_free_stroke_along_the_path_then_undo_redo(viewer, qtbot):
    model = viewer.mask_model()
    viewer.set_tool("paint")
    viewer.set_brush_radius(2)
    finished = []
    viewer.strokeFinished.connect(lambda: finished.append(1))
    drag(qtbot, viewer, [(20, 20), (120, 20), (120, 100)])
    m = model.mask
    assert finished == [1]
    assert m[20, 20] and m[20, 70] and m[20, 120] and m[60, 120] and m[100, 120]
    assert m[60, 60] == 0 and m[100, 20] == 0  # nothing off the path
    n, _ = cv2.connectedComponents(m, connectivity=8)
    assert n - 1 == 1
    assert len(model.undo_steps) == 1
    painted = m.copy()
    # the overlay shows it (red over a grey image)
    r, g, b = grab_rgb(viewer, 70, 20)
    assert r > g + 30 and r > b + 30
    # Ctrl+Z / Ctrl+Shift+Z on the view
    qtbot.keyClick(viewer.graphics_view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert model.mask.sum() == 0
    r, g, b = grab_rgb(viewer, 70, 20)
    assert abs(r - g) < 12
    qtbot.keyClick(viewer.graphics_view, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(model.mask, painted)


def test_one_fast_mouse_move_leaves_no_gap(viewer, qtbot):
    viewer.set_tool("paint")
    viewer.set_brush_radius(1)
    drag(qtbot, viewer, [(5, 5), (150, 110)])  # press, one move across the image, release
    m = viewer.mask_model().mask
    n, _ = cv2.connectedComponents(m, connectivity=8)
    assert n - 1 == 1
    for t in np.linspace(0, 1, 50):
        x, y = 5 + 145 * t, 5 + 105 * t
        assert m[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2].any()


def test_erase_tool_and_single_click_dab(viewer, qtbot):
    model = viewer.mask_model()
    model.apply(np.ones((H, W), bool), "fill")
    viewer.set_tool("erase")
    viewer.set_brush_radius(3)
    drag(qtbot, viewer, [(30, 60), (130, 60)])
    assert model.mask[60, 30:131].sum() == 0 and model.mask[20, 80] == 1
    viewer.set_tool("paint")
    qtbot.mouseClick(vp(viewer), Qt.MouseButton.LeftButton, pos=viewer.pixel_to_viewport(80, 60))
    assert model.mask[60, 80] == 1 and len(model.undo_steps) == 3


def test_click_in_remove_tool_deletes_the_speck(viewer, qtbot):
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (40, 40), 5, 1, -1)
    cv2.circle(mask, (110, 80), 5, 1, -1)
    model = MaskModel(mask)
    viewer.set_mask_model(model)
    viewer.set_tool("remove")
    clicked = []
    viewer.speckClicked.connect(lambda x, y: clicked.append((x, y)))
    qtbot.mouseClick(vp(viewer), Qt.MouseButton.LeftButton, pos=viewer.pixel_to_viewport(41, 42))
    assert clicked == [(41, 42)]
    assert model.mask[30:50, 30:50].sum() == 0 and model.mask[80, 110] == 1
    assert len(model.undo_steps) == 1
    model.undo()
    assert np.array_equal(model.mask, mask)


def test_pan_tool_left_drag_moves_the_view_and_does_not_paint(viewer, qtbot):
    viewer.set_tool("pan")
    changed = []
    viewer.viewChanged.connect(lambda: changed.append(1))
    (x0, x1), _ = viewer.view_box.viewRange()
    drag(qtbot, viewer, [(80, 60), (60, 60), (40, 60), (20, 60)], pause=20)
    (nx0, nx1), _ = viewer.view_box.viewRange()
    assert nx0 > x0 + 20 and changed
    assert viewer.mask_model().mask.sum() == 0


def test_bracket_keys_resize_the_brush_and_the_cursor_follows(viewer, qtbot):
    viewer.set_tool("paint")
    viewer.set_brush_radius(8)
    sizes = []
    viewer.brushRadiusChanged.connect(sizes.append)
    qtbot.keyClick(viewer.graphics_view, "]")
    assert viewer.brush_radius() == 9
    qtbot.keyClick(viewer.graphics_view, "[")
    qtbot.keyClick(viewer.graphics_view, "[")
    assert viewer.brush_radius() == 7 and sizes == [9, 8, 7]
    for _ in range(40):
        qtbot.keyClick(viewer.graphics_view, "[")
    assert viewer.brush_radius() == 1
    viewer.set_brush_radius(100)
    qtbot.keyClick(viewer.graphics_view, "]")
    assert viewer.brush_radius() == 125
    qtbot.mouseMove(vp(viewer), viewer.pixel_to_viewport(50, 50))
    assert viewer.cursor_item.isVisible()
    assert viewer.cursor_item.rect().width() == pytest.approx(250)
    assert viewer.cursor_item.pos().x() == pytest.approx(50.5, abs=1)
    viewer.set_tool("pan")
    assert not viewer.cursor_item.isVisible()


def test_hover_reports_the_pixel_and_minus_one_outside(viewer, qtbot):
    got = []
    viewer.pixelHovered.connect(lambda x, y: got.append((x, y)))
    qtbot.mouseMove(vp(viewer), viewer.pixel_to_viewport(33, 44))
    assert got[-1] == (33, 44)
    qtbot.mouseMove(vp(viewer), viewer.pixel_to_viewport(150, 7))
    assert got[-1] == (150, 7)
    viewer.center_on(0, 0)  # the image's corner in the middle: the top-left is outside
    qtbot.mouseMove(vp(viewer), QtCore.QPoint(3, 3))
    assert got[-1] == (-1, -1)
    qtbot.mouseMove(vp(viewer), viewer.pixel_to_viewport(2, 2))
    assert got[-1] == (2, 2)
    n = len(got)
    viewer.set_image(frame(9))  # a new frame under a still cursor: the readout is refreshed
    assert got[n:] == [(2, 2)]
    QtCore.QCoreApplication.sendEvent(vp(viewer), QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert got[-1] == (-1, -1)


def test_fit_one_to_one_and_center_on(viewer, qtbot):
    viewer.zoom_1to1()
    assert viewer.zoom_factor() == pytest.approx(1.0, rel=0.02)
    viewer.center_on(50, 60, zoom=4)
    (x0, x1), (y0, y1) = viewer.view_box.viewRange()
    assert (x0 + x1) / 2 == pytest.approx(50.5, abs=0.5) and (y0 + y1) / 2 == pytest.approx(60.5, abs=0.5)
    assert viewer.zoom_factor() == pytest.approx(4.0, rel=0.02)
    viewer.fit()
    (x0, x1), (y0, y1) = viewer.view_box.viewRange()
    assert x0 <= 0.5 and x1 >= W - 0.5 and y0 <= 0.5 and y1 >= H - 0.5
    # row 0 is at the top
    assert viewer.pixel_to_viewport(10, 0).y() < viewer.pixel_to_viewport(10, H - 1).y()


def test_bayer_is_shown_debayered_in_colour_and_read_raw(viewer):
    cfa = np.zeros((H, W), np.uint16)
    cfa[0::2, 0::2] = 50000  # RGGB: a red scene
    viewer.set_mask_model(None)
    viewer.set_image(cfa, color="RGGB", levels=(0, 50000))
    assert viewer.image_item.image.ndim == 3
    r, g, b = grab_rgb(viewer, 60, 60)
    assert r > 200 and g < 30 and b < 30
    assert viewer.value_at(0, 0) == 50000 and viewer.value_at(1, 0) == 0
    # a colour stretch change shows on the next paint, data untouched
    before = digest(cfa)
    viewer.set_stretch(StretchState(mode="linear", black=0, white=200000))
    r, g, b = grab_rgb(viewer, 60, 60)
    assert 40 < r < 90
    viewer.set_stretch(StretchState(mode="gamma", black=0, white=200000, gamma=3))
    assert grab_rgb(viewer, 60, 60)[0] > 120
    assert digest(cfa) == before
    bgr = np.zeros((H, W, 3), np.uint8)
    bgr[..., 0] = 255  # blue, stored first
    viewer.set_image(bgr, color="BGR", levels=(0, 255))
    r, g, b = grab_rgb(viewer, 60, 60)
    assert b > 200 and r < 30
    assert viewer.value_at(0, 0) == (255, 0, 0)


def test_overlay_colour_opacity_visibility_and_size_mismatch(viewer, qtbot):
    model = viewer.mask_model()
    model.dab(80, 60, "paint", 6)
    viewer.set_overlay_color((0, 255, 0))
    argb = viewer.overlay_item.pixel_argb(80, 60)
    assert (argb >> 8) & 0xFF > 0 and (argb >> 16) & 0xFF == 0
    r, g, b = grab_rgb(viewer, 80, 60)
    assert g > r + 30
    viewer.set_overlay_opacity(0.0)
    assert viewer.overlay_item.pixel_argb(80, 60) == 0
    viewer.set_overlay_opacity(1.0)
    assert viewer.overlay_item.pixel_argb(80, 60) >> 24 == 255
    viewer.set_overlay_visible(False)
    r, g, b = grab_rgb(viewer, 80, 60)
    assert abs(r - g) < 12
    viewer.set_overlay_visible(True)
    # a mask of another size is not shown and cannot be painted
    viewer.set_mask_model(MaskModel(shape=(10, 10)))
    assert not viewer.overlay_item.has_mask()
    viewer.set_tool("paint")
    drag(qtbot, viewer, [(2, 2), (8, 8)])
    assert viewer.mask_model().mask.sum() == 0
    with pytest.raises(InputError):
        viewer.set_tool("lasso")


def test_overlay_paints_every_tile_with_mask_and_no_seams(qtbot):
    v = shown_viewer(qtbot, 420, 300)
    h, w = 330, 470  # several 64-pixel tiles, not a multiple of 64
    v.set_image(np.full((h, w), 1000, np.uint16), levels=(0, 2000))
    model = MaskModel(shape=(h, w))
    v.set_mask_model(model)
    v.set_overlay_opacity(1.0)
    v.fit()
    model.invert()  # everything masked: the overlay must cover the whole image without gaps
    img = vp(v).grab().toImage()
    tl, br = v.pixel_to_viewport(0, 0), v.pixel_to_viewport(w - 1, h - 1)
    arr = np.array([[img.pixelColor(x, y).red() - img.pixelColor(x, y).green()
                     for x in range(tl.x() + 1, br.x(), 3)] for y in range(tl.y() + 1, br.y(), 3)])
    assert arr.min() > 200
    # specks in separate tiles (different rows and columns), erased tiles stop being drawn
    model.clear()
    for x, y in ((10, 10), (300, 100), (460, 320), (100, 250)):
        model.dab(x, y, "paint", 5)
    for x, y in ((10, 10), (300, 100), (460, 320), (100, 250)):
        r, g, b = grab_rgb(v, x, y)
        assert r > 200 and g < 60, (x, y)
    for x, y in ((200, 10), (300, 250), (50, 100)):  # same tile rows/columns, no mask
        r, g, b = grab_rgb(v, x, y)
        assert abs(r - g) < 12, (x, y)
    model.begin_stroke("erase", 8)
    model.stroke_to(300, 100)
    model.end_stroke()
    r, g, b = grab_rgb(v, 300, 100)
    assert abs(r - g) < 12
    assert not v.overlay_item._occ[100 // 64, 300 // 64]


def test_highlight_outlines_a_box(viewer):
    viewer.set_overlay_visible(False)
    viewer.center_on(60, 60, zoom=4)
    viewer.set_highlight((50, 50, 70, 70), margin=0)
    r, g, b = grab_rgb(viewer, 49.5, 60)  # on the outline (the box's left edge, x = 50.0)
    assert r > 200 and g > 180 and b < 80
    inside = grab_rgb(viewer, 60, 60)
    assert abs(inside[0] - inside[2]) < 12  # grey image inside the box
    viewer.set_highlight(None)
    r, g, b = grab_rgb(viewer, 49.5, 60)
    assert abs(r - b) < 12


def test_single_pixel_specks_stay_visible_when_zoomed_out(qtbot):
    v = shown_viewer(qtbot, 330, 250)
    h, w = 803, 1201
    v.set_image(np.full((h, w), 1000, np.uint16), levels=(0, 2000))
    model = MaskModel(shape=(h, w))
    v.set_mask_model(model)
    v.set_overlay_opacity(1.0)
    v.view_box.setRange(QtCore.QRectF(0, 0, w, h), padding=0.05)  # a margin: the corners are on screen
    assert v.zoom_factor() < 0.3
    rng = np.random.default_rng(4)
    specks = [(int(x), int(y)) for x, y in zip(rng.integers(5, w - 5, 25), rng.integers(5, h - 5, 25))]
    specks.append((w - 1, h - 1))  # the last partial block
    for x, y in specks:
        model.dab(x, y, "paint", 0.5)  # one pixel each
    assert model.mask.sum() == len(specks)

    def red_near(img, x, y):
        p = v.pixel_to_viewport(x, y)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                c = img.pixelColor(min(max(p.x() + dx, 0), img.width() - 1), min(max(p.y() + dy, 0), img.height() - 1))
                if c.red() - c.green() > 100:
                    return True
        return False

    img = vp(v).grab().toImage()
    assert all(red_near(img, x, y) for x, y in specks)
    # erasing one speck while zoomed out updates the pooled copy
    x, y = specks[0]
    model.dab(x, y, "erase", 0.5)
    img = vp(v).grab().toImage()
    assert not red_near(img, x, y) or any(abs(x - a) < 8 and abs(y - b) < 8 for a, b in specks[1:])
    # at 1:1 the plain overlay is used again
    v.center_on(*specks[1], zoom=1.0)
    r, g, b = grab_rgb(v, *specks[1])
    assert r > 200 and g < 60


def test_replacing_the_mask_array_updates_the_overlay(viewer):
    model = viewer.mask_model()
    new = np.zeros((H, W), bool)
    new[10:20, 10:20] = True
    model.set_mask(new)
    assert viewer.overlay_item.shows(model.mask)
    assert viewer.overlay_item.pixel_argb(15, 15) != 0


# ------------------------------------------------------------------ StretchPanel
@pytest.fixture
def panel(qtbot):
    p = StretchPanel()
    qtbot.addWidget(p)
    p.resize(300, 240)
    p.show()
    return p


def test_panel_histogram_and_first_frame_auto_levels(panel, qtbot):
    img = frame(0)
    with qtbot.waitSignal(panel.stretchChanged) as sig:
        st = panel.set_image(img)
    assert sig.args[0] == st
    lo, hi = np.percentile(img, [0.1, 99.9])
    assert st.black == pytest.approx(lo, abs=40) and st.white == pytest.approx(hi, abs=40)
    x, y = panel.histogram_data()
    assert len(x) == 257 and len(y) == 256 and y.max() > 0
    assert panel.region.getRegion() == pytest.approx((st.black, st.white))


def test_panel_region_drag_mode_slider_and_auto(panel, qtbot):
    panel.set_image(frame(0))
    got = []
    panel.stretchChanged.connect(got.append)
    panel.region.setRegion((2500, 4000))  # what dragging the lines does
    assert got[-1].black == pytest.approx(2500) and got[-1].white == pytest.approx(4000)
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("gamma"))
    assert got[-1].mode == "gamma"
    panel.strength_slider.setValue(1000)
    assert got[-1].gamma == pytest.approx(10.0)
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("auto"))
    stf = got[-1]
    assert stf.mode == "auto" and stf.black >= 1900 and stf.midtone != 0.5
    panel.strength_slider.setValue(100)  # darker target background
    assert got[-1].midtone > stf.midtone and got[-1].mode == "auto"
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("linear"))
    assert not panel.strength_slider.isEnabled()
    panel.region.setRegion((0, 100))
    panel.auto_button.click()
    assert got[-1].black > 1000
    panel.set_state(StretchState(mode="log", black=1, white=2, log_a=100))
    assert panel.state().log_a == 100 and panel.mode_combo.currentData() == "log"


def test_panel_black_line_follows_a_real_mouse_drag(panel, qtbot):
    st = panel.set_image(frame(0))
    vb = panel.plot.getPlotItem().getViewBox()
    (y0, y1) = vb.viewRange()[1]

    def at(x):
        return panel.plot.mapFromScene(vb.mapViewToScene(QtCore.QPointF(x, (y0 + y1) / 2)))

    target = st.black + 0.3 * (st.white - st.black)
    got = []
    panel.stretchChanged.connect(got.append)
    w = panel.plot.viewport()
    start, end = at(st.black), at(target)
    qtbot.mouseMove(w, start)
    qtbot.mousePress(w, Qt.MouseButton.LeftButton, pos=start)
    for k in range(1, 6):
        qtbot.wait(20)  # pyqtgraph drops moves closer than 10 ms
        qtbot.mouseMove(w, start + (end - start) * (k / 5))
    qtbot.mouseRelease(w, Qt.MouseButton.LeftButton, pos=end)
    assert got, "dragging the black line emitted nothing"
    tol = 0.03 * (st.white - st.black)
    assert got[-1].black == pytest.approx(target, abs=tol) and got[-1].white == pytest.approx(st.white)


def test_panel_apply_to_all_frames_keeps_levels(panel):
    panel.set_image(frame(0))
    panel.set_apply_to_all(True)
    panel.region.setRegion((2100, 3000))
    st = panel.set_image(frame(1) * 2)
    assert (st.black, st.white) == pytest.approx((2100, 3000))
    got = []
    panel.stretchChanged.connect(got.append)
    panel.set_apply_to_all(False)  # back to automatic levels, starting with the current frame
    assert got and got[-1].black > 3000
    st = panel.set_image(frame(2) * 3)
    assert st.black > 5000


def test_panel_keeps_a_restored_state_for_the_first_frame_when_applied_to_all(qtbot):
    p = StretchPanel()
    qtbot.addWidget(p)
    restored = StretchState(mode="gamma", black=100, white=900, gamma=1.8)
    p.set_apply_to_all(True)
    p.set_state(restored)
    assert p.set_image(frame(0)) == restored
    p.set_apply_to_all(False)
    assert p.state().black > 1000


def test_panel_drives_the_viewer_without_touching_data(panel, viewer, qtbot):
    panel.stretchChanged.connect(viewer.set_stretch)
    img = frame(5)
    before = digest(img)
    st = panel.set_image(img, emit=False)
    viewer.set_image(img, stretch=st)
    assert viewer.levels() == pytest.approx(st.levels)
    panel.region.setRegion((2000, 2600))
    assert viewer.levels() == pytest.approx((2000, 2600))
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("asinh"))
    assert viewer.stretch().mode == "asinh"
    assert digest(img) == before
