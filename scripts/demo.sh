#!/usr/bin/env bash
# The nightly geocoding DAG, end to end, through a real Airflow and the local HERE Batch emulator.
#
#   bash scripts/demo.sh           # run the demo, stop everything, exit 0 only if the run succeeded
#   bash scripts/demo.sh --keep    # leave Airflow and the emulator running afterwards (UI address printed)
#   bash scripts/demo.sh --stop    # stop what a previous --keep left running
#
# What it does:
#   1. venv set-up (scripts/_venv.sh);
#   2. starts the emulator (python -m airflow_here_batch.emulator) on a free loopback port;
#   3. starts a real Airflow 3 as four processes (api-server, scheduler, dag-processor, triggerer),
#      LocalExecutor, SQLite, AIRFLOW_HOME=.demo/airflow, DAGs folder example_dags/, simple auth manager
#      with everyone admin (local demo only), connection here_batch_default from the environment;
#   4. triggers here_batch_nightly_geocode through the REST API v2 (logical date = the latest 02:00 UTC
#      slot, so it is the run the schedule would have made), unpauses it and waits (bounded): the first
#      run seeds the `addresses` table (322 rows, embedded SQLite under AIRFLOW_HOME) and geocodes every
#      row into `addresses_geocoded`;
#   5. prints each task's state, the proof that the sensor's wait ran in the triggerer, where the results
#      went, the write task's summary and a few rows of the table;
#   6. changes 3 addresses in the table and triggers a second run: only those 3 are sent to HERE; prints
#      both runs' records_sent vs records_total (exit 1 unless the second run sent exactly 3);
#   7. stops every process it started (by pid, on any exit) unless --keep.
# Everything lands in .demo/ (wiped at each start): logs of every process in .demo/logs/, task logs in
# .demo/logs/tasks/, results in .demo/output/. On failure the tail of every log is printed.
#
# Settings (environment): HERE_BATCH_DEMO_TIMEOUT (s, default 600) bounds the wait for the run;
# HERE_BATCH_DEMO_RPS (records/s the emulator processes, default 25: the 322 sample records take about 13 s, so
# the sensor really defers). The scheduler and triggerer log servers need ports 8793 and 8794
# (override with AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT / AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT).
set -euo pipefail

KEEP=0
STOP_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        --stop) STOP_ONLY=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "demo: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DEMO_DIR="$ROOT/.demo"
LOG_DIR="$DEMO_DIR/logs"
PID_DIR="$DEMO_DIR/pids"
DAG_ID="${HERE_BATCH_DEMO_DAG_ID:-here_batch_nightly_geocode}"
DAGS_FOLDER="${HERE_BATCH_DEMO_DAGS_FOLDER:-$ROOT/airflow_here_batch/example_dags}"
TIMEOUT="${HERE_BATCH_DEMO_TIMEOUT:-600}"
RPS="${HERE_BATCH_DEMO_RPS:-25}"
START_EPOCH="$(date +%s)"

say() { printf '[demo %4ss] %s\n' "$(($(date +%s) - START_EPOCH))" "$*"; }

# ---------------------------------------------------------------------------------------------------
# Process management: every process is started with setsid (its own process group), its pid kept in
# .demo/pids/<name>.pid; stopping sends TERM to that group, waits, then KILL.
# ---------------------------------------------------------------------------------------------------
alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

stop_pid() {
    local name="$1" pid="$2" waited=0
    alive "$pid" || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && ((waited < 30)); do
        sleep 0.5
        waited=$((waited + 1))
    done
    if alive "$pid"; then
        echo "demo: $name (pid $pid) did not stop on TERM within 15 s; sending KILL" >&2
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
}

