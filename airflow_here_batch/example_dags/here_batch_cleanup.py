"""Housekeeping: delete old HERE batch jobs (daily at 03:00 UTC).

HERE keeps finished jobs and their result files until they are deleted (see the retention rules in
the API reference). This DAG lists what is there, then bulk-deletes:

- the nightly geocoding job of ``KEEP_DAYS`` days ago (by its tag ``nightly-geocode-<date>``, any
  status: the results were downloaded long ago);
- every job that ended in ``failure`` (nothing to download from them);
- every ``stopped`` job older runs left behind.

Each delete is one ``DELETE /batch/jobs?status=...&tag=...`` call; nothing to delete is not an error.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_here_batch.operators.batch_job import DeleteBatchJobOperator, ListBatchJobsOperator

KEEP_DAYS = int(os.environ.get("HERE_BATCH_KEEP_DAYS", "7"))
with DAG(
    dag_id="here_batch_cleanup",
    description="Delete old HERE batch jobs",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["here", "maintenance", "example"],
    doc_md=__doc__,
) as dag:
    before = ListBatchJobsOperator(task_id="list_jobs", status="any")

    @task
    def report(jobs: list[dict[str, Any]]) -> dict[str, int]:
        """Count the jobs per status before the clean-up."""
        counts: dict[str, int] = {}
        for job in jobs or []:
            counts[str(job.get("status"))] = counts.get(str(job.get("status")), 0) + 1
        print(f"{len(jobs or [])} jobs before clean-up: {counts}")
        return counts

    old_nightly = DeleteBatchJobOperator(
        task_id="delete_old_nightly_jobs",
        status="any",
        tag=(
            "nightly-geocode-"
            f"{{{{ macros.ds_add((dag_run.logical_date or dag_run.run_after) | ds, -{KEEP_DAYS}) }}}}"
        ),
    )
    failed = DeleteBatchJobOperator(task_id="delete_failed_jobs", status="failure")
    stopped = DeleteBatchJobOperator(task_id="delete_stopped_jobs", status="stopped")

    report(before.output) >> [old_nightly, failed, stopped]
