#!/usr/bin/env bash
# Create/refresh the project-local virtual environment (.venv by default, or $ODEDET_VENV):
# torch + torchvision (from this machine's disk), the requirements, detectron2 (pure-PyTorch
# build from the hash-checked PyPI sdist, or a compiled one already present, left untouched),
# and odedet in editable mode. Idempotent: a second run with unchanged inputs does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ODEDET_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
log() { echo "[setup] $*"; }

if [ ! -x "$PY" ]; then
  BASE_PY="${PYTHON:-python3.11}"
  command -v "$BASE_PY" >/dev/null 2>&1 || BASE_PY=python3
  "$BASE_PY" -c 'import sys; assert sys.version_info[:2] >= (3, 10), sys.version' \
    || { echo "[setup] ERROR: Python >= 3.10 needed (set PYTHON=/path/to/python3.11)"; exit 1; }
  log "creating virtual environment $VENV"
  "$BASE_PY" -m venv "$VENV"
fi

inputs_hash() {
  cat "$ROOT/setup.py" "$ROOT/tools/requirements.txt" "$ROOT/tools/setup_env.sh" \
      "$ROOT"/tools/detectron2_pure/*.py | sha256sum | cut -d' ' -f1
}
STAMP="$VENV/.odedet-setup-stamp"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(inputs_hash)" ] \
   && "$PY" -W ignore -c 'import importlib.metadata as m, detectron2, torchdiffeq; m.version("odedet")' \
      >/dev/null 2>&1; then
  log "environment $VENV is up to date"
  exit 0
fi

start=$(date +%s)
PIP=("$PY" -m pip --disable-pip-version-check)
log "installing torch and torchvision"
"${PIP[@]}" install --quiet torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "is ignored" || true
"$PY" -c 'import torch, torchvision' || { echo "[setup] ERROR: torch install failed"; exit 1; }
log "installing requirements"
"${PIP[@]}" install --quiet -r "$ROOT/tools/requirements.txt" 2>&1 | grep -v "is ignored" || true
"$PY" -c 'import torchdiffeq, fvcore, pycocotools, cv2, pytest' \
  || { echo "[setup] ERROR: requirements install failed (see pip output above)"; exit 1; }
log "installing detectron2"
(cd "$ROOT" && "$PY" tools/detectron2_pure/build.py --cache "$ROOT/.cache/detectron2")
log "installing odedet (editable)"
"${PIP[@]}" install --quiet --no-deps --no-build-isolation -e "$ROOT" 2>&1 | grep -v "is ignored" || true
"$PY" -c 'import importlib.metadata as m; m.version("odedet")' \
  || { echo "[setup] ERROR: odedet install failed (see pip output above)"; exit 1; }
inputs_hash > "$STAMP"
log "done in $(( $(date +%s) - start )) s"
