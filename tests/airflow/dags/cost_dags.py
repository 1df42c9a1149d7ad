"""Test DAGs for the spend guard and dry runs of the submit operator and the split (run by
tests/operators/test_cost.py). Five records per input; ``HERE_TEST_COST_BOUND`` is the bound of the
bounded DAGs (read when the file is parsed)."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator
from airflow_here_batch.operators.split import split_batch_job

START = pendulum.datetime(2025, 1, 1, tz="UTC")
CITIES = ["Berlin", "London", "Paris", "Madrid", "Rome"]
FIVE = "recId|q\n" + "".join(f"c{n}|{n} Main Street, {c}\n" for n, c in enumerate(CITIES, 1))
THREE = "recId|q\n" + "".join(f"m{n}|{n} High Street, {c}\n" for n, c in enumerate(CITIES[:3], 1))
BOUND = os.environ.get("HERE_TEST_COST_BOUND") or None
QUICK = {"poll_interval": 0.2, "max_poll_interval": 1.0, "part_retry_delay": timedelta(seconds=0)}
PARAMS = {
    "dry_run": Param(False, type="boolean"),
    "max_records_to_send": Param(None, type=["null", "integer"]),
}

with DAG(dag_id="test_cost_submit", schedule=None, start_date=START, catchup=False, params=PARAMS):
    SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input=FIVE,
        dry_run="{{ params.dry_run }}",
        max_records_to_send="{{ params.max_records_to_send }}",
        price_per_1000_records=2.0,
        reattach=False,
    )

with DAG(dag_id="test_cost_mapped_submits", schedule=None, start_date=START, catchup=False):
    SubmitBatchJobOperator.partial(
        task_id="submit", service="geocode", max_records_to_send=BOUND, reattach=False
    ).expand(input=[THREE, THREE])

with DAG(dag_id="test_cost_split", schedule=None, start_date=START, catchup=False, params=PARAMS):
    split_batch_job(
        group_id="geo",
        input=FIVE,
        max_records_per_job=2,
        dry_run="{{ params.dry_run }}",
        max_records_to_send="{{ params.max_records_to_send }}",
        price_per_1000_records=1.0,
        **QUICK,
    )
