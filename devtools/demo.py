"""The nightly geocoding DAG, end to end, through a real Airflow and the local HERE Batch emulator.

  bash scripts/demo.sh           # run the demo, stop everything, exit 0 only if the run succeeded
  bash scripts/demo.sh --keep    # leave Airflow and the emulator running afterwards (UI address printed)
  bash scripts/demo.sh --stop    # stop what a previous --keep left running

(``scripts/demo.sh`` sets up the venv, then runs ``python -m devtools.demo`` with its arguments.)

What it does:
  1. starts the emulator (python -m airflow_here_batch.emulator) on a free loopback port;
  2. starts a real Airflow 3 as four processes (api-server, scheduler, dag-processor, triggerer),
     LocalExecutor, SQLite, AIRFLOW_HOME=.demo/airflow, DAGs folder example_dags/, simple auth manager
     with everyone admin (local demo only), connection here_batch_default from the environment;
  3. triggers here_batch_nightly_geocode through the REST API v2 (logical date = the latest 02:00 UTC
     slot, so it is the run the schedule would have made), unpauses it and waits (bounded): the first
     run seeds the `addresses` table (322 rows, embedded SQLite under AIRFLOW_HOME) and geocodes every
     row into `addresses_geocoded`;
  4. prints each task's state, the proof that the sensor's wait ran in the triggerer, where the results
     went, the write task's summary and a few rows of the table;
  5. changes 3 addresses in the table and triggers a second run: only those 3 are sent to HERE; prints
     both runs' records_sent vs records_total (exit 1 unless the second run sent exactly 3);
  6. stops every process it started (by process group, on any exit) unless --keep.
Everything lands in .demo/ (wiped at each start): logs of every process in .demo/logs/, task logs in
.demo/logs/tasks/, results in .demo/output/, pids in .demo/pids/. On failure the tail of every log is
printed.

Settings (environment): HERE_BATCH_DEMO_TIMEOUT (s, default 600) bounds the wait for the run;
HERE_BATCH_DEMO_RPS (records/s the emulator processes, default 25: the 322 sample records take about 13 s,
so the sensor really defers). The scheduler and triggerer log servers need ports 8793 and 8794
(override with AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT / AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import requests

from devtools.airflow_api import AirflowApi, wait_for
from devtools.local_airflow import (
    AIRFLOW_PROCESSES,
    airflow_command,
    airflow_env,
    alive,
    free_port,
    migrate,
    port_free,
    spawn,
    stop_groups,
)

ROOT = Path(__file__).resolve().parents[1]

#: The 3 addresses the demo changes between the two runs: ``{addresses.id: new address}``.
CHANGED = {
    "A0002": "Jungfernstieg 7, 20354 Hamburg",
    "A0003": "Marienplatz 8, 80331 München",
    "A0010": "Unter den Linden 77, 10117 Berlin",
}
#: The order the tasks are listed in (the DAG's flow), unknown ones last.
TASK_ORDER = {
    "seed_addresses": 0,
    "geocode.extract": 1,
    "geocode.plan": 2,
    "geocode.run": 3,
    "geocode.write": 4,
    "geocode.merge": 5,
    "geocode.summary": 6,
}
#: The task whose return value is the run's summary (geocode_table's last task), and the table's writer.
SUMMARY_TASK = "geocode.summary"
WRITE_TASK = "geocode.write"
#: The sensor whose deferral the report shows (the nightly DAG's first split part).
SENSOR = "geocode.run"


class DemoError(Exception):
    """The demo cannot go on; the message is printed as ``demo: <message>``."""


# -- output ------------------------------------------------------------------------------------------

_T0 = time.time()


def say(msg: str) -> None:
    """``[demo   Ns] msg``: seconds since the demo started."""
    print(f"[demo {int(time.time()) - int(_T0):4d}s] {msg}", flush=True)


def latest_slot(now: dt.datetime) -> dt.datetime:
    """The latest 02:00 UTC at or before ``now`` (aware, UTC): the run the nightly schedule would have
    made."""
    slot = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return slot if slot <= now else slot - dt.timedelta(days=1)


def ti_label(ti: Mapping[str, Any]) -> str:
    """A task instance's id, with ``[map index]`` for a mapped one (a part of the split)."""
    index = ti.get("map_index", -1)
    return ti["task_id"] if index is None or index < 0 else f"{ti['task_id']}[{index}]"


