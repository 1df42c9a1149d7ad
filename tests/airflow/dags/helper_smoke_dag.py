"""A trivial DAG that proves the ``run_dag`` test helper works (no provider code involved)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="helper_smoke", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def helper_smoke() -> None:
    @task
    def produce() -> dict[str, int]:
        return {"answer": 42}

    @task
    def consume(value: dict[str, int]) -> int:
        return value["answer"] + 1

    @task
    def fan_out() -> list[int]:
        return [1, 2, 3]

    @task
    def square(x: int) -> int:
        return x * x

    consume(produce())
    square.expand(x=fan_out())


helper_smoke()
