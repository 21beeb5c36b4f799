"""Property test: random and mutated SER headers and truncated bodies either open correctly (every
frame readable, inside the file) or raise our own one-line InputError/FormatError. Never another
exception, never an allocation sized from an absurd header (tracemalloc sees numpy's allocations)."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aiflat_gui.errors import InputError
from aiflat_gui.io import open_sequence
from aiflat_gui.io.base import TICKS_UNIX_EPOCH
from aiflat_gui.io.ser import HEADER_SIZE, SerSequence, write_ser

# int32 header fields: (offset, name)
INT_FIELDS = [(14, "lu_id"), (18, "color_id"), (22, "little_endian"), (26, "width"), (30, "height"),
              (34, "depth"), (38, "frame_count")]
INTERESTING = [0, 1, -1, 2, 3, 7, 8, 9, 10, 11, 12, 16, 17, 19, 100, 101, 255, 256, 65535, 100_000, 100_001,
               2**16, 2**24, 2**31 - 1, -2**31, 2**30, -5]


def _base_file(kind: int) -> bytes:
    """A small valid SER: mono 16-bit with trailer, RGB 8-bit, or Bayer 16-bit big-endian."""
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(kind)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "b.ser"
        if kind == 0:
            frames = rng.integers(0, 4096, (3, 5, 7), dtype=np.uint16)
            write_ser(p, frames, timestamps=TICKS_UNIX_EPOCH + np.arange(3) * 10**7 + 10**17)
        elif kind == 1:
            frames = rng.integers(0, 256, (4, 3, 4, 3), dtype=np.uint8)
            write_ser(p, frames, color="RGB")
        else:
            frames = rng.integers(0, 65536, (2, 6, 6), dtype=np.uint16)
            write_ser(p, frames, color="BGGR", byte_order="big", timestamps=np.arange(2))
        return p.read_bytes()


BASES = [_base_file(k) for k in range(3)]


@st.composite
def ser_bytes(draw) -> bytes:
    if draw(st.integers(0, 19)) == 0:  # pure garbage, sometimes with the right magic
        body = draw(st.binary(min_size=0, max_size=400))
        return (b"LUCAM-RECORDER" + body) if draw(st.booleans()) else body
    data = bytearray(BASES[draw(st.integers(0, len(BASES) - 1))])
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 3))
        if op in (0, 1) and len(data) < HEADER_SIZE:
            continue  # header edits only while there is a header
        if op == 0:  # set an int field to an interesting or random value
            off, _name = draw(st.sampled_from(INT_FIELDS))
            v = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(-2**31, 2**31 - 1)))
            struct.pack_into("<i", data, off, v)
        elif op == 1:  # flip a bit anywhere in the header
            bit = draw(st.integers(0, HEADER_SIZE * 8 - 1))
            data[bit // 8] ^= 1 << (bit % 8)
        elif op == 2:  # truncate
            del data[draw(st.integers(0, len(data))):]
        else:  # append junk
            data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def _check(path, size: int, record=lambda _msg: None, **opts) -> None:
    tracemalloc.start()
    try:
        try:
            seq = open_sequence(path, **opts)
        except InputError as err:  # FormatError is an InputError
            msg = str(err)
            assert "\n" not in msg and msg.startswith(str(path)), msg
            record(f"refused: {type(err).__name__}")
            return
        record("opened" + (" with warnings" if seq.warnings else ""))
        with seq:
            assert isinstance(seq, SerSequence)
            assert seq.n_frames >= 1 and seq.width >= 1 and seq.height >= 1
            assert HEADER_SIZE + seq.n_frames * seq.frame_nbytes <= size
            for i in range(seq.n_frames):
                f = seq.frame(i)
                assert f.shape == seq.frame_shape and f.dtype == seq.dtype
                int(f.max())  # really read every byte
            if seq.timestamps is not None:
                assert len(seq.timestamps) == seq.n_frames
            assert seq.bit_depth <= seq.dtype.itemsize * 8
            seq.describe()
        _, peak = tracemalloc.get_traced_memory()
        assert peak < 4 * size + (2 << 20), f"peak allocation {peak} bytes for a {size}-byte file"
    finally:
        tracemalloc.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=ser_bytes(), order=st.sampled_from([None, "little", "big"]))
def test_mutated_ser_opens_or_raises_our_error(tmp_path, data, order):
    p = tmp_path / "fuzz.ser"
    p.write_bytes(data)
    _check(p, len(data), event, **({"byte_order": order} if order else {}))


def test_huge_header_on_small_file_allocates_nothing(tmp_path):
    """width x height x frames near the int32 limits on a tiny file: refused, no big allocation."""
    base = bytearray(BASES[0])
    for w, h, fc in [(100_000, 100_000, 2**31 - 1), (1, 1, 2**31 - 1), (99_999, 1, 0), (1, 1, -2**31)]:
        struct.pack_into("<iii", base, 26, w, h, 16)
        struct.pack_into("<i", base, 38, fc)
        p = tmp_path / "h.ser"
        p.write_bytes(bytes(base))
        _check(p, len(base))
