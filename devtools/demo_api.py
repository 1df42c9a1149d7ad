"""REST API v2 helper for scripts/demo.sh (``python -m devtools.demo_api <mode> ...``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

API = os.environ["DEMO_API_URL"]
LOG_DIR = Path(os.environ["DEMO_LOG_DIR"])
T0 = float(os.environ.get("DEMO_T0", time.time()))


def say(msg: str) -> None:
    print(f"[demo {int(time.time()) - int(T0):4d}s] {msg}", flush=True)


def call(method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        return 0, str(exc)


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def alive(pid_names: list[str]) -> None:
    """Fail fast when a process we depend on has died."""
    for name in pid_names:
        pid_file = Path(os.environ["DEMO_PID_DIR"]) / f"{name}.pid"
        if pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text()), 0)
            except ProcessLookupError:
                sys.exit(f"demo: the {name} process died; see {LOG_DIR / (name + '.log')}")


def wait_health(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        alive(["api-server", "scheduler", "dag-processor", "triggerer"])
        code, body = call("GET", "/api/v2/monitor/health")
        if code == 200 and isinstance(body, dict):
            states = {k: (v or {}).get("status") for k, v in body.items() if isinstance(v, dict)}
            last = states
            if states and all(s == "healthy" for s in states.values()) and len(states) >= 4:
                say(f"Airflow healthy: {', '.join(f'{k}={v}' for k, v in sorted(states.items()))}")
                return
        time.sleep(1)
    sys.exit(f"demo: Airflow not healthy after {timeout:.0f} s (last health: {last})")


def wait_dag(dag_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive(["api-server", "scheduler", "dag-processor"])
        code, body = call("GET", "/api/v2/importErrors")
        if code == 200 and body and body.get("import_errors"):
            for err in body["import_errors"]:
                print(f"--- import error in {err.get('filename')} ---\n{err.get('stack_trace')}")
            sys.exit("demo: the DAGs folder has import errors (above)")
        code, body = call("GET", f"/api/v2/dags/{q(dag_id)}")
        if code == 200:
            code, dags = call("GET", "/api/v2/dags?limit=100")
            names = sorted(d["dag_id"] for d in (dags or {}).get("dags", []))
            say(f"DAGs parsed by the dag-processor: {', '.join(names)}")
            return
        time.sleep(1)
    sys.exit(f"demo: DAG {dag_id} did not appear within {timeout:.0f} s")


def latest_slot(now: dt.datetime) -> dt.datetime:
    """The latest 02:00 UTC at or before now: the run the nightly schedule would have made."""
    slot = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return slot if slot <= now else slot - dt.timedelta(days=1)


def ti_label(t: dict[str, Any]) -> str:
    """A task instance's id, with ``[map index]`` for a mapped one (a part of the split)."""
    index = t.get("map_index", -1)
    return t["task_id"] if index is None or index < 0 else f"{t['task_id']}[{index}]"


def state_line(tis: list[dict[str, Any]]) -> str:
    return ", ".join(f"{ti_label(t)}={t.get('state') or 'none'}" for t in tis)


def task_instances(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    code, body = call("GET", f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}/taskInstances?limit=100")
    if code != 200:
        return []
    order = {
        "seed_addresses": 0,
        "extract_changed": 1,
        "anything_to_send": 2,
        "geocode.plan": 3,
        "geocode.run": 4,
        "collect_parts": 5,
        "write_results": 6,
        "geocode.merge": 7,
    }
    return sorted(
        body.get("task_instances", []),
        key=lambda t: (order.get(t["task_id"], 9), t["task_id"], t.get("map_index", -1)),
    )


def run(dag_id: str, timeout: float, label: str) -> int:
    first = label == "first"
    # The first run takes the latest nightly slot (the run the schedule would have made); the second is
    # a manual run "now" (no logical date), as if the next night had come.
    slot = latest_slot(dt.datetime.now(dt.timezone.utc))
    logical = slot.isoformat().replace("+00:00", "Z") if first else None
    code, body = call(
        "POST",
        f"/api/v2/dags/{q(dag_id)}/dagRuns",
        {"logical_date": logical, "conf": {}, "note": f"scripts/demo.sh ({label} run)"},
    )
    if code not in (200, 201):
        sys.exit(f"demo: trigger failed: HTTP {code} {body}")
    run_id = body["dag_run_id"]
    Path(os.environ["DEMO_DIR"], "run_id").write_text(run_id)
    say(f"triggered {dag_id} via POST /api/v2/dags/{dag_id}/dagRuns: run_id={run_id}")
    if first:
        code, body = call("PATCH", f"/api/v2/dags/{q(dag_id)}", {"is_paused": False})
        if code != 200:
            sys.exit(f"demo: unpause failed: HTTP {code} {body}")
        say(f"unpaused {dag_id}; waiting for the run (at most {timeout:.0f} s)")

    deadline = time.monotonic() + timeout
    last = ""
    state = None
    while time.monotonic() < deadline:
        alive(["api-server", "scheduler", "dag-processor", "triggerer", "emulator"])
        code, body = call("GET", f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}")
        state = body.get("state") if code == 200 else None
        line = state_line(task_instances(dag_id, run_id))
        if line and line != last:
            say(f"run {state}: {line}")
            last = line
        if state in ("success", "failed"):
            break
        time.sleep(1)
    else:
        say(f"the run did not finish within {timeout:.0f} s (state {state})")
        return 1
    return report(dag_id, run_id, state, label)


def xcom(dag_id: str, run_id: str, task_id: str) -> Any:
    code, body = call(
        "GET",
        f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}/taskInstances/{q(task_id)}/xcomEntries/return_value"
        "?deserialize=true&stringify=false",
    )
    return body.get("value") if code == 200 and isinstance(body, dict) else None


