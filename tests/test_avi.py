"""AVI reader/writer: exact round trips, hand-built RIFF variants, OpenCV-written files, bad files."""

import shutil
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from aiflat_gui.errors import FormatError, InputError
from aiflat_gui.io import ArraySequence, open_sequence, open_writer
from aiflat_gui.io.avi import AviSequence, AviWriter


def _chunk(fcc: bytes, payload: bytes) -> bytes:
    return fcc + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")


def make_avi(path, frames: list, width: int, height: int, bits: int, compression: bytes = b"\0\0\0\0",
             palette: bytes = b"", handler: bytes = b"DIB ", ckid: bytes = b"00db", audio: bool = False,
             clr_used: int = 0) -> None:
    """A minimal AVI 1.0 file around already-encoded frame payloads (as a capture program writes)."""
    avih = struct.pack("<14I", 40000, 0, 0, 0x10, len(frames), 0, 2 if audio else 1, 0, width, abs(height),
                       0, 0, 0, 0)
    strh = struct.pack("<4s4sIHHIIIIIIII4h", b"vids", handler, 0, 0, 0, 0, 1, 25, 0, len(frames), 0,
                       0xFFFFFFFF, 0, 0, 0, width, abs(height))
    strf = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, bits, compression, 0, 0, 0, clr_used, 0) + palette
    strls = _chunk(b"LIST", b"strl" + _chunk(b"strh", strh) + _chunk(b"strf", strf))
    if audio:  # an audio stream first, so the video is stream 01
        ash = struct.pack("<4s4sIHHIIIIIIII4h", b"auds", b"\0\0\0\0", 0, 0, 0, 0, 1, 8000, 0, 0, 0, 0, 1, 0, 0, 0, 0)
        strls = _chunk(b"LIST", b"strl" + _chunk(b"strh", ash) + _chunk(b"strf", bytes(18))) + strls
        ckid = b"01db"
    hdrl = _chunk(b"LIST", b"hdrl" + _chunk(b"avih", avih) + strls)
    movi = b"movi"
    for k, payload in enumerate(frames):
        if audio:
            movi += _chunk(b"00wb", bytes(7 + k))
        movi += _chunk(ckid, payload)
    body = b"AVI " + hdrl + _chunk(b"JUNK", bytes(13)) + _chunk(b"LIST", movi)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def dib_rows(img: np.ndarray, bottom_up: bool = True) -> bytes:
    """DIB bytes of an (H, W) or (H, W, 3 BGR) uint8 image: rows padded to 4 bytes."""
    rows = img.reshape(img.shape[0], -1)
    if bottom_up:
        rows = rows[::-1]
    stride = (rows.shape[1] + 3) & ~3
    out = np.zeros((rows.shape[0], stride), np.uint8)
    out[:, : rows.shape[1]] = rows
    return out.tobytes()


def grey_palette(values=None) -> bytes:
    v = np.arange(256, dtype=np.uint8) if values is None else np.asarray(values, np.uint8)
    return np.stack([v, v, v, np.zeros_like(v)], axis=1).tobytes()


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def write_copy(seq, out, fmt="avi", **opts):
    with open_writer(out, fmt, seq, **opts) as w:
        for i in range(seq.n_frames):
            w.write(seq.frame(i), index=i)
    return out


# -- writer round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["dib", "y800"])
@pytest.mark.parametrize("h,w", [(7, 5), (6, 8), (1, 1), (9, 13)])
def test_mono_round_trip_exact_including_odd_sizes(tmp_path, rng, codec, h, w):
    data = rng.integers(0, 256, (4, h, w), dtype=np.uint8)
    out = write_copy(ArraySequence(data), tmp_path / "m.avi", avi_codec=codec)
    with open_sequence(out) as seq:
        assert isinstance(seq, AviSequence)
        assert (seq.n_frames, seq.height, seq.width, seq.channels) == (4, h, w, 1)
        assert seq.color == "mono" and seq.dtype == np.uint8 and seq.format == "avi"
        assert seq.metadata["fourcc"] == ("Y800" if codec == "y800" else "BI_RGB")
        assert np.array_equal(seq[:], data)
        assert np.array_equal(seq.frame_rows(2, 1, h), data[2, 1:])
        assert seq.memmapped and seq.warnings == []


