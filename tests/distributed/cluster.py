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
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devtools.airflow_api import RUN_ENDED, AirflowApi, wait_for
from devtools.local_airflow import (
    AIRFLOW_PROCESSES,
    airflow_command,
    airflow_env,
    free_port,
    spawn,
    stop_groups,
)

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
    for _ in range(count):
        found.append(free_port((low, high), after=found[-1] if found else 0))
    return found


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
        self.client = AirflowApi(f"http://127.0.0.1:{self.api_port}", timeout=30)
        self._base_env = self._control_env()

    # -- environment --------------------------------------------------------------------------------

    def _control_env(self) -> dict[str, str]:
        """The settings every process shares (one set of secrets for the whole cluster)."""
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "HERE_BATCH_", "OPENLINEAGE")) and k not in ("HOME", "PWD")
        }
        env = airflow_env(
            home=self.control_home,
            api_port=self.api_port,
            worker_log_port=self.log_ports["scheduler"],
            trigger_log_port=self.log_ports["triggerer"],
            here_url=self.emulator_url,
            here_key="dist-test-key",
            dags_folder=EXAMPLE_DAGS_DIR,
            bundles={"here_example_dags": EXAMPLE_DAGS_DIR, "here_dist_test_dags": TEST_DAGS_DIR},
            executor="CeleryExecutor",
            parallelism=8,
            paused_at_creation=True,
            sql_alchemy_conn=self.sql_conn,
            base_url=f"http://localhost:{self.api_port}",
            inherit=keep,
            extra={
                "PYTHONPATH": str(REPO_ROOT),
                "PYTHONWARNINGS": "ignore",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.worker_name.hostname",
                "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.sql_conn,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                # A lost worker is noticed after 20 s without a heartbeat (default 300 s).
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                "AIRFLOW__OPENLINEAGE__DISABLED": "True",
                "AIRFLOW__HERE_BATCH__BASE_LOCATION": self.base_location,
                "HERE_BATCH_POLL_INTERVAL": "1",
                # The sample's 322 records as 4 parts: the split path (nightly and initial load) runs its
                # parts on both workers.
                "HERE_BATCH_MAX_RECORDS_PER_JOB": "100",
            },
        )
        # Extra settings for every process, e.g. a connection a DAG needs: JSON, "{shared}" -> the shared dir.
        extra = json.loads(os.environ.get("HERE_BATCH_DIST_ENV") or "{}")
        env.update({k: str(v).replace("{shared}", str(self.shared)) for k, v in extra.items()})
        return env

    def env(self, home: Path, log_port: int | None = None, worker: str | None = None) -> dict[str, str]:
        """One process's environment: ``home`` is its ``HOME`` and ``AIRFLOW_HOME``; ``log_port`` its log
        server's port; ``worker`` the name it records as task instances' ``hostname``."""
        env = {**self._base_env, "HOME": str(home), "AIRFLOW_HOME": str(home)}
        if log_port is not None:
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(log_port)
        if worker:
            env["HERE_BATCH_WORKER_NAME"] = worker
        return env

    def airflow(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command with the control plane's environment."""
        return subprocess.run(
            airflow_command(*args),
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

        for name in AIRFLOW_PROCESSES:
            args = [name, "--port", str(self.api_port)] if name == "api-server" else [name]
            self._spawn(name, args, self.control_home, self.env(self.control_home, self.log_ports.get(name)))
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
        # Own process group: a kill takes the worker's children too.
        proc = Proc(name, spawn(airflow_command(*args), log, env, cwd), log, cwd)
        self.procs[name] = proc
        return proc

    def wait_healthy(self, timeout: float = 180) -> None:
        def ready() -> bool:
            for proc in self.procs.values():
                if proc.popen.poll() is not None and proc.name not in self.killed:
                    raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")
            workers_ready = all(
                "ready" in self.procs[w].log.read_text(errors="replace") for w in WORKERS if w in self.procs
            )
            return workers_ready and self.client.healthy()

        wait_for(ready, "a healthy cluster", timeout, describe=self.describe)

    def kill(self, name: str) -> None:
        """SIGKILL a process and every child of its group (a lost machine, not a clean stop)."""
        self.killed.add(name)
        self.procs[name].kill_group(signal.SIGKILL)
        self.procs[name].popen.wait(timeout=30)

    def stop(self) -> None:
        stop_groups({name: proc.popen for name, proc in self.procs.items()}, term_timeout=20)

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
        """One REST API v2 call; the decoded JSON answer. :raises devtools.airflow_api.ApiError:"""
        return self.client.call(method, path, body)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        wait_for(lambda: self.client.has_dag(dag_id), f"dag {dag_id} parsed", timeout, describe=self.describe)

    def unpause(self, dag_id: str) -> None:
        self.wait_for_dag(dag_id)
        self.client.unpause(dag_id)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.unpause(dag_id)
        return self.client.trigger(dag_id, conf=conf)

    def wait_for_runs(self, runs: dict[str, str], timeout: float = 300) -> dict[str, str]:
        """Wait until every ``{dag_id: run_id}`` ended; returns ``{dag_id: state}``."""
        states: dict[str, str | None] = {}

        def ended() -> dict[str, str] | None:
            states.update({dag_id: self.client.run_state(dag_id, run_id) for dag_id, run_id in runs.items()})
            done = {d: s for d, s in states.items() if s in RUN_ENDED}
            return done if len(done) == len(runs) else None

        return wait_for(
            ended, "the runs", timeout, interval=2, describe=lambda: f"states: {states}\n{self.describe()}"
        )

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
