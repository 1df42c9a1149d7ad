"""Test DAG for issue 10 §2/§4: the same scenarios waited on in poke mode and deferred, for the sensor
and the submit operator (run by tests/utils/test_waiting.py).

Each task creates its own job, then (from a timer thread, while the task waits) fails, stops or deletes
it, or makes HERE answer 401 or 503. Every task records the outcome it reached (kind and text, before
Airflow turns it into a task state) and every trigger event it received into the JSON-lines file named
by ``HERE_TEST_RESULTS_FILE``. ``HERE_TEST_EMULATOR_ROOT`` is the emulator's root URL.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.api import JobOptions
from airflow_here_batch.emulator.admin import EmulatorAdmin
from airflow_here_batch.hooks.here_batch import HereBatchHook
from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator
from airflow_here_batch.sensors.batch_job import BatchJobSensor

START = pendulum.datetime(2025, 1, 1, tz="UTC")
INLINE = "recId|q\n1|Invalidenstraße 116, 10115 Berlin\n2|10 Downing Street, London\n"
ACTION_DELAY = 1.5
_lock = threading.Lock()


def record(**entry: Any) -> None:
    path = os.environ.get("HERE_TEST_RESULTS_FILE")
    if not path:
        return
    with _lock, open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry, default=str) + "\n")


def act(action: str, job_id: str, conn_id: str) -> None:
    """Carry out ``action`` on the job ACTION_DELAY seconds from now (the task is waiting by then)."""
    if action == "none":
        return
    admin = EmulatorAdmin(os.environ["HERE_TEST_EMULATOR_ROOT"])
    hook = HereBatchHook(conn_id)

    def run() -> None:
        if action == "fail":
            admin.fail_job(job_id, reason="the backend gave up")
        elif action == "stop":
            hook.stop_job(job_id)
        elif action == "delete":
            hook.delete_job(job_id)
        elif action == "unauthorized":
            admin.inject_fault("get_job", "status", status=401, count=1)
        elif action == "outage":
            admin.inject_fault("get_job", "status", status=503, count=100_000)

    timer = threading.Timer(ACTION_DELAY, run)
    timer.daemon = True
    timer.start()


class ScenarioSensor(BatchJobSensor):
    """Creates its own job, arms the scenario's action, records the outcome it reaches."""

    def __init__(self, *, action: str, **kwargs: Any) -> None:
        super().__init__(job_id="set-in-execute", **kwargs)
        self.action = action

    def execute(self, context: Any) -> Any:
        job = HereBatchHook(self.here_conn_id).create_job(
            INLINE.encode(), options=JobOptions(service="geocode")
        )
        self.job_id = job.id
        time.sleep(0.2)  # as a slower job creation would: the sensor's own clock starts after it
        act(self.action, job.id, self.here_conn_id)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        record(task_id=self.task_id, event=event)
        return super().execute_complete(context, event)

    def _finish(self, outcome: Any) -> Any:
        record(task_id=self.task_id, kind=outcome.kind.value, text=outcome.text())
        return super()._finish(outcome)


class ScenarioSubmit(SubmitBatchJobOperator):
    """Arms the scenario's action on the job it submitted; records the outcome it reaches."""

    def __init__(self, *, action: str, **kwargs: Any) -> None:
        super().__init__(service="geocode", input=INLINE, wait_for_completion=True, **kwargs)
        self.action = action

    def _submit(self, context: Any, source: Any) -> Any:
        submitted = super()._submit(context, source)
        if submitted.created:
            act(self.action, submitted.job.id, self.here_conn_id)
        return submitted

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        record(task_id=self.task_id, event=event)
        return super().execute_complete(context, event)

    def _finish(self, context: Any, outcome: Any) -> Any:
        record(task_id=self.task_id, kind=outcome.kind.value, text=outcome.text(), job_id=outcome.job_id)
        return super()._finish(context, outcome)


#: scenario -> (action, sensor kwargs)
SENSOR_SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "failure": ("fail", {}),
    "failure_soft": ("fail", {"soft_fail": True}),
    "stopped": ("stop", {}),
    "deleted": ("delete", {}),
    "unauthorized_soft": ("unauthorized", {"soft_fail": True}),
    "timeout_soft": ("none", {"soft_fail": True, "timeout": 2.5}),
    "outage": ("outage", {"max_outage": 1.0, "soft_fail": True}),
}
#: scenario -> (action, operator kwargs)
SUBMIT_SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "submit_failure": ("fail", {}),
    "submit_execution_timeout": ("none", {"execution_timeout": timedelta(seconds=4)}),
}


with DAG(dag_id="test_ops_wait_rules", schedule=None, start_date=START, catchup=False):
    previous = None
    tasks = []
    for name, (action, extra) in SUBMIT_SCENARIOS.items():
        for mode in ("worker", "deferred"):
            tasks.append(
                ScenarioSubmit(
                    task_id=f"{name}_{mode}",
                    action=action,
                    deferrable=mode == "deferred",
                    poll_interval=0.2,
                    max_poll_interval=0.5,
                    cancel_on_kill=True,
                    trigger_rule="all_done",
                    **extra,
                )
            )
    for name, (action, extra) in SENSOR_SCENARIOS.items():  # outage last: it leaves HERE down
        for mode in ("poke", "deferred"):
            tasks.append(
                ScenarioSensor(
                    task_id=f"{name}_{mode}",
                    action=action,
                    deferrable=mode == "deferred",
                    here_conn_id="here_noretry",
                    poll_interval=0.2,
                    max_poll_interval=0.5,
                    cancel_on_kill=True,
                    trigger_rule="all_done",
                    **extra,
                )
            )
    for task in tasks:
        if previous is not None:
            previous >> task
        previous = task


def plant_jobs(**context: Any) -> list[str]:
    """Two jobs already carry the fingerprint tag of ``submit``'s task instance, as when a create
    whose answer was lost landed at HERE after a later try had uploaded again."""
    from airflow_here_batch.operators.batch_job import reattach_tag

    ti = context["ti"]
    tag = reattach_tag("one-job", ti.dag_id, "submit", ti.run_id)
    hook = HereBatchHook()
    ids = []
    for _ in range(2):
        ids.append(hook.create_job(INLINE.encode(), options=JobOptions(service="geocode", tag=tag)).id)
        time.sleep(1.1)  # HERE's creation times have one-second resolution: keep the order clear
    return ids


with DAG(dag_id="test_ops_one_job", schedule=None, start_date=START, catchup=False):
    from airflow.providers.standard.operators.python import PythonOperator

    plant = PythonOperator(task_id="plant", python_callable=plant_jobs)
    plant >> SubmitBatchJobOperator(task_id="submit", service="geocode", input=INLINE, tag="one-job")


class SubmitWithLateCreate(SubmitBatchJobOperator):
    """The first try's create gets no answer and HERE completes it 1.5 s later (emulator fault)."""

    def _submit(self, context: Any, source: Any) -> Any:
        if context["ti"].try_number == 1:
            EmulatorAdmin(os.environ["HERE_TEST_EMULATOR_ROOT"]).inject_fault("create_job", "late", delay=1.5)
        return super()._submit(context, source)


with DAG(dag_id="test_ops_late_create", schedule=None, start_date=START, catchup=False):
    SubmitWithLateCreate(
        task_id="submit",
        service="geocode",
        input=INLINE,
        tag="late-create",
        here_conn_id="here_short_timeout",  # read timeout 0.5 s: the hook looks for the job for 1 s
        wait_for_completion=True,
        poll_interval=0.2,
        retries=1,
        retry_delay=timedelta(seconds=2),  # the next try comes after HERE finished the create
    )