@pytest.mark.parametrize("h,w", [(5, 7), (4, 4), (3, 1)])
def test_rgb_round_trip_exact_odd_width(tmp_path, rng, h, w):
    data = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    out = write_copy(ArraySequence(data), tmp_path / "c.avi")
    with open_sequence(out) as seq:
        assert seq.color == "RGB" and seq.channels == 3
        assert np.array_equal(seq[:], data)
        assert np.array_equal(seq.frame_rows(1, 1, 3), data[1, 1:3])


def test_bgr_template_written_as_true_colour(tmp_path, rng):
    bgr = rng.integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    out = write_copy(ArraySequence(bgr, color="BGR"), tmp_path / "b.avi")
    with open_sequence(out) as seq:
        assert seq.color == "RGB"
        assert np.array_equal(seq[:], bgr[..., ::-1])


def test_copy_of_an_avi_reproduces_frames(tmp_path, rng):
    data = rng.integers(0, 256, (5, 9, 11), dtype=np.uint8)
    first = write_copy(ArraySequence(data), tmp_path / "a.avi", avi_codec="y800")
    with open_sequence(first) as seq:
        second = write_copy(seq, tmp_path / "b.avi")
        tif = write_copy(seq, tmp_path / "b.tif", fmt="tiff")
    for p in (second, tif):
        with open_sequence(p) as again:
            assert np.array_equal(again[:], data)


def test_opendml_segments_read_by_us_and_opencv(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(AviWriter, "SEGMENT_LIMIT", 500)  # force several RIFF AVIX segments
    data = rng.integers(0, 256, (30, 7, 9), dtype=np.uint8)
    out = write_copy(ArraySequence(data), tmp_path / "big.avi")
    raw = out.read_bytes()
    assert raw.count(b"AVIX") > 3 and raw.count(b"ix00") > 3 and b"idx1" in raw
    with open_sequence(out) as seq:
        assert np.array_equal(seq[:], data)
    assert np.array_equal(opencv_frames(out, tmp_path)[..., 0], data)


def test_writer_timing_from_template_fps(tmp_path, rng):
    data = rng.integers(0, 256, (2, 4, 4), dtype=np.uint8)
    ticks = 638000000000000000 + np.arange(2, dtype=np.int64) * 200_000  # 20 ms apart
    out = write_copy(ArraySequence(data, timestamps=ticks), tmp_path / "t.avi")
    with open_sequence(out) as seq:
        assert seq.metadata["fps"] == pytest.approx(50.0)


def test_writer_refuses_16_bit_and_float(tmp_path):
    for dt in (np.uint16, np.float32):
        seq = ArraySequence(np.zeros((2, 4, 4), dt))
        with pytest.raises(InputError) as err:
            open_writer(tmp_path / "x.avi", "avi", seq)
        msg = str(err.value)
        assert "8-bit" in msg and "x.avi" in msg and "\n" not in msg
        assert "SER" in msg and "FITS" in msg
    assert list(tmp_path.iterdir()) == []


def test_writer_abort_leaves_nothing(tmp_path, rng):
    data = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    out = tmp_path / "gone.avi"
    with pytest.raises(RuntimeError):
        with open_writer(out, "avi", ArraySequence(data)) as w:
            w.write(data[0])
            raise RuntimeError("cancelled by test")
    assert list(tmp_path.iterdir()) == []


# -- files written by others ------------------------------------------------------------------------

def test_pal8_grey_palette_is_one_channel(tmp_path, rng):
    frames = rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)
    p = tmp_path / "pal.avi"
    make_avi(p, [dib_rows(f) for f in frames], 7, 5, 8, palette=grey_palette(), clr_used=256)
    with open_sequence(p) as seq:
        assert seq.color == "mono" and seq.channels == 1 and seq.metadata["palette"] == "grey"
        assert np.array_equal(seq[:], frames)


