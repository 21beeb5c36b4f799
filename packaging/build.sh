#!/usr/bin/env bash
# Build the one-folder Linux bundle of AI Flat (executables `aiflat` and `aiflat-gui`).
#
#   packaging/build.sh [--dist DIR] [--work DIR] [--venv DIR] [--fresh] [--max-mb N] [--archive]
#
# 1. creates a clean virtual environment (default build/venv) with the project's Python (>= 3.12:
#    $AIFLAT_PYTHON, else pyenv with the repo's .python-version, else python3.13/python3.12/python3)
#    and installs the runtime dependencies plus PyInstaller exactly as locked, with hashes, in
#    packaging/requirements-bundle.txt (refreshed from pyproject.toml by packaging/lock.sh).
#    The project itself is not installed: PyInstaller takes it from this checkout.
# 2. runs PyInstaller on packaging/aiflat.spec -> DIST/aiflat/ (default dist/aiflat/).
# 3. smoke-tests the bundle (`aiflat --version`, `AIFLAT_SELFTEST=1 aiflat`), prints the bundle
#    size and fails if it is larger than --max-mb (default 400 MB).
# 4. with --archive, packs DIST/aiflat-VERSION-linux-ARCH.tar.gz for users to download
#    (unpack anywhere, run install.sh inside to add the menu entry).
#
# Environment: AIFLAT_PYTHON, AIFLAT_BUILD_VENV, AIFLAT_MAX_BUNDLE_MB, AIFLAT_BUNDLE_NAME.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST="$ROOT/dist"
WORK="$ROOT/build/pyinstaller"
VENV="${AIFLAT_BUILD_VENV:-$ROOT/build/venv}"
MAX_MB="${AIFLAT_MAX_BUNDLE_MB:-400}"
NAME="${AIFLAT_BUNDLE_NAME:-aiflat}"
FRESH=0
ARCHIVE=0

die() { echo "build.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dist) DIST="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --venv) VENV="$2"; shift 2 ;;
        --max-mb) MAX_MB="$2"; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --archive) ARCHIVE=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown option $1 (try --help)" ;;
    esac
done
mkdir -p "$DIST" "$WORK"
DIST="$(cd "$DIST" && pwd)"
WORK="$(cd "$WORK" && pwd)"
unset PYTHONPATH PYTHONHOME

find_python() {
    if [ -n "${AIFLAT_PYTHON:-}" ]; then echo "$AIFLAT_PYTHON"; return 0; fi
    if command -v pyenv >/dev/null 2>&1 && [ -f "$ROOT/.python-version" ]; then
        local p
        if p="$(cd "$ROOT" && PYENV_VERSION="$(head -n1 .python-version)" pyenv which python 2>/dev/null)"; then
            echo "$p"; return 0
        fi
    fi
    local c
    for c in python3.13 python3.12 python3; do
        if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
    done
    return 1
}

START=$(date +%s)
PY="$(find_python)" || die "no Python found (set AIFLAT_PYTHON to a Python >= 3.12)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' \
    || die "$PY is $("$PY" -V 2>&1); AI Flat needs Python >= 3.12 (set AIFLAT_PYTHON)"
"$PY" -c 'import sysconfig, sys; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") or sys.platform != "linux" else 1)' \
    || die "$PY was built without a shared libpython; PyInstaller needs one (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)"

# Qt's xcb platform plugin needs these; PyInstaller bundles them only if the build machine has
# them (Debian/Ubuntu: apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1).
if command -v ldconfig >/dev/null 2>&1; then
    for lib in libxcb-cursor.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1; do
        if ! ldconfig -p 2>/dev/null | grep -q "$lib"; then
            echo "build.sh: warning: $lib not on this machine: the bundle's X11 (xcb) support will rely on the user's copy" >&2
        fi
    done
fi

if [ "$FRESH" = 1 ] && [ -d "$VENV" ]; then rm -rf "$VENV"; fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "build.sh: creating clean virtual environment $VENV with $("$PY" -V 2>&1)"
    "$PY" -m venv "$VENV"
fi
# Runtime dependencies + PyInstaller, exactly as locked (versions and sha256 hashes) by
# packaging/lock.sh from pyproject.toml: a new release upstream cannot change the bundle.
LOCK="$ROOT/packaging/requirements-bundle.txt"
[ -f "$LOCK" ] || die "$LOCK is missing (run packaging/lock.sh)"
echo "build.sh: installing $(grep -c '==' "$LOCK") locked packages into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$LOCK" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

T_INSTALLED=$(date +%s)
echo "build.sh: environment ready in $((T_INSTALLED - START)) s; running PyInstaller ($("$VENV/bin/python" -m PyInstaller --version))"
cd "$ROOT"
AIFLAT_BUNDLE_NAME="$NAME" "$VENV/bin/python" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$DIST" --workpath "$WORK" "$ROOT/packaging/aiflat.spec"

T_BUILT=$(date +%s)
echo "build.sh: PyInstaller took $((T_BUILT - T_INSTALLED)) s"
BUNDLE="$DIST/$NAME"
[ -x "$BUNDLE/aiflat" ] && [ -e "$BUNDLE/aiflat-gui" ] || die "PyInstaller did not produce $BUNDLE/aiflat and aiflat-gui"
VERSION_LINE="$("$BUNDLE/aiflat" --version)" || die "the bundled aiflat --version failed"
# Load every native library family and run tiny FITS / sparse / OpenCV / Qt checks in the bundle.
AIFLAT_SELFTEST=1 QT_QPA_PLATFORM=offscreen "$BUNDLE/aiflat" || die "the bundle's self-test failed (see above)"
SIZE_MB=$(du -sm "$BUNDLE" | cut -f1)
END=$(date +%s)
echo "build.sh: $VERSION_LINE"
echo "build.sh: bundle $BUNDLE"
echo "build.sh: bundle size $(du -sh "$BUNDLE" | cut -f1) (${SIZE_MB} MB), built in $((END - START)) s"
if [ "$SIZE_MB" -gt "$MAX_MB" ]; then
    die "bundle is ${SIZE_MB} MB, over the ${MAX_MB} MB limit"
fi
if [ "$ARCHIVE" = 1 ]; then
    VERSION="${VERSION_LINE##* }"
    TARBALL="$DIST/aiflat-$VERSION-linux-$(uname -m).tar.gz"
    tar -C "$DIST" -czf "$TARBALL.partial" "$NAME"
    mv -f "$TARBALL.partial" "$TARBALL"
    echo "build.sh: archive $TARBALL ($(du -sh "$TARBALL" | cut -f1))"
fi
