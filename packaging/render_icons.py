"""Render the application icon from its SVG source.

    python packaging/render_icons.py [--check]

Writes, from ``resources/icons/aiflat.svg``:
  * ``resources/icons/aiflat-{N}.png`` for N in ICON_SIZES (freedesktop hicolor sizes 16..512),
  * ``packaging/windows/aiflat.ico`` (PNG-compressed entries 16..256, Windows Vista and later),
  * ``packaging/macos/aiflat.icns`` (PNG entries 16..512 and 512@2x).
Rendering uses PySide6's QtSvg (QSvgRenderer painting onto a transparent QImage), offscreen.
``--check`` renders into memory and exits 1 if any committed file is missing or has the wrong size.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "aiflat.svg"
ICON_DIR = ROOT / "resources" / "icons"
ICO = ROOT / "packaging" / "windows" / "aiflat.ico"
ICNS = ROOT / "packaging" / "macos" / "aiflat.icns"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS PNG types: (type, pixel size)
ICNS_TYPES = (("icp4", 16), ("icp5", 32), ("icp6", 64), ("ic07", 128), ("ic08", 256),
              ("ic09", 512), ("ic10", 1024))


def png_name(size: int) -> Path:
    return ICON_DIR / f"aiflat-{size}.png"


def render_png(svg: Path, size: int) -> bytes:
    """The SVG rendered at size x size pixels on a transparent background, as PNG bytes."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - keeps Qt alive
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.convertToFormat(QImage.Format.Format_ARGB32).save(buf, "PNG")
    buf.close()
    return bytes(data)


def build_ico(pngs: dict[int, bytes]) -> bytes:
    """A multi-resolution .ico whose entries are PNG streams (ICONDIR + ICONDIRENTRY + data)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, payload = b"", b""
    for s in sizes:
        data = pngs[s]
        dim = 0 if s >= 256 else s  # 0 means 256 in the ICO directory
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        payload += data
        offset += len(data)
    return header + entries + payload


def build_icns(pngs: dict[int, bytes]) -> bytes:
    """An Apple .icns holding PNG-encoded entries."""
    body = b""
    for kind, size in ICNS_TYPES:
        data = pngs[size]
        body += kind.encode("ascii") + struct.pack(">I", 8 + len(data)) + data
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG stream")
    return struct.unpack(">II", data[16:24])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only verify the committed files")
    args = ap.parse_args(argv)

    all_sizes = sorted(set(ICON_SIZES) | set(ICO_SIZES) | {s for _, s in ICNS_TYPES})
    pngs = {s: render_png(SVG, s) for s in all_sizes}
    outputs = {png_name(s): pngs[s] for s in ICON_SIZES}
    outputs[ICO] = build_ico({s: pngs[s] for s in ICO_SIZES})
    outputs[ICNS] = build_icns(pngs)

    if args.check:
        bad = []
        for path in outputs:
            if not path.is_file():
                bad.append(f"{path}: missing")
        for s in ICON_SIZES:
            p = png_name(s)
            if p.is_file() and png_size(p.read_bytes()) != (s, s):
                bad.append(f"{p}: is {png_size(p.read_bytes())}, expected {s}x{s}")
        for line in bad:
            print(line, file=sys.stderr)
        return 1 if bad else 0

    for path, data in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_bytes(data)
        tmp.replace(path)
        print(f"{path.relative_to(ROOT)}  {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
