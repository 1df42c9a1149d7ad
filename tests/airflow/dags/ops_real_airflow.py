"""Test DAGs run through a real scheduler + triggerer (tests/operators/test_batch_job.py, opt-in)."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
from airflow_here_batch.sensors.batch_job import BatchJobSensor

OUT = os.environ.get("HERE_BATCH_OUTPUT_DIR", "/tmp/here-batch-test-output")
START = pendulum.datetime(2025, 1, 1, tz="UTC")
INLINE = "recId|q\n" + "".join(f"{i}|Street {i}, Berlin\n" for i in range(1, 41))

with DAG(dag_id="test_ops_real_success", schedule=None, start_date=START, catchup=False):
    submit = SubmitBatchJobOperator(task_id="submit", service="geocode", input=INLINE, tag="ops-real")
    wait = BatchJobSensor(
        task_id="wait",
        job_id=submit.output["job_id"],
        deferrable=True,
        poll_interval=1,
        timeout=120,
        retries=2,  # apache/airflow#67287
        retry_delay=timedelta(seconds=1),
    )
    wait >> DownloadBatchResultsOperator(
        task_id="download",
        job_id=submit.output["job_id"],
        destination=f"{OUT}/real/{{{{ run_id | replace(':', '_') | replace('+', '_') }}}}.csv",
    )

with DAG(dag_id="test_ops_real_kill", schedule=None, start_date=START, catchup=False):
    SubmitBatchJobOperator(
        task_id="submit_and_wait",
        service="geocode",
        input=INLINE,
        tag="ops-real-kill",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=0.5,
    )
