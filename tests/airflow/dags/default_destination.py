"""A download without ``destination`` (tests/utils/test_assets.py): it must land under the
base location, and its outlet's asset event must say where."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator

INLINE = "recId|q\n1|Invalidenstraße 116, Berlin\n2|\n3|Dam 1, Amsterdam\n"

with DAG(
    dag_id="test_default_destination",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    submit = SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input=INLINE,
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.5,
    )
    submit >> DownloadBatchResultsOperator(
        task_id="download",
        job_id=submit.output["job_id"],
        what="both",
        outlets=[Asset(name="test_default_destination_results", uri="here-batch://test-default-destination")],
    )
