#!/usr/bin/env bash
# Refresh the two locked dependency sets from pyproject.toml (run it after changing a dependency,
# then commit both files with the reason; CI and the bundle use exactly what they list).
#
#   packaging/lock.sh [--upgrade | --upgrade-package NAME]
#
# constraints.txt                    every runtime, test, packaging and optional dependency at one
#                                    exact version; the README's install commands and .ci/run pass
#                                    it to pip as `-c constraints.txt`.
# packaging/requirements-bundle.txt  the runtime dependencies plus PyInstaller, at the same
#                                    versions, with sha256 hashes; packaging/build.sh installs it
#                                    with `pip install --require-hashes`.
#
# Upper bounds with their reasons live in packaging/lock-limits.in. The locks are made with
# pip-tools (pip-compile) in a throw-away virtual environment of the project's Python (>= 3.12,
# as build.sh finds it: $AIFLAT_PYTHON, pyenv + .python-version, python3.12, python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
die() { echo "lock.sh: error: $*" >&2; exit 1; }

PY="${AIFLAT_PYTHON:-}"
if [ -z "$PY" ] && command -v pyenv >/dev/null 2>&1 && [ -f .python-version ]; then
    PY="$(PYENV_VERSION="$(head -n1 .python-version)" pyenv which python 2>/dev/null || true)"
fi
[ -n "$PY" ] || PY="$(command -v python3.12 || command -v python3)" || die "no Python found"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' \
    || die "$PY is $("$PY" -V 2>&1); the locks must be made with Python >= 3.12 (set AIFLAT_PYTHON)"

TOOLS="$(mktemp -d)"
trap 'rm -rf "$TOOLS"' EXIT
"$PY" -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/python" -m pip install -q --disable-pip-version-check "pip-tools>=7.4" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
COMPILE=("$TOOLS/venv/bin/pip-compile" -q --strip-extras --allow-unsafe --no-emit-index-url
         --no-emit-find-links --no-header --resolver=backtracking)

# The project itself appears when one extra names another (test -> aiflat-gui[cluster]) as a
# `file://` line of this checkout: drop that entry (and its "# via" lines), it is not a dependency.
drop_self() { awk '/^aiflat-gui( @|==)/ { skip = 1; next } skip && /^ +#/ { next } { skip = 0; print }' "$1"; }

# pip-compile keeps the versions already in its output file unless a range forces a change (or
# --upgrade / --upgrade-package NAME is passed to this script): a re-lock moves only what it must.
# Everything (all extras), exact versions, no hashes: pip refuses hashes next to `-e .`.
"${COMPILE[@]}" "$@" --all-extras -c packaging/lock-limits.in -o constraints.txt pyproject.toml
{ echo "# Exact versions for CI and development installs: pip install -c constraints.txt -e '.[test]'"
  echo "# Made by packaging/lock.sh from pyproject.toml and packaging/lock-limits.in; do not edit by hand."
  drop_self constraints.txt | grep -v '^# \(Exact versions\|Made by packaging\)'; } > constraints.txt.new
mv constraints.txt.new constraints.txt
# The bundle: runtime + packaging extra, the same versions, with hashes.
"${COMPILE[@]}" --extra packaging --generate-hashes -c constraints.txt \
    -o packaging/requirements-bundle.txt pyproject.toml
{ echo "# The bundle's dependencies with hashes: pip install --require-hashes -r packaging/requirements-bundle.txt"
  echo "# Made by packaging/lock.sh (same versions as constraints.txt); do not edit by hand."
  drop_self packaging/requirements-bundle.txt | grep -v '^# \(The bundle.s dependencies\|Made by packaging\)'; } \
    > packaging/requirements-bundle.txt.new
mv packaging/requirements-bundle.txt.new packaging/requirements-bundle.txt
echo "lock.sh: wrote constraints.txt ($(grep -c '==' constraints.txt) pins) and" \
     "packaging/requirements-bundle.txt ($(grep -c '==' packaging/requirements-bundle.txt) pins, hashed)"
