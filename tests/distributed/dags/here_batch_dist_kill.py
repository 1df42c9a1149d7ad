"""Distributed test: a submit task that waits in its worker, so a test can kill the worker mid-task.

The emulator holds the job (``records_per_second=0``) until the test releases it; the task polls every
second. ``retries`` lets the scheduler run the task again on another worker after the first one is lost.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

ROWS = (
    "recId|q|in\n1|Invalidenstraße 116, Berlin|countryCode:DEU\n2|10 Downing Street, London|countryCode:GBR\n"
)

with DAG(
    dag_id="here_batch_dist_kill",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["test"],
) as dag:
    SubmitBatchJobOperator(
        task_id="submit_and_wait",
        service="geocode",
        input=ROWS,
        tag="dist-kill",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=1,
        max_poll_interval=2,
        timeout=600,
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