def test_pal8_non_identity_grey_and_colour_palettes(tmp_path, rng):
    idx = rng.integers(0, 256, (2, 4, 6), dtype=np.uint8)
    inverted = 255 - np.arange(256)
    p = tmp_path / "inv.avi"
    make_avi(p, [dib_rows(f) for f in idx], 6, 4, 8, palette=grey_palette(inverted))
    with open_sequence(p) as seq:
        assert seq.color == "mono" and np.array_equal(seq[:], 255 - idx)
    pal = rng.integers(0, 256, (256, 3), dtype=np.uint8)  # R, G, B
    quads = np.concatenate([pal[:, ::-1], np.zeros((256, 1), np.uint8)], axis=1).tobytes()
    p2 = tmp_path / "col.avi"
    make_avi(p2, [dib_rows(f) for f in idx], 6, 4, 8, palette=quads)
    with open_sequence(p2) as seq:
        assert seq.color == "RGB" and np.array_equal(seq[:], pal[idx])


def test_rgb24_grey_container_is_one_channel_and_colour_is_rgb(tmp_path, rng):
    grey = rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)
    p = tmp_path / "grey24.avi"
    make_avi(p, [dib_rows(np.repeat(f[..., None], 3, axis=2)) for f in grey], 7, 5, 24)
    with open_sequence(p) as seq:
        assert seq.channels == 1 and seq.color == "mono" and np.array_equal(seq[:], grey)
    rgb = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    p2 = tmp_path / "rgb24.avi"
    make_avi(p2, [dib_rows(f[..., ::-1]) for f in rgb], 7, 5, 24)
    with open_sequence(p2) as seq:
        assert seq.color == "RGB" and np.array_equal(seq[:], rgb)


def test_top_down_dib_and_unpadded_y800_and_audio_interleave(tmp_path, rng):
    frames = rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)
    p = tmp_path / "td.avi"  # negative height: rows top-down
    make_avi(p, [dib_rows(f, bottom_up=False) for f in frames], 7, -5, 8, palette=grey_palette())
    with open_sequence(p) as seq:
        assert np.array_equal(seq[:], frames)
    p2 = tmp_path / "y8.avi"  # Y800: top-down, no row padding, video as stream 01 behind audio
    make_avi(p2, [f.tobytes() for f in frames], 7, 5, 8, compression=b"Y800", handler=b"Y800", audio=True)
    with open_sequence(p2) as seq:
        assert np.array_equal(seq[:], frames)
        assert seq.memmapped and np.shares_memory(seq.frame(1), seq._mm)  # a view of the map, no copy


def test_dropped_frames_and_truncation_warn(tmp_path, rng):
    frames = rng.integers(0, 256, (4, 4, 8), dtype=np.uint8)
    payloads = [f.tobytes() for f in frames]
    p = tmp_path / "drop.avi"
    make_avi(p, payloads[:2] + [b""] + payloads[2:], 8, 4, 8, compression=b"GREY", handler=b"GREY")
    with open_sequence(p) as seq:
        assert seq.n_frames == 4 and np.array_equal(seq[:], frames)
        assert any("dropped" in w for w in seq.warnings)
    raw = p.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(raw[: len(raw) - 10])
    with open_sequence(cut) as seq:
        assert seq.n_frames == 3 and np.array_equal(seq[:], frames[:3])
        assert any("truncated" in w for w in seq.warnings)


def test_reads_opencv_y800_and_grey_exactly(tmp_path, rng):
    data = rng.integers(0, 256, (3, 22, 34), dtype=np.uint8)
    for fourcc in ("Y800", "GREY"):
        p = tmp_path / f"cv_{fourcc}.avi"
        vw = cv2.VideoWriter(str(p), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), 10, (34, 22), False)
        if not vw.isOpened():
            pytest.skip(f"this OpenCV cannot write {fourcc}")
        for f in data:
            vw.write(f)
        vw.release()
        with open_sequence(p) as seq:
            assert seq.metadata["fourcc"] == fourcc and seq.color == "mono"
            assert seq.metadata["fps"] == pytest.approx(10.0)
            assert np.array_equal(seq[:], data)


