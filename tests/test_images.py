"""TIFF/PNG/JPEG readers and TIFF writers: multi-page stacks, single images, folders, round trips."""

import cv2
import numpy as np
import pytest
import tifffile

from aiflat_gui.errors import FormatError, InputError
from aiflat_gui.io import ArraySequence, open_sequence, open_writer
from aiflat_gui.io.images import ImageFolderSequence, ImageSequence

T0 = 638500000000000000


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def write_copy(seq, out, fmt, **opts):
    with open_writer(out, fmt, seq, **opts) as w:
        for i in range(seq.n_frames):
            w.write(seq.frame(i), index=i)
    return out


# -- multi-page TIFF ----------------------------------------------------------------------------------

def test_contiguous_stack_is_memmapped(tmp_path, rng):
    data = rng.integers(0, 65536, (6, 8, 10), dtype=np.uint16)
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, data, photometric="minisblack")
    with open_sequence(p) as seq:
        assert isinstance(seq, ImageSequence) and seq.format == "tiff"
        assert (seq.n_frames, seq.height, seq.width, seq.dtype) == (6, 8, 10, np.uint16)
        assert seq.memmapped and np.shares_memory(seq.frame(3), seq._mm)
        assert np.array_equal(seq[:], data)
        assert np.array_equal(seq.frame_rows(5, 2, 6), data[5, 2:6])


@pytest.mark.parametrize("kw", [dict(compression="zlib"), dict(imagej=True), dict(byteorder=">"),
                                dict(tile=(16, 16))])
def test_other_tiff_layouts(tmp_path, rng, kw):
    data = rng.integers(0, 65536, (4, 16, 32), dtype=np.uint16)
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, data, photometric="minisblack", **kw)
    with open_sequence(p) as seq:
        assert seq.n_frames == 4 and np.array_equal(seq[:], data)
        assert seq.frame(0).dtype.isnative


