"""Nightly batch geocoding of the day's addresses with the HERE Batch API v7.

Every night at 02:00 (UTC) this DAG:

1. ``choose_input`` picks the addresses of the run's date: ``$HERE_BATCH_INPUT_DIR/addresses_<date>.csv``
   if such a file exists, else the shipped sample ``addresses_default.csv`` (322 addresses in 35+
   countries and a dozen scripts, with a few deliberately bad rows: empty queries, garbage, a value that
   contains the delimiter). Format: UTF-8, ``|``-delimited, header ``recId|q|in``.
2. ``submit_geocode_job`` uploads them as one geocode job, tagged ``nightly-geocode-<date>``.
3. ``wait_for_job`` waits with the deferrable ``BatchJobSensor``: the wait runs in the triggerer, no
   worker slot is held while HERE works.
4. ``download_results`` writes the results and the errors report to ``$HERE_BATCH_OUTPUT_DIR/<date>/``
   (default: the provider's base location, ``[here_batch] base_location``, then ``output/``).
5. ``summarize`` prints records succeeded / failed and the file paths, and returns them as a dict.

Settings (environment variables, read when the file is parsed): ``HERE_BATCH_INPUT_DIR``,
``HERE_BATCH_OUTPUT_DIR``, ``HERE_BATCH_POLL_INTERVAL`` (seconds, default 30). The connection is
``here_batch_default`` (host = base URL such as ``https://batch.search.hereapi.com/v7``, password = API
key), e.g. from the environment:
``AIRFLOW_CONN_HERE_BATCH_DEFAULT='{"conn_type": "here_batch", "host": "...", "password": "..."}'``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, get_current_context, task

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
from airflow_here_batch.sensors.batch_job import BatchJobSensor
from airflow_here_batch.utils.storage import base_location_uri

INPUT_DIR = Path(os.environ.get("HERE_BATCH_INPUT_DIR", Path(__file__).parent / "data"))
OUTPUT_DIR = os.environ.get("HERE_BATCH_OUTPUT_DIR") or f"{base_location_uri()}/output"
POLL_INTERVAL = float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "30"))
# The submit task returns {"job_id", "status", "records", "results_href"}.
JOB_ID = "{{ ti.xcom_pull(task_ids='submit_geocode_job')['job_id'] }}"
# The run's date; manual runs triggered without a logical date fall back to their run_after.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

with DAG(
    dag_id="here_batch_nightly_geocode",
    description="Nightly HERE batch geocoding of the day's addresses",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    tags=["here", "geocoding", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def choose_input() -> str:
        """The addresses file of the run's date, or the shipped sample."""
        dag_run = get_current_context()["dag_run"]
        day = (dag_run.logical_date or dag_run.run_after).strftime("%Y-%m-%d")
        dated = INPUT_DIR / f"addresses_{day}.csv"
        chosen = dated if dated.is_file() else INPUT_DIR / "addresses_default.csv"
        print(f"input for {day}: {chosen}")
        return str(chosen)

    submit = SubmitBatchJobOperator(
        task_id="submit_geocode_job",
        service="geocode",
        input=choose_input(),
        input_delimiter="|",
        output_columns=["positionLat", "positionLng", "addressLabel", "addressCountryCode", "resultType"],
        tag=f"nightly-geocode-{RUN_DATE}",
    )

    wait = BatchJobSensor(
        task_id="wait_for_job",
        job_id=JOB_ID,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=6 * 60 * 60,
        retries=3,  # apache/airflow#67287: a deferral can be lost when many tasks defer at once
        retry_delay=timedelta(seconds=10),
    )

    download = DownloadBatchResultsOperator(
        task_id="download_results",
        job_id=JOB_ID,
        destination=f"{OUTPUT_DIR}/{RUN_DATE}/",
        what="both",
    )

    @task
    def summarize(job: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
        """Print and return records succeeded / failed and where the files are."""
        records = job.get("records") or {}
        results = files.get("results") or {}
        errors = files.get("errors") or {}
        summary = {
            "job_id": job.get("job_id"),
            "status": job.get("status"),
            "records_total": records.get("total"),
            "records_succeeded": records.get("succeeded"),
            "records_failed": records.get("failed"),
            "results_path": results.get("path"),
            "results_rows": results.get("rows"),
            "errors_path": errors.get("path"),
            "errors_rows": errors.get("rows"),
        }
        print(
            f"HERE batch job {summary['job_id']} {summary['status']}: "
            f"{summary['records_succeeded']} of {summary['records_total']} records succeeded, "
            f"{summary['records_failed']} failed"
        )
        print(f"results: {summary['results_path']} ({summary['results_rows']} rows)")
        print(f"errors:  {summary['errors_path']} ({summary['errors_rows']} rows)")
        return summary

    submit >> wait >> download
    summarize(wait.output, download.output)
