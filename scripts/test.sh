#!/usr/bin/env bash
# The whole test suite: project venv set-up (scripts/_venv.sh), then pytest with any extra arguments.
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh tests/airflow -x -q
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$REPO_ROOT"
exec "$VENV_PY" -m pytest "$@"