def task_log_files(dag_id: str, run_id: str, task_id: str) -> list[Path]:
    folder = LOG_DIR / "tasks" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return sorted(p for p in folder.rglob("*") if p.is_file())


def readable(line: str) -> str:
    """A task log line (JSON) as 'time level event [logger]'."""
    try:
        rec = json.loads(line)
    except ValueError:
        return line.strip()
    if not isinstance(rec, dict):
        return line.strip()
    extra = f" [{str(rec['logger']).rsplit('.', 1)[-1]}]" if rec.get("logger") else ""
    return f"{str(rec.get('timestamp', ''))[11:19]} {rec.get('level', '')} {rec.get('event', '')}{extra}"


def grep(path: Path, words: tuple[str, ...], limit: int = 6) -> list[str]:
    hits = []
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if any(w.lower() in line.lower() for w in words):
                hits.append(readable(line)[:220])
    except OSError:
        return []
    return hits[:limit]


def report(dag_id: str, run_id: str, state: str | None, label: str) -> int:
    ok = state == "success"
    tis = task_instances(dag_id, run_id)
    print()
    say(f"run {run_id}: {state}")
    print(f"  {'task':<22} {'state':<10} {'try':>3} {'duration':>9}  operator")
    for t in tis:
        dur = t.get("duration")
        print(
            f"  {ti_label(t):<22} {t.get('state') or 'none':<10} {t.get('try_number', 0):>3} "
            f"{(f'{dur:.1f} s' if dur is not None else '-'):>9}  {t.get('operator') or ''}"
        )

    summary = xcom(dag_id, run_id, "write_results")
    Path(os.environ["DEMO_DIR"], f"summary-{label}.json").write_text(json.dumps(summary))
    if label != "first":  # the first run shows the whole path; the second what changed
        print("\n--- write task (write_results) return value ---")
        print(json.dumps(summary, indent=2, ensure_ascii=False) if summary is not None else "  (none)")
        print()
        return 0 if ok and summary else 1

    print("\n--- the deferred wait went through the real triggerer ---")
    sensor = "geocode.run"  # the first part's job (the nightly DAG takes the any-size path)
    code, body = call("GET", f"/api/v2/dags/{q(dag_id)}/dagRuns/{q(run_id)}/taskInstances/{sensor}/0/tries")
    if code == 200:
        for tr in body.get("task_instances", []):
            print(
                f"  {sensor} try {tr.get('try_number')}: state={tr.get('state')} "
                f"hostname={tr.get('hostname')} start={tr.get('start_date')} end={tr.get('end_date')}"
            )
    deferred_in_worker = False
    trigger_files: list[Path] = []
    for path in task_log_files(dag_id, run_id, sensor):
        if ".trigger." in path.name:
            trigger_files.append(path)
        elif grep(path, ("deferr",), 1):
            deferred_in_worker = True
            for line in grep(path, ("deferr", "resum", "trigger"), 4):
                print(f"  task log   {path.name}: {line}")
    for path in trigger_files:  # written by the triggerer process while it ran the sensor's trigger
        lines = [readable(x)[:200] for x in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        shown = (
            lines if len(lines) <= 8 else [*lines[:3], f"... ({len(lines) - 7} more lines) ...", *lines[-4:]]
        )
        print(f"  triggerer's log for this task ({path.relative_to(LOG_DIR)}):")
        for line in shown:
            print(f"    {line}")
    triggerer_lines = grep(LOG_DIR / "triggerer.log", ("BatchJobTrigger",), 6)
    for line in triggerer_lines:
        print(f"  triggerer.log: {line}")
    through_triggerer = bool(trigger_files or triggerer_lines)
    if not through_triggerer:
        print("  NO evidence of the triggerer running the sensor's trigger")
        ok = False
    elif not deferred_in_worker:
        print("  (no 'deferred' line found in the worker's task log)")

    print("\n--- write task (write_results) return value: records_total/sent/reused/failed ---")
    print(json.dumps(summary, indent=2, ensure_ascii=False) if summary is not None else "  (none)")
    for line in grep(
        next(iter([p for p in task_log_files(dag_id, run_id, "write_results") if ".trigger." not in p.name]),
             Path("/nonexistent")),
        ("records_total=",),
    ):
        print(f"  write_results log: {line}")

    print("\n--- where the results went ---")
    files = xcom(dag_id, run_id, "geocode.merge") or {}  # the night's merged files (URIs)
    results_path = (files.get("results") or "").removeprefix("file://")
    errors_path = (files.get("errors") or "").removeprefix("file://")
    out_dir = Path(os.environ["HERE_BATCH_OUTPUT_DIR"])
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        lines = sum(1 for _ in path.open(encoding="utf-8", errors="replace"))
        print(f"  {path}  ({path.stat().st_size} bytes, {lines} lines)")
    if not results_path or not Path(results_path).is_file():
        print(f"  results file missing: {results_path}")
        ok = False
    if errors_path and Path(errors_path).is_file():
        with open(errors_path, encoding="utf-8") as fh:
            head = [next(fh, "").rstrip("\n") for _ in range(3)]
        print(f"\n--- first error rows ({errors_path}) ---")
        for line in filter(None, head):
            print(f"  {line[:200]}")
    database = Path(os.environ["AIRFLOW_HOME"], "here_batch", "here_batch.db")
    print(f"\n--- the table addresses_geocoded ({database}) ---")
    try:
        conn = sqlite3.connect(database)
        statuses = conn.execute("SELECT status, COUNT(*) FROM addresses_geocoded GROUP BY status").fetchall()
        print("  rows by status: " + ", ".join(f"{s}={n}" for s, n in statuses))
        for row in conn.execute(
            "SELECT rec_id, status, lat, lng, match_level, address_label, error_code FROM addresses_geocoded "
            "ORDER BY rec_id LIMIT 5"
        ):
            print("  " + " | ".join("" if v is None else str(v) for v in row))
        conn.close()
    except sqlite3.Error as exc:
        print(f"  cannot read it: {exc}")
        ok = False
    print()
    return 0 if ok else 1


CHANGED = {"A0002": "Jungfernstieg 7, 20354 Hamburg", "A0003": "Marienplatz 8, 80331 München",
           "A0010": "Unter den Linden 77, 10117 Berlin"}


def change() -> int:
    """Change 3 addresses in the source table, as users would during the day."""
    database = Path(os.environ["AIRFLOW_HOME"], "here_batch", "here_batch.db")
    conn = sqlite3.connect(database)
    with conn:
        for key, address in CHANGED.items():
            old = conn.execute("SELECT address FROM addresses WHERE id = ?", (key,)).fetchone()
            conn.execute("UPDATE addresses SET address = ? WHERE id = ?", (address, key))
            say(f"changed address {key}: {old[0] if old else None!r} -> {address!r}")
    conn.close()
    return 0


def compare() -> int:
    runs = {}
    for label in ("first", "second"):
        path = Path(os.environ["DEMO_DIR"], f"summary-{label}.json")
        runs[label] = json.loads(path.read_text()) if path.is_file() else None
    print("--- both runs: records sent to HERE vs records in the table ---")
    for label, s in runs.items():
        if not s:
            print(f"  {label:<6} run: no summary")
            continue
        print(
            f"  {label:<6} run: records_sent={s['records_sent']} of records_total={s['records_total']} "
            f"(reused {s['records_reused']}, failed {s['records_failed']}, job {s['job_id']})"
        )
    second = runs.get("second") or {}
    ok = bool(runs.get("first")) and second.get("records_sent") == len(CHANGED)
    if not ok:
        print(f"  expected the second run to send exactly {len(CHANGED)} records")
    print()
    return 0 if ok else 1


def main() -> int:
    mode = sys.argv[1]
    if mode == "wait-health":
        wait_health(float(sys.argv[2]))
    elif mode == "wait-dag":
        wait_dag(sys.argv[2], float(sys.argv[3]))
    elif mode == "run":
        return run(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    elif mode == "change":
        return change()
    elif mode == "compare":
        return compare()
    else:
        sys.exit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
