"""S3 test DAG (tests/airflow/test_object_storage_s3.py): s3:// input and outputs, conn ``aws_moto``.

``HERE_BATCH_S3_INPUT`` / ``HERE_BATCH_S3_OUTPUT`` come from the test (a moto server it started).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator

with DAG(
    dag_id="test_s3_roundtrip",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    submit = SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input=os.environ.get("HERE_BATCH_S3_INPUT", "s3://missing/in.csv"),
        input_conn_id="aws_moto",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.5,
        tag="s3",
    )
    submit >> DownloadBatchResultsOperator(
        task_id="download",
        job_id=submit.output["job_id"],
        destination=os.environ.get("HERE_BATCH_S3_OUTPUT", "s3://missing/out/"),
        destination_conn_id="aws_moto",
        what="both",
    )
