#!/usr/bin/env bash
# Regenerates the per-minor lock files from pyproject.toml (the project, its test and benchmarks extras):
#   requirements/airflow-3.0.txt, airflow-3.1.txt, airflow-3.2.txt  as of each Airflow's release day,
#   requirements/lock.txt (= airflow-3.3.txt, the main lock of scripts/_venv.sh)  as of today.
# Each minor's Airflow pin and any upper bound it needs live in requirements/airflow-3.N.in.
#
# Why "as of the release day" (uv's --exclude-newer): an older Airflow installed with today's newest
# dependencies breaks (3.2.2 with pydantic 2.14 runs no task at all). Airflow's answer is its
# constraints file per release, pinned on the day it was released; this reproduces that world from
# the package index alone. Bump a minor: change its .in and its date below, run this, then
# `bash scripts/test_airflow_versions.sh 3.N`.
#
#   bash scripts/lock_airflow_versions.sh            # every minor
#   bash scripts/lock_airflow_versions.sh 3.2        # one
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# minor -> day after the newest patch was uploaded (empty: today's index)
declare -A RELEASED=([3.0]=2025-08-30 [3.1]=2026-03-12 [3.2]=2026-05-30 [3.3]="")
UV="${UV:-$(command -v uv || echo .venv/bin/uv)}"
minors=("$@")
[[ ${#minors[@]} -gt 0 ]] || minors=(3.0 3.1 3.2 3.3)
for minor in "${minors[@]}"; do
    [[ -v "RELEASED[$minor]" ]] || { echo "unknown minor $minor (known: ${!RELEASED[*]})" >&2; exit 2; }
    out="requirements/airflow-$minor.txt"
    date_args=()
    if [[ -n "${RELEASED[$minor]}" ]]; then
        date_args=(--exclude-newer "${RELEASED[$minor]}")
    else
        out=requirements/lock.txt
    fi
    "$UV" pip compile pyproject.toml --extra test --extra benchmarks --universal --python-version 3.10 \
        --no-header --annotation-style line --quiet \
        -c "requirements/airflow-$minor.in" "${date_args[@]}" -o "$out"
    echo "$out: $(grep -E '^apache-airflow==' "$out" | cut -d' ' -f1), $(grep -E '^pydantic==' "$out" | cut -d' ' -f1)"
done
