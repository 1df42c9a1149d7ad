"""Housekeeping: delete this project's HERE batch jobs older than ``KEEP_DAYS`` days (daily, 03:00 UTC).

HERE keeps a job's input, results and errors for 30 days after creation unless it is deleted (shared
API reference §11). This DAG lists the jobs, then deletes, in one pass whatever runs were missed:

- only **this project's jobs**: their tag starts with one of ``PROJECT_TAG_PREFIXES`` (the tags the
  example DAGs give their jobs; put your own DAGs' prefixes there);
- only jobs **created more than ``KEEP_DAYS`` days ago** (``HERE_BATCH_KEEP_DAYS``, default 7, at
  least 1), measured from HERE's ``created`` time to the moment the task runs;
- only jobs that **ended**: ``completed`` or ``failure``.

The rule that keeps it safe: it never deletes a job that a task instance may still use or resume.

- ``stopped`` jobs are kept: a retry or a clear of the task instance that created one resumes it
  (``SubmitBatchJobOperator`` reattaches to its job by the task-instance fingerprint in the tag).
- ``submitted``, ``queued``, ``pending`` and ``inProgress`` jobs are kept: a task may be waiting for
  them.
- A completed job of a run that is still active (e.g. its download task is retrying) is kept as long
  as no run lasts ``KEEP_DAYS`` days: give your DAGs a ``dagrun_timeout`` shorter than ``KEEP_DAYS``
  (the example DAGs' runs last minutes).

Stopped jobs that nobody resumes are removed by HERE itself 30 days after creation.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_here_batch.operators.batch_job import DeleteBatchJobOperator, ListBatchJobsOperator

KEEP_DAYS = max(1, int(os.environ.get("HERE_BATCH_KEEP_DAYS", "7")))
#: Tag prefixes of the jobs this project's DAGs submit (the example DAGs' tags).
PROJECT_TAG_PREFIXES = ("nightly-geocode-", "revgeocode-", "lookup-", "taskflow-customers-")
#: The only statuses deleted: the job ended, nobody resumes or waits for it.
ENDED = ["completed", "failure"]

with DAG(
    dag_id="here_batch_cleanup",
    description=f"Delete this project's ended HERE batch jobs older than {KEEP_DAYS} days",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["here", "maintenance", "example"],
    doc_md=__doc__,
) as dag:
    before = ListBatchJobsOperator(task_id="list_jobs", status="any", tag_prefix=PROJECT_TAG_PREFIXES)

    @task
    def report(jobs: list[dict[str, Any]]) -> dict[str, int]:
        """Count this project's jobs per status before the clean-up."""
        counts: dict[str, int] = {}
        for job in jobs or []:
            counts[str(job.get("status"))] = counts.get(str(job.get("status")), 0) + 1
        print(f"{len(jobs or [])} jobs of this project before clean-up: {counts}")
        return counts

    delete_old = DeleteBatchJobOperator(
        task_id="delete_old_jobs",
        status=ENDED,
        tag_prefix=PROJECT_TAG_PREFIXES,
        older_than=timedelta(days=KEEP_DAYS),
    )

    report(before.output) >> delete_old
