#!/usr/bin/env bash
# Run detectron2's own v0.6 test suite (a tests/ archive of the v0.6 tag) against the detectron2
# installed in an environment (default: the project's .venv, i.e. odedet's pure-PyTorch build).
#
#   bash tools/detectron2_tests/run_v06.sh ARCHIVE [VENV] [-- PYTEST_ARGS...]
#
# The archive is extracted to a temporary folder and run from there, as detectron2's README says
# (`python -m pytest tests --continue-on-collection-errors`). d2_v06_skips.py (loaded as a pytest
# plugin; the vendored files are not edited) skips the tests this machine cannot run, each with
# its reason. The suite's own test-only dependencies (shapely for polygon transforms, black for
# LazyConfig.to_py) are installed into VENV first.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 ARCHIVE [VENV] [-- PYTEST_ARGS...]"; exit 2; }
ARCHIVE="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; shift
VENV="$ROOT/.venv"
if [ $# -ge 1 ] && [ "$1" != "--" ]; then VENV="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
[ -d "$VENV" ] || { echo "[d2 tests] ERROR: environment $VENV not found"; exit 2; }
VENV="$(cd "$VENV" && pwd)"  # absolute: the suite runs from the extracted folder
PY="$VENV/bin/python"
"$PY" -c 'import shapely, black' 2>/dev/null \
  || "$PY" -m pip install --quiet --disable-pip-version-check shapely black 2>&1 | grep -v "is ignored" || true
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
tar xzf "$ARCHIVE" -C "$work"
dir="$(dirname "$(ls -d "$work"/*/tests "$work"/tests 2>/dev/null | head -1)")"
cd "$dir"
echo "[d2 tests] detectron2 $("$PY" -c 'import importlib.metadata as m; print(m.version("detectron2"))') from $VENV; tests from $(basename "$ARCHIVE")"
PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m pytest tests --continue-on-collection-errors \
  -p d2_v06_skips -p no:cacheprovider -q -rs --timeout=900 "$@"
