"""Packaging: icon files, freedesktop/AppStream metadata, the install script, the PyInstaller
configuration, and (marked slow) a real one-folder bundle built from a clean checkout."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import aiflat_gui

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
LINUX = PACKAGING / "linux"
sys.path.insert(0, str(PACKAGING))

import bundle_config  # noqa: E402
import linux_layout  # noqa: E402
import render_icons  # noqa: E402

APP_ID = bundle_config.APP_ID
DESKTOP = LINUX / f"{APP_ID}.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
MIME = LINUX / f"{APP_ID}.mime.xml"
MAX_BUNDLE_MB = 400


def _png_info(data: bytes) -> tuple[int, int, int]:
    """(width, height, colour type) from a PNG stream's IHDR."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    w, h = struct.unpack(">II", data[16:24])
    return w, h, data[25]


def _qimage(data: bytes):
    from PySide6.QtGui import QGuiApplication, QImage

    _app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841
    img = QImage()
    assert img.loadFromData(data), "Qt cannot decode the image"
    return img


# -- icon ----------------------------------------------------------------------------------------

def test_icon_pngs_have_every_size_with_alpha():
    assert (ROOT / "resources" / "icons" / "aiflat.svg").is_file()
    assert list(render_icons.ICON_SIZES) == [16, 22, 24, 32, 48, 64, 128, 256, 512]
    for size in render_icons.ICON_SIZES:
        data = render_icons.png_name(size).read_bytes()
        w, h, colour = _png_info(data)
        assert (w, h) == (size, size)
        assert colour == 6, "RGBA expected (transparent background)"
        img = _qimage(data)
        assert img.pixelColor(0, 0).alpha() == 0, "corners must be transparent"
        centre = img.pixelColor(size // 2, size // 2)
        assert centre.alpha() == 255 and centre.red() > centre.blue(), "an opaque orange disc"
    assert linux_layout.icon_sizes() == list(render_icons.ICON_SIZES)


def test_committed_pngs_are_rendered_from_the_svg():
    """Re-render from the SVG: the committed PNGs must match it (no stale icons)."""
    for size in (16, 64):
        fresh = _qimage(render_icons.render_png(render_icons.SVG, size))
        committed = _qimage(render_icons.png_name(size).read_bytes())
        worst = 0
        for y in range(size):
            for x in range(size):
                a, b = fresh.pixelColor(x, y), committed.pixelColor(x, y)
                worst = max(worst, abs(a.red() - b.red()), abs(a.alpha() - b.alpha()))
        assert worst <= 8, f"{size}px icon differs from the SVG by {worst} levels: run packaging/render_icons.py"


def test_windows_ico_and_macos_icns_hold_png_entries():
    ico = render_icons.ICO.read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", ico, 0)
    assert (reserved, kind) == (0, 1) and count == len(render_icons.ICO_SIZES)
    sizes = []
    for i in range(count):
        w, h, _, _, planes, bpp, length, offset = struct.unpack_from("<BBBBHHII", ico, 6 + 16 * i)
        pw, ph, _ = _png_info(ico[offset:offset + length])
        assert (pw, ph) == ((w or 256), (h or 256)) and bpp == 32
        sizes.append(pw)
    assert sizes == sorted(render_icons.ICO_SIZES)

    icns = render_icons.ICNS.read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    pos, found = 8, {}
    while pos < len(icns):
        kind, length = icns[pos:pos + 4].decode(), struct.unpack(">I", icns[pos + 4:pos + 8])[0]
        found[kind] = _png_info(icns[pos + 8:pos + length])[:2]
        pos += length
    assert found == {k: (s, s) for k, s in render_icons.ICNS_TYPES}


def test_render_icons_check_passes():
    r = subprocess.run([sys.executable, str(PACKAGING / "render_icons.py"), "--check"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 0, r.stderr


# -- freedesktop metadata ------------------------------------------------------------------------

def _desktop_entry() -> dict[str, str]:
    out = {}
    for line in DESKTOP.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_desktop_entry_content():
    d = _desktop_entry()
    assert d["Name"] == bundle_config.APP_NAME == aiflat_gui.APP_NAME
    assert d["Exec"] == "aiflat-gui %F"
    assert d["Icon"] == APP_ID
    assert d["Categories"] == "Science;Astronomy;Graphics;"
    mimes = d["MimeType"].split(";")
    for m in ("application/x-ser", "video/x-msvideo", "image/fits", "image/tiff"):
        assert m in mimes


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_file_validates():
    r = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error" not in r.stdout.lower()


def test_metainfo_content_matches_the_project():
    root = ET.parse(METAINFO).getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("name") == bundle_config.APP_NAME
    assert root.find("launchable").text == DESKTOP.name
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert root.findtext("project_license") == pyproject["project"]["license"] == "MIT"
    assert root.find("url[@type='homepage']").text == pyproject["project"]["urls"]["Homepage"]
    releases = [r.get("version") for r in root.iter("release")]
    assert releases[0] == aiflat_gui.__version__, "newest <release> must be aiflat_gui.__version__"
    shot = root.find("screenshots/screenshot/image").text
    assert shot.startswith("https://") and shot.endswith("/resources/screenshot.png")
    assert {b.text for b in root.iter("binary")} == {"aiflat", "aiflat-gui"}
    assert [m.text for m in root.iter("mediatype")] == ["application/x-ser"]


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream not installed")
def test_metainfo_validates():
    r = subprocess.run(["appstreamcli", "validate", "--no-net", str(METAINFO)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def _ser_header() -> bytes:
    head = bytearray(178)
    head[0:14] = b"LUCAM-RECORDER"
    struct.pack_into("<iiiiiii", head, 14, 0, 0, 0, 4, 2, 8, 1)
    return bytes(head) + bytes(8)


@pytest.mark.skipif(shutil.which("update-mime-database") is None, reason="shared-mime-info not installed")
def test_mime_type_recognises_ser_by_magic_and_extension(tmp_path):
    mime = tmp_path / "share" / "mime"
    (mime / "packages").mkdir(parents=True)
    shutil.copy(MIME, mime / "packages" / f"{APP_ID}.xml")
    r = subprocess.run(["update-mime-database", str(mime)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (mime / "application" / "x-ser.xml").is_file()
    assert b"LUCAM-RECORDER" in (mime / "magic").read_bytes()
    assert "application/x-ser:*.ser" in (mime / "globs").read_text()
    if shutil.which("gio") is None:
        return
    (tmp_path / "capture.ser").write_bytes(_ser_header())
    (tmp_path / "no-extension").write_bytes(_ser_header())
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "share"), "XDG_DATA_DIRS": str(tmp_path / "share")}
    for name in ("capture.ser", "no-extension"):
        r = subprocess.run(["gio", "info", "-a", "standard::content-type", str(tmp_path / name)],
                           capture_output=True, text=True, env=env, timeout=60)
        assert "application/x-ser" in r.stdout, (name, r.stdout, r.stderr)


def _fake_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "AI Flat bundle"  # a space in the path on purpose
    bundle.mkdir()
    exe = bundle / "aiflat"
    exe.write_text("#!/bin/sh\necho \"$(basename \"$0\") $*\"\n")
    exe.chmod(0o755)
    (bundle / "aiflat-gui").symlink_to("aiflat")
    linux_layout.populate(bundle)
    return bundle


def test_install_script_registers_and_removes_the_app(tmp_path):
    bundle = _fake_bundle(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}
    r = subprocess.run([str(bundle / "install.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    data = home / "data"
    desktop = data / "applications" / f"{APP_ID}.desktop"
    text = desktop.read_text()
    assert f'Exec="{bundle}/aiflat-gui" %F' in text
    assert f"TryExec={bundle}/aiflat-gui" in text
    if shutil.which("desktop-file-validate"):
        v = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True, text=True)
        assert v.returncode == 0, v.stdout
    for size in render_icons.ICON_SIZES:
        assert (data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png").is_file()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").is_file()
    assert (data / "metainfo" / f"{APP_ID}.metainfo.xml").is_file()
    assert (data / "mime" / "packages" / f"{APP_ID}.xml").is_file()
    gui_link = home / ".local" / "bin" / "aiflat-gui"
    out = subprocess.run([str(gui_link), "x.ser"], capture_output=True, text=True, timeout=30).stdout
    assert out.strip() == "aiflat-gui x.ser", "the link must keep the name the launcher dispatches on"

    # a file of the user's own under the same name is never replaced or removed
    (home / ".local" / "bin" / "aiflat").unlink()
    (home / ".local" / "bin" / "aiflat").write_text("mine")
    r = subprocess.run([str(bundle / "install.sh"), "--uninstall"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not desktop.exists() and not gui_link.exists()
    assert not list(data.rglob(f"{APP_ID}*"))
    assert (home / ".local" / "bin" / "aiflat").read_text() == "mine"


# -- PyInstaller configuration --------------------------------------------------------------------

def test_spec_collects_the_resources_and_uses_the_shared_config(tmp_path):
    spec = (PACKAGING / "aiflat.spec").read_text()
    assert set(bundle_config.RESOURCE_DIRS) == {"prompts", "icons"}
    for sub in bundle_config.RESOURCE_DIRS:
        assert (ROOT / "resources" / sub).is_dir()
    assert 'f"resources/{sub}"' in spec and "cfg.RESOURCE_DIRS" in spec
    assert "aiflat_launcher.py" in spec and "cfg.effective_excludes()" in spec
    assert 'os.symlink("aiflat", link)' in spec and "linux_layout.populate" in spec
    # the layout that aiflat_gui/resources.py expects inside a bundle: _MEIPASS/resources/...
    fake = tmp_path / "meipass"
    for sub in bundle_config.RESOURCE_DIRS:
        (fake / "resources" / sub).mkdir(parents=True)
    code = f"import sys; sys._MEIPASS = {str(fake)!r}; from aiflat_gui import resources; print(resources.resources_dir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "AIFLAT_RESOURCES"})
    assert Path(out.stdout.strip()) == fake / "resources", out.stderr


def test_bundle_keeps_what_the_app_needs():
    keep = bundle_config.keep_file
    assert keep("PySide6/Qt/plugins/platforms/libqoffscreen.so")
    assert keep("PySide6/Qt/plugins/platforms/libqxcb.so")
    assert keep("PySide6/Qt/plugins/platforms/libqwayland.so")
    assert keep("PySide6/Qt/plugins/iconengines/libqsvgicon.so")
    assert keep("PySide6/Qt/plugins/imageformats/libqsvg.so")
    assert keep("resources/prompts/dust_mask.txt") and keep("resources/icons/aiflat.svg")
    assert keep("astropy/io/fits/_utils.abi3.so") and keep("astropy/units/si.py")
    assert not keep("PySide6/Qt/plugins/platforms/libqeglfs.so")
    assert not keep("PySide6/Qt/translations/qtbase_de.qm")
    assert not keep("astropy/wcs/_wcs.abi3.so")
    assert not keep("PySide6/Qt/lib/libQt6Quick.so.6")


def test_aiflat_never_imports_an_excluded_module():
    assert bundle_config.conflicts() == []
    # and the safety net works: a module the app imports is never excluded
    used = {"scipy.ndimage", "astropy.wcs.utils"}
    eff = bundle_config.effective_excludes(used)
    assert "scipy.ndimage" not in eff and "astropy.wcs" not in eff and "scipy.optimize" in eff


BLOCKED_RUN = r"""
import importlib, importlib.abc, importlib.util, os, pkgutil, sys, tempfile
EXCLUDES = sys.argv[1].split(",")
def blocked(name):
    return any(name == e or name.startswith(e + ".") for e in EXCLUDES)
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (excluded from the bundle)", name=name)
# In the bundle an excluded module is simply absent: importlib.util.find_spec answers None.
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if blocked(name) else _find_spec(name, package)
sys.meta_path.insert(0, Block())
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import aiflat_gui
for m in pkgutil.walk_packages(aiflat_gui.__path__, "aiflat_gui."):
    importlib.import_module(m.name)
sys.path.insert(0, sys.argv[2])
import aiflat_launcher
os.environ["AIFLAT_SELFTEST"] = "1"
rc = aiflat_launcher.main()
from aiflat_gui.cli import main
with tempfile.TemporaryDirectory() as tmp:
    assert main(["-q", "demo", tmp, "--frames", "6", "--width", "96", "--height", "64"]) == 0
    assert main(["-q", "run", os.path.join(tmp, "demo.ser"), "--mask", os.path.join(tmp, "truth_mask.png"),
                 "-o", os.path.join(tmp, "out")]) == 0
    print("outputs", sorted(os.listdir(os.path.join(tmp, "out"))))
sys.exit(rc)
"""


def test_excluded_modules_are_not_needed(tmp_path):
    """Run what the bundle runs with every excluded module made unimportable, in a plain
    interpreter: every aiflat_gui module imports, the self-test passes, the CLI pipeline works."""
    r = subprocess.run([sys.executable, "-c", BLOCKED_RUN, ",".join(bundle_config.EXCLUDES), str(PACKAGING)],
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "FAIL" not in r.stdout and "ok   qt" in r.stdout


def test_launcher_picks_the_program_from_its_name(monkeypatch, capsys):
    import aiflat_launcher

    for argv0, name in (("/opt/AI Flat/aiflat-gui", "aiflat-gui"), ("C:\\x\\AIFLAT-GUI.EXE", "aiflat-gui"),
                        ("aiflat", "aiflat")):
        monkeypatch.setattr(sys, "argv", [argv0.replace("\\", "/")])
        assert aiflat_launcher._program_name() == name
    monkeypatch.setattr(sys, "argv", ["aiflat", "--version"])
    monkeypatch.delenv("AIFLAT_SELFTEST", raising=False)
    with pytest.raises(SystemExit) as exc:
        aiflat_launcher.main()
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"aiflat {aiflat_gui.__version__}"


def test_build_script_refuses_an_old_python(tmp_path):
    old = shutil.which("python3.11") or shutil.which("python3.10")
    if old is None:
        pytest.skip("no Python older than 3.12 on this machine")
    r = subprocess.run(["bash", str(PACKAGING / "build.sh"), "--dist", str(tmp_path / "d"), "--work",
                        str(tmp_path / "w"), "--venv", str(tmp_path / "v")],
                       capture_output=True, text=True, env={**os.environ, "AIFLAT_PYTHON": old}, timeout=60)
    assert r.returncode != 0
    assert "needs Python >= 3.12" in r.stderr
    assert not (tmp_path / "v").exists(), "nothing may be installed with the wrong Python"


def test_third_party_licences_cover_every_runtime_dependency():
    text = (PACKAGING / "THIRD_PARTY_LICENSES.md").read_text()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0]
        assert name.lower() in text.lower(), f"{name} missing from THIRD_PARTY_LICENSES.md"
    assert "LGPL" in text and "GPL" in text


# -- the real bundle (slow) -----------------------------------------------------------------------

class BundleBuild:
    """The bundle's build from a clean checkout (``git clone`` of the committed tree, then
    ``packaging/build.sh``), running in the background. It takes minutes, nearly all of it on one
    core (pip, then PyInstaller's analysis): tests/conftest.py starts it as soon as the tests are
    collected, when the bundle test is among them, and runs that test last, so the build goes on
    while the rest of the suite runs on the other core."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="aiflat-bundle-test-"))
        self.dist, work, src = self.dir / "dist", self.dir / "work", self.dir / "src"
        venv = os.environ.get("AIFLAT_TEST_BUILD_VENV") or str(self.dir / "venv")
        self.log = open(self.dir / "build.log", "w+b")
        script = ('git clone --quiet --depth 1 "$1" "$2" && exec bash "$2/packaging/build.sh" --dist "$3" '
                  '--work "$4" --venv "$5" --max-mb "$6" --archive')
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(["bash", "-c", script, "build", f"file://{ROOT}", str(src), str(self.dist),
                                      str(work), venv, str(MAX_BUNDLE_MB)],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.seconds = None

    def result(self, timeout=1400):
        """(exit code, the build's output) once it has finished."""
        code = self.proc.wait(timeout)
        if self.seconds is None:
            self.seconds = time.monotonic() - self.t0
        self.log.seek(0)
        return code, self.log.read().decode(errors="replace")

    def stop(self):
        """Kills the build if it still runs and removes its files."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_bundle_build():
    """The background build, or None when git is missing."""
    return BundleBuild() if shutil.which("git") else None


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_bundle_builds_from_a_clean_checkout_and_runs(request, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    build = getattr(request.config, "_aiflat_bundle", None)
    if build is None:  # started by hand, without tests/conftest.py's hook
        build = request.config._aiflat_bundle = BundleBuild()
    code, out = build.result()
    print(out[-2000:])
    assert code == 0, out[-8000:]
    dist = build.dist
    bundle = dist / "aiflat"
    size_mb = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
    print(f"bundle size {size_mb:.0f} MB, build {build.seconds:.0f} s (in the background, beside the suite)")
    assert size_mb < MAX_BUNDLE_MB
    assert (bundle / "aiflat-gui").resolve() == (bundle / "aiflat").resolve()
    assert (bundle / "install.sh").is_file() and (bundle / "share" / "applications" / DESKTOP.name).is_file()
    assert (bundle / "_internal" / "resources" / "icons" / "aiflat.svg").is_file()
    assert (bundle / "_internal" / "resources" / "prompts").is_dir()
    import tarfile

    tarball = dist / f"aiflat-{aiflat_gui.__version__}-linux-{os.uname().machine}.tar.gz"
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["aiflat/aiflat"].isfile() and members["aiflat/install.sh"].isfile()
    assert members["aiflat/aiflat-gui"].issym() and members["aiflat/aiflat-gui"].linkname == "aiflat"

    clean_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("PYTHON", "AIFLAT_", "VIRTUAL_ENV", "QT_"))}
    clean_env["QT_QPA_PLATFORM"] = "offscreen"
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def run(*args, env=None, timeout=300):
        res = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=run_dir,
                             env=env or clean_env, timeout=timeout)
        assert res.returncode == 0, f"{args}: {res.stdout[-2000:]}{res.stderr[-3000:]}"
        return res.stdout

    assert run(bundle / "aiflat", "--version").strip() == f"aiflat {aiflat_gui.__version__}"
    selftest = run(bundle / "aiflat", env={**clean_env, "AIFLAT_SELFTEST": "1"})
    print(selftest)
    assert "FAIL" not in selftest and str(bundle / "_internal" / "resources") in selftest

    run(bundle / "aiflat", "-q", "demo", run_dir / "demo", "--frames", "12", "--width", "160", "--height", "120")
    seq = run_dir / "demo" / "demo.ser"
    assert seq.read_bytes()[:14] == b"LUCAM-RECORDER"
    run(bundle / "aiflat", "-q", "run", seq, "--mask", run_dir / "demo" / "truth_mask.png", "-o", run_dir / "out")
    outputs = sorted(p.name for p in (run_dir / "out").iterdir())
    print("run outputs:", outputs)
    assert any(n.endswith(".fits") for n in outputs), "aiflat run writes its flat as FITS"
    info = run(bundle / "aiflat", "info", "--json", seq)
    assert '"frames": 12' in info
    for out in (run_dir / "out").iterdir():
        if out.suffix == ".ser":
            calibrated = run(bundle / "aiflat", "info", "--json", out)
            assert '"frames": 12' in calibrated

    shot = run_dir / "shot.png"
    run(bundle / "aiflat-gui", "--demo", "--screenshot", shot, timeout=600)
    img = _qimage(shot.read_bytes())
    assert img.width() >= 640 and img.height() >= 400
    colours = {img.pixel(x, y) for x in range(0, img.width(), 37) for y in range(0, img.height(), 29)}
    assert len(colours) > 20, "the screenshot is blank"

    # a real X11 display through the bundled xcb platform plugin, when Xvfb is installed
    if shutil.which("xvfb-run"):
        shot_x = run_dir / "shot-xcb.png"
        run("xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "env", "QT_QPA_PLATFORM=xcb",
            bundle / "aiflat-gui", "--demo", "--screenshot", shot_x, timeout=600)
        img = _qimage(shot_x.read_bytes())
        assert img.width() >= 640 and img.height() >= 400


# -- the locked dependency set ---------------------------------------------------------------------

def _pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a pip-compile lock (names normalised)."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_every_dependency_is_locked_at_a_version_its_range_admits():
    """constraints.txt (CI, README installs) pins every dependency of pyproject.toml, extras
    included, inside the range pyproject asks for; a dependency added without re-locking fails here."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [r for r in extra if not r.startswith("aiflat-gui")]
    pins = _pins(ROOT / "constraints.txt")
    # pip cannot take a constraint on the project being installed (a `file://` line of one checkout)
    assert not re.search(r"^aiflat-gui\b", (ROOT / "constraints.txt").read_text(), re.M)
    for text in reqs:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not in constraints.txt: run packaging/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside {req.specifier}: run packaging/lock.sh"


def test_the_bundle_lock_is_hashed_and_agrees_with_the_constraints():
    bundle_lock = ROOT / "packaging" / "requirements-bundle.txt"
    pins, bundle = _pins(ROOT / "constraints.txt"), _pins(bundle_lock)
    assert bundle, "empty bundle lock"
    for name, version in bundle.items():
        assert pins.get(name) == version, f"{name}: bundle lock {version}, constraints {pins.get(name)}"
    text = bundle_lock.read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text[text.index("\n" + min(bundle)) + 1:])
    for entry in entries:
        if "==" in entry:
            assert "--hash=sha256:" in entry, f"no hash for {entry.split()[0]}"
    assert "--require-hashes" in (ROOT / "packaging" / "build.sh").read_text()


def test_ci_and_the_readme_install_the_locked_set():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    test_cmd = "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[test]' && .venv/bin/python -m pytest"
    assert test_cmd in readme and test_cmd in ci
    assert "pip install -q -c constraints.txt -e . && .venv/bin/aiflat-gui --demo" in readme
