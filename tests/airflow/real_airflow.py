"""A real Airflow for a test: api-server, scheduler, dag-processor and triggerer as separate processes.

LocalExecutor, SQLite in a temporary ``AIRFLOW_HOME``, the DAGs of ``tests/airflow/dags/``, the HERE
connection pointing at the emulator. Ports are free ones (from ``port_range`` when given). Used as a
context manager; every process is stopped on exit. ``AIRFLOW__API__BASE_URL`` names the API port (task
workers call it) and the scheduler's and triggerer's log servers get free ports too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.airflow.conftest import TEST_API_KEY
from tests.conftest import TEST_DAGS_DIR

PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port(port_range: tuple[int, int] | None = None, after: int = 0) -> int:
    """A free loopback port: any, or the first free one in ``port_range`` above ``after``."""
    if port_range is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    first, last = port_range
    for port in range(max(first, after + 1), last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")


class RealAirflow:
    """:param tmp_path: a test's temporary folder (``airflow/`` and ``logs/`` are made in it).
    :param emulator_url: the HERE base URL of the emulator for ``here_batch_default``.
    :param port_range: take the API and log-server ports from this range (else any free port).
    :param env: more environment variables for every process.
    """

    def __init__(
        self,
        tmp_path: Path,
        emulator_url: str,
        *,
        port_range: tuple[int, int] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = tmp_path / "airflow"
        self.home.mkdir()
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        api_port = free_port(port_range)
        worker_port = free_port(port_range, after=api_port)
        trigger_port = free_port(port_range, after=worker_port)
        self.base = f"http://127.0.0.1:{api_port}"
        bundles = [
            {
                "name": "here_test_dags",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(TEST_DAGS_DIR), "refresh_interval": 0},
            }
        ]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        self.env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS_DIR),
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__BASE_URL": self.base,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_port),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW_CONN_HERE_BATCH_DEFAULT": json.dumps(
                    {"conn_type": "here_batch", "host": emulator_url, "password": TEST_API_KEY}
                ),
                "PYTHONWARNINGS": "ignore",
                **(env or {}),
            }
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> RealAirflow:
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run(
            [*airflow, "db", "migrate"], env=self.env, check=True, capture_output=True, timeout=180
        )
        try:
            for name in PROCESSES:
                out = (self.logs / f"{name}.log").open("wb")
                self.procs.append(
                    subprocess.Popen(
                        [*airflow, name],
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One REST API v2 call; the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def wait_for(self, predicate: Callable[[], Any], what: str, limit: float = 180.0) -> Any:
        """Poll ``predicate`` until it returns something true (its value); fail with the process logs."""
        end = time.monotonic() + limit
        while True:
            try:
                value = predicate()
            except OSError:
                value = None
            if value:
                return value
            if time.monotonic() > end:
                tails = {p.name: p.read_text(errors="replace")[-3000:] for p in self.logs.iterdir()}
                raise AssertionError(f"timed out waiting for {what}; logs: {tails}")
            time.sleep(0.5)

    def wait_ready(self, dag_id: str) -> None:
        """Until the API, scheduler and triggerer are healthy and ``dag_id`` is parsed."""
        self.wait_for(
            lambda: (
                len(self.call("GET", "/api/v2/monitor/health")) >= 3
                and self.call("GET", f"/api/v2/dags/{dag_id}").get("dag_id")
            ),
            "a healthy Airflow with the test DAGs parsed",
        )

    def trigger(self, dag_id: str) -> str:
        """Trigger a run now; its run id."""
        return str(self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"])

    def wait_run(self, dag_id: str, run_id: str, limit: float = 180.0) -> str:
        """Until the run ends; its state (``success`` or ``failed``)."""
        return str(
            self.wait_for(
                lambda: (
                    (s := self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])
                    in ("success", "failed")
                    and s
                ),
                f"the run {run_id} of {dag_id}",
                limit,
            )
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
        return list(body["task_instances"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}