def in_dag_order(tis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task instances in the DAG's flow order (:data:`TASK_ORDER`), then by id and map index."""
    return sorted(tis, key=lambda t: (TASK_ORDER.get(t["task_id"], 9), t["task_id"], t.get("map_index", -1)))


def state_line(tis: list[dict[str, Any]]) -> str:
    """``task=state, task[0]=state, ...``."""
    return ", ".join(f"{ti_label(t)}={t.get('state') or 'none'}" for t in tis)


def readable(line: str) -> str:
    """A task log line (JSON) as ``time level event [logger]``; any other line stripped."""
    try:
        rec = json.loads(line)
    except ValueError:
        return line.strip()
    if not isinstance(rec, dict):
        return line.strip()
    extra = f" [{str(rec['logger']).rsplit('.', 1)[-1]}]" if rec.get("logger") else ""
    return f"{str(rec.get('timestamp', ''))[11:19]} {rec.get('level', '')} {rec.get('event', '')}{extra}"


def matching_lines(path: Path, words: tuple[str, ...], limit: int = 6) -> list[str]:
    """The first ``limit`` lines of ``path`` containing any of ``words`` (case-insensitive), made
    :func:`readable` and cut to 220 characters; ``[]`` when the file cannot be read."""
    hits = []
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if any(w.lower() in line.lower() for w in words):
                hits.append(readable(line)[:220])
    except OSError:
        return []
    return hits[:limit]


def summary_lines(summaries: Mapping[str, dict[str, Any] | None]) -> tuple[list[str], bool]:
    """Both runs' ``records_sent`` vs ``records_total``, and whether the first run has a summary and the
    second sent exactly the :data:`CHANGED` records.

    :param summaries: ``{"first": the summary task's return value, "second": ...}`` (``None``: missing).
    """
    lines = ["--- both runs: records sent to HERE vs records in the table ---"]
    for label, s in summaries.items():
        if not s:
            lines.append(f"  {label:<6} run: no summary")
            continue
        lines.append(
            f"  {label:<6} run: records_sent={s['records_sent']} of records_total={s['records_total']} "
            f"(reused {s['records_reused']}, failed {s['records_failed']}, written {s['records_written']}, "
            f"jobs {s['job_ids']})"
        )
        if s.get("verdicts"):  # the quality verdicts of the records written (docs/quality.md)
            lines.append(verdict_line(s))
    second = summaries.get("second") or {}
    ok = bool(summaries.get("first")) and second.get("records_sent") == len(CHANGED)
    if not ok:
        lines.append(f"  expected the second run to send exactly {len(CHANGED)} records")
    return lines, ok


def verdict_line(summary: Mapping[str, Any]) -> str:
    """One run's records by quality verdict, accepted, and the review table's rows."""
    counts = " ".join(f"{k}={v}" for k, v in summary["verdicts"].items() if v)
    return (
        f"             by verdict: {counts}; accepted {summary.get('records_accepted')}, "
        f"review table {summary.get('records_review')} rows"
    )


def change_addresses(database: Path) -> list[str]:
    """Change the :data:`CHANGED` addresses in table ``addresses``, as users would during the day.

    :returns: one line per change (``changed address A0002: 'old' -> 'new'``).
    :raises sqlite3.Error: when the table cannot be updated.
    """
    lines = []
    conn = sqlite3.connect(database)
    try:
        with conn:
            for key, address in CHANGED.items():
                old = conn.execute("SELECT address FROM addresses WHERE id = ?", (key,)).fetchone()
                conn.execute("UPDATE addresses SET address = ? WHERE id = ?", (address, key))
                lines.append(f"changed address {key}: {old[0] if old else None!r} -> {address!r}")
    finally:
        conn.close()
    return lines


# -- the demo's processes ------------------------------------------------------------------------------


@dataclass
class Demo:
    """One demo run: its settings, processes and API client.

    :param root: the repository (``.demo/`` is made in it).
    :param environ: the environment the settings are read from and the processes inherit.
    """

    root: Path
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api: AirflowApi | None = None
    emulator_url: str = ""
    logs_started: bool = False

    def __post_init__(self) -> None:
        env = self.environ
        self.demo_dir = self.root / ".demo"
        self.log_dir = self.demo_dir / "logs"
        self.pid_dir = self.demo_dir / "pids"
        self.home = self.demo_dir / "airflow"
        self.output_dir = self.demo_dir / "output"
        self.database = self.home / "here_batch" / "here_batch.db"
        self.dag_id = env.get("HERE_BATCH_DEMO_DAG_ID", "here_batch_nightly_geocode")
        self.dags_folder = Path(
            env.get("HERE_BATCH_DEMO_DAGS_FOLDER", str(self.root / "airflow_here_batch" / "example_dags"))
        )
        self.timeout = float(env.get("HERE_BATCH_DEMO_TIMEOUT", "600"))
        self.rps = env.get("HERE_BATCH_DEMO_RPS", "25")
        self.worker_log_port = int(env.get("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "8793"))
        self.trigger_log_port = int(env.get("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", "8794"))
        self.api_key = f"demo-key-{secrets.token_hex(8)}"  # throwaway; never printed

    def rel(self, path: Path) -> str:
        """``path`` relative to the repository when inside it."""
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    # -- pid files (a --keep run is stopped by a later --stop) -----------------------------------------

    def running(self) -> dict[str, int]:
        """``{name: pid}`` of the processes whose pid file is in ``.demo/pids/`` and that still run."""
        found = {}
        for pid_file in sorted(self.pid_dir.glob("*.pid")):
            try:
                pid = int(pid_file.read_text())
            except (OSError, ValueError):
                continue
            if alive(pid):
                found[pid_file.stem] = pid
        return found

    @staticmethod
    def describe(pids: Mapping[str, int]) -> str:
        return "".join(f"{name}={pid} " for name, pid in pids.items())

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        proc = spawn(args, self.log_dir / f"{name}.log", env)
        self.procs[name] = proc
        (self.pid_dir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def stop_all(self) -> None:
        """Stop every process of the demo: Airflow's in parallel, then the emulator; pid files removed."""
        targets: dict[str, subprocess.Popen[bytes] | int] = {**self.running(), **self.procs}
        airflow = {n: p for n, p in targets.items() if n != "emulator"}
        emulator = {n: p for n, p in targets.items() if n == "emulator"}
        for group in (airflow, emulator):
            for name in stop_groups(group, term_timeout=15):
                print(f"demo: {name} did not stop on TERM within 15 s; sent KILL", file=sys.stderr)
        for pid_file in self.pid_dir.glob("*.pid"):
            pid_file.unlink()

    def check_alive(self, names: Sequence[str]) -> None:
        """:raises DemoError: when one of the processes ``names`` has exited."""
        for name in names:
            proc = self.procs.get(name)
            if proc is not None and not alive(proc):
                raise DemoError(f"the {name} process died; see {self.log_dir / (name + '.log')}")

    def show_logs(self) -> None:
        print()
        print(f"================ demo failed: log tails (full logs in {self.log_dir}) ================")
        for path in sorted(self.log_dir.glob("*.log")):
            print(f"---------------- {self.rel(path)} (last 40 lines) ----------------")
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            print("\n".join(lines[-40:]))

    # -- set-up ----------------------------------------------------------------------------------------

    def check_ports(self) -> None:
        """:raises DemoError: when a log-server port is taken (with what to do about it)."""
        for what, port in (
            ("scheduler log server", self.worker_log_port),
            ("triggerer log server", self.trigger_log_port),
        ):
            if not port_free(port):
                ports = f"{self.worker_log_port} and {self.trigger_log_port}"
                lines = [
                    f"port {port} (Airflow {what}) is already in use; Airflow's scheduler and triggerer",
                    f"need ports {ports}. Free it (e.g. stop another Airflow:",
                    f"'ss -ltnp | grep :{port}' shows who holds it), or pick other ports with",
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT / AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT.",
                ]
                raise DemoError("\n      ".join(lines))

    def start_emulator(self) -> None:
        say(f"starting the HERE Batch emulator on a free loopback port ({self.rps} records/s per job)")
        # --port 0: the emulator picks a free port and prints its base URL as the first line.
        # --api-key: it accepts only the connection's key, so a successful run proves the key was used.
        args = [sys.executable, "-u", "-m", "airflow_here_batch.emulator", "--host", "127.0.0.1"]
        args += ["--port", "0", "--api-key", self.api_key, "--records-per-second", self.rps]
        self.start("emulator", args, self.environ)
        log = self.log_dir / "emulator.log"
        session = requests.Session()
        session.trust_env = False

        def ready() -> str | None:
            self.check_alive(["emulator"])
            first = (log.read_text(errors="replace").splitlines() or [""])[0]
            match = re.search(r"http://\S*/v7", first)
            if match and session.get(match.group(0) + "/health", timeout=2).status_code == 200:
                return match.group(0)
            return None

        try:
            self.emulator_url = wait_for(ready, "the emulator's /health", 30, interval=0.3)
        except AssertionError:
            raise DemoError("the emulator did not answer its /health within 30 s") from None
        say(f"emulator ready: {self.emulator_url}")

    def start_airflow(self) -> None:
        api_port = free_port()
        self.api = AirflowApi(f"http://127.0.0.1:{api_port}")
        env = airflow_env(
            home=self.home,
            api_port=api_port,
            worker_log_port=self.worker_log_port,
            trigger_log_port=self.trigger_log_port,
            here_url=self.emulator_url,
            here_key=self.api_key,
            dags_folder=self.dags_folder,
            paused_at_creation=True,  # the demo unpauses its DAG after triggering
            inherit=self.environ,
            extra={
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_dir / "tasks"),
                "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(
                    self.log_dir / "dag-processor-children"
                ),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "HERE_BATCH_OUTPUT_DIR": str(self.output_dir),
                "HERE_BATCH_POLL_INTERVAL": self.environ.get("HERE_BATCH_POLL_INTERVAL", "2"),
                "PYTHONWARNINGS": self.environ.get("PYTHONWARNINGS", "ignore::DeprecationWarning"),
            },
        )
        say(f"airflow db migrate (AIRFLOW_HOME={self.rel(self.home)})")
        try:
            migrate(env)
        except RuntimeError as exc:
            (self.log_dir / "db-migrate.log").write_text(str(exc))
            raise DemoError("airflow db migrate failed; see .demo/logs/db-migrate.log") from None
        for name in AIRFLOW_PROCESSES:
            self.start(name, airflow_command(name), env)
        version = importlib.metadata.version("apache-airflow")
        say(f"started Airflow {version}: {self.describe(self.running())}")
        say(f"Airflow API/UI on {self.api.base_url}; logs in {self.rel(self.log_dir)}/")

    def wait_healthy(self, timeout: float) -> None:
        api = self._api()

        last: dict[str, str | None] = {}

        def healthy() -> dict[str, str | None] | None:
            self.check_alive(AIRFLOW_PROCESSES)
            last.update(api.health())
            return dict(last) if len(last) >= 4 and all(s == "healthy" for s in last.values()) else None

        try:
            states = wait_for(healthy, "a healthy Airflow", timeout)
        except AssertionError:
            raise DemoError(f"Airflow not healthy after {timeout:.0f} s (last health: {last})") from None
        say(f"Airflow healthy: {', '.join(f'{k}={v}' for k, v in sorted(states.items()))}")

    def wait_dag(self, timeout: float) -> None:
        api = self._api()

        def parsed() -> bool:
            self.check_alive(["api-server", "scheduler", "dag-processor"])
            errors = api.import_errors()
            if errors:
                for err in errors:
                    print(f"--- import error in {err.get('filename')} ---\n{err.get('stack_trace')}")
                raise DemoError("the DAGs folder has import errors (above)")
            return api.has_dag(self.dag_id)

        try:
            wait_for(parsed, f"DAG {self.dag_id}", timeout)
        except AssertionError:
            raise DemoError(f"DAG {self.dag_id} did not appear within {timeout:.0f} s") from None
        say(f"DAGs parsed by the dag-processor: {', '.join(api.dag_ids())}")

    def _api(self) -> AirflowApi:
        if self.api is None:
            raise DemoError("Airflow is not started")
        return self.api

    # -- the runs --------------------------------------------------------------------------------------

    def run(self, label: str) -> tuple[bool, dict[str, Any] | None]:
        """Trigger a run and wait for it; its report. The first run takes the latest nightly slot (the run
        the schedule would have made); the second is a manual run "now", as if the next night had come.

        :returns: whether the run and its checks passed, and the run's summary (``geocode.summary``).
        """
        api = self._api()
        first = label == "first"
        slot = latest_slot(dt.datetime.now(dt.timezone.utc)) if first else None
        run_id = api.trigger(self.dag_id, logical_date=slot, note=f"scripts/demo.sh ({label} run)")
        say(f"triggered {self.dag_id} via POST /api/v2/dags/{self.dag_id}/dagRuns: run_id={run_id}")
        if first:
            api.unpause(self.dag_id)
            say(f"unpaused {self.dag_id}; waiting for the run (at most {self.timeout:.0f} s)")

        last = ""
        state: str | None = None

        def ended() -> str | None:
            nonlocal last, state
            self.check_alive([*AIRFLOW_PROCESSES, "emulator"])
            state = api.run_state(self.dag_id, run_id)
            line = state_line(in_dag_order(api.task_instances(self.dag_id, run_id)))
            if line and line != last:
                say(f"run {state}: {line}")
                last = line
            return state if state in ("success", "failed") else None

        try:
            wait_for(ended, "the run", self.timeout)
        except AssertionError:
            say(f"the run did not finish within {self.timeout:.0f} s (state {state})")
            return False, None
        return self.report(run_id, state, label)

    def report(self, run_id: str, state: str | None, label: str) -> tuple[bool, dict[str, Any] | None]:
        api = self._api()
        ok = state == "success"
        print()
        say(f"run {run_id}: {state}")
        print(f"  {'task':<22} {'state':<10} {'try':>3} {'duration':>9}  operator")
        for t in in_dag_order(api.task_instances(self.dag_id, run_id)):
            dur = t.get("duration")
            print(
                f"  {ti_label(t):<22} {t.get('state') or 'none':<10} {t.get('try_number', 0):>3} "
                f"{(f'{dur:.1f} s' if dur is not None else '-'):>9}  {t.get('operator') or ''}"
            )

        summary = api.xcom(self.dag_id, run_id, SUMMARY_TASK)
        if label != "first":  # the first run shows the whole path; the second what changed
            print(f"\n--- the run's summary ({SUMMARY_TASK} return value) ---")
            print(json.dumps(summary, indent=2, ensure_ascii=False) if summary is not None else "  (none)")
            print()
            return ok and bool(summary), summary

        ok = self.report_triggerer(run_id) and ok
        print(f"\n--- the run's summary ({SUMMARY_TASK} return value): records_total/sent/reused/failed ---")
        print(json.dumps(summary, indent=2, ensure_ascii=False) if summary is not None else "  (none)")
        worker_logs = [p for p in self.task_log_files(run_id, WRITE_TASK) if ".trigger." not in p.name]
        for line in matching_lines(worker_logs[0], ("records_total=",)) if worker_logs else []:
            print(f"  {WRITE_TASK} log: {line}")
        ok = self.report_files(run_id) and ok
        ok = self.report_table() and ok
        print()
        return ok, summary

    def task_log_files(self, run_id: str, task_id: str) -> list[Path]:
        folder = self.log_dir / "tasks" / f"dag_id={self.dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return sorted(p for p in folder.rglob("*") if p.is_file())

    def report_triggerer(self, run_id: str) -> bool:
        """The first part's sensor tries, its deferral and the triggerer's log of its trigger; whether the
        triggerer ran it."""
        print("\n--- the deferred wait went through the real triggerer ---")
        try:
            for tr in self._api().tries(self.dag_id, run_id, SENSOR, map_index=0):
                print(
                    f"  {SENSOR} try {tr.get('try_number')}: state={tr.get('state')} "
                    f"hostname={tr.get('hostname')} start={tr.get('start_date')} end={tr.get('end_date')}"
                )
        except OSError:
            pass
        deferred_in_worker = False
        trigger_files: list[Path] = []
        for path in self.task_log_files(run_id, SENSOR):
            if ".trigger." in path.name:
                trigger_files.append(path)
            elif matching_lines(path, ("deferr",), 1):
                deferred_in_worker = True
                for line in matching_lines(path, ("deferr", "resum", "trigger"), 4):
                    print(f"  task log   {path.name}: {line}")
        for path in trigger_files:  # written by the triggerer process while it ran the sensor's trigger
            text = path.read_text(encoding="utf-8", errors="replace")
            lines = [readable(x)[:200] for x in text.splitlines()]
            if len(lines) > 8:
                lines = [*lines[:3], f"... ({len(lines) - 7} more lines) ...", *lines[-4:]]
            print(f"  triggerer's log for this task ({path.relative_to(self.log_dir)}):")
            for line in lines:
                print(f"    {line}")
        triggerer_lines = matching_lines(self.log_dir / "triggerer.log", ("BatchJobTrigger",), 6)
        for line in triggerer_lines:
            print(f"  triggerer.log: {line}")
        if not (trigger_files or triggerer_lines):
            print("  NO evidence of the triggerer running the sensor's trigger")
            return False
        if not deferred_in_worker:
            print("  (no 'deferred' line found in the worker's task log)")
        return True

    def report_files(self, run_id: str) -> bool:
        """The output files and the first error rows; whether the results file exists."""
        print("\n--- where the results went ---")
        files = self._api().xcom(self.dag_id, run_id, "geocode.merge") or {}  # the night's merged files
        results_path = (files.get("results") or "").removeprefix("file://")
        errors_path = (files.get("errors") or "").removeprefix("file://")
        for path in sorted(p for p in self.output_dir.rglob("*") if p.is_file()):
            with path.open(encoding="utf-8", errors="replace") as fh:
                lines = sum(1 for _ in fh)
            print(f"  {path}  ({path.stat().st_size} bytes, {lines} lines)")
        ok = True
        if not results_path or not Path(results_path).is_file():
            print(f"  results file missing: {results_path}")
            ok = False
        if errors_path and Path(errors_path).is_file():
            with open(errors_path, encoding="utf-8") as fh:
                head = [next(fh, "").rstrip("\n") for _ in range(3)]
            print(f"\n--- first error rows ({errors_path}) ---")
            for line in filter(None, head):
                print(f"  {line[:200]}")
        return ok

    def report_table(self) -> bool:
        """Rows of ``addresses_geocoded`` by status and the first 5; whether the table could be read."""
        print(f"\n--- the table addresses_geocoded ({self.database}) ---")
        try:
            conn = sqlite3.connect(self.database)
            try:
                statuses = conn.execute(
                    "SELECT status, COUNT(*) FROM addresses_geocoded GROUP BY status"
                ).fetchall()
                print("  rows by status: " + ", ".join(f"{s}={n}" for s, n in statuses))
                for row in conn.execute(
                    "SELECT rec_id, status, lat, lng, match_level, address_label, error_code "
                    "FROM addresses_geocoded ORDER BY rec_id LIMIT 5"
                ):
                    print("  " + " | ".join("" if v is None else str(v) for v in row))
            finally:
                conn.close()
        except sqlite3.Error as exc:
            print(f"  cannot read it: {exc}")
            return False
        return True

    def key_leaked(self) -> list[Path]:
        """The logs Airflow wrote (every log but the emulator's) that contain the API key."""
        return [
            p
            for p in sorted(self.log_dir.rglob("*"))
            if p.is_file() and p.name != "emulator.log" and self.api_key.encode() in p.read_bytes()
        ]

    def both_runs(self) -> bool:
        """The two runs, the change between them and their comparison; whether all passed."""
        ok, first = self.run("first")
        if not ok:
            return False
        for line in change_addresses(self.database):
            say(line)
        ok, second = self.run("second")
        if not ok:
            return False
        lines, ok = summary_lines({"first": first, "second": second})
        print("\n".join(lines))
        print()
        return ok

    def end_to_end(self) -> bool:
        """Everything between the set-up checks and the stop; whether the demo succeeded."""
        self.start_emulator()
        self.start_airflow()
        self.wait_healthy(180)
        self.wait_dag(180)
        ok = self.both_runs()
        # The API key must not appear in anything Airflow wrote.
        leaked = self.key_leaked()
        if leaked:
            print("demo: the API key appears in these logs:", file=sys.stderr)
            for path in leaked:
                print(path, file=sys.stderr)
            ok = False
        else:
            say("checked: the API key appears in none of the Airflow logs")
        if ok:
            say(
                f"SUCCESS: {self.dag_id} ran twice end to end through the scheduler, a LocalExecutor worker "
                "and the triggerer (the second run sent only the changed rows) in "
                f"{int(time.time()) - int(_T0)} s"
            )
        else:
            say(f"FAILED: see the output above and the logs in {self.rel(self.log_dir)}/")
        return ok


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def finish(demo: Demo, code: int, keep: bool) -> None:
    """However the demo ended: the log tails on failure, then stop its processes (or, with ``keep``, say
    where they run)."""
    if code != 0 and demo.logs_started:
        demo.show_logs()
    left = demo.running()
    if keep and left:
        print()
        say(f"--keep: left running: {demo.describe(left)}")
        ui = demo.api.base_url if demo.api else "?"
        say(f"Airflow UI: {ui}/  (simple auth manager, every user is admin: no login needed)")
        say(
            f"Emulator:   {demo.emulator_url or '?'}   logs: {demo.rel(demo.log_dir)}/   "
            "stop with: bash scripts/demo.sh --stop"
        )
        return
    demo.stop_all()
    if code == 0:
        say("stopped every process it started")


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    """``scripts/demo.sh [--keep | --stop]``; the exit status (0: the demo succeeded)."""
    parser = argparse.ArgumentParser(
        prog="scripts/demo.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave Airflow and the emulator running")
    parser.add_argument("--stop", action="store_true", help="stop what a previous --keep left running")
    args = parser.parse_args(argv)
    demo = Demo(root)

    left = demo.running()
    if args.stop:
        if not left:
            print("demo: nothing running")
        else:
            print(f"demo: stopping {demo.describe(left)}")
            demo.stop_all()
        return 0
    if left:
        print(
            f"demo: a previous demo is still running ({demo.describe(left)}); "
            "stop it with: bash scripts/demo.sh --stop",
            file=sys.stderr,
        )
        return 1

    previous = signal.signal(signal.SIGTERM, _terminate)
    code = 1
    try:
        demo.check_ports()
        # A fresh state for every run (a --keep run still alive was refused above).
        shutil.rmtree(demo.demo_dir, ignore_errors=True)
        for folder in (demo.log_dir / "tasks", demo.pid_dir, demo.home, demo.output_dir):
            folder.mkdir(parents=True)
        demo.logs_started = True
        code = 0 if demo.end_to_end() else 1
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        finish(demo, code, args.keep)
        signal.signal(signal.SIGTERM, previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
