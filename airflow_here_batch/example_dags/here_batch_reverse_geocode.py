"""Reverse geocoding of GPS fixes with the HERE Batch API v7 (manual trigger).

Submits ``data/positions_default.csv`` (``recId|at``, ``at`` = ``lat,lng``; two deliberately bad rows,
left out with ``on_bad_record="skip"`` and written with their reasons to ``rejects.jsonl`` under the
base location) as a ``revgeocode`` job and waits in the same task, deferred (the operator's own
``wait_for_completion=True, deferrable=True``: one task instead of submit + sensor). The results are
converted to a GeoJSON FeatureCollection under ``<output>/revgeocode/<date>.geojson`` (``<output>`` is
``$HERE_BATCH_OUTPUT_DIR`` or ``<[here_batch] base_location>/output``, a URI every worker reaches), which
updates the asset ``here_batch_reverse_geocoded_positions``. Trigger with a conf to use another file:
``{"input": "s3://bucket/positions.csv"}`` (an object-storage URI; a plain path must exist on every worker).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from airflow_here_batch.files.locations import output_uri
from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
from airflow_here_batch.utils.assets import REVERSE_GEOCODED_POSITIONS, here_asset

DATA_DIR = Path(__file__).parent / "data"
# A URI every worker reaches ($HERE_BATCH_OUTPUT_DIR, else <[here_batch] base_location>/output).
OUTPUT_DIR = output_uri()
POLL_INTERVAL = float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "30"))
# The submit task returns {"job_id", "status", "records", "results_href"}.
JOB_ID = "{{ ti.xcom_pull(task_ids='reverse_geocode')['job_id'] }}"
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id="here_batch_reverse_geocode",
    description="HERE batch reverse geocoding of positions to addresses",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"input": Param(str(DATA_DIR / "positions_default.csv"), type="string")},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    tags=["here", "geocoding", "example"],
    doc_md=__doc__,
) as dag:
    submit_and_wait = SubmitBatchJobOperator(
        task_id="reverse_geocode",
        service="revgeocode",
        input="{{ params.input }}",
        on_bad_record="skip",
        output_columns=["positionLat", "positionLng", "addressLabel", "addressCountryCode", "distance"],
        tag=f"revgeocode-{RUN_DATE}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=2 * 60 * 60,
        retries=3,  # apache/airflow#67287: a deferral can be lost when many tasks defer at once
    )

    download = DownloadBatchResultsOperator(
        task_id="download_geojson",
        job_id=JOB_ID,
        destination=f"{OUTPUT_DIR}/revgeocode/{RUN_DATE}.geojson",
        what="results",
        output_format="geojson",
        outlets=[here_asset(REVERSE_GEOCODED_POSITIONS)],
    )

    submit_and_wait >> download
