"""A DAG whose first task fails on purpose: the ``run_dag`` helper must report it, not hide it."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="helper_failing", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False
)
def helper_failing() -> None:
    @task(retries=0)
    def boom() -> None:
        raise ValueError("deliberate failure for the helper test")

    @task
    def after() -> int:
        return 1

    boom() >> after()


helper_failing()