stop_all() {
    local f name pid stoppers=()
    [[ -d "$PID_DIR" ]] || return 0
    # In parallel (each takes about 5 s to shut down cleanly); the emulator once Airflow is gone.
    for name in triggerer scheduler dag-processor api-server; do
        f="$PID_DIR/$name.pid"
        [[ -f "$f" ]] || continue
        pid="$(cat "$f")"
        stop_pid "$name" "$pid" &
        stoppers+=("$!")
    done
    ((${#stoppers[@]} == 0)) || wait "${stoppers[@]}" || true
    if [[ -f "$PID_DIR/emulator.pid" ]]; then stop_pid emulator "$(cat "$PID_DIR/emulator.pid")"; fi
    rm -f "$PID_DIR"/*.pid
}

running_pids() {
    local f out=""
    for f in "$PID_DIR"/*.pid; do
        [[ -f "$f" ]] || continue
        if alive "$(cat "$f")"; then out+="$(basename "$f" .pid)=$(cat "$f") "; fi
    done
    printf '%s' "$out"
}

if ((STOP_ONLY)); then
    left="$(running_pids)"
    if [[ -z "$left" ]]; then
        echo "demo: nothing running"
    else
        echo "demo: stopping $left"
        stop_all
    fi
    exit 0
fi

left="$(running_pids)"
if [[ -n "$left" ]]; then
    echo "demo: a previous demo is still running ($left); stop it with: bash scripts/demo.sh --stop" >&2
    exit 1
fi

show_logs() {
    local f
    echo
    echo "================ demo failed: log tails (full logs in $LOG_DIR) ================"
    for f in "$LOG_DIR"/*.log; do
        [[ -f "$f" ]] || continue
        echo "---------------- ${f#"$ROOT"/} (last 40 lines) ----------------"
        tail -n 40 "$f" || true
    done
}

STATUS=1
LOGS_STARTED=0
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    ((STATUS == 0)) || ((rc != 0)) || rc=1
    if ((rc != 0 && LOGS_STARTED)); then show_logs; fi
    if ((KEEP)) && [[ -n "$(running_pids)" ]]; then
        echo
        say "--keep: left running: $(running_pids)"
        say "Airflow UI: ${API_URL:-?}/  (simple auth manager, every user is admin: no login needed)"
        say "Emulator:   ${EMU_URL:-?}   logs: ${LOG_DIR#"$ROOT"/}/   stop with: bash scripts/demo.sh --stop"
    else
        stop_all
        ((rc != 0)) || say "stopped every process it started"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------------
# shellcheck source=scripts/_venv.sh
source "$ROOT/scripts/_venv.sh"
cd "$ROOT"


WORKER_LOG_PORT="${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-8793}"
TRIGGER_LOG_PORT="${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-8794}"

# A port is usable when we can bind it the way uvicorn does (SO_REUSEADDR, all interfaces).
port_free() {
    "$VENV_PY" -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}
free_port() { "$VENV_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for spec in "scheduler log server:$WORKER_LOG_PORT" "triggerer log server:$TRIGGER_LOG_PORT"; do
    port="${spec##*:}"
    if ! port_free "$port"; then
        echo "demo: port $port (Airflow ${spec%:*}) is already in use; Airflow's scheduler and triggerer" >&2
        echo "      need ports $WORKER_LOG_PORT and $TRIGGER_LOG_PORT. Free it (e.g. stop another Airflow:" >&2
        echo "      'ss -ltnp | grep :$port' shows who holds it), or pick other ports with" >&2
        echo "      AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT / AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT." >&2
        exit 1
    fi
done
API_PORT="$(free_port)"
API_URL="http://127.0.0.1:$API_PORT"

# A fresh state for every run (a --keep run still alive was refused above).
rm -rf "$DEMO_DIR"
mkdir -p "$LOG_DIR/tasks" "$PID_DIR" "$DEMO_DIR/airflow" "$DEMO_DIR/output"
LOGS_STARTED=1

# The REST API helper (trigger, wait, report): devtools/demo_api.py.
DEMO_PY=(-m devtools.demo_api)

# ---------------------------------------------------------------------------------------------------
# Emulator
# ---------------------------------------------------------------------------------------------------
API_KEY="demo-key-$RANDOM$RANDOM" # throwaway; never printed
say "starting the HERE Batch emulator on a free loopback port ($RPS records/s per job)"
# --port 0: the emulator picks a free port and prints its base URL as the first line.
# --api-key: it accepts only the connection's key, so a successful run proves the key was used.
setsid "$VENV_PY" -u -m airflow_here_batch.emulator --host 127.0.0.1 --port 0 --api-key "$API_KEY" \
    --records-per-second "$RPS" >"$LOG_DIR/emulator.log" 2>&1 </dev/null &
echo "$!" >"$PID_DIR/emulator.pid"

EMU_URL=""
deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
    alive "$(cat "$PID_DIR/emulator.pid")" || { echo "demo: the emulator exited" >&2; exit 1; }
    EMU_URL="$(head -n 1 "$LOG_DIR/emulator.log" 2>/dev/null | grep -o 'http://[^ ]*/v7' || true)"
    if [[ -n "$EMU_URL" ]] && "$VENV_PY" -c '
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)' "$EMU_URL"; then
        break
    fi
    EMU_URL=""
    sleep 0.3
done
[[ -n "$EMU_URL" ]] || { echo "demo: the emulator did not answer $EMU_URL/health within 30 s" >&2; exit 1; }
say "emulator ready: $EMU_URL"

# ---------------------------------------------------------------------------------------------------
# Airflow
# ---------------------------------------------------------------------------------------------------
unset "${!AIRFLOW__@}" 2>/dev/null || true
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$WORKER_LOG_PORT"
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="$TRIGGER_LOG_PORT"
export AIRFLOW_HOME="$DEMO_DIR/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$DAGS_FOLDER"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True # the demo unpauses its DAG after triggering
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS=False
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$API_PORT"
export AIRFLOW__API__BASE_URL="$API_URL"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$LOG_DIR/tasks"
export AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY="$LOG_DIR/dag-processor-children"
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
# Shared secrets for this demo only (every process must agree on them).
AIRFLOW__API_AUTH__JWT_SECRET="$("$VENV_PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
AIRFLOW__API__SECRET_KEY="$("$VENV_PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
AIRFLOW__CORE__FERNET_KEY="$("$VENV_PY" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
export AIRFLOW__API_AUTH__JWT_SECRET AIRFLOW__API__SECRET_KEY AIRFLOW__CORE__FERNET_KEY
export AIRFLOW_CONN_HERE_BATCH_DEFAULT="{\"conn_type\": \"here_batch\", \"host\": \"$EMU_URL\", \"password\": \"$API_KEY\"}"
export HERE_BATCH_OUTPUT_DIR="$DEMO_DIR/output"
export HERE_BATCH_POLL_INTERVAL="${HERE_BATCH_POLL_INTERVAL:-2}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning}"
export DEMO_API_URL="$API_URL" DEMO_LOG_DIR="$LOG_DIR" DEMO_PID_DIR="$PID_DIR" DEMO_DIR="$DEMO_DIR"
export DEMO_T0="$START_EPOCH"

say "airflow db migrate (AIRFLOW_HOME=${AIRFLOW_HOME#"$ROOT"/})"
"$VENV/bin/airflow" db migrate >"$LOG_DIR/db-migrate.log" 2>&1 </dev/null

for name in api-server scheduler dag-processor triggerer; do
    setsid "$VENV/bin/airflow" "$name" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo "$!" >"$PID_DIR/$name.pid"
done
say "started Airflow $("$VENV_PY" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))'): $(running_pids)"
say "Airflow API/UI on $API_URL; logs in ${LOG_DIR#"$ROOT"/}/"

"$VENV_PY" "${DEMO_PY[@]}" wait-health 180
"$VENV_PY" "${DEMO_PY[@]}" wait-dag "$DAG_ID" 180
if "$VENV_PY" "${DEMO_PY[@]}" run "$DAG_ID" "$TIMEOUT" first &&
    "$VENV_PY" "${DEMO_PY[@]}" change &&
    "$VENV_PY" "${DEMO_PY[@]}" run "$DAG_ID" "$TIMEOUT" second &&
    "$VENV_PY" "${DEMO_PY[@]}" compare; then
    STATUS=0
fi

# The API key must not appear in anything Airflow wrote.
if grep -rlF -- "$API_KEY" "$LOG_DIR" --exclude=emulator.log >/dev/null 2>&1; then
    echo "demo: the API key appears in these logs:" >&2
    grep -rlF -- "$API_KEY" "$LOG_DIR" --exclude=emulator.log >&2 || true
    STATUS=1
else
    say "checked: the API key appears in none of the Airflow logs"
fi

if ((STATUS == 0)); then
    say "SUCCESS: $DAG_ID ran twice end to end through the scheduler, a LocalExecutor worker and the triggerer (the second run sent only the changed rows) in $(($(date +%s) - START_EPOCH)) s"
else
    say "FAILED: see the output above and the logs in ${LOG_DIR#"$ROOT"/}/"
fi
exit "$STATUS"