def test_compressed_avi_falls_back_to_opencv(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    frames = [np.dstack([(xx * 5 + k) % 256, yy * 8, np.full_like(xx, 100)]).astype(np.uint8) for k in range(3)]
    p = tmp_path / "mjpg.avi"
    vw = cv2.VideoWriter(str(p), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32), True)
    assert vw.isOpened()
    for f in frames:
        vw.write(f)  # BGR
    vw.release()
    with open_sequence(p) as seq:
        assert seq.metadata["decoder"] == "opencv" and seq.n_frames == 3 and seq.color == "RGB"
        got = seq.frame(2).astype(int)
        assert got.shape == (32, 48, 3)
        assert np.abs(got - frames[2][..., ::-1].astype(int)).mean() < 6
        assert np.array_equal(seq.frame(0), seq.frame(0))  # random access back to the start


@pytest.mark.parametrize("content", [b"", b"RIFF", b"not an avi at all" * 10,
                                     np.random.default_rng(1).bytes(5000)])
def test_garbage_is_a_one_line_format_error(tmp_path, content):
    p = tmp_path / "bad.avi"
    p.write_bytes(content)
    with pytest.raises(FormatError) as err:
        open_sequence(p)
    assert "bad.avi" in str(err.value) and "\n" not in str(err.value)


def test_avi_without_video_or_frames(tmp_path):
    p = tmp_path / "novideo.avi"
    body = b"AVI " + _chunk(b"LIST", b"hdrl" + _chunk(b"avih", bytes(56))) + _chunk(b"LIST", b"movi")
    p.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(FormatError, match="no video stream"):
        open_sequence(p)
    p2 = tmp_path / "noframes.avi"
    make_avi(p2, [], 4, 4, 8, compression=b"Y800")
    with pytest.raises(FormatError, match="no video frames"):
        open_sequence(p2)
    p3 = tmp_path / "wrongsize.avi"
    make_avi(p3, [bytes(10)] * 2, 4, 4, 8, compression=b"Y800")
    with pytest.raises(FormatError, match="do not hold"):
        open_sequence(p3)


def test_reader_ignores_unknown_options(tmp_path, rng):
    data = rng.integers(0, 256, (2, 3, 5), dtype=np.uint8)
    out = write_copy(ArraySequence(data), tmp_path / "o.avi")
    with open_sequence(out, byte_order="big") as seq:
        assert np.array_equal(seq[:], data)


def test_mutated_and_truncated_avis_open_or_fail_cleanly(tmp_path):
    """Random byte flips and cuts of valid files: the reader either works or raises our own error."""
    rng = np.random.default_rng(99)
    frames = rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)
    variants = [tmp_path / "pal.avi", tmp_path / "rgb.avi", tmp_path / "odml.avi"]
    make_avi(variants[0], [dib_rows(f) for f in frames], 7, 5, 8, palette=grey_palette())
    make_avi(variants[1], [dib_rows(np.dstack([f, f, 255 - f])) for f in frames], 7, 5, 24)
    write_copy(ArraySequence(frames), variants[2])
    p = tmp_path / "m.avi"
    opened = 0
    for trial in range(300):
        raw = bytearray(variants[trial % 3].read_bytes())
        if trial % 4 == 0:
            raw = raw[: int(rng.integers(0, len(raw)))]
        else:
            for _ in range(int(rng.integers(1, 6))):
                pos = int(rng.integers(0, min(len(raw), 1400)))
                raw[pos] = int(rng.integers(0, 256))
        p.write_bytes(bytes(raw))
        try:
            with AviSequence(p) as seq:
                for i in range(seq.n_frames):
                    f = seq.frame(i)
                    assert f.shape == seq.frame_shape and f.dtype == np.uint8
                opened += 1
        except InputError as err:
            assert "\n" not in str(err) and "m.avi" in str(err)
    assert opened > 50  # most single-byte damage is survivable


