"""Nightly geocoding of an address table with the HERE Batch API v7: only new or changed addresses sent.

Every night at 02:00 (UTC) this DAG:

1. ``seed_addresses`` creates the ``addresses`` table (``id``, ``address``, ``country_filter``) from the
   shipped sample (322 addresses in 20+ countries, a few deliberately bad) if it does not exist yet. In a
   real deployment the table is yours: drop this task.
2. ``extract_changed`` streams ``SELECT id, address, country_filter FROM addresses`` and writes the
   records whose geocoding input is new or changed since their last geocoding (the fingerprint of the
   normalised request, stored in ``addresses_geocoded``) to an input file in object storage.
3. ``anything_to_send`` skips the HERE job when nothing changed.
4. ``submit_geocode_job`` uploads that file as one geocode job, tagged ``nightly-geocode-<date>``;
   ``wait_for_job`` waits in the triggerer (deferrable sensor); ``download_results`` puts the results
   and the errors report under ``$HERE_BATCH_OUTPUT_DIR/<date>/``.
5. ``write_results`` upserts them into ``addresses_geocoded`` (created if missing; ``rec_id``,
   ``status``, ``lat``/``lng``, ``match_level``, the output columns, HERE's error code and message for
   failed records, the fingerprint, the job id, the time geocoded), one transaction per batch, and
   returns ``records_total``, ``records_sent``, ``records_reused``, ``records_failed``. The task's outlet
   is the Asset ``here-batch-table://<conn id>/addresses_geocoded``
   (``airflow_here_batch.operators.sql.table_asset``).

**Caching is on in this DAG** (``incremental=True``): HERE's terms may limit how long geocoding results
may be stored and reused; check your contract. ``HERE_BATCH_MAX_AGE_DAYS`` re-sends records geocoded
longer ago; a run triggered with ``{"full_refresh": true}`` sends every record. Rows deleted from
``addresses`` stay in ``addresses_geocoded``.

Settings (environment variables, read when the file is parsed): ``HERE_BATCH_DB_CONN_ID`` (default
``here_batch_sqlite_default``: when no such connection is defined, the SQLite file
``$AIRFLOW_HOME/here_batch/here_batch.db``; any common.sql connection works, e.g. a PostgreSQL one),
``HERE_BATCH_OUTPUT_DIR`` (default: the provider's base location, then ``output/``),
``HERE_BATCH_POLL_INTERVAL`` (seconds, default 30), ``HERE_BATCH_MAX_AGE_DAYS``, ``HERE_BATCH_RETRIES``
(default 2), ``HERE_BATCH_WRITE_BATCH_SIZE`` (rows per transaction, default 10,000). The HERE connection is
``here_batch_default``.
"""

from __future__ import annotations

import csv
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator, SubmitBatchJobOperator
from airflow_here_batch.operators.sql import (
    EMBEDDED_CONN_ID,
    BatchResultsToSqlOperator,
    SqlToBatchInputOperator,
)
from airflow_here_batch.sensors.batch_job import BatchJobSensor
from airflow_here_batch.utils.storage import base_location_uri

SAMPLE = Path(__file__).parent / "data" / "addresses_default.csv"
DB_CONN_ID = os.environ.get("HERE_BATCH_DB_CONN_ID") or EMBEDDED_CONN_ID
SOURCE_TABLE = "addresses"
TARGET_TABLE = "addresses_geocoded"
OUTPUT_DIR = os.environ.get("HERE_BATCH_OUTPUT_DIR") or f"{base_location_uri()}/output"
if "://" not in OUTPUT_DIR:  # a location (file://...), so XCom carries a URI, never a worker-local path
    OUTPUT_DIR = f"file://{os.path.abspath(OUTPUT_DIR)}"
POLL_INTERVAL = float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "30"))
MAX_AGE_DAYS = os.environ.get("HERE_BATCH_MAX_AGE_DAYS")
RETRIES = int(os.environ.get("HERE_BATCH_RETRIES", "2"))
WRITE_BATCH_SIZE = int(os.environ.get("HERE_BATCH_WRITE_BATCH_SIZE", "10000"))
OUTPUT_COLUMNS = ["positionLat", "positionLng", "addressLabel", "addressCountryCode", "resultType"]
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"
SUBMITTED = "(ti.xcom_pull(task_ids='submit_geocode_job') or {})"
DOWNLOADED = "(ti.xcom_pull(task_ids='download_results') or {})"

