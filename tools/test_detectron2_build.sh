#!/usr/bin/env bash
# Build detectron2 from a source tree or a git-archive tarball WITH its compiled ops into a
# Python environment, then run odedet's test suite against it.
#
#   bash tools/test_detectron2_build.sh SOURCE [VENV] [-- PYTEST_ARGS...]
#
#   SOURCE  a detectron2 checkout (directory with setup.py) or a .tar.gz of one
#   VENV    the environment to build into (created if missing, torch installed from this
#           machine's disk); default ~/.cache/odedet/venvs/detectron2-<source key>
#
# The compile (5-15 minutes on 2 cores) runs once per source, torch version and Python: the
# wheel is cached in ${ODEDET_CACHE:-~/.cache/odedet}/detectron2-wheels/<key>/, outside the
# clone, so later runs (CI on the same machine) only reinstall it. MAX_JOBS (default 2) bounds
# the compiler processes. Set ODEDET_BUILD_WRAPPER (e.g. "nice -n 10") to run the compile
# and the tests through a wrapper command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "[d2 build] $*"; }
die() { echo "[d2 build] ERROR: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 SOURCE [VENV] [-- PYTEST_ARGS...]"
SRC="$1"; shift
VENV=""
if [ $# -ge 1 ] && [ "$1" != "--" ]; then VENV="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
PYTEST_ARGS=("$@")
CACHE="${ODEDET_CACHE:-$HOME/.cache/odedet}"
WRAP=(${ODEDET_BUILD_WRAPPER:-})
[ -e "$SRC" ] || die "no such source: $SRC"
SRC="$(cd "$(dirname "$SRC")" && pwd)/$(basename "$SRC")"

# Key of the source: the archive's sha256, or a hash of a tree's C++/CUDA and Python sources.
if [ -f "$SRC" ]; then
  KEY="$(sha256sum "$SRC" | cut -c1-16)"
else
  [ -f "$SRC/setup.py" ] || die "$SRC has no setup.py: not a detectron2 source tree"
  KEY="$(cd "$SRC" && find setup.py detectron2 -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.h' \
         -o -name '*.cu' \) | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
fi
VENV="${VENV:-$CACHE/venvs/detectron2-$KEY}"
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
quiet_pip() { "${PIP[@]}" install --quiet "$@" 2>&1 | grep -v "is ignored" || true; }

start=$(date +%s)
if [ ! -x "$PY" ]; then
  log "creating $VENV"
  "${PYTHON:-python3.11}" -m venv "$VENV"
fi
if ! "$PY" -c 'import torch, torchvision' 2>/dev/null; then
  log "installing torch and torchvision"
  quiet_pip torch==2.14.1 torchvision==0.29.1
fi
"$PY" -c 'import torch, torchvision' || die "torch install failed in $VENV"
TAG="$("$PY" -c 'import sys, torch; print(f"torch{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEELS="$CACHE/detectron2-wheels/$KEY-$TAG"

wheel="$(ls "$WHEELS"/detectron2-*.whl 2>/dev/null | head -1 || true)"
if [ -z "$wheel" ]; then
  log "compiling detectron2 ($SRC) with its C++ ops, MAX_JOBS=${MAX_JOBS:-2}: 5-15 minutes"
  "$PY" -c 'import setuptools, wheel' 2>/dev/null || quiet_pip setuptools wheel
  command -v ninja >/dev/null || "$PY" -c 'import ninja' 2>/dev/null || quiet_pip ninja
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
  if [ -f "$SRC" ]; then
    tar xzf "$SRC" -C "$work"
    tree="$(dirname "$(ls "$work"/*/setup.py "$work"/setup.py 2>/dev/null | head -1)")"
  else
    cp -a "$SRC" "$work/src"; tree="$work/src"
  fi
  [ -f "$tree/setup.py" ] || die "no setup.py found in $SRC"
  mkdir -p "$WHEELS.partial"
  t0=$(date +%s)
  (cd "$tree" && PATH="$VENV/bin:$PATH" MAX_JOBS="${MAX_JOBS:-2}" "${WRAP[@]}" \
     "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WHEELS.partial" . >"$work/build.log" 2>&1) \
    || { tail -30 "$work/build.log"; die "compiling detectron2 failed"; }
  rm -rf "$WHEELS"; mv "$WHEELS.partial" "$WHEELS"  # complete wheels only, even if killed
  wheel="$(ls "$WHEELS"/detectron2-*.whl | head -1)"
  log "built $(basename "$wheel") in $(( $(date +%s) - t0 )) s (cached in $WHEELS)"
else
  log "using cached $wheel"
fi

if ! "$PY" -c 'import detectron2._C' 2>/dev/null \
   || [ "$(cat "$VENV/.odedet-d2-wheel" 2>/dev/null)" != "$wheel" ]; then
  log "installing $(basename "$wheel") with its dependencies"
  quiet_pip --force-reinstall --no-deps "$wheel"
  quiet_pip "$wheel"
  echo "$wheel" > "$VENV/.odedet-d2-wheel"
fi
# detectron2 main's model_zoo imports pkg_resources, which setuptools >= 81 no longer ships.
if ! "$PY" -W ignore -c 'import pkg_resources' 2>/dev/null; then
  log "pkg_resources missing (setuptools >= 81): installing setuptools<81 for detectron2.model_zoo"
  quiet_pip "setuptools<81"
fi
"$PY" -c 'import detectron2._C' || die "detectron2._C does not import in $VENV"

# odedet's own set-up on top (requirements, editable odedet); it leaves a compiled detectron2 alone.
ODEDET_VENV="$VENV" bash "$ROOT/tools/setup_env.sh"
quiet_pip --no-deps --no-build-isolation -e "$ROOT"  # this clone, even if the stamp says done
# captured first: `grep -q` exits at its first match and would break the pipe of a still-printing
# odedet.env (BrokenPipeError; with pipefail a false "not compiled")
ENV_REPORT="$("$PY" -m odedet.env)"
grep -E "^detectron2" <<<"$ENV_REPORT" || true
grep -q "detectron2 ops *compiled" <<<"$ENV_REPORT" || die "odedet does not see a compiled detectron2"
log "environment ready in $(( $(date +%s) - start )) s; running odedet's tests"
cd "$ROOT"
exec "${WRAP[@]}" "$PY" -m pytest tests -ra --timeout=900 -p no:cacheprovider "${PYTEST_ARGS[@]}"
