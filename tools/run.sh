#!/usr/bin/env bash
# The README's entry point: set up the environment (idempotent), then run a task in it.
#   bash tools/run.sh quickstart   # ODE Faster R-CNN on the embedded synthetic dataset
#   bash tools/run.sh test         # the test suite (what CI runs)
#   bash tools/run.sh env          # which detectron2 build is active, with the stack's versions
#   bash tools/run.sh python ...   # anything else, in the environment
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
PY="${ODEDET_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
task="${1:-quickstart}"; shift || true
case "$task" in
  quickstart) exec "$PY" tools/quickstart.py "$@" ;;
  test) exec "$PY" -m pytest tests -ra --timeout=900 -p no:cacheprovider "$@" ;;
  env) exec "$PY" -m odedet.env "$@" ;;
  python) exec "$PY" "$@" ;;
  *) echo "unknown task '$task': use quickstart, test, env or python"; exit 2 ;;
esac
