"""Initial load: geocode a large address file of any size with the HERE Batch API v7.

HERE takes at most 1,000,000 records and 500 MB per job. A first load of an address table is often
several million rows, so this DAG splits it (see ``docs/split.md``):

1. ``geocode.plan`` reads the file once, streaming, checks every line against HERE's input rules
   (nothing is uploaded if a line is bad: the task fails naming the line and the fix) and writes parts
   of at most ``HERE_BATCH_MAX_RECORDS_PER_JOB`` records (and 500 MB) to the provider's base location
   (``[here_batch] base_location``: object storage, so any executor can run the next tasks).
2. ``geocode.run`` is mapped over the parts: one HERE job per part, at most ``HERE_BATCH_MAX_ACTIVE_JOBS``
   running at once (HERE's 429 "too many concurrent jobs" waits and retries), each waited for in the
   triggerer, its results downloaded next to its part. A retry reattaches to the part's job; clearing
   one mapped task instance re-runs that part alone.
3. ``geocode.merge`` writes one ``results.csv`` and one ``errors.txt`` in the input's record order to
   ``$HERE_BATCH_OUTPUT_DIR/initial-load/<run>/`` and removes the parts.
4. ``summarize`` prints the counts and where the files are.

Trigger with ``{"dry_run": true}`` to validate the file and see the planned jobs (records per job, the
estimated cost with ``[here_batch] price_per_1000_records``) with no job created; ``max_records_to_send``
fails the run before any upload when the file holds more records (``docs/cost.md``).

Records without a ``recId`` get their line number in the whole file (header not counted), so results
join back to the input. Settings (environment variables, read when the file is parsed):
``HERE_BATCH_INITIAL_LOAD_INPUT`` (a path or an object-storage URI such as ``s3://bucket/addresses.csv``,
``.gz`` accepted; default: the shipped sample of 322 addresses), ``HERE_BATCH_INPUT_CONN_ID`` (its
connection), ``HERE_BATCH_MAX_RECORDS_PER_JOB`` (default 1,000,000), ``HERE_BATCH_MAX_ACTIVE_JOBS``
(default 3), ``HERE_BATCH_OUTPUT_DIR``, ``HERE_BATCH_POLL_INTERVAL`` (seconds, default 30).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_here_batch.files.locations import base_location_uri
from airflow_here_batch.operators.split import split_batch_job

INPUT = os.environ.get("HERE_BATCH_INITIAL_LOAD_INPUT") or str(
    Path(__file__).parent / "data" / "addresses_default.csv"
)
OUTPUT_DIR = os.environ.get("HERE_BATCH_OUTPUT_DIR") or f"{base_location_uri()}/output"
MAX_RECORDS_PER_JOB = int(os.environ.get("HERE_BATCH_MAX_RECORDS_PER_JOB", "1000000"))
MAX_ACTIVE_JOBS = int(os.environ.get("HERE_BATCH_MAX_ACTIVE_JOBS", "3"))
POLL_INTERVAL = float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "30"))

with DAG(
    dag_id="here_batch_initial_load",
    description="Initial load: a large address file split into HERE jobs, run side by side, merged",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "dry_run": Param(False, type="boolean", description="validate and plan the jobs, send nothing"),
        "max_records_to_send": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            description="the most records this run may send (empty: [here_batch] max_records_to_send)",
        ),
    },
    tags=["here", "geocoding", "example"],
    doc_md=__doc__,
) as dag:
    geocode = split_batch_job(
        group_id="geocode",
        input=INPUT,
        input_conn_id=os.environ.get("HERE_BATCH_INPUT_CONN_ID") or None,
        service="geocode",
        output_columns=["positionLat", "positionLng", "addressLabel", "addressCountryCode", "resultType"],
        destination=OUTPUT_DIR + "/initial-load/{{ run_id | replace(':', '_') | replace('+', '_') }}/",
        tag="initial-load",
        max_records_per_job=MAX_RECORDS_PER_JOB,
        max_active_jobs=MAX_ACTIVE_JOBS,
        poll_interval=POLL_INTERVAL,
        dry_run="{{ params.dry_run }}",
        max_records_to_send="{{ params.max_records_to_send }}",
    )

    @task
    def summarize(merged: dict[str, Any]) -> dict[str, Any]:
        """Counts and locations of the merged output."""
        counts = merged["records"]
        print(
            f"{counts['total']} records in {merged['parts']} jobs: {counts['succeeded']} succeeded, "
            f"{counts['failed']} failed; results: {merged['results']}; errors: {merged['errors']}"
        )
        return {
            "parts": merged["parts"],
            "records": counts,
            "results": merged["results"],
            "errors": merged["errors"],
        }

    summarize(dag.get_task("geocode.merge").output)
