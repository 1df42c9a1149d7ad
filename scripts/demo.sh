#!/usr/bin/env bash
# The nightly geocoding DAG, end to end, through a real Airflow and the local HERE Batch emulator.
#
#   bash scripts/demo.sh           # run the demo, stop everything, exit 0 only if the run succeeded
#   bash scripts/demo.sh --keep    # leave Airflow and the emulator running afterwards (UI address printed)
#   bash scripts/demo.sh --stop    # stop what a previous --keep left running
#   bash scripts/demo.sh --help    # what it does, its settings
#
# Sets up the project venv (scripts/_venv.sh), then runs the demo itself: devtools/demo.py
# (python -m devtools.demo, with these arguments). Everything lands in .demo/; see docs/demo.md.
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$REPO_ROOT"
exec "$VENV_PY" -m devtools.demo "$@"
