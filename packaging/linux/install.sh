#!/bin/sh
# Add AI Flat to the application menu: desktop entry, icons, AppStream metadata, the SER file
# type (application/x-ser), and the `aiflat` / `aiflat-gui` commands on the PATH.
#
#   ./install.sh                 for the current user (~/.local/share, ~/.local/bin)
#   ./install.sh --prefix DIR    for all users, e.g. sudo ./install.sh --prefix /usr/local
#   ./install.sh --uninstall     remove it again (same --prefix as when installing)
#
# The program itself stays in this folder: move the folder first, then run install.sh.
set -eu

APP_ID=io.github.aiflat.AIFlat
HERE=$(cd "$(dirname "$0")" && pwd)
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
BIN="$HOME/.local/bin"
MODE=install

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) DATA="$2/share"; BIN="$2/bin"; shift 2 ;;
        --uninstall) MODE=uninstall; shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

refresh() {
    if command -v update-mime-database >/dev/null 2>&1; then
        update-mime-database "$DATA/mime" >/dev/null 2>&1 || true
    fi
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database "$DATA/applications" >/dev/null 2>&1 || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$DATA/icons/hicolor/index.theme" ]; then
        gtk-update-icon-cache -q -t -f "$DATA/icons/hicolor" >/dev/null 2>&1 || true
    fi
}

if [ "$MODE" = uninstall ]; then
    rm -f "$DATA/applications/$APP_ID.desktop" "$DATA/metainfo/$APP_ID.metainfo.xml" \
          "$DATA/mime/packages/$APP_ID.xml" "$DATA/icons/hicolor/scalable/apps/$APP_ID.svg"
    for f in "$DATA"/icons/hicolor/*/apps/"$APP_ID".png; do
        [ -e "$f" ] && rm -f "$f"
    done
    for name in aiflat aiflat-gui; do
        # only our own links, never a file someone else put there
        if [ -L "$BIN/$name" ]; then rm -f "$BIN/$name"; fi
    done
    refresh
    echo "AI Flat removed from $DATA"
    exit 0
fi

[ -x "$HERE/aiflat" ] || { echo "install.sh: $HERE/aiflat not found: run install.sh from the AI Flat folder" >&2; exit 1; }
[ -d "$HERE/share" ] || { echo "install.sh: $HERE/share not found" >&2; exit 1; }

mkdir -p "$DATA/applications" "$DATA/metainfo" "$DATA/mime/packages" "$BIN"
# The desktop entry points at this folder (quoted, for folders with spaces).
sed -e "s|^Exec=.*|Exec=\"$HERE/aiflat-gui\" %F|" -e "s|^TryExec=.*|TryExec=$HERE/aiflat-gui|" \
    "$HERE/share/applications/$APP_ID.desktop" > "$DATA/applications/$APP_ID.desktop"
cp "$HERE/share/metainfo/$APP_ID.metainfo.xml" "$DATA/metainfo/"
cp "$HERE/share/mime/packages/$APP_ID.xml" "$DATA/mime/packages/"
(cd "$HERE/share" && find icons -type f) | while read -r f; do
    mkdir -p "$DATA/$(dirname "$f")"
    cp "$HERE/share/$f" "$DATA/$f"
done
for name in aiflat aiflat-gui; do
    if [ -e "$BIN/$name" ] && [ ! -L "$BIN/$name" ]; then
        echo "install.sh: $BIN/$name exists and is not a link: left alone" >&2
    else
        ln -sfn "$HERE/$name" "$BIN/$name"
    fi
done
refresh
echo "AI Flat installed for $DATA (commands in $BIN)"