def test_pages_written_one_by_one_and_planar_rgb(tmp_path, rng):
    data = rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)
    p = tmp_path / "pages.tif"
    with tifffile.TiffWriter(p) as tw:
        for f in data:
            tw.write(f, photometric="minisblack", compression="zlib")
    with open_sequence(p) as seq:
        assert seq.n_frames == 3 and not seq.memmapped and np.array_equal(seq[:], data)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    p2 = tmp_path / "planar.tif"
    tifffile.imwrite(p2, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    with open_sequence(p2) as seq:
        assert seq.color == "RGB" and np.array_equal(seq.frame(0), rgb)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    p3 = tmp_path / "rgba.tif"
    tifffile.imwrite(p3, rgba, photometric="rgb", extrasamples=["unassalpha"])
    with open_sequence(p3) as seq:
        assert seq.channels == 3 and np.array_equal(seq.frame(0), rgba[..., :3])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("fmt", ["tiff", "tiff-folder"])
def test_tiff_writers_round_trip_exact(tmp_path, rng, dtype, fmt):
    data = (rng.random((5, 7, 9)) * (255 if dtype == np.uint8 else 65535)).astype(dtype)
    ticks = T0 + np.arange(5, dtype=np.int64) * 333_333
    out = write_copy(ArraySequence(data, timestamps=ticks), tmp_path / ("o.tif" if fmt == "tiff" else "o"), fmt)
    with open_sequence(out) as seq:
        assert seq.dtype == dtype and seq.n_frames == 5
        assert np.array_equal(seq[:], data) and np.array_equal(seq.timestamps, ticks)
        if fmt == "tiff":
            assert seq.memmapped
    if fmt == "tiff-folder":
        assert sorted(f.name for f in out.iterdir()) == [f"frame_{i:05d}.tif" for i in range(5)]
        assert np.array_equal(tifffile.imread(out / "frame_00003.tif"), data[3])
    else:
        assert np.array_equal(tifffile.imread(out, key=range(5)), data)  # plain tifffile agrees


def test_tiff_writers_keep_colour_and_bayer(tmp_path, rng):
    rgb = rng.integers(0, 65536, (3, 4, 6, 3), dtype=np.uint16)
    for fmt, name in (("tiff", "c.tif"), ("tiff-folder", "cf")):
        out = write_copy(ArraySequence(rgb), tmp_path / name, fmt)
        with open_sequence(out) as seq:
            assert seq.color == "RGB" and np.array_equal(seq[:], rgb)
        out = write_copy(ArraySequence(rgb[..., ::-1].copy(), color="BGR"), tmp_path / ("b" + name), fmt)
        with open_sequence(out) as seq:
            assert seq.color == "RGB" and np.array_equal(seq[:], rgb)
    bayer = rng.integers(0, 4096, (2, 4, 6), dtype=np.uint16)
    for fmt, name in (("tiff", "bay.tif"), ("tiff-folder", "bayf")):
        out = write_copy(ArraySequence(bayer, color="BGGR"), tmp_path / name, fmt)
        with open_sequence(out) as seq:
            assert seq.color == "BGGR" and np.array_equal(seq[:], bayer)


def test_copy_between_formats_reproduces_frames(tmp_path, rng):
    data = rng.integers(0, 65536, (4, 6, 5), dtype=np.uint16)
    src = tmp_path / "src.tif"
    tifffile.imwrite(src, data, photometric="minisblack")
    with open_sequence(src) as seq:
        fits_out = write_copy(seq, tmp_path / "c.fits", "fits")
        folder = write_copy(seq, tmp_path / "folder", "tiff-folder")
    for p in (fits_out, folder):
        with open_sequence(p) as again:
            assert np.array_equal(again[:], data)


def test_writer_abort_leaves_nothing(tmp_path, rng):
    data = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    for fmt, name in (("tiff", "x.tif"), ("tiff-folder", "xdir")):
        with pytest.raises(RuntimeError):
            with open_writer(tmp_path / name, fmt, ArraySequence(data)) as w:
                w.write(data[0])
                w.write(data[1])
                raise RuntimeError("cancel")
    assert list(tmp_path.iterdir()) == []


def test_folder_writer_replaces_existing_folder_only_on_success(tmp_path, rng):
    data = rng.integers(0, 256, (2, 4, 4), dtype=np.uint8)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with open_writer(out, "tiff-folder", ArraySequence(data)) as w:
            w.write(data[0])
            raise RuntimeError("cancel")
    assert (out / "old.txt").exists()
    write_copy(ArraySequence(data), out, "tiff-folder")
    assert sorted(f.name for f in out.iterdir()) == ["frame_00000.tif", "frame_00001.tif"]


# -- single images -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_single_png_grey_and_colour(tmp_path, rng, dtype):
    top = 255 if dtype == np.uint8 else 65535
    grey = rng.integers(0, top + 1, (9, 11), dtype=dtype)
    p = tmp_path / "g.png"
    assert cv2.imwrite(str(p), grey)
    with open_sequence(p) as seq:
        assert seq.format == "png" and seq.n_frames == 1 and seq.dtype == dtype and seq.color == "mono"
        assert np.array_equal(seq.frame(0), grey) and seq.bit_depth == np.dtype(dtype).itemsize * 8
    rgb = rng.integers(0, top + 1, (9, 11, 3), dtype=dtype)
    p2 = tmp_path / "c.png"
    assert cv2.imwrite(str(p2), rgb[..., ::-1])  # OpenCV writes BGR
    with open_sequence(p2) as seq:
        assert seq.color == "RGB" and np.array_equal(seq.frame(0), rgb)


def test_single_jpeg_and_tiff(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.dstack([xx * 5, yy * 7, np.full_like(xx, 90)]).astype(np.uint8)
    p = tmp_path / "a.jpeg"
    assert cv2.imwrite(str(p), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
    with open_sequence(p) as seq:
        assert seq.format == "jpeg" and seq.color == "RGB" and seq.frame_shape == (32, 48, 3)
        assert np.abs(seq.frame(0).astype(int) - rgb).mean() < 3
    pg = tmp_path / "g.jpg"
    assert cv2.imwrite(str(pg), rgb[..., 0])
    with open_sequence(pg) as seq:
        assert seq.channels == 1
    f32 = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    pt = tmp_path / "f.tiff"
    tifffile.imwrite(pt, f32)
    with open_sequence(pt) as seq:
        assert seq.n_frames == 1 and seq.dtype == np.float32 and np.array_equal(seq.frame(0), f32)


@pytest.mark.parametrize("name,content", [("bad.tif", b"II*\0garbage"), ("bad.png", b"\x89PNG broken"),
                                          ("bad.jpg", b"\xff\xd8\xff nonsense"), ("empty.tiff", b"")])
def test_damaged_images_are_one_line_errors(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(InputError) as err:
        open_sequence(p)
    assert name in str(err.value) and "\n" not in str(err.value)


# -- folders ---------------------------------------------------------------------------------------------

def test_image_folder_natural_order_mixed_types(tmp_path, rng):
    d = tmp_path / "frames"
    d.mkdir()
    data = rng.integers(0, 65536, (12, 5, 6), dtype=np.uint16)
    for i, f in enumerate(data):
        if i % 2:
            cv2.imwrite(str(d / f"img{i}.png"), f)
        else:
            tifffile.imwrite(d / f"img{i}.tif", f)
    (d / ".hidden.png").write_bytes(b"junk")
    with open_sequence(d) as seq:
        assert isinstance(seq, ImageFolderSequence) and seq.format == "folder-images"
        assert seq.n_frames == 12 and np.array_equal(seq[:], data)  # img2 before img10


def test_jpeg_folder_probe_without_decoding(tmp_path):
    d = tmp_path / "jp"
    d.mkdir()
    yy, xx = np.mgrid[0:16, 0:24]
    for i in range(3):
        cv2.imwrite(str(d / f"f{i}.jpg"), np.dstack([xx * 9 + i, yy * 9, xx + yy]).astype(np.uint8))
    with open_sequence(d) as seq:
        assert seq.n_frames == 3 and seq.frame_shape == (16, 24, 3) and seq.color == "RGB"
        assert seq.frame(2).shape == (16, 24, 3)


def test_image_folder_errors(tmp_path, rng):
    d = tmp_path / "mixed"
    d.mkdir()
    tifffile.imwrite(d / "f1.tif", np.zeros((4, 5), np.uint16))
    tifffile.imwrite(d / "f2.tif", np.zeros((4, 7), np.uint16))
    with pytest.raises(InputError) as err:
        open_sequence(d)
    assert "f2.tif" in str(err.value) and "7x4" in str(err.value)
    tifffile.imwrite(d / "f2.tif", np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError, match="f2.tif.*uint8"):
        open_sequence(d)
    cv2.imwrite(str(d / "f2.png"), np.zeros((4, 5, 3), np.uint16))
    (d / "f2.tif").unlink()
    with pytest.raises(InputError, match="f2.png.*channel"):
        open_sequence(d)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames")
    with pytest.raises(InputError, match="no FITS, TIFF"):
        open_sequence(empty)
    with pytest.raises(InputError, match="no TIFF, PNG or JPEG"):
        ImageFolderSequence(empty)


def test_damaged_headers_never_make_decoders_allocate(tmp_path):
    """Headers claiming huge images (or chunks longer than the file) are refused before decoding."""
    import struct
    import tracemalloc
    import zlib

    img = np.zeros((6, 5), np.uint16)
    good = tmp_path / "g.png"
    cv2.imwrite(str(good), img)
    raw = bytearray(good.read_bytes())
    big = bytearray(raw)
    big[16:24] = struct.pack(">II", 60000, 60000)
    big[29:33] = struct.pack(">I", zlib.crc32(bytes(big[12:29])))
    p = tmp_path / "huge.png"
    p.write_bytes(bytes(big))
    with pytest.raises(FormatError, match="huge.png.*claims 60000x60000"):
        open_sequence(p)
    idat = raw.index(b"IDAT") - 4
    long_chunk = bytearray(raw)
    long_chunk[idat:idat + 4] = struct.pack(">I", 0x7FFFFFF0)
    p2 = tmp_path / "chunk.png"
    p2.write_bytes(bytes(long_chunk))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="runs past the end"):
            open_sequence(p2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000
    t = tmp_path / "z.tif"
    tifffile.imwrite(t, np.zeros((4000, 4000), np.uint16), compression="zlib")  # 32 MB from ~30 kB: plausible
    with open_sequence(t) as seq:
        assert seq.frame(0).shape == (4000, 4000)


def test_compressed_tiff_page_claiming_too_many_pixels(tmp_path):
    import struct

    t = tmp_path / "bomb.tif"
    tifffile.imwrite(t, np.zeros((16, 16), np.uint16), compression="zlib", rowsperstrip=16)
    with tifffile.TiffFile(t) as tif:
        tag = tif.pages.first.tags[257]  # ImageLength
        at, fmt = tag.valueoffset, ("<H" if tag.dtype == 3 else "<I")
    raw = bytearray(t.read_bytes())
    raw[at:at + struct.calcsize(fmt)] = struct.pack(fmt, 60000)
    t.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="bomb.tif"):
        with open_sequence(t) as seq:
            seq.frame(0)


def test_compressed_pages_read_safely_from_several_threads(tmp_path, rng):
    from concurrent.futures import ThreadPoolExecutor

    data = rng.integers(0, 65536, (24, 32, 40), dtype=np.uint16)
    p = tmp_path / "z.tif"
    tifffile.imwrite(p, data, photometric="minisblack", compression="zlib")
    with open_sequence(p) as seq, ThreadPoolExecutor(4) as pool:
        order = list(rng.permutation(24)) * 3
        got = list(pool.map(seq.frame, order))
        assert all(np.array_equal(g, data[i]) for g, i in zip(got, order))


def test_grey_alpha_png_is_one_channel(tmp_path):
    import struct
    import zlib

    w, h = 5, 4
    grey = np.arange(w * h, dtype=np.uint8).reshape(h, w) * 10
    rows = b"".join(b"\0" + np.dstack([grey[y], np.full(w, 200, np.uint8)]).tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 4, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    d = tmp_path / "ga"
    d.mkdir()
    for i in range(2):
        (d / f"f{i}.png").write_bytes(png)
    with open_sequence(d / "f0.png") as seq:
        assert seq.channels == 1 and np.array_equal(seq.frame(0), grey)
    with open_sequence(d) as seq:
        assert seq.channels == 1 and np.array_equal(seq[:], np.stack([grey, grey]))
