"""Test DAGs for download failure modes (run by tests/operators/test_batch_job.py)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
from airflow_here_batch.sensors.batch_job import BatchJobSensor

OUT = os.environ.get("HERE_BATCH_OUTPUT_DIR", "/tmp/here-batch-test-output")
START = pendulum.datetime(2025, 1, 1, tz="UTC")
INLINE = "recId|q\n1|Invalidenstraße 116, 10115 Berlin\n2|10 Downing Street, London\n"

# Downloads use a connection with quick retries (AIRFLOW_CONN_HERE_BATCH_FAST, set by the test).
FAST = {"here_conn_id": "here_batch_fast"}

with DAG(dag_id="test_ops_download_failures", schedule=None, start_date=START, catchup=False):
    done = SubmitBatchJobOperator(
        task_id="submit_done",
        service="geocode",
        input=INLINE,
        wait_for_completion=True,
        poll_interval=0.2,
        timeout=60,
    )
    DownloadBatchResultsOperator(
        **FAST,
        task_id="download_cut_off",
        job_id=done.output["job_id"],
        destination=f"{OUT}/cut/{{{{ run_id | replace(':', '_') | replace('+', '_') }}}}/results.csv",
    )
    DownloadBatchResultsOperator(
        **FAST,
        task_id="records_over_cap",
        job_id=done.output["job_id"],
        output_format="records",
        max_records_rows=1,
    )
    running = SubmitBatchJobOperator(
        task_id="submit_running", service="geocode", input=INLINE, start_job=False
    )
    DownloadBatchResultsOperator(
        **FAST, task_id="download_too_early", job_id=running.output["job_id"], output_format="records"
    )


with DAG(dag_id="test_ops_mapped_and_flaky", schedule=None, start_date=START, catchup=False):
    mapped = SubmitBatchJobOperator.partial(
        task_id="submit_mapped", service="geocode", tag="ops-mapped", **FAST
    ).expand(input=[INLINE, INLINE.replace("Berlin", "Potsdam")])
    BatchJobSensor(
        **FAST,
        task_id="wait_through_outage",
        job_id="{{ ti.xcom_pull('submit_flaky', key='job_id') }}",
        poll_interval=0.1,
        timeout=60,
    ).set_upstream(
        SubmitBatchJobOperator(
            **FAST, task_id="submit_flaky", service="geocode", input=INLINE, tag="ops-flaky"
        )
    )
