#!/usr/bin/env bash
# Every supported Airflow minor, as a user installs it: for each requirements/airflow-3.N.txt
#   1. a fresh venv with uv, that lock installed and the provider from a built wheel (not editable);
#   2. `airflow providers list` shows airflow-here-batch;
#   3. the core, hook and provider tests, run from a copy of tests/ so that only the installed wheel
#      can be imported (tests/test_package_layout.py checks it);
#   4. the example DAG here_batch_nightly_geocode (by dag id, from the installed package) through
#      `airflow dags test` (= dag.test()) against the local emulator.
# Prints one result line per version and exits non-zero when any version failed.
#
#   bash scripts/test_airflow_versions.sh              # 3.0 3.1 3.2 3.3
#   bash scripts/test_airflow_versions.sh 3.1 3.3      # some
#   HERE_BATCH_VERSIONS_KEEP=1 ...                     # keep the work folder (venvs, logs)
# The work folder is .versions/ in the checkout (logs: .versions/<minor>/log.txt), removed after a pass.
# Measured (2 cores, warm uv cache): build 1 s, install about 5 s, a version 2.5-3 min (pytest most of
# it); the four side by side about 3.5 min.
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"  # the project venv: uv
cd "$REPO_ROOT"
exec </dev/null

DAG_ID=here_batch_nightly_geocode
TESTS=(tests/api tests/hooks tests/airflow/test_provider.py tests/airflow/test_connection_examples.py
       tests/airflow/test_version_compat.py tests/test_package_layout.py)
UV="$(command -v uv)"
PY="$("$VENV_PY" -c 'import sys; print(sys.executable)')"
WORK="$REPO_ROOT/.versions"

