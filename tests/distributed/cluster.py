"""A real distributed Airflow for tests: CeleryExecutor, Redis broker, PostgreSQL metadata DB.

:class:`CeleryCluster` starts, as separate processes: ``api-server``, ``scheduler``, ``dag-processor``,
``triggerer`` (one shared ``AIRFLOW_HOME``, the "control plane") and two ``celery worker`` processes, each
started in its own empty working directory that is also its ``HOME`` and ``AIRFLOW_HOME``. Each worker
records its name (``worker-a`` / ``worker-b``) as the task instances' ``hostname`` (see
``worker_name.py``). Every process gets its configuration from the environment only; nothing is read
from the test session's Airflow set-up.

Services (set the variables to point at other servers):

- ``HERE_BATCH_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/1``): the broker; the DB is flushed
  before and after the run.
- ``HERE_BATCH_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``): a server where
  the test may create a database; it creates ``here_batch_dist_<random>`` and drops it afterwards.
- ports: api-server and every log server take free ports in ``HERE_BATCH_TEST_PORTS`` (default
  ``18500-18599``; e.g. ``HERE_BATCH_TEST_PORTS=18700-18799`` to keep clear of another run).
- ``HERE_BATCH_DIST_ENV``: JSON of extra environment variables for every Airflow process (the test's own
  ``AIRFLOW*`` / ``HERE_BATCH_*`` variables are not passed on); ``{shared}`` in a value becomes the
  shared directory, e.g. ``{"AIRFLOW_CONN_MY_DB": "sqlite:///{shared}/geo.db"}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS_DIR = REPO_ROOT / "airflow_here_batch" / "example_dags"
TEST_DAGS_DIR = Path(__file__).resolve().parent / "dags"
REDIS_URL = os.environ.get("HERE_BATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
POSTGRES_URL = os.environ.get("HERE_BATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORKERS = ("worker-a", "worker-b")


def service_problem() -> str | None:
    """Why Redis or PostgreSQL cannot be used, or ``None`` when both answer."""
    import psycopg2
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL} unreachable ({exc}); set HERE_BATCH_TEST_REDIS_URL"
    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} unreachable ({exc}); set HERE_BATCH_TEST_POSTGRES_URL"
    return None


def _free_ports(count: int) -> list[int]:
    low, high = (int(x) for x in os.environ.get("HERE_BATCH_TEST_PORTS", "18500-18599").split("-"))
    found: list[int] = []
    for port in range(low, high + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError(f"fewer than {count} free ports in {low}-{high}")


def _with_db(url: str, db: str, driver: str = "") -> str:
    parts = urlsplit(url)
    scheme = parts.scheme + (f"+{driver}" if driver else "")
    return urlunsplit((scheme, parts.netloc, f"/{db}", parts.query, ""))


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    home: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


@dataclass
class CeleryCluster:
    root: Path
    emulator_url: str
    db_name: str = field(default_factory=lambda: f"here_batch_dist_{secrets.token_hex(4)}")
    procs: dict[str, Proc] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.shared = self.root / "shared"  # the shared object-storage location (file://)
        self.control_home = self.root / "control"
        ports = _free_ports(6)
        self.api_port = ports[0]
        self.log_ports = dict(
            zip(["scheduler", "triggerer", "dag-processor", *WORKERS], ports[1:], strict=True)
        )
        self.base_location = f"file://{self.shared}/here_batch"
        self.sql_conn = _with_db(POSTGRES_URL, self.db_name, "psycopg2")

    # -- environment --------------------------------------------------------------------------------

    def env(self, home: Path, log_port: int | None = None, worker: str | None = None) -> dict[str, str]:
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "HERE_BATCH_", "OPENLINEAGE")) and k not in ("HOME", "PWD")
        }
        bundles = [
            {
                "name": "here_example_dags",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(EXAMPLE_DAGS_DIR), "refresh_interval": 0},
            },
            {
                "name": "here_dist_test_dags",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(TEST_DAGS_DIR), "refresh_interval": 0},
            },
        ]
        env = {
            **keep,
            "HOME": str(home),
            "AIRFLOW_HOME": str(home),
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONWARNINGS": "ignore",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE_DAGS_DIR),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.worker_name.hostname",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_conn,
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.sql_conn,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{self.api_port}",
            "AIRFLOW__API__SECRET_KEY": "here-batch-dist-test-secret",
            "AIRFLOW__API_AUTH__JWT_SECRET": "here-batch-dist-test-jwt-secret",
            # A lost worker is noticed after 20 s without a heartbeat (default 300 s).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__OPENLINEAGE__DISABLED": "True",
            "AIRFLOW__HERE_BATCH__BASE_LOCATION": self.base_location,
            "AIRFLOW_CONN_HERE_BATCH_DEFAULT": json.dumps(
                {"conn_type": "here_batch", "host": self.emulator_url, "password": "dist-test-key"}
            ),
            "HERE_BATCH_POLL_INTERVAL": "1",
            # The sample's 322 records as 4 parts: the split path (nightly and initial load) runs its
            # parts on both workers.
            "HERE_BATCH_MAX_RECORDS_PER_JOB": "100",
        }
        # Extra settings for every process, e.g. a connection a DAG needs: JSON, "{shared}" -> the shared dir.
        extra = json.loads(os.environ.get("HERE_BATCH_DIST_ENV") or "{}")
        env.update({k: str(v).replace("{shared}", str(self.shared)) for k, v in extra.items()})
        if log_port is not None:
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(log_port)
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(self.log_ports["triggerer"])
        if worker:
            env["HERE_BATCH_WORKER_NAME"] = worker
        return env

    def airflow(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command with the control plane's environment."""
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(self.control_home),
            cwd=self.control_home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        import psycopg2
        import redis

        t0 = time.monotonic()
        self.shared.mkdir(parents=True)
        self.control_home.mkdir(parents=True)
        redis.Redis.from_url(REDIS_URL).flushdb()
        admin = psycopg2.connect(POSTGRES_URL)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.db_name}"')
        admin.close()
        migrated = self.airflow("db", "migrate")
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        self.timings["db_migrate_s"] = time.monotonic() - t0

        control = [
            ("api-server", ["api-server", "--port", str(self.api_port)], None),
            ("scheduler", ["scheduler"], self.log_ports["scheduler"]),
            ("dag-processor", ["dag-processor"], self.log_ports["dag-processor"]),
            ("triggerer", ["triggerer"], self.log_ports["triggerer"]),
        ]
        for name, args, port in control:
            self._spawn(name, args, self.control_home, self.env(self.control_home, port))
        for worker in WORKERS:
            self.start_worker(worker)
        self.wait_healthy()
        self.timings["startup_s"] = time.monotonic() - t0

    def start_worker(self, worker: str) -> Proc:
        home = self.root / worker  # empty working directory, HOME and AIRFLOW_HOME of this worker only
        home.mkdir(exist_ok=True)
        args = ["celery", "worker", "--celery-hostname", f"{worker}@%h", "--concurrency", "2"]
        env = self.env(home, self.log_ports[worker], worker)
        return self._spawn(worker, args, home, env)

    def _spawn(self, name: str, args: list[str], cwd: Path, env: dict[str, str]) -> Proc:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: a kill takes the worker's children too
            )
        proc = Proc(name, popen, log, cwd)
        self.procs[name] = proc
        return proc

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs.values():
                if proc.popen.poll() is not None and proc.name not in self.killed:
                    raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")
            try:
                health = self.api("GET", "/api/v2/monitor/health")
            except OSError:
                health = None
            workers_ready = all(
                "ready" in self.procs[w].log.read_text(errors="replace") for w in WORKERS if w in self.procs
            )
            if health and workers_ready:
                parts = ("scheduler", "triggerer", "dag_processor")
                if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                    return
            time.sleep(1)
        raise RuntimeError("cluster not healthy in time:\n" + self.describe())

    def kill(self, name: str) -> None:
        """SIGKILL a process and every child of its group (a lost machine, not a clean stop)."""
        self.killed.add(name)
        self.procs[name].kill_group(signal.SIGKILL)
        self.procs[name].popen.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill_group(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=10)

    def drop(self) -> None:
        import psycopg2
        import redis

        with contextlib.suppress(Exception):
            redis.Redis.from_url(REDIS_URL).flushdb()
        admin = psycopg2.connect(POSTGRES_URL)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        admin.close()

    def describe(self) -> str:
        return "\n".join(
            f"--- {p.name} (exit {p.popen.poll()}) ---\n{p.tail(25)}" for p in self.procs.values()
        )

    # -- API and DB ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):
                self.api("GET", f"/api/v2/dags/{dag_id}")
                return
            time.sleep(1)
        raise AssertionError(f"dag {dag_id} not parsed in {timeout} s\n{self.describe()}")

    def unpause(self, dag_id: str) -> None:
        self.wait_for_dag(dag_id)
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.unpause(dag_id)
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def wait_for_runs(self, runs: dict[str, str], timeout: float = 300) -> dict[str, str]:
        """Wait until every ``{dag_id: run_id}`` ended; returns ``{dag_id: state}``."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            for dag_id, run_id in runs.items():
                states[dag_id] = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if all(s in ("success", "failed") for s in states.values()):
                return states
            time.sleep(2)
        raise AssertionError(f"runs not finished in {timeout} s: {states}\n{self.describe()}")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        conn = psycopg2.connect(_with_db(POSTGRES_URL, self.db_name))
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def task_tries(self) -> list[dict[str, Any]]:
        """Every try of every task instance (history and current): dag, run, task, try, state, host."""
        columns = "dag_id, run_id, task_id, map_index, try_number, state, hostname, operator"
        rows = self.query(f"SELECT {columns} FROM task_instance_history") + self.query(
            f"SELECT {columns} FROM task_instance"
        )
        names = [c.strip() for c in columns.split(",")]
        return [dict(zip(names, row, strict=True)) for row in rows]


@contextlib.contextmanager
def celery_cluster(root: Path, emulator_url: str) -> Iterator[CeleryCluster]:
    cluster = CeleryCluster(root=root, emulator_url=emulator_url)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        cluster.drop()
