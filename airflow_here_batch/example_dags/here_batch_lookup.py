"""Lookup by HERE id with the HERE Batch API v7 (manual trigger).

Refreshes the details of places known by their HERE ids (``data/here_ids_default.csv``, ``recId|id``;
two deliberately bad ids: ``not-a-here-id`` is left out before upload with ``on_bad_record="skip"`` and
written to ``rejects.jsonl`` under the base location; the empty one fails at HERE). Submits a ``lookup``
job with JSON-lines output, waits with the deferrable sensor, then downloads results and errors side by
side to ``<output>/lookup/<date>/`` (``<output>`` is ``$HERE_BATCH_OUTPUT_DIR`` or
``<[here_batch] base_location>/output``, a URI every worker reaches) and updates the asset
``here_batch_looked_up_places``. Tasks hand over only the job id and file URIs.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.files.locations import output_uri
from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
from airflow_here_batch.sensors.batch_job import BatchJobSensor
from airflow_here_batch.utils.assets import LOOKED_UP_PLACES, here_asset

DATA_DIR = Path(__file__).parent / "data"
# A URI every worker reaches ($HERE_BATCH_OUTPUT_DIR, else <[here_batch] base_location>/output).
OUTPUT_DIR = output_uri()
POLL_INTERVAL = float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "30"))
# The submit task returns {"job_id", "status", "records", "results_href"}.
JOB_ID = "{{ ti.xcom_pull(task_ids='submit_lookup_job')['job_id'] }}"
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id="here_batch_lookup",
    description="HERE batch lookup of places by HERE id",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    tags=["here", "lookup", "example"],
    doc_md=__doc__,
) as dag:
    submit = SubmitBatchJobOperator(
        task_id="submit_lookup_job",
        service="lookup",
        input=str(DATA_DIR / "here_ids_default.csv"),
        on_bad_record="skip",
        output_type="jsonl",
        output_filter="id,title,address.label,position",
        tag=f"lookup-{RUN_DATE}",
    )

    wait = BatchJobSensor(
        task_id="wait_for_job",
        job_id=JOB_ID,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=2 * 60 * 60,
        retries=3,  # apache/airflow#67287
        retry_delay=timedelta(seconds=10),
    )

    download = DownloadBatchResultsOperator(
        task_id="download_results",
        job_id=JOB_ID,
        destination=f"{OUTPUT_DIR}/lookup/{RUN_DATE}/",
        what="both",
        outlets=[here_asset(LOOKED_UP_PLACES)],
    )

    submit >> wait >> download
