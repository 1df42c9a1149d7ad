"""Test DAGs for the split path (run by tests/operators/test_split.py). A per-job limit of 4 records makes
10 records three jobs. ``HERE_TEST_EMULATOR_ROOT`` is the emulator's root URL (admin API);
``HERE_TEST_SPLIT_OUT`` the folder for merged outputs."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_here_batch.operators.split import (
    MergeSplitResultsOperator,
    PlanSplitOperator,
    RunSplitPartOperator,
    split_batch_job,
)

START = pendulum.datetime(2025, 1, 1, tz="UTC")
OUT = os.environ.get("HERE_TEST_SPLIT_OUT", "/tmp/here-batch-split-test")
CITIES = ["Berlin", "London", "Paris", "Madrid", "Rome", "Vienna", "Prague", "Warsaw", "Lisbon", "Oslo"]
#: 10 records without recIds (the split generates them), and 10 with the user's own recIds.
NO_IDS = "q\n" + "".join(f"{n} Main Street, {c}\n" for n, c in enumerate(CITIES, 1))
USER_IDS = "recId|q\n" + "".join(f"cust-{n:03d}|{n} Main Street, {c}\n" for n, c in enumerate(CITIES, 1))
QUICK = {"poll_interval": 0.2, "max_poll_interval": 1.0, "part_retry_delay": timedelta(seconds=0)}
DEST = OUT + "/{{ dag.dag_id }}/{{ run_id | replace(':', '_') | replace('+', '_') }}/"


with DAG(dag_id="test_split_generated_ids", schedule=None, start_date=START, catchup=False):
    split_batch_job(group_id="geo", input=NO_IDS, max_records_per_job=4, destination=DEST, **QUICK)

with DAG(dag_id="test_split_user_ids", schedule=None, start_date=START, catchup=False):
    split_batch_job(
        group_id="geo",
        input=USER_IDS,
        max_records_per_job=4,
        output_columns=["positionLat", "positionLng", "addressLabel"],
        tag="split-user",
        **QUICK,
    )


def _admin() -> Any:
    from airflow_here_batch.emulator import EmulatorAdmin

    return EmulatorAdmin(os.environ["HERE_TEST_EMULATOR_ROOT"])


class FailSecondPartAtHere(RunSplitPartOperator):
    """On its first try, part 1's job is failed at HERE (the emulator's admin API) right after upload."""

    def _start_and_wait(self, context: Any, job: Any, deadline: Any) -> Any:
        if context["ti"].map_index == 1 and context["ti"].try_number == 1:
            _admin().fail_job(job.id, reason="injected by test_split_part_fails")
            job = self.hook.get_job(job.id)
        return super()._start_and_wait(context, job, deadline)


class LoseWorkerAfterSubmit(RunSplitPartOperator):
    """Every part's first try dies right after HERE created its job (before the wait)."""

    def _start_and_wait(self, context: Any, job: Any, deadline: Any) -> Any:
        if context["ti"].try_number == 1:
            raise RuntimeError(f"simulated worker loss after submitting {job.id}")
        return super()._start_and_wait(context, job, deadline)


def _hand_built(dag_id: str, runner: type[RunSplitPartOperator], input_text: str = NO_IDS) -> None:
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False):
        plan = PlanSplitOperator(task_id="plan", input=input_text, split_id=dag_id, max_records_per_job=4)
        run = runner.partial(
            task_id="run",
            service="geocode",
            tag=dag_id.replace("_", "-"),
            poll_interval=0.2,
            max_poll_interval=1.0,
            retries=1,
            retry_delay=timedelta(seconds=0),
            max_active_tis_per_dagrun=3,
        ).expand(part=plan.output)
        MergeSplitResultsOperator(task_id="merge", parts=run.output, split_id=dag_id)


_hand_built("test_split_part_fails", FailSecondPartAtHere)
_hand_built("test_split_worker_lost", LoseWorkerAfterSubmit)

with DAG(dag_id="test_split_too_many_jobs", schedule=None, start_date=START, catchup=False):
    split_batch_job(group_id="geo", input=NO_IDS, max_records_per_job=4, max_active_jobs=2, **QUICK)

with DAG(dag_id="test_split_bad_input", schedule=None, start_date=START, catchup=False):
    split_batch_job(group_id="geo", input=NO_IDS + "\n" + NO_IDS.split("\n", 1)[1], max_records_per_job=4)

