"""Test DAGs for retries, kills, failures and secrets (run by tests/operators/test_batch_job.py and
test_sensor.py). ``HERE_TEST_EMULATOR_ROOT`` is the emulator's root URL (for its admin API)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_here_batch.operators.batch_job import (
    DeleteBatchJobOperator,
    DownloadBatchResultsOperator,
    StopBatchJobOperator,
    SubmitBatchJobOperator,
)
from airflow_here_batch.sensors.batch_job import BatchJobSensor

START = pendulum.datetime(2025, 1, 1, tz="UTC")
INLINE = "recId|q\n1|Invalidenstraße 116, 10115 Berlin\n2|10 Downing Street, London\n"
NO_RETRY_DELAY = {"retry_delay": timedelta(seconds=0)}


class SubmitThenLoseWorker(SubmitBatchJobOperator):
    """Simulates a worker lost right after HERE created the job, before the id was kept anywhere."""

    def _submit(self, context: Any, source: Any) -> Any:
        submitted = super()._submit(context, source)
        if submitted.created and context["ti"].try_number == 1:
            raise RuntimeError(f"simulated worker loss right after submitting {submitted.job.id}")
        return submitted


class SubmitThenLoseWorkerLater(SubmitBatchJobOperator):
    """Simulates a worker lost after the job id reached the task-state store (Airflow >= 3.3)."""

    def _remember(self, context: Any, job_id: str) -> None:
        super()._remember(context, job_id)
        if context["ti"].try_number == 1:
            raise RuntimeError(f"simulated worker loss after keeping {job_id}")


with DAG(dag_id="test_ops_retry_after_kill", schedule=None, start_date=START, catchup=False):
    first = SubmitThenLoseWorker(
        task_id="submit_tag_path",
        service="geocode",
        input=INLINE,
        tag="ops-kill-tag",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
        retries=1,
        **NO_RETRY_DELAY,
    )
    second = SubmitThenLoseWorkerLater(
        task_id="submit_state_path",
        service="geocode",
        input=INLINE,
        tag="ops-kill-state",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=0.2,
        retries=1,
        **NO_RETRY_DELAY,
    )
    DownloadBatchResultsOperator(
        task_id="rows_tag_path", job_id=first.output["job_id"], output_format="records"
    )
    DownloadBatchResultsOperator(
        task_id="rows_state_path", job_id=second.output["job_id"], output_format="records"
    )


with DAG(dag_id="test_ops_kill_waiting", schedule=None, start_date=START, catchup=False):
    SubmitBatchJobOperator(
        task_id="submit_and_wait",
        service="geocode",
        input=INLINE,
        tag="ops-kill-wait",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
        execution_timeout=timedelta(seconds=3),  # Airflow kills the task (on_kill) when it passes
    )


with DAG(dag_id="test_ops_invalid_input", schedule=None, start_date=START, catchup=False):
    SubmitBatchJobOperator(
        task_id="submit_bad",
        service="geocode",
        input="recId|q\n1|Berlin\n2|Main Street|Springfield\n",
        tag="ops-invalid",
    )


with DAG(dag_id="test_ops_sensor_outcomes", schedule=None, start_date=START, catchup=False):
    to_fail = SubmitBatchJobOperator(task_id="submit_to_fail", service="geocode", input=INLINE, tag="ops-f")
    to_stop = SubmitBatchJobOperator(task_id="submit_to_stop", service="geocode", input=INLINE, tag="ops-s")

    @task
    def fail_it(job_id: str) -> str:
        from airflow_here_batch.emulator import EmulatorAdmin

        EmulatorAdmin(os.environ["HERE_TEST_EMULATOR_ROOT"]).fail_job(job_id, reason="backend exploded")
        return job_id

    failed_id = fail_it(to_fail.output["job_id"])
    stop = StopBatchJobOperator(
        task_id="stop", job_id=to_stop.output["job_id"], wait_for_stop=True, poll_interval=0.2, timeout=30
    )
    sensors = [
        BatchJobSensor(task_id="failure_poke", job_id=failed_id, poll_interval=0.2, timeout=30),
        BatchJobSensor(
            task_id="failure_deferred", job_id=failed_id, deferrable=True, poll_interval=0.2, timeout=30
        ),
        BatchJobSensor(
            task_id="failure_soft", job_id=failed_id, poll_interval=0.2, timeout=30, soft_fail=True
        ),
    ]
    stopped = [
        BatchJobSensor(
            task_id="stopped_default", job_id=to_stop.output["job_id"], poll_interval=0.2, timeout=30
        ),
        BatchJobSensor(
            task_id="stopped_allowed",
            job_id=to_stop.output["job_id"],
            poll_interval=0.2,
            timeout=30,
            allow_stopped=True,
        ),
    ]
    stop >> stopped
    BatchJobSensor(
        task_id="unknown_job",
        job_id="JOB-00000000-0000-0000-0000-000000000000",
        poll_interval=0.2,
        timeout=30,
    )
    to_hold = SubmitBatchJobOperator(task_id="submit_to_hold", service="geocode", input=INLINE, tag="ops-h")
    BatchJobSensor(
        task_id="timeout_deferred",
        job_id=to_hold.output["job_id"],
        deferrable=True,
        poll_interval=0.2,
        timeout=1,
        soft_fail=True,
    )


with DAG(dag_id="test_ops_secrets", schedule=None, start_date=START, catchup=False):
    submitted = SubmitBatchJobOperator(
        task_id="submit",
        service="geocode",
        input=INLINE,
        tag="ops-secrets",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.2,
    )
    waited = BatchJobSensor(
        task_id="wait", job_id=submitted.output["job_id"], deferrable=True, poll_interval=0.2, timeout=60
    )
    waited >> DownloadBatchResultsOperator(
        task_id="download", job_id=submitted.output["job_id"], output_format="records"
    )
    DeleteBatchJobOperator(
        task_id="delete_missing", job_id="JOB-00000000-0000-0000-0000-000000000000", ignore_missing=False
    )
