#!/usr/bin/env bash
# convbench's one entry point for people: set up whatever is missing, then run.
#   ./run.sh repro [dvc repro args]   virtual env + install + dataset, then `dvc repro`
#   ./run.sh test  [pytest args]      virtual env + install, then the whole test suite
#   ./run.sh setup                    only the virtual env and install
# Offline: CONVBENCH_CIFAR10_ZIP=/path/to/cifar10.zip ./run.sh repro
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${CONVBENCH_VENV:-.venv}
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true PYTHONUNBUFFERED=1

setup() {
  # Re-install only when pyproject.toml changed since the last install.
  local stamp="$VENV/.convbench-installed"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "convbench: creating the virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
    echo "convbench: installing convbench and its dependencies (torch is large: a few minutes the first time)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
    cp pyproject.toml "$stamp"
  fi
  # Stage commands call `python`: put the venv first on PATH.
  export PATH="$PWD/$VENV/bin:$PATH" VIRTUAL_ENV="$PWD/$VENV"
}

cmd=${1:-repro}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  repro)
    setup
    python -m convbench.stages.fetch --track   # the archive, DVC-tracked so that DVC's queue gets it too
    python -m convbench.tracking
    dvc repro "$@"
    ;;
  test)
    setup
    python -m pytest "$@"
    ;;
  *) echo "usage: ./run.sh [repro|test|setup] [args...]" >&2; exit 2 ;;
esac