with DAG(
    dag_id="here_batch_nightly_geocode",
    description="Nightly HERE batch geocoding of the new or changed rows of an address table",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": RETRIES, "retry_delay": timedelta(seconds=20)},
    params={"full_refresh": Param(False, type="boolean", description="send every record this run")},
    tags=["here", "geocoding", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def seed_addresses() -> int:
        """Create and fill the ``addresses`` table from the shipped sample, once; returns its row count."""
        from airflow_here_batch.operators.sql import get_db_hook

        hook = get_db_hook(DB_CONN_ID)
        count = hook.get_first(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'addresses'"
            if hook.dialect_name == "postgresql"
            else "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'addresses'"
        )[0]
        if not count:
            hook.run(
                f"CREATE TABLE IF NOT EXISTS {SOURCE_TABLE} "
                "(id TEXT PRIMARY KEY, address TEXT, country_filter TEXT)"
            )
            with SAMPLE.open(encoding="utf-8", newline="") as fh:
                rows = [(r["recId"], r["q"], r["in"]) for r in csv.DictReader(fh, delimiter="|")]
            hook.insert_rows(SOURCE_TABLE, rows, target_fields=["id", "address", "country_filter"])
            print(f"seeded {SOURCE_TABLE} with {len(rows)} rows from {SAMPLE.name}")
        return int(hook.get_first(f"SELECT COUNT(*) FROM {SOURCE_TABLE}")[0])

    extract = SqlToBatchInputOperator(
        task_id="extract_changed",
        conn_id=DB_CONN_ID,
        sql=f"SELECT id, address, country_filter FROM {SOURCE_TABLE}",
        key_column="id",
        service="geocode",
        columns={"q": "address", "in": "country_filter"},
        output_columns=OUTPUT_COLUMNS,
        incremental=True,
        target_table=TARGET_TABLE,
        max_age=timedelta(days=float(MAX_AGE_DAYS)) if MAX_AGE_DAYS else None,
        full_refresh="{{ params.full_refresh }}",
    )

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def anything_to_send(extracted: dict[str, Any]) -> bool:
        """False (skip the HERE job) when every record is unchanged."""
        print(f"{extracted['records_sent']} of {extracted['records_total']} records to send")
        return bool(extracted["records_sent"])

    submit = SubmitBatchJobOperator(
        task_id="submit_geocode_job",
        service="geocode",
        input="{{ ti.xcom_pull(task_ids='extract_changed')['input'] }}",
        input_delimiter="|",
        output_columns=OUTPUT_COLUMNS,
        tag=f"nightly-geocode-{RUN_DATE}",
    )

    wait = BatchJobSensor(
        task_id="wait_for_job",
        job_id="{{ ti.xcom_pull(task_ids='submit_geocode_job')['job_id'] }}",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=6 * 60 * 60,
        retries=3,  # apache/airflow#67287: a deferral can be lost when many tasks defer at once
        retry_delay=timedelta(seconds=10),
    )

    download = DownloadBatchResultsOperator(
        task_id="download_results",
        job_id="{{ ti.xcom_pull(task_ids='submit_geocode_job')['job_id'] }}",
        destination=f"{OUTPUT_DIR}/{RUN_DATE}/",
        what="both",
    )

    write = BatchResultsToSqlOperator(
        task_id="write_results",
        conn_id=DB_CONN_ID,
        table=TARGET_TABLE,
        output_columns=OUTPUT_COLUMNS,
        job_id="{{ " + SUBMITTED + ".get('job_id') or '' }}",
        results="{{ (" + DOWNLOADED + ".get('results') or {}).get('path') or '' }}",
        errors="{{ (" + DOWNLOADED + ".get('errors') or {}).get('path') or '' }}",
        extract=extract.output,
        batch_size=WRITE_BATCH_SIZE,
        trigger_rule="none_failed",
    )

    seed_addresses() >> extract
    anything_to_send(extract.output) >> submit >> wait >> download >> write