minors=("$@")
if [[ ${#minors[@]} -eq 0 ]]; then
    for lock in requirements/airflow-3.*.txt; do
        m="${lock#requirements/airflow-}"
        minors+=("${m%.txt}")
    done
fi

rm -rf "$WORK"
mkdir -p "$WORK/dist" "$WORK/src"
t0=$SECONDS
"$UV" build --quiet --wheel --out-dir "$WORK/dist" "$REPO_ROOT" >"$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log" >&2; exit 1; }
wheel="$(ls "$WORK"/dist/airflow_here_batch-*.whl)"
# The tests without the package: pytest puts this folder, not the checkout, on sys.path.
cp -r tests README.md pyproject.toml "$WORK/src/"
if [[ -d docs ]]; then cp -r docs "$WORK/src/"; fi  # their connection examples are tested
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
echo "versions: wheel $(basename "$wheel") built in $((SECONDS - t0)) s"

# Stops the emulator of one version run, if started.
emu_pid=""
stop_emulator() {
    if [[ -n "$emu_pid" ]] && kill -0 "$emu_pid" 2>/dev/null; then
        kill "$emu_pid" 2>/dev/null || true
        wait "$emu_pid" 2>/dev/null || true
    fi
    emu_pid=""
}

# One version, in a subshell; all its output goes to $dir/log.txt, the stage that failed to $dir/failed.
run_version() {
    local minor="$1" dir="$WORK/$1" lock="requirements/airflow-$1.txt"
    local venv="$dir/venv" home="$dir/airflow" py out url dags
    fail() { echo "$1" >"$dir/failed"; stop_emulator; exit 1; }
    trap stop_emulator EXIT
    [[ -f "$lock" ]] || fail "no lock $lock"
    mkdir -p "$home"
    "$UV" venv --quiet --python "$PY" "$venv" || fail "venv"
    py="$venv/bin/python"
    # The lock as constraints, the wheel with its test extra: what `pip install -c <constraints>` does.
    "$UV" pip install --quiet --python "$py" --compile-bytecode -c "$lock" "$wheel[test]" || fail "install"
    "$py" -c 'import airflow; print("airflow", airflow.__version__)' >"$dir/version" || fail "import airflow"
    export AIRFLOW_HOME="$home" AIRFLOW__CORE__LOAD_EXAMPLES=False PYTHONWARNINGS=ignore
    export AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS=False
    out="$("$venv/bin/airflow" providers list -o json)" || fail "providers list"
    grep -q '"airflow-here-batch"' <<<"$out" || fail "providers list (provider not listed)"
    echo "providers list: airflow-here-batch listed"
    # test_memory.py (about 3 min, the hook's memory profile, the same on every Airflow) runs on 3.3 only.
    (cd "$WORK/src" && "$venv/bin/pytest" -q -x -p no:cacheprovider --durations=5 --ignore tests/hooks/test_memory.py \
        "${TESTS[@]}") || fail "pytest"
    # The example DAG from the installed package, by dag id.
    dags="$("$py" -c 'import airflow_here_batch.example_dags as m, os; print(os.path.dirname(m.__file__))')"
    export AIRFLOW__CORE__DAGS_FOLDER="$dags" HERE_BATCH_POLL_INTERVAL=1
    "$venv/bin/airflow" db migrate >/dev/null || fail "db migrate"
    "$venv/bin/here-batch-emulator" --port 0 --quiet --records-per-second 2000 --queue-delay 0.2 \
        >"$dir/emulator.url" 2>"$dir/emulator.log" &
    emu_pid=$!
    for _ in $(seq 100); do [[ -s "$dir/emulator.url" ]] && break; sleep 0.1; done
    url="$(head -1 "$dir/emulator.url")"
    [[ -n "$url" ]] || fail "emulator did not start"
    export AIRFLOW_CONN_HERE_BATCH_DEFAULT="{\"conn_type\": \"here_batch\", \"host\": \"$url\", \"password\": \"any-key\"}"
    # `dags test` on 3.0 does not register the DAG's assets: an outlet would be "inactive" and fail the task.
    "$venv/bin/airflow" dags reserialize >/dev/null || fail "dags reserialize"
    "$venv/bin/airflow" dags test "$DAG_ID" || fail "airflow dags test $DAG_ID"
    # The exit code alone is not trusted: the run must be recorded as a success in the metadata DB
    # (`airflow dags list-runs` refuses a DAG that `dags test` ran but did not serialise, on 3.0).
    "$py" - "$DAG_ID" <<'PY' || fail "$DAG_ID did not succeed"
import sys
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from sqlalchemy import select

with create_session() as session:
    runs = [(r.run_id, str(getattr(r.state, "value", r.state))) for r in session.scalars(
        select(DagRun).where(DagRun.dag_id == sys.argv[1]))]
print("runs:", runs)
sys.exit(0 if len(runs) == 1 and runs[0][1] == "success" else 1)
PY
    stop_emulator
}

# Versions run side by side, $HERE_BATCH_VERSIONS_JOBS at a time (default 4: they mostly wait, on the
# emulator and on process start-ups; 4 took 194 s where 2 took 349 s); results print in order.
jobs="${HERE_BATCH_VERSIONS_JOBS:-4}"
pids=()
for minor in "${minors[@]}"; do
    mkdir -p "$WORK/$minor"
    while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
    ( t=$SECONDS; (run_version "$minor"); echo $((SECONDS - t)) >"$WORK/$minor/seconds" ) \
        >"$WORK/$minor/log.txt" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

failed=0
for minor in "${minors[@]}"; do
    dir="$WORK/$minor"
    version="$(cut -d' ' -f2 "$dir/version" 2>/dev/null || echo "?")"
    took="$(cat "$dir/seconds" 2>/dev/null || echo "?")"
    if [[ -f "$dir/failed" ]]; then
        failed=1
        echo "versions: Airflow $minor ($version): FAILED at $(cat "$dir/failed"); log: $dir/log.txt"
        tail -40 "$dir/log.txt" | sed 's/^/    /'
    else
        passed="$(grep -Eo '[0-9]+ passed' "$dir/log.txt" | tail -1)"
        echo "versions: Airflow $minor ($version): ok in $took s (providers list, pytest $passed, dags test $DAG_ID)"
    fi
done
[[ -n "${HERE_BATCH_VERSIONS_KEEP:-}" ]] || [[ $failed -ne 0 ]] || rm -rf "$WORK"
echo "versions: ${#minors[@]} Airflow versions in $((SECONDS - t0)) s, $([[ $failed -eq 0 ]] && echo "all passed" || echo "some FAILED")"
exit $failed
