"""Nightly geocoding of an address table with the HERE Batch API v7: only new or changed addresses sent.

Every night at 02:00 (UTC) this DAG:

1. ``seed_addresses`` creates the ``addresses`` table (``id``, ``address``, ``country_filter``) from the
   shipped sample (322 addresses in 20+ countries, a few deliberately bad) if it does not exist yet. In a
   real deployment the table is yours: drop this task.
2. ``extract_changed`` streams ``SELECT id, address, country_filter FROM addresses`` and writes the
   records whose geocoding input is new or changed since their last geocoding (the fingerprint of the
   normalised request, stored in ``addresses_geocoded``) to an input file in object storage.
3. ``anything_to_send`` skips the HERE jobs when nothing changed.
4. ``geocode`` is the any-size path (:func:`~airflow_here_batch.operators.split.split_batch_job`,
   ``docs/split.md``), taken every night: ``geocode.plan`` cuts the records into parts of at most
   ``HERE_BATCH_MAX_RECORDS_PER_JOB`` records (and 500 MB), so a large first load becomes several jobs
   and a usual night one; ``geocode.run`` runs one HERE job per part (tagged
   ``nightly-geocode-<date>``), at most ``HERE_BATCH_MAX_ACTIVE_JOBS`` at once, each waited for in the
   triggerer, its results and errors downloaded next to its part. One part costs what the single-job
   path cost (``docs/sql.md``, "With the any-size path").
5. ``collect_parts`` lists every part's job id, results and errors locations (URIs, in part order).
6. ``write_results`` upserts every part's results into ``addresses_geocoded`` (created if missing;
   ``rec_id``, ``status``, ``lat``/``lng``, ``match_level``, the output columns, HERE's error code and
   message for failed records, the fingerprint, the id of the job that carried the record, the time
   geocoded), one transaction per batch, and returns ``records_total``, ``records_sent``,
   ``records_reused``, ``records_failed``. Each row carries its quality verdict (``match_quality``,
   ``accepted``, ``query_score``, ``candidates``; ``docs/quality.md``); the records not accepted are in
   ``addresses_geocoded_review`` with their top candidates (each record asks for up to 3). Below
   ``HERE_BATCH_MIN_ACCEPTED_SHARE`` (default 0.8) accepted, the task warns, or fails with
   ``HERE_BATCH_ON_LOW_MATCH_RATE=fail``, giving the counts by verdict. Its outlet is the Asset
   ``here_batch_geocoded_addresses`` (:mod:`airflow_here_batch.utils.assets`): the DAG
   ``here_batch_geocoded_consumer`` runs after it.
7. ``geocode.merge`` then writes the night's ``results.csv`` and ``errors.txt`` (input order) to
   ``$HERE_BATCH_OUTPUT_DIR/<date>/`` and removes the parts' files.

**Caching is on in this DAG** (``incremental=True``): HERE's terms may limit how long geocoding results
may be stored and reused; check your contract. ``HERE_BATCH_MAX_AGE_DAYS`` re-sends records geocoded
longer ago; a run triggered with ``{"full_refresh": true}`` sends every record. Rows deleted from
``addresses`` stay in ``addresses_geocoded``.

Settings (environment variables, read when the file is parsed): ``HERE_BATCH_DB_CONN_ID`` (default
``here_batch_sqlite_default``: when no such connection is defined, the SQLite file ``here_batch.db`` in
the provider's base location, ``$AIRFLOW_HOME/here_batch/`` by default; on several machines set
``[here_batch] base_location`` to a shared folder, or use a PostgreSQL connection),
``HERE_BATCH_OUTPUT_DIR`` (default: the provider's base location, then ``output/``),
``HERE_BATCH_MAX_RECORDS_PER_JOB`` (default HERE's 1,000,000), ``HERE_BATCH_MAX_ACTIVE_JOBS`` (default 3),
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

from airflow_here_batch.files.locations import output_uri
from airflow_here_batch.operators.split import split_batch_job
from airflow_here_batch.operators.sql import (
    EMBEDDED_CONN_ID,
    BatchResultsToSqlOperator,
    SqlToBatchInputOperator,
)
from airflow_here_batch.utils.assets import GEOCODED_ADDRESSES, here_asset

SAMPLE = Path(__file__).parent / "data" / "addresses_default.csv"
DB_CONN_ID = os.environ.get("HERE_BATCH_DB_CONN_ID") or EMBEDDED_CONN_ID
SOURCE_TABLE = "addresses"
TARGET_TABLE = "addresses_geocoded"
OUTPUT_DIR = output_uri()  # a URI (file://... by default), so XCom never carries a worker-local path
MAX_RECORDS_PER_JOB = int(os.environ.get("HERE_BATCH_MAX_RECORDS_PER_JOB", "1000000"))
MAX_ACTIVE_JOBS = int(os.environ.get("HERE_BATCH_MAX_ACTIVE_JOBS", "3"))
POLL_INTERVAL = float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "30"))
MAX_AGE_DAYS = os.environ.get("HERE_BATCH_MAX_AGE_DAYS")
RETRIES = int(os.environ.get("HERE_BATCH_RETRIES", "2"))
WRITE_BATCH_SIZE = int(os.environ.get("HERE_BATCH_WRITE_BATCH_SIZE", "10000"))
OUTPUT_COLUMNS = ["positionLat", "positionLng", "addressLabel", "addressCountryCode", "resultType"]
# The match-rate gate: the share of accepted records below which the sink fails ("fail") or warns
# ("warn"). A quiet night sends a handful of changed records, so the example warns by default.
MIN_ACCEPTED_SHARE = float(os.environ.get("HERE_BATCH_MIN_ACCEPTED_SHARE", "0.8"))
ON_LOW_MATCH_RATE = os.environ.get("HERE_BATCH_ON_LOW_MATCH_RATE", "warn")
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

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
        constants={"limit": "3"},  # up to 3 candidates per record: ambiguous names show as such
        output_columns=OUTPUT_COLUMNS,
        incremental=True,
        target_table=TARGET_TABLE,
        max_age=timedelta(days=float(MAX_AGE_DAYS)) if MAX_AGE_DAYS else None,
        full_refresh="{{ params.full_refresh }}",
    )

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def anything_to_send(extracted: dict[str, Any]) -> bool:
        """False (skip the HERE jobs) when every record is unchanged."""
        print(f"{extracted['records_sent']} of {extracted['records_total']} records to send")
        return bool(extracted["records_sent"])

    geocode = split_batch_job(
        group_id="geocode",
        input="{{ ti.xcom_pull(task_ids='extract_changed')['input'] }}",
        service="geocode",
        output_columns=OUTPUT_COLUMNS,
        destination=f"{OUTPUT_DIR}/{RUN_DATE}/",
        tag=f"nightly-geocode-{RUN_DATE}",
        max_records_per_job=MAX_RECORDS_PER_JOB,
        max_active_jobs=MAX_ACTIVE_JOBS,
        poll_interval=POLL_INTERVAL,
        part_retries=max(RETRIES, 1),
        part_retry_delay=timedelta(seconds=20),
    )
    run_parts = dag.get_task("geocode.run")
    merge = dag.get_task("geocode.merge")

    @task(multiple_outputs=True)
    def collect_parts(parts: Any) -> dict[str, list[Any]]:
        """Every part's job id, results and errors location (URIs), in part order, for the sink."""
        done = sorted((dict(p) for p in parts), key=lambda p: int(p["index"]))
        print(f"{len(done)} HERE jobs: {[p['job_id'] for p in done]}")
        return {
            "job_ids": [p["job_id"] for p in done],
            "results": [p.get("results") for p in done],
            "errors": [p.get("errors") for p in done],
        }

    parts = collect_parts(run_parts.output)

    write = BatchResultsToSqlOperator(
        task_id="write_results",
        conn_id=DB_CONN_ID,
        table=TARGET_TABLE,
        output_columns=OUTPUT_COLUMNS,
        job_id=parts["job_ids"],
        results=parts["results"],
        errors=parts["errors"],
        extract=extract.output,
        batch_size=WRITE_BATCH_SIZE,
        review_table=f"{TARGET_TABLE}_review",  # the records not accepted, with their top candidates
        min_accepted_share=MIN_ACCEPTED_SHARE,
        on_low_match_rate=ON_LOW_MATCH_RATE,
        outlets=[here_asset(GEOCODED_ADDRESSES)],
        trigger_rule="none_failed",  # runs (and reports) when nothing had to be sent
    )

    seed_addresses() >> extract
    anything_to_send(extract.output) >> geocode
    write >> merge  # the night's merged files are written, and the parts removed, once the table has them
