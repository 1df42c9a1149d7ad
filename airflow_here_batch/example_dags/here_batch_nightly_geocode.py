"""Nightly geocoding of an address table with the HERE Batch API v7: only new or changed addresses sent.

The DAG is a schedule, a seed task and one :func:`~airflow_here_batch.operators.geocode_table.geocode_table`
call (``docs/table.md``). Every night at 02:00 (UTC):

1. ``seed_addresses`` creates the ``addresses`` table (``id``, ``address``, ``country_filter``) and fills
   it from the shipped sample (322 addresses in 20+ countries, a few bad on purpose) while it is empty. In a
   real deployment the table is yours: drop this task.
2. ``geocode.extract`` reads ``addresses`` and writes the records whose geocoding input is new or changed
   since their last geocoding (the fingerprint of the normalised request, stored in
   ``addresses_geocoded``) to an input file in object storage.
3. ``geocode.plan`` / ``geocode.run``: the any-size path (``docs/split.md``): parts of at most
   ``HERE_BATCH_MAX_RECORDS_PER_JOB`` records (and 500 MB), one HERE job per part (tagged
   ``nightly-geocode-<date>``), at most ``HERE_BATCH_MAX_ACTIVE_JOBS`` at once, each waited for in the
   triggerer. Skipped when nothing changed.
4. ``geocode.write`` upserts the results into ``addresses_geocoded`` (created if missing; ``rec_id``,
   ``status``, ``lat``/``lng``, ``match_level``, the output columns, HERE's error code and message for
   failed records, the fingerprint, the job id, the time geocoded), one transaction per batch. Each row
   carries its quality verdict (``match_quality``, ``accepted``, ``query_score``, ``candidates``;
   ``docs/quality.md``); the records not accepted are in ``addresses_geocoded_review`` with their top
   candidates (each record asks for up to 3). Below ``HERE_BATCH_MIN_ACCEPTED_SHARE`` (default 0.8)
   accepted, the task warns, or fails with ``HERE_BATCH_ON_LOW_MATCH_RATE=fail``, giving the counts by
   verdict. Its outlet is the Asset ``here_batch_geocoded_addresses``
   (:mod:`airflow_here_batch.utils.assets`): the DAG ``here_batch_geocoded_consumer`` runs after it.
5. ``geocode.merge`` writes the night's ``results.csv`` and ``errors.txt`` (input order) to
   ``$HERE_BATCH_OUTPUT_DIR/<date>/`` and removes the parts' files.
6. ``geocode.summary`` returns the night's summary: ``records_total``, ``records_sent``,
   ``records_reused``, ``records_failed``, ``records_written``, ``job_ids`` and the merged files. A night
   with nothing to send is a success whose summary says 0 sent.

**Cost.** Trigger with ``{"dry_run": true}`` to see what a night would send and why (new, changed,
expired ...), with the jobs planned and nothing sent or written to ``addresses_geocoded``;
``max_records_to_send`` (a param, or ``[here_batch] max_records_to_send`` for the deployment) fails the
run before any upload when more would be sent. Records whose address is empty are not sent: they are
written as ``skipped``. After a change of ``HERE_BATCH_OUTPUT_COLUMNS`` the stored results are kept and
the log says how many records a re-send would cost: trigger with ``{"on_output_columns_change":
"resend"}`` to send them (``docs/cost.md``).

**Caching is on** (``incremental``, the default): HERE's terms may limit how long geocoding results may
be stored and reused; check your contract. ``HERE_BATCH_MAX_AGE_DAYS`` re-sends records geocoded longer
ago; a run triggered with ``{"full_refresh": true}`` sends every record. Rows deleted from ``addresses``
stay in ``addresses_geocoded``.

Settings (environment variables, read when the file is parsed): ``HERE_BATCH_DB_CONN_ID`` (default
``here_batch_sqlite_default``: when no such connection is defined, the SQLite file ``here_batch.db`` in
the provider's base location, ``$AIRFLOW_HOME/here_batch/`` by default; on several machines set
``[here_batch] base_location`` to a shared folder, or use a PostgreSQL connection),
``HERE_BATCH_OUTPUT_DIR`` (default: the provider's base location, then ``output/``),
``HERE_BATCH_OUTPUT_COLUMNS`` (comma-separated, default
``positionLat,positionLng,addressLabel,addressCountryCode,resultType``),
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

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_here_batch.files.locations import output_uri
from airflow_here_batch.operators.geocode_table import geocode_table
from airflow_here_batch.operators.sql import EMBEDDED_CONN_ID
from airflow_here_batch.utils.assets import GEOCODED_ADDRESSES, here_asset

SAMPLE = Path(__file__).parent / "data" / "addresses_default.csv"
DB_CONN_ID = os.environ.get("HERE_BATCH_DB_CONN_ID") or EMBEDDED_CONN_ID
SOURCE_TABLE = "addresses"
MAX_AGE_DAYS = os.environ.get("HERE_BATCH_MAX_AGE_DAYS")
OUTPUT_COLUMNS = [
    c.strip()
    for c in (
        os.environ.get("HERE_BATCH_OUTPUT_COLUMNS")
        or "positionLat,positionLng,addressLabel,addressCountryCode,resultType"
    ).split(",")
    if c.strip()
]
# The match-rate gate: the share of accepted records below which the write fails ("fail") or warns
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
    params={
        "full_refresh": Param(False, type="boolean", description="send every record this run"),
        "dry_run": Param(
            False,
            type="boolean",
            description="count what this run would send and why, plan the jobs, send nothing",
        ),
        "max_records_to_send": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            description="the most records this run may send (empty: [here_batch] max_records_to_send)",
        ),
        "on_output_columns_change": Param(
            "keep",
            enum=["keep", "resend"],
            description="re-send the records stored with other output columns (billed) or keep them",
        ),
    },
    tags=["here", "geocoding", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def seed_addresses() -> int:
        """Create and fill the ``addresses`` table from the shipped sample, once; returns its row count."""
        from airflow_here_batch.operators.sql import get_db_hook

        hook = get_db_hook(DB_CONN_ID)
        # VARCHAR: a MySQL/MariaDB key cannot be a whole TEXT column.
        hook.run(
            f"CREATE TABLE IF NOT EXISTS {SOURCE_TABLE} "
            "(id VARCHAR(64) PRIMARY KEY, address TEXT, country_filter TEXT)"
        )
        if not hook.get_first(f"SELECT COUNT(*) FROM {SOURCE_TABLE}")[0]:
            with SAMPLE.open(encoding="utf-8", newline="") as fh:
                rows = [(r["recId"], r["q"], r["in"]) for r in csv.DictReader(fh, delimiter="|")]
            hook.insert_rows(SOURCE_TABLE, rows, target_fields=["id", "address", "country_filter"])
            print(f"seeded {SOURCE_TABLE} with {len(rows)} rows from {SAMPLE.name}")
        return int(hook.get_first(f"SELECT COUNT(*) FROM {SOURCE_TABLE}")[0])

    geocode = geocode_table(
        conn_id=DB_CONN_ID,
        source=SOURCE_TABLE,
        key_column="id",
        columns={"q": "address", "in": "country_filter"},
        constants={"limit": "3"},  # up to 3 candidates per record: ambiguous names show as such
        output_columns=OUTPUT_COLUMNS,
        target_table="addresses_geocoded",
        full_refresh="{{ params.full_refresh }}",
        dry_run="{{ params.dry_run }}",
        max_records_to_send="{{ params.max_records_to_send }}",
        on_output_columns_change="{{ params.on_output_columns_change }}",
        max_age=timedelta(days=float(MAX_AGE_DAYS)) if MAX_AGE_DAYS else None,
        destination=f"{output_uri()}/{RUN_DATE}/",
        review_table="addresses_geocoded_review",  # the records not accepted, with their top candidates
        min_accepted_share=MIN_ACCEPTED_SHARE,
        on_low_match_rate=ON_LOW_MATCH_RATE,
        outlets=[here_asset(GEOCODED_ADDRESSES)],
        tag=f"nightly-geocode-{RUN_DATE}",
        max_records_per_job=int(os.environ.get("HERE_BATCH_MAX_RECORDS_PER_JOB", "1000000")),
        max_active_jobs=int(os.environ.get("HERE_BATCH_MAX_ACTIVE_JOBS", "3")),
        poll_interval=float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "30")),
        write_batch_size=int(os.environ.get("HERE_BATCH_WRITE_BATCH_SIZE", "10000")),
        retries=int(os.environ.get("HERE_BATCH_RETRIES", "2")),
        retry_delay=timedelta(seconds=20),
    )

    seed_addresses() >> geocode
