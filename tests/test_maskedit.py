"""The mask-editing model: gap-free strokes, one undo step per stroke storing only the changed
box, exact undo/redo, speck removal, whole-mask operations, memory budget, listeners."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from aiflat_gui.core.maskedit import MaskModel
from aiflat_gui.errors import InputError


def capsule(shape, p0, p1, r):
    """Reference: every pixel whose centre is within r of the segment p0-p1 (brute force)."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / L2, 0, 1) if L2 else np.zeros_like(xs)
    return ((xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2) <= r * r


def n_components(mask):
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return n - 1


def test_fast_move_between_two_far_points_is_one_continuous_capsule():
    m = MaskModel(shape=(300, 500))
    m.begin_stroke("paint", 3)
    m.stroke_to(10, 20)
    m.stroke_to(480, 270)  # one huge jump, as a fast mouse move delivers it
    step = m.end_stroke()
    assert n_components(m.mask) == 1
    ref = capsule(m.shape, (10, 20), (480, 270), 3)
    assert np.array_equal(m.mask.astype(bool), ref)
    for t in np.linspace(0, 1, 200):  # every point along the path is painted
        assert m.mask[int(round(20 + t * 250)), int(round(10 + t * 470))] == 1
    assert step is not None and m.undo_steps == (step,)


def test_polyline_stroke_is_one_undo_step_and_undo_redo_are_exact():
    rng = np.random.default_rng(0)
    start = (rng.random((120, 160)) > 0.97).astype(np.uint8)
    m = MaskModel(start)
    assert not m.changed_since_save and not m.can_undo
    m.begin_stroke("paint", 2.5)
    pts = [(20, 20), (60, 25), (61, 80), (140, 100), (139.5, 100.2)]
    for x, y in pts:
        m.stroke_to(x, y)
    m.end_stroke()
    after = m.mask.copy()
    expect = start.astype(bool)
    for a, b in zip(pts, pts[1:]):
        expect |= capsule(m.shape, a, b, 2.5)
    assert np.array_equal(after.astype(bool), expect)
    assert len(m.undo_steps) == 1 and m.can_undo and not m.can_redo and m.changed_since_save
    assert m.undo() is True
    assert np.array_equal(m.mask, start)
    assert m.can_redo and not m.can_undo and not m.changed_since_save
    assert m.redo() is True
    assert np.array_equal(m.mask, after)
    assert m.undo_label == "Paint"
    assert m.undo() and not m.undo()  # nothing more to undo
    assert m.redo() and not m.redo()


def test_steps_store_only_the_tight_changed_box():
    m = MaskModel(shape=(2160, 3840))
    m.begin_stroke("paint", 4)
    m.stroke_to(1000, 500)
    m.stroke_to(1100, 520)
    step = m.end_stroke()
    ys, xs = np.nonzero(m.mask)
    assert step.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert (step.width, step.height) == (109, 29)
    packed = (step.width * step.height + 7) // 8
    assert step.before_bits.nbytes == packed and step.after_bits.nbytes == packed
    assert step.nbytes < m.mask.nbytes / 1000
    assert step.before().shape == (29, 109) and step.before().sum() == 0
    assert np.array_equal(step.after(), m.mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    # erase inside the painted area changes only its own box; paint over paint changes nothing
    m.begin_stroke("erase", 2)
    m.stroke_to(1050, 510)
    er = m.end_stroke()
    assert er.box == (1048, 508, 1053, 513) and er.label == "Erase"
    assert m.dab(1000, 500, "paint", 1) is None  # already painted: no empty undo steps
    assert len(m.undo_steps) == 2


def test_a_long_scribble_keeps_bounded_memory_and_undoes_exactly():
    rng = np.random.default_rng(5)
    start = (rng.random((256, 256)) > 0.9).astype(np.uint8)
    m = MaskModel(start)
    m.begin_stroke("erase", 6)
    for i in range(1000):  # back and forth over the same region for a long time
        m.stroke_to(40 + (i % 2) * 60, 100 + (i % 7))
    assert m.stroke_backup_nbytes <= 4 * 64 * 64  # the few 64x64 tiles it touched, once each
    step = m.end_stroke()
    assert m.stroke_backup_nbytes == 0 and step is not None
    m.undo()
    assert np.array_equal(m.mask, start)


def test_erase_on_empty_and_strokes_at_the_border():
    m = MaskModel(shape=(50, 60))
    m.begin_stroke("erase", 5)
    m.stroke_to(10, 10)
    assert m.end_stroke() is None and not m.can_undo and not m.changed_since_save
    m.begin_stroke("paint", 3)
    m.stroke_to(-20, -20)   # completely outside: nothing
    m.stroke_to(-1, 25)     # the capsule enters the image
    m.stroke_to(80, 25)
    step = m.end_stroke()
    assert step.box[0] == 0 and step.box[2] == 60
    assert m.mask[25].all() and m.mask[:, 0].any()
    with pytest.raises(InputError):
        m.stroke_to(1, 1)
    with pytest.raises(InputError):
        m.begin_stroke("smudge", 3)
    with pytest.raises(InputError):
        m.begin_stroke("paint", 0)


def test_small_radius_and_fractional_centres_always_mark_a_pixel():
    m = MaskModel(shape=(20, 20))
    m.dab(5.5, 5.5, "paint", 0.3)
    assert m.mask.sum() >= 1 and m.mask[5:7, 5:7].sum() == m.mask.sum()
    m2 = MaskModel(shape=(20, 20))
    m2.dab(7, 9, "paint", 0.5)
    assert m2.mask.sum() == 1 and m2.mask[9, 7] == 1


def test_remove_component_removes_the_whole_speck_only():
    mask = np.zeros((100, 120), np.uint8)
    cv2.circle(mask, (30, 40), 6, 1, -1)
    mask[46, 30] = 1
    mask[47, 31] = 1  # diagonal neighbour: part of the same 8-connected speck
    cv2.circle(mask, (80, 60), 4, 1, -1)
    m = MaskModel(mask)
    other = m.mask[50:70, 70:90].copy()
    step = m.remove_component_at(30, 40)
    assert step is not None and step.label == "Remove speck"
    assert m.mask[30:50, 20:40].sum() == 0 and m.mask[47, 31] == 0
    assert np.array_equal(m.mask[50:70, 70:90], other)
    assert set(np.unique(m.mask)) <= {0, 1}
    assert step.box == (24, 34, 37, 48)
    assert m.remove_component_at(5, 5) is None        # background
    assert m.remove_component_at(500, 5) is None      # outside
    m.undo()
    assert np.array_equal(m.mask, mask)


def test_whole_mask_operations_are_single_steps_storing_the_changed_box():
    mask = np.zeros((60, 80), np.uint8)
    mask[20:30, 30:40] = 1
    m = MaskModel(mask)
    g = m.grow(2)
    assert g.box == (28, 18, 42, 32) and m.mask.sum() > 100
    s = m.shrink(3)
    assert m.mask.sum() < 100 and s is not None
    m.undo()
    m.undo()
    assert np.array_equal(m.mask, mask)
    inv = m.invert()
    assert inv.box == (0, 0, 80, 60) and m.mask.sum() == 60 * 80 - 100
    m.undo()
    c = m.clear()
    assert c.box == (30, 20, 40, 30) and m.mask.sum() == 0
    detector = np.zeros((60, 80), bool)
    detector[5:8, 70:75] = True
    st = m.apply(detector, "Offline detector")
    assert st.label == "Offline detector" and st.box == (70, 5, 75, 8)
    assert np.array_equal(m.mask.astype(bool), detector)
    assert m.apply(detector.astype(np.uint8) * 255) is None  # same mask: nothing recorded
    with pytest.raises(InputError, match="mask"):
        m.apply(np.zeros((10, 10), bool))
    # grow/shrink were undone, invert was undone and dropped from redo by the next edit
    assert [x.label for x in m.undo_steps] == ["Clear mask", "Offline detector"]


def test_applies_with_a_merge_key_fold_into_one_undo_step():
    base = np.zeros((40, 50), np.uint8)
    base[5:10, 5:10] = 1
    m = MaskModel(base)
    m.dab(40, 30, "paint", 2)  # an unrelated earlier edit stays its own step
    start = m.mask.copy()
    for i, thr in enumerate((3, 6, 9)):  # a detector slider moving: masks of growing specks
        new = start.copy()
        new[20:20 + thr, 20:20 + thr] = 1
        m.apply(new, f"Sensitivity {thr}", merge_key="sensitivity")
    assert len(m.undo_steps) == 2 and m.undo_label == "Sensitivity 9"
    assert m.undo_steps[-1].box == (20, 20, 29, 29)
    last = m.mask.copy()
    m.undo()
    assert np.array_equal(m.mask, start)
    m.redo()
    assert np.array_equal(m.mask, last)
    # back to where the run started: the merged step vanishes
    m.apply(start, "Sensitivity 0", merge_key="sensitivity")
    assert len(m.undo_steps) == 1 and np.array_equal(m.mask, start)
    # another key, or a save in between, starts a new step
    m.apply(last, "Sensitivity 9", merge_key="sensitivity")
    m.mark_saved()
    m.apply(start, "Sensitivity 0", merge_key="sensitivity")
    assert len(m.undo_steps) == 3
    m.apply(last, "Grow", merge_key="grow")
    assert len(m.undo_steps) == 4
    m.undo()
    m.undo()
    assert np.array_equal(m.mask, last) and not m.changed_since_save


def test_new_edit_clears_redo():
    m = MaskModel(shape=(30, 30))
    m.dab(10, 10, "paint", 2)
    m.undo()
    assert m.can_redo
    m.dab(20, 20, "paint", 2)
    assert not m.can_redo and len(m.undo_steps) == 1


def test_memory_budget_drops_the_oldest_steps():
    m = MaskModel(shape=(400, 400), memory_budget=400)
    for i in range(30):
        m.dab(20 + 12 * i, 200, "paint", 5)
    assert m.history_nbytes <= 400
    n = len(m.undo_steps)
    assert 1 <= n < 30
    for _ in range(n):
        assert m.undo()
    assert not m.undo()
    # the oldest dabs stay (their steps were dropped), the newest ones are undone
    assert m.mask[200, 20] == 1 and m.mask[200, 20 + 12 * 29] == 0
    # one huge step larger than the budget is still kept (the newest step always is)
    big = MaskModel(shape=(400, 400), memory_budget=100)
    big.invert()
    assert len(big.undo_steps) == 1


def test_listeners_get_boxes_covering_every_change():
    m = MaskModel(shape=(100, 100))
    seen = np.zeros((100, 100), bool)
    boxes = []

    def cb(box):
        x0, y0, x1, y1 = box
        boxes.append(box)
        seen[y0:y1, x0:x1] = True

    m.on_change(cb)
    m.begin_stroke("paint", 3)
    m.stroke_to(10, 10)
    m.stroke_to(90, 60)
    assert len(boxes) == 2  # live updates while the stroke runs
    m.end_stroke()
    assert seen[m.mask.astype(bool)].all()
    assert not seen[95:, :5].any()  # only changed boxes, not the whole mask
    m.undo()
    m.remove_listener(cb)
    n = len(boxes)
    m.redo()
    assert len(boxes) == n


def test_changed_since_save_tracks_the_saved_state():
    m = MaskModel(shape=(20, 20))
    m.dab(5, 5, "paint", 2)
    m.mark_saved()
    assert not m.changed_since_save
    m.dab(15, 15, "paint", 2)
    assert m.changed_since_save
    m.undo()
    assert not m.changed_since_save
    m.set_mask(np.ones((20, 20), bool))
    assert not m.changed_since_save and not m.can_undo and m.mask.dtype == np.uint8


def test_constructor_validation_and_copy():
    src = np.zeros((5, 6), bool)
    m = MaskModel(src)
    m.dab(2, 2, "paint", 1)
    assert not src.any()  # the model owns a copy
    with pytest.raises(InputError):
        MaskModel()
    with pytest.raises(InputError, match="2-D"):
        MaskModel(np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="image is"):
        MaskModel(np.zeros((4, 4)), shape=(5, 5))


@settings(max_examples=25, deadline=None)
@given(hs.lists(hs.tuples(hs.sampled_from(["paint", "erase"]), hs.floats(0.5, 6),
                          hs.lists(hs.tuples(hs.floats(-5, 45), hs.floats(-5, 35)), min_size=1, max_size=5)),
                min_size=1, max_size=6))
def test_any_sequence_of_strokes_undoes_back_to_the_start_and_redoes_exactly(strokes):
    m = MaskModel(shape=(30, 40))
    states = [m.mask.copy()]
    for mode, r, pts in strokes:
        m.begin_stroke(mode, r)
        for x, y in pts:
            m.stroke_to(x, y)
        if m.end_stroke() is not None:
            states.append(m.mask.copy())
    assert len(m.undo_steps) == len(states) - 1
    for s in reversed(states[:-1]):
        m.undo()
        assert np.array_equal(m.mask, s)
    for s in states[1:]:
        m.redo()
        assert np.array_equal(m.mask, s)