def test_cli_info_on_avi(tmp_path, rng, capsys):
    import json

    from aiflat_gui.cli import main

    data = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    out = write_copy(ArraySequence(data), tmp_path / "c.avi")
    assert main(["info", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["format"], d["frames"], d["width"], d["height"], d["channels"], d["color"]) == ("avi", 3, 7, 5, 3, "RGB")
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\0" * 100)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.avi" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unfinalised_capture_with_zero_sizes(tmp_path, rng):
    """A capture that crashed before patching the RIFF and movi sizes (both left 0) still reads."""
    frames = rng.integers(0, 256, (4, 6, 8), dtype=np.uint8)
    p = tmp_path / "crash.avi"
    make_avi(p, [f.tobytes() for f in frames], 8, 6, 8, compression=b"Y800", handler=b"Y800")
    raw = bytearray(p.read_bytes())
    raw[4:8] = bytes(4)
    movi = raw.index(b"movi") - 8
    raw[movi + 4:movi + 8] = bytes(4)
    p.write_bytes(bytes(raw[:-5]))  # and the last frame cut short
    with open_sequence(p) as seq:
        assert seq.n_frames == 3 and np.array_equal(seq[:], frames[:3])
        assert any("not finalised" in w for w in seq.warnings) and any("truncated" in w for w in seq.warnings)


def test_rgb24_with_one_colour_frame_stays_colour(tmp_path, rng):
    grey = rng.integers(0, 256, (9, 4, 6), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=3)
    rgb[5, 1, 2] = (10, 20, 30)  # a single coloured pixel in a frame no sparse sample would pick
    p = tmp_path / "mostly_grey.avi"
    make_avi(p, [dib_rows(f[..., ::-1]) for f in rgb], 6, 4, 24)
    with open_sequence(p) as seq:
        assert seq.color == "RGB" and np.array_equal(seq[:], rgb)


# -- our AVI output read by the programs our users run ----------------------------------------------

_OPENCV_READ = """
import sys, cv2, numpy as np
cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
if sys.argv[3] == "raw":
    cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
frames = []
while True:
    ok, img = cap.read()
    if not ok:
        break
    frames.append(img)
cap.release()
np.save(sys.argv[2], np.stack(frames))
"""


def opencv_frames(path, tmp_path, mode: str = "bgr") -> np.ndarray:
    """Every frame of ``path`` as OpenCV's VideoCapture returns it, read in a child process:
    opencv-python-headless 5.x aborts or segfaults on some AVI layouts (bottom-up DIBs), which must
    fail the test, not kill the test run."""
    out = tmp_path / f"opencv-{path.stem}-{mode}.npy"
    r = subprocess.run([sys.executable, "-c", _OPENCV_READ, str(path), str(out), mode],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"OpenCV crashed reading {path.name} (exit {r.returncode}): {r.stderr[-300:]}"
    return np.load(out)


def ffmpeg_frames(path, shape) -> np.ndarray:
    """Every frame of ``path`` decoded by the ffmpeg program as 8-bit RGB (N, H, W, 3)."""
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-300:]
    return np.frombuffer(r.stdout, np.uint8).reshape(-1, *shape[:2], 3)


@pytest.mark.parametrize("kind", ["grey-dib", "y800", "rgb"])
def test_our_avi_is_read_frame_identical_by_opencv_ffmpeg_and_us(tmp_path, rng, kind):
    """Every AVI we write: top-down rows (a negative biHeight for DIB; Y800 is top-down by definition),
    which OpenCV 5 (in a child process: it crashed on our bottom-up DIBs), ffmpeg and our reader all
    read back frame for frame. Odd sizes exercise the 4-byte row padding."""
    shape = (6, 37, 51, 3) if kind == "rgb" else (6, 37, 51)
    data = rng.integers(0, 256, shape, dtype=np.uint8)
    out = write_copy(ArraySequence(data), tmp_path / f"{kind}.avi", avi_codec="y800" if kind == "y800" else "dib")
    with open_sequence(out) as seq:
        assert np.array_equal(seq[:], data)
    rgb = data if kind == "rgb" else np.repeat(data[..., None], 3, axis=3)
    assert np.array_equal(opencv_frames(out, tmp_path)[..., ::-1], rgb)  # OpenCV gives BGR
    raw = opencv_frames(out, tmp_path, "raw")  # CAP_PROP_CONVERT_RGB=0, as exact-data tools read
    assert np.array_equal(raw if kind == "rgb" else raw.reshape(data.shape), data[..., ::-1] if kind == "rgb" else data)
    if shutil.which("ffmpeg"):
        assert np.array_equal(ffmpeg_frames(out, data.shape[1:]), rgb)
