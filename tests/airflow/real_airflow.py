"""A real Airflow for a test: api-server, scheduler, dag-processor and triggerer as separate processes.

LocalExecutor, SQLite in a temporary ``AIRFLOW_HOME``, the DAGs of ``tests/airflow/dags/``, the HERE
connection pointing at the emulator. Ports are free ones (from ``port_range`` when given). Used as a
context manager; every process is stopped on exit. ``AIRFLOW__API__BASE_URL`` names the API port (task
workers call it) and the scheduler's and triggerer's log servers get free ports too. The processes and the
REST API client are the developer tools' (``devtools.local_airflow``, ``devtools.airflow_api``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from devtools.airflow_api import AirflowApi, wait_for
from devtools.local_airflow import airflow_env, free_port, migrate, start_airflow, stop_groups
from tests.airflow.support import TEST_API_KEY
from tests.conftest import TEST_DAGS_DIR

T = TypeVar("T")


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
        self.api = AirflowApi(f"http://127.0.0.1:{api_port}")
        self.env = airflow_env(
            home=self.home,
            api_port=api_port,
            worker_log_port=worker_port,
            trigger_log_port=trigger_port,
            here_url=emulator_url,
            here_key=TEST_API_KEY,
            dags_folder=TEST_DAGS_DIR,
            bundles={"here_test_dags": TEST_DAGS_DIR},
            paused_at_creation=False,
            extra={
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "PYTHONWARNINGS": "ignore",
                **(env or {}),
            },
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> RealAirflow:
        migrate(self.env)
        self.procs = start_airflow(self.env, self.logs)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        stop_groups(self.procs, term_timeout=20)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One REST API v2 call; the decoded JSON answer."""
        return self.api.call(method, path, body)

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.iterdir())
        )

    def wait_for(self, predicate: Callable[[], T], what: str, limit: float = 180.0) -> T:
        """Poll ``predicate`` until it returns something true (its value); fail with the process logs."""
        return wait_for(predicate, what, limit, interval=0.5, describe=self.log_tails)

    def wait_ready(self, dag_id: str) -> None:
        """Until the API, scheduler, dag-processor and triggerer are healthy and ``dag_id`` is parsed."""
        self.wait_for(
            lambda: self.api.healthy() and self.api.has_dag(dag_id),
            "a healthy Airflow with the test DAGs parsed",
        )

    def trigger(self, dag_id: str) -> str:
        """Trigger a run now; its run id."""
        return self.api.trigger(dag_id)

    def wait_run(self, dag_id: str, run_id: str, limit: float = 180.0) -> str:
        """Until the run ends; its state (``success`` or ``failed``)."""
        return self.api.wait_run(dag_id, run_id, limit, interval=0.5, describe=self.log_tails)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api.task_instances(dag_id, run_id)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return self.api.task_states(dag_id, run_id)
