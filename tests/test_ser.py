"""SER reader and writer on files the tests write (every ColorID, both byte orders, 8/16 bit,
trailer or not, truncated, FrameCount mismatches, lying headers) plus the ``aiflat info`` interface."""

from __future__ import annotations

import datetime as dt
import json
import os
import struct

import numpy as np
import pytest

from aiflat_gui.cli import main
from aiflat_gui.errors import FormatError, InputError
from aiflat_gui.io import ArraySequence, open_sequence, open_writer
from aiflat_gui.io.base import TICKS_UNIX_EPOCH
from aiflat_gui.io.ser import (FRAME_COUNT_OFFSET, HEADER_SIZE, LITTLE_ENDIAN_OFFSET, SerSequence, SerWriter,
                               unpack_header, write_ser)

T0 = TICKS_UNIX_EPOCH + 1_700_000_000 * 10_000_000  # 2023-11-14


def smooth_frames(n=4, h=24, w=32, channels=1, dtype=np.uint16, top=60000, seed=0):
    """Smooth gradients plus mild noise: like a real image, so byte-order sniffing has signal."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    out = []
    for k in range(n):
        base = 0.2 + 0.6 * (x / w) * 0.5 + 0.3 * (y / h) + 0.02 * k
        img = base * top * 0.9 + rng.normal(0, top * 0.004, (h, w))
        if channels == 3:
            img = np.stack([img, img * 0.9, img * 0.8], axis=-1)
        out.append(np.clip(img, 0, top).astype(dtype))
    return np.stack(out)


def ticks(n):
    return np.array([T0 + i * 333_330 for i in range(n)], dtype=np.int64)


def copy_ser(src, dst, indices=None, **opts):
    with SerSequence(src) as s:
        with open_writer(dst, "ser", s, **opts) as w:
            for i in (range(s.n_frames) if indices is None else indices):
                w.write(s.frame(i), i)


# -- round trips ----------------------------------------------------------------------------------

COLORS = [("mono", 1), ("RGGB", 1), ("GRBG", 1), ("GBRG", 1), ("BGGR", 1), ("RGB", 3), ("BGR", 3)]


@pytest.mark.parametrize("color,channels", COLORS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip_every_color_and_depth(tmp_path, color, channels, dtype):
    top = 255 if dtype == np.uint8 else 65535
    frames = smooth_frames(3, channels=channels, dtype=dtype, top=top)
    p = write_ser(tmp_path / "a.ser", frames, color=color, timestamps=ticks(3))
    with open_sequence(p) as s:
        assert isinstance(s, SerSequence)
        assert (s.format, s.color, s.channels, s.n_frames) == ("ser", color, channels, 3)
        assert s.dtype == dtype and s.memmapped
        assert s.frame_shape == frames.shape[1:]
        np.testing.assert_array_equal(s[:], frames)
        np.testing.assert_array_equal(s.timestamps, ticks(3))
        assert s.warnings == []
        assert s.metadata["color_id"] == {"mono": 0, "RGGB": 8, "GRBG": 9, "GBRG": 10, "BGGR": 11,
                                          "RGB": 100, "BGR": 101}[color]
        # an unchanged copy reproduces header, frames and trailer byte for byte
        copy_ser(p, tmp_path / "b.ser")
    assert (tmp_path / "b.ser").read_bytes() == p.read_bytes()


@pytest.mark.parametrize("order", ["little", "big"])
@pytest.mark.parametrize("flag", [0, 1])
@pytest.mark.parametrize("color,channels", [("mono", 1), ("RGGB", 1), ("RGB", 3)])
def test_byte_order_sniffed_whatever_the_flag(tmp_path, order, flag, color, channels):
    frames = smooth_frames(3, channels=channels, top=4095)
    p = write_ser(tmp_path / "a.ser", frames, color=color, byte_order=order, little_endian_flag=flag,
                  bit_depth=12)
    with SerSequence(p) as s:
        assert s.byte_order == order
        assert s.byte_order_reason.startswith("sniffed from data")
        assert f"header flag {flag}" in s.byte_order_reason
        np.testing.assert_array_equal(s[:], frames)
        assert s.frame(1).dtype == np.dtype("=u2")
        np.testing.assert_array_equal(s.frame_rows(2, 3, 9), frames[2, 3:9])
        assert s.bit_depth == 12 and s.warnings == []


def test_byte_order_override_wins(tmp_path):
    frames = smooth_frames(2)
    p = write_ser(tmp_path / "a.ser", frames)
    with SerSequence(p, byte_order="big") as s:
        assert s.byte_order == "big" and "user" in s.byte_order_reason
        np.testing.assert_array_equal(s.frame(0), frames[0].byteswap())
    with open_sequence(p, byte_order="little") as s:
        np.testing.assert_array_equal(s.frame(0), frames[0])
    with pytest.raises(InputError):
        SerSequence(p, byte_order="middle")


def test_byte_order_undecidable_defaults_to_little(tmp_path):
    p = write_ser(tmp_path / "zero.ser", np.zeros((2, 8, 8), np.uint16), byte_order="big", little_endian_flag=1)
    with SerSequence(p) as s:
        assert s.byte_order == "little"
        assert "cannot tell" in s.byte_order_reason and "default little-endian" in s.byte_order_reason
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 65536, (2, 16, 16), dtype=np.uint16)
    p = write_ser(tmp_path / "noise.ser", noise)
    with SerSequence(p) as s:
        assert s.byte_order == "little" and "cannot tell" in s.byte_order_reason


@pytest.mark.parametrize("order", ["little", "big"])
def test_byte_order_sniff_hard_cases(tmp_path, order):
    # 12-bit data shifted to the top bits
    shifted = (smooth_frames(2, top=4095) << 4).astype(np.uint16)
    # a dark frame: every value below 256, so the high byte is always zero
    dark = smooth_frames(2, top=200)
    # one pixel wide: only vertical neighbours to compare
    narrow = smooth_frames(2, h=64, w=1, top=4095)
    # Bayer data whose colours differ strongly: neighbours of the same colour are two pixels apart
    cfa = smooth_frames(2, top=3000)
    cfa[:, ::2, ::2] //= 3
    for name, frames, color in (("s", shifted, "mono"), ("d", dark, "mono"), ("n", narrow, "mono"),
                                ("c", cfa, "RGGB")):
        p = write_ser(tmp_path / f"{name}.ser", frames, color=color, byte_order=order, little_endian_flag=0)
        with SerSequence(p) as s:
            assert s.byte_order == order, (name, s.byte_order_reason)
            np.testing.assert_array_equal(s[:], frames)


def test_big_endian_copy_is_written_little_with_flag_zero(tmp_path):
    frames = smooth_frames(3)
    src = write_ser(tmp_path / "be.ser", frames, byte_order="big", little_endian_flag=1, timestamps=ticks(3),
                    header_overrides={"observer": "Ann", "telescope": "fps=100 gain=300"})
    copy_ser(src, tmp_path / "out.ser")
    a, b = src.read_bytes(), (tmp_path / "out.ser").read_bytes()
    assert b[:LITTLE_ENDIAN_OFFSET] == a[:LITTLE_ENDIAN_OFFSET]
    assert struct.unpack_from("<i", b, LITTLE_ENDIAN_OFFSET)[0] == 0
    assert b[LITTLE_ENDIAN_OFFSET + 4:HEADER_SIZE] == a[LITTLE_ENDIAN_OFFSET + 4:HEADER_SIZE]
    with SerSequence(tmp_path / "out.ser") as s:
        assert s.byte_order == "little"
        np.testing.assert_array_equal(s[:], frames)
        np.testing.assert_array_equal(s.timestamps, ticks(3))
        assert s.metadata["observer"] == "Ann" and s.metadata["telescope"] == "fps=100 gain=300"


def test_copy_subset_updates_frame_count_and_copies_matching_timestamps(tmp_path):
    frames = smooth_frames(5)
    src = write_ser(tmp_path / "a.ser", frames, timestamps=ticks(5))
    copy_ser(src, tmp_path / "b.ser", indices=[1, 3, 4])
    raw = (tmp_path / "b.ser").read_bytes()
    assert struct.unpack_from("<i", raw, FRAME_COUNT_OFFSET)[0] == 3
    assert raw[:FRAME_COUNT_OFFSET] == src.read_bytes()[:FRAME_COUNT_OFFSET]
    assert raw[FRAME_COUNT_OFFSET + 4:HEADER_SIZE] == src.read_bytes()[FRAME_COUNT_OFFSET + 4:HEADER_SIZE]
    with SerSequence(tmp_path / "b.ser") as s:
        np.testing.assert_array_equal(s[:], frames[[1, 3, 4]])
        np.testing.assert_array_equal(s.timestamps, ticks(5)[[1, 3, 4]])


def test_trailer_absent_and_all_zero(tmp_path):
    frames = smooth_frames(3)
    p = write_ser(tmp_path / "a.ser", frames)
    with SerSequence(p) as s:
        assert s.timestamps is None and s.raw_trailer is None and s.warnings == []
        assert s.describe()["timestamps"] is None
    p = write_ser(tmp_path / "z.ser", frames, timestamps=np.zeros(3, np.int64))
    with SerSequence(p) as s:
        assert s.timestamps is None and s.raw_trailer == bytes(24)
        copy_ser(p, tmp_path / "z2.ser")
    assert (tmp_path / "z2.ser").read_bytes() == p.read_bytes()


def test_datetime_timestamps_accepted(tmp_path):
    when = [dt.datetime(2024, 4, 8, 18, 0, i, tzinfo=dt.timezone.utc) for i in range(2)]
    p = write_ser(tmp_path / "a.ser", smooth_frames(2), timestamps=when)
    with SerSequence(p) as s:
        assert s.timestamp(1) == when[1]
        assert s.describe()["timestamps"] == {"first": "2024-04-08T18:00:00Z", "last": "2024-04-08T18:00:01Z"}


# -- damaged and lying headers ------------------------------------------------------------------

def test_truncated_file_uses_whole_frames_and_warns(tmp_path):
    frames = smooth_frames(6)
    p = write_ser(tmp_path / "a.ser", frames, timestamps=ticks(6))
    fs = frames[0].nbytes
    with open(p, "r+b") as f:
        f.truncate(HEADER_SIZE + 4 * fs + fs // 2)
    with SerSequence(p) as s:
        assert s.n_frames == 4
        assert s.warnings == ["header says 6 frames, file holds 4 whole frames (truncated?)"]
        assert s.timestamps is None
        np.testing.assert_array_equal(s[:], frames[:4])
        with pytest.raises(IndexError):
            s.frame(4)


def test_frame_count_zero_or_negative_counts_frames(tmp_path):
    frames = smooth_frames(3)
    for fc in (0, -7):
        p = write_ser(tmp_path / f"a{fc}.ser", frames, header_overrides={"frame_count": fc})
        with SerSequence(p) as s:
            assert s.n_frames == 3 and len(s.warnings) == 1 and "using the 3 whole frames" in s.warnings[0]


def test_frame_count_smaller_than_data(tmp_path):
    frames = smooth_frames(5)
    # stale FrameCount with 5 frames of data and no trailer: the frames are used
    p = write_ser(tmp_path / "stale.ser", frames, header_overrides={"frame_count": 2})
    with SerSequence(p) as s:
        assert s.n_frames == 5 and "holds 5 whole frames" in s.warnings[0]
        np.testing.assert_array_equal(s[:], frames)
    # FrameCount 3 followed by a real trailer of 3 ticks: the extra bytes are the trailer
    p = tmp_path / "trailer.ser"
    write_ser(p, frames[:3], timestamps=ticks(3))
    with SerSequence(p) as s:
        assert s.n_frames == 3 and s.warnings == []
    # extra bytes after the trailer are ignored with a warning
    with open(p, "ab") as f:
        f.write(b"junk")
    with SerSequence(p) as s:
        assert s.n_frames == 3 and "4 unexpected bytes" in s.warnings[0]
        np.testing.assert_array_equal(s.timestamps, ticks(3))


def test_frame_count_larger_than_data(tmp_path):
    frames = smooth_frames(3)
    p = write_ser(tmp_path / "a.ser", frames, header_overrides={"frame_count": 500}, timestamps=ticks(3))
    with SerSequence(p) as s:
        # 3 frames + 24 trailer bytes: the trailer is smaller than a frame, so 3 whole frames
        assert s.n_frames == 3 and s.warnings == ["header says 500 frames, file holds 3 whole frames (truncated?)"]


@pytest.mark.parametrize("file_id", [b"LUCAM-RECORDEX", b"\0" * 14, b"RIFF....AVI   "])
def test_wrong_magic_refused(tmp_path, file_id):
    p = write_ser(tmp_path / "bad.ser", smooth_frames(1), header_overrides={"file_id": file_id})
    with pytest.raises(FormatError, match="not a SER file") as err:
        SerSequence(p)
    assert str(err.value).startswith(str(p)) and "\n" not in str(err.value)


def test_short_and_empty_files_refused(tmp_path):
    for size in (0, 10, HEADER_SIZE - 1):
        p = tmp_path / f"s{size}.ser"
        p.write_bytes(b"LUCAM-RECORDER"[:size] + bytes(max(0, size - 14)))
        with pytest.raises(FormatError, match="shorter than the 178-byte header"):
            SerSequence(p)
    p = write_ser(tmp_path / "nodata.ser", smooth_frames(1))
    with open(p, "r+b") as f:
        f.truncate(HEADER_SIZE + 10)
    with pytest.raises(FormatError, match="no whole 32x24 frame"):
        SerSequence(p)


@pytest.mark.parametrize("cid,name", [(16, "CYYM"), (17, "YCMY"), (18, "YMCY"), (19, "MYYC")])
def test_cmy_refused(tmp_path, cid, name):
    p = write_ser(tmp_path / "cmy.ser", smooth_frames(1), header_overrides={"color_id": cid})
    with pytest.raises(FormatError, match=f"{name}.*not supported"):
        SerSequence(p)


@pytest.mark.parametrize("cid", [1, 7, 12, 99, 102, -1, 2**31 - 1])
def test_unknown_color_id_refused(tmp_path, cid):
    p = write_ser(tmp_path / "x.ser", smooth_frames(1), header_overrides={"color_id": cid})
    with pytest.raises(FormatError, match="unknown SER ColorID"):
        SerSequence(p)


@pytest.mark.parametrize("field,value,msg", [("width", 0, "width is 0"), ("height", -3, "height is -3"),
                                             ("width", 2**31 - 1, "more than 100000"),
                                             ("height", 100_001, "more than 100000"),
                                             ("width", 5000, "no whole 5000x24 frame")])
def test_absurd_dimensions_refused(tmp_path, field, value, msg):
    p = write_ser(tmp_path / "x.ser", smooth_frames(2), header_overrides={field: value})
    with pytest.raises(FormatError, match=msg):
        SerSequence(p)


def test_lying_depth_16_with_12_bit_data(tmp_path):
    frames = smooth_frames(3, top=4095)
    p = write_ser(tmp_path / "a.ser", frames, bit_depth=16)
    with SerSequence(p) as s:
        assert s.bit_depth == 12 and s.dtype == np.uint16
        assert len(s.warnings) == 1 and "header says 16-bit depth but the data looks 12-bit" in s.warnings[0]
        assert s.metadata["header_depth"] == 16


def test_lying_depth_12_with_16_bit_data(tmp_path):
    frames = smooth_frames(3, top=60000)
    p = write_ser(tmp_path / "a.ser", frames, bit_depth=12)
    with SerSequence(p) as s:
        assert s.bit_depth == 16 and "data looks 16-bit" in s.warnings[0]
        np.testing.assert_array_equal(s[:], frames)


def test_depth_inference_kept_header_and_msb_shifted(tmp_path):
    frames = smooth_frames(2, top=900)
    with SerSequence(write_ser(tmp_path / "a.ser", frames, bit_depth=14)) as s:
        assert s.bit_depth == 14 and s.warnings == []  # the data fits the header's 14 bits: keep it
    with SerSequence(write_ser(tmp_path / "b.ser", frames, bit_depth=16)) as s:
        assert s.bit_depth == 10
    shifted = (smooth_frames(2, top=4095) << 4).astype(np.uint16)
    with SerSequence(write_ser(tmp_path / "c.ser", shifted, bit_depth=12)) as s:
        assert s.bit_depth == 16 and "top bits" in s.warnings[0]
    with SerSequence(write_ser(tmp_path / "d.ser", shifted, bit_depth=16)) as s:
        assert s.bit_depth == 16 and s.warnings == []
    with SerSequence(tmp_path / "d.ser", bit_depth=12) as s:
        assert s.bit_depth == 12
    with pytest.raises(InputError):
        SerSequence(tmp_path / "d.ser", bit_depth=17)


def test_header_says_8_bit_but_file_holds_16_bit_frames(tmp_path):
    frames = smooth_frames(3, top=4095)
    p = write_ser(tmp_path / "a.ser", frames, bit_depth=8, timestamps=ticks(3))
    with SerSequence(p) as s:
        assert s.dtype == np.uint16 and s.n_frames == 3
        assert any("16-bit samples" in w for w in s.warnings)
        np.testing.assert_array_equal(s[:], frames)
        np.testing.assert_array_equal(s.timestamps, ticks(3))


def test_invalid_depth_resolved_from_file_size_or_refused(tmp_path):
    frames = smooth_frames(2, dtype=np.uint8, top=255)
    p = write_ser(tmp_path / "a.ser", frames, bit_depth=0)
    with SerSequence(p) as s:
        assert s.dtype == np.uint8 and "invalid" in s.warnings[0]
        np.testing.assert_array_equal(s[:], frames)
    p = write_ser(tmp_path / "b.ser", frames, bit_depth=99, header_overrides={"frame_count": 0})
    with pytest.raises(FormatError, match="depth 99"):
        SerSequence(p)


def test_metadata_fields(tmp_path):
    p = write_ser(tmp_path / "a.ser", smooth_frames(1), header_overrides={
        "lu_id": 42, "observer": "Jane Doe", "instrument": "ZWO ASI174MM",
        "telescope": "Lunt 60 fps=120 gain=200", "datetime": 123, "datetime_utc": 456})
    with SerSequence(p) as s:
        m = s.metadata
        assert (m["observer"], m["instrument"], m["telescope"]) == ("Jane Doe", "ZWO ASI174MM",
                                                                     "Lunt 60 fps=120 gain=200")
        assert (m["lu_id"], m["datetime"], m["datetime_utc"], m["little_endian_flag"]) == (42, 123, 456, 0)
        assert len(m["raw_header"]) == HEADER_SIZE and unpack_header(m["raw_header"])["lu_id"] == 42


def test_no_file_handles_leak(tmp_path):
    good = write_ser(tmp_path / "a.ser", smooth_frames(2))
    bad = write_ser(tmp_path / "b.ser", smooth_frames(2), header_overrides={"color_id": 16})
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(FormatError):
            SerSequence(bad)
        with SerSequence(good) as s:
            s.frame(1).sum()
    assert len(os.listdir("/proc/self/fd")) <= fds


def test_frames_are_read_only_views_and_close(tmp_path):
    frames = smooth_frames(2)
    p = write_ser(tmp_path / "a.ser", frames)
    s = SerSequence(p)
    f0 = s.frame(0)
    assert not f0.flags.writeable
    s.close()
    s.close()  # twice is fine
    np.testing.assert_array_equal(f0, frames[0])  # a view handed out stays valid
    with pytest.raises(InputError, match="closed"):
        s.frame(1)
    assert p.read_bytes()[:14] == b"LUCAM-RECORDER"  # input untouched


# -- writer from other templates, errors and atomicity -------------------------------------------

def test_writer_from_array_template(tmp_path):
    frames = smooth_frames(3, channels=3, top=1023)
    tmpl = ArraySequence(frames, color="BGR", timestamps=ticks(3), bit_depth=10)
    tmpl.metadata["OBSERVER"] = "Bob"
    with open_writer(tmp_path / "o.ser", None, tmpl) as w:
        for i in range(3):
            w.write(frames[i])
    with SerSequence(tmp_path / "o.ser") as s:
        assert s.color == "BGR" and s.metadata["header_depth"] == 10 and s.bit_depth == 10
        assert s.metadata["little_endian_flag"] == 0 and s.metadata["observer"] == "Bob"
        assert s.metadata["datetime_utc"] == ticks(1)[0]
        np.testing.assert_array_equal(s[:], frames)
        np.testing.assert_array_equal(s.timestamps, ticks(3))
    # no timestamps: no trailer
    tmpl = ArraySequence(frames[..., 0], color="GBRG")
    with SerWriter(tmp_path / "p.ser", tmpl) as w:
        w.write(frames[0, ..., 0])
    assert (tmp_path / "p.ser").stat().st_size == HEADER_SIZE + frames[0, ..., 0].nbytes


def test_writer_accepts_big_endian_arrays(tmp_path):
    frames = smooth_frames(2).astype(">u2")
    with SerWriter(tmp_path / "o.ser", ArraySequence(frames)) as w:
        for f in frames:
            w.write(f)
    with SerSequence(tmp_path / "o.ser") as s:
        assert s.byte_order == "little"
        np.testing.assert_array_equal(s[:], frames)


def test_writer_refuses_float_and_odd_data(tmp_path):
    f = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(InputError, match="integer"):
        open_writer(tmp_path / "f.ser", "ser", ArraySequence(f))
    with pytest.raises(InputError, match="integer"):
        write_ser(tmp_path / "f.ser", f)
    with pytest.raises(InputError, match="unsigned"):
        SerWriter(tmp_path / "i.ser", ArraySequence(f.astype(np.int32)))
    tmpl = ArraySequence(np.zeros((2, 4, 4), np.uint16))
    with pytest.raises(InputError, match="float32"):
        with SerWriter(tmp_path / "g.ser", tmpl) as w:
            w.write(np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="uint8"):
        with SerWriter(tmp_path / "g.ser", tmpl) as w:
            w.write(np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="does not match"):
        with SerWriter(tmp_path / "g.ser", tmpl) as w:
            w.write(np.zeros((4, 5), np.uint16))
    assert not any(tmp_path.iterdir())


def test_writer_abort_leaves_no_file(tmp_path):
    frames = smooth_frames(3)
    src = write_ser(tmp_path / "in.ser", frames)
    out = tmp_path / "out.ser"
    with SerSequence(src) as s:
        with pytest.raises(RuntimeError):
            with open_writer(out, "ser", s) as w:
                w.write(s.frame(0), 0)
                raise RuntimeError("boom")
        assert not out.exists()
        w = open_writer(out, "ser", s)
        w.write(s.frame(0))
        w.abort()
        assert not out.exists()
        out.write_bytes(b"old")  # an earlier result survives a failed rewrite
        with pytest.raises(KeyboardInterrupt):
            with open_writer(out, "ser", s) as w:
                w.write(s.frame(0))
                raise KeyboardInterrupt
        assert out.read_bytes() == b"old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in.ser", "out.ser"]


def test_writing_over_the_input_refused(tmp_path):
    src = write_ser(tmp_path / "in.ser", smooth_frames(2))
    before = src.read_bytes()
    with SerSequence(src) as s:
        with pytest.raises(InputError, match="input file"):
            open_writer(src, "ser", s)
        os.link(src, tmp_path / "hard.ser")
        with pytest.raises(InputError, match="input file"):
            open_writer(tmp_path / "hard.ser", "ser", s)
    assert src.read_bytes() == before


# -- the aiflat info interface ------------------------------------------------------------------

def test_cli_info_json(tmp_path, capsys):
    frames = smooth_frames(4, top=4095)
    p = write_ser(tmp_path / "a.ser", frames, color="GRBG", byte_order="big", little_endian_flag=0,
                  timestamps=ticks(4), bit_depth=16)
    assert main(["info", str(p), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("format", "frames", "width", "height", "channels", "dtype", "bit_depth", "color", "byte_order",
                "timestamps", "warnings"):
        assert key in d
    assert (d["format"], d["frames"], d["width"], d["height"], d["channels"]) == ("ser", 4, 32, 24, 1)
    assert (d["dtype"], d["bit_depth"], d["color"], d["byte_order"]) == ("uint16", 12, "GRBG", "big")
    assert d["timestamps"]["first"] == "2023-11-14T22:13:20Z"
    assert d["timestamps"]["last"] == "2023-11-14T22:13:20.099999Z"
    assert len(d["warnings"]) == 1
    assert main(["info", str(p)]) == 0
    cap = capsys.readouterr()
    assert "big (sniffed from data" in cap.out and "GRBG" in cap.out
    assert cap.err.startswith(f"aiflat: warning: {p}: header says 16-bit depth")


def test_cli_info_bad_file_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.ser"
    bad.write_bytes(b"this is not a ser file" * 20)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "not a SER file" in err
    assert "Traceback" not in err
    huge = write_ser(tmp_path / "huge.ser", smooth_frames(1), header_overrides={"width": 2**31 - 1})
    assert main(["info", str(huge)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "width" in err
