"""Smoke check of your HERE account from Airflow itself (manual trigger, bills two records).

The same check as the ``here-batch-smoke`` command, run by a worker with the ``here_batch_default``
connection, so it also proves that the workers reach HERE: ``/version``, a gzip upload of a geocode job
of two records, the wait, the results and errors downloads, and the job's deletion. HERE bills the two
records, so the task refuses to run unless the run is triggered with the conf
``{"yes_bill_two_records": true}``::

    airflow dags trigger here_batch_smoke_check --conf '{"yes_bill_two_records": true}'

The task's return value (XCom) is the report: ``{"ok", "base_url", "job_id", "records_billed",
"seconds", "steps"}``; a failed step fails the task with the step's message (which names the request's
``X-Request-ID`` and HERE's ``correlationId``).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, task

POLL_INTERVAL = float(os.environ.get("HERE_BATCH_POLL_INTERVAL", "5"))

with DAG(
    dag_id="here_batch_smoke_check",
    description="Check the HERE account end to end with a job of two records (billed)",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"yes_bill_two_records": Param(False, type="boolean", description="HERE bills 2 records")},
    tags=["here", "smoke", "example"],
    doc_md=__doc__,
) as dag:

    @task(retries=0)
    def smoke_check(params: dict | None = None) -> dict:
        from airflow_here_batch.hooks.here_batch import HereBatchHook
        from airflow_here_batch.smoke import run_smoke_check

        hook = HereBatchHook()
        report = run_smoke_check(
            hook,
            confirm_billing=bool((params or {}).get("yes_bill_two_records")),
            poll_interval=POLL_INTERVAL,
        )
        if not report.ok:
            name, _, detail = report.steps[-1]
            raise RuntimeError(f"HERE smoke check failed at {name}: {detail}")
        return report.to_dict()

    smoke_check()