# Issue 19: nothing to send is a clean skip of the HERE part; blank lines only, a repeated recId and a
# destination that cannot take the results fail the plan before any upload.
for _dag_id, _input in (
    ("test_split_header_only", OUT + "/header_only.csv"),  # written by the test: "recId|q\n"
    ("test_split_no_input", "{{ None }}"),  # what an extract that found nothing to send renders to
    ("test_split_blank_lines", "\n\n  \n"),
    ("test_split_repeated_recid", USER_IDS + "cust-002|2 Main Street, Bonn\n"),
):
    with DAG(dag_id=_dag_id, schedule=None, start_date=START, catchup=False):
        split_batch_job(group_id="geo", input=_input, max_records_per_job=4, destination=DEST, **QUICK)

with DAG(dag_id="test_split_destination_is_a_file", schedule=None, start_date=START, catchup=False):
    split_batch_job(
        group_id="geo", input=USER_IDS, max_records_per_job=4, destination=OUT + "/a-file/sub/", **QUICK
    )

# Run by a real scheduler and triggerer (tests/operators/test_split.py, HERE_BATCH_REAL_AIRFLOW=1): 6 parts
# of 20 records, at most 2 jobs at once.
MANY = "q\n" + "".join(f"{n} Main Street, {CITIES[n % len(CITIES)]}\n" for n in range(1, 121))
with DAG(dag_id="test_split_real_concurrency", schedule=None, start_date=START, catchup=False):
    split_batch_job(
        group_id="geo",
        input=MANY,
        max_records_per_job=20,
        max_active_jobs=2,
        poll_interval=0.5,
        max_poll_interval=1.0,
        part_retries=2,
        part_retry_delay=timedelta(seconds=1),
    )


# -------------------------------------------------------------------------------------------------
# The shared wait rules on the split path (tests/operators/test_split.py): a part's wait hits the task's
# execution_timeout (deferred and on the worker), HERE answers 401 during the wait, and no job slot
# frees up before execution_timeout. Each part records the trigger events it resumed from and the
# outcome it reached into the JSON-lines file named by HERE_TEST_RESULTS_FILE.

FOUR = "q\n" + "".join(f"{n} Main Street, {c}\n" for n, c in enumerate(CITIES[:4], 1))  # one part


def record(**entry: Any) -> None:
    import json

    path = os.environ.get("HERE_TEST_RESULTS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, default=str) + "\n")


class RecordingPart(RunSplitPartOperator):
    """Records its events and outcome; ``action="unauthorized"`` makes HERE answer one status call
    with 401 about 1.5 s after the part's job was uploaded (the part is waiting by then)."""

    def __init__(self, *, action: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.action = action

    def _submit(self, context: Any, source: Any) -> Any:
        submitted = super()._submit(context, source)
        if submitted.created and self.action == "unauthorized":
            import threading

            admin = _admin()
            timer = threading.Timer(1.5, lambda: admin.inject_fault("get_job", "status", status=401))
            timer.daemon = True
            timer.start()
        return submitted

    def part_done(self, context: Any, event: dict[str, Any]) -> Any:
        record(task_id=self.task_id, event=event)
        return super().part_done(context, event)

    def _finish(self, context: Any, outcome: Any) -> Any:
        record(
            task_id=self.task_id,
            kind=outcome.kind.value,
            reason=outcome.reason,
            text=outcome.text(),
            job_id=outcome.job_id,
        )
        return super()._finish(context, outcome)


#: scenario -> (action, operator kwargs); each runs deferred and on the worker
WAIT_SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "timeout": ("none", {"execution_timeout": timedelta(seconds=4)}),
    "unauthorized": ("unauthorized", {"here_conn_id": "here_noretry"}),
}


def _wait_rules_dag(dag_id: str, scenarios: dict[str, tuple[str, dict[str, Any]]]) -> None:
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False):
        plan = PlanSplitOperator(task_id="plan", input=FOUR, split_id=dag_id, max_records_per_job=4)
        previous: Any = None
        for name, (action, extra) in scenarios.items():
            for mode in ("deferred", "worker"):
                run = RecordingPart.partial(
                    task_id=f"{name}_{mode}",
                    action=action,
                    service="geocode",
                    deferrable=mode == "deferred",
                    poll_interval=0.2,
                    max_poll_interval=0.5,
                    cancel_on_kill=True,
                    retries=0,
                    trigger_rule="all_done",
                    **extra,
                ).expand(part=plan.output)
                if previous is not None:
                    previous >> run
                previous = run


_wait_rules_dag("test_split_wait_rules", WAIT_SCENARIOS)
# Run with the emulator refusing every start (429 E6004291, Retry-After 5 s): no slot before the deadline.
_wait_rules_dag("test_split_no_slot", {"no_slot": ("none", {"execution_timeout": timedelta(seconds=3)})})
