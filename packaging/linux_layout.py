"""Put the freedesktop integration files into a Linux bundle folder.

Used by ``packaging/aiflat.spec`` after PyInstaller has collected the bundle, and by the tests on a
stand-in folder. Layout (relative to the bundle folder, next to the ``aiflat`` executable)::

    install.sh                                      adds/removes the menu entry for a user
    share/applications/io.github.aiflat.AIFlat.desktop
    share/metainfo/io.github.aiflat.AIFlat.metainfo.xml
    share/mime/packages/io.github.aiflat.AIFlat.xml (application/x-ser)
    share/icons/hicolor/{N}x{N}/apps/io.github.aiflat.AIFlat.png, scalable/apps/....svg
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

APP_ID = "io.github.aiflat.AIFlat"
ROOT = Path(__file__).resolve().parent.parent
LINUX = ROOT / "packaging" / "linux"
ICONS = ROOT / "resources" / "icons"


def icon_sizes(icons_dir: Path = ICONS) -> list[int]:
    """Pixel sizes of the committed ``aiflat-{N}.png`` icons, ascending."""
    sizes = []
    for p in icons_dir.glob("aiflat-*.png"):
        try:
            sizes.append(int(p.stem.split("-")[1]))
        except (IndexError, ValueError):
            continue
    return sorted(sizes)


def populate(bundle_dir: Path | str, root: Path | str = ROOT) -> list[Path]:
    """Copy install.sh and the share/ tree into bundle_dir. Returns the files written."""
    bundle = Path(bundle_dir)
    root = Path(root)
    linux = root / "packaging" / "linux"
    icons = root / "resources" / "icons"
    share = bundle / "share"
    plan: list[tuple[Path, Path]] = [
        (linux / "install.sh", bundle / "install.sh"),
        (linux / f"{APP_ID}.desktop", share / "applications" / f"{APP_ID}.desktop"),
        (linux / f"{APP_ID}.metainfo.xml", share / "metainfo" / f"{APP_ID}.metainfo.xml"),
        (linux / f"{APP_ID}.mime.xml", share / "mime" / "packages" / f"{APP_ID}.xml"),
        (icons / "aiflat.svg", share / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"),
    ]
    for n in icon_sizes(icons):
        plan.append((icons / f"aiflat-{n}.png",
                     share / "icons" / "hicolor" / f"{n}x{n}" / "apps" / f"{APP_ID}.png"))
    written = []
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        written.append(dst)
    os.chmod(bundle / "install.sh", 0o755)
    return written
