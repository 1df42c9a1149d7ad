"""OpenLineage test DAG (tests/utils/test_lineage.py): a file in, a HERE job, a results folder out.

``HERE_BATCH_LINEAGE_INPUT`` and ``HERE_BATCH_LINEAGE_OUTPUT`` (URIs or paths) come from the test.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator

with DAG(
    dag_id="test_lineage",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    submit = SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input=os.environ.get("HERE_BATCH_LINEAGE_INPUT", "/nonexistent.csv"),
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.5,
        tag="lineage",
    )
    submit >> DownloadBatchResultsOperator(
        task_id="download",
        job_id=submit.output["job_id"],
        destination=os.environ.get("HERE_BATCH_LINEAGE_OUTPUT", "file:///nonexistent/"),
        what="both",
    )
