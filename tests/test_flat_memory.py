"""Issue 13: the multiframe flat's memory grew with the video's length (1.35 GB at 200 frames,
2.47 GB at 1000 of 1024x768). Every command now caps the frames it reads (FlatParams.max_frames,
default 64 evenly spaced): a longer video reads no more frames, so memory does not grow with it."""

import numpy as np

from aiflat_gui.core.demo import generate_demo
from aiflat_gui.io.base import ArraySequence
from aiflat_gui.pipeline import FlatParams, build_flat, compute_reference


class CountingSequence(ArraySequence):
    def __init__(self, data):
        super().__init__(data)
        self.read = set()

    def _read_frame(self, i):
        self.read.add(int(i))
        return super()._read_frame(i)

    def frame_rows(self, i, y0, y1):
        self.read.add(int(i))
        return super().frame_rows(i, y0, y1)


def test_the_multiframe_flat_reads_a_bounded_number_of_frames_whatever_the_length():
    demo = generate_demo(frames=240, width=160, height=120, seed=2)
    reference = np.median(demo.frames[::8], axis=0).astype(np.float32)
    used = {}
    for n, cap in ((240, None), (240, 20), (80, None)):
        seq = CountingSequence(demo.frames[:n])
        flat = build_flat(seq, reference, demo.true_mask, FlatParams(method="multiframe", max_frames=cap))
        assert flat[demo.true_mask].min() < 0.99  # a real flat was built from those frames
        used[(n, cap)] = len(seq.read)
    assert used[(240, None)] <= 64 and used[(240, 20)] <= 20, used
    assert used[(240, None)] <= used[(80, None)] + 1, used  # 3x the video, not more frames read
