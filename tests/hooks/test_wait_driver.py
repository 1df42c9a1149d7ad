"""The sync driver of the one wait flow (``HereBatchHook.drive_wait``, ``wait_outcome``, ``wait_for_job``)
against the emulator: the calls the flow asks for, one poll at a time, and ``wait_for_job``'s contract
(the job back, its errors raised, ``TimeoutError``)."""

from __future__ import annotations

import time

import pytest

from airflow_here_batch.api import JobNotFoundError, JobOptions, JobStatus, PollSchedule
from airflow_here_batch.api.outcome import ERRORS_HEAD_LINES, Deadline, JobWait, OutcomeKind
from airflow_here_batch.api.wait import wait_flow
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks.here_batch import HereBatchHook

QUICK = PollSchedule(0.02, 0.1)
LINES = ["recId|q\n"] + [f"{i}|Street {i}, Berlin\n" for i in range(1, 31)]


def submit(hook: HereBatchHook) -> str:
    return hook.create_job(LINES, options=JobOptions(service="geocode")).id


def quick_wait(job_id: str, **kwargs: object) -> JobWait:
    return JobWait(job_id, schedule=QUICK, started=time.time(), **kwargs)  # type: ignore[arg-type]


def requests(emulator: EmulatorServer, endpoint: str) -> int:
    return int(emulator.admin.stats()["requests"].get(endpoint, 0))


def test_wait_outcome_of_a_failed_job_carries_the_errors_head(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    emulator.admin.settings(records_per_second=0)
    job_id = submit(hook)
    emulator.admin.fail_job(job_id, reason="backend exploded")
    outcome = hook.wait_outcome(quick_wait(job_id))
    assert outcome.kind is OutcomeKind.FAILURE
    assert 0 < len(outcome.errors_head) <= ERRORS_HEAD_LINES
    assert requests(emulator, "errors") == 1


def test_wait_outcome_rides_out_an_outage_longer_than_the_hooks_retries(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    job_id = submit(hook)
    emulator.admin.inject_fault("get_job", "status", status=503, count=8)  # the hook retries 3 times
    outcome = hook.wait_outcome(quick_wait(job_id, max_outage=30.0))
    assert outcome.ok and emulator.admin.faults() == []


def test_wait_outcome_at_the_deadline_stops_the_job(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    emulator.admin.settings(records_per_second=0)
    job_id = submit(hook)
    wait = quick_wait(job_id, deadline=Deadline(time.time() + 0.3))
    outcome = hook.wait_outcome(wait, stop_on_timeout=True)
    assert outcome.kind is OutcomeKind.TIMEOUT and "asked to stop" in outcome.message
    assert requests(emulator, "stop_job") == 1


def test_one_poll_at_a_time(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    emulator.admin.settings(records_per_second=0)
    job_id = submit(hook)
    flow = wait_flow(quick_wait(job_id))
    before = requests(emulator, "get_job")
    assert hook.drive_wait(flow, job_id, sleep=None) is None
    assert hook.drive_wait(flow, job_id, sleep=None) is None
    assert requests(emulator, "get_job") - before == 2
    emulator.admin.settings(records_per_second=1_000_000)
    hook.wait_for_job(job_id, schedule=QUICK, timeout=30)
    outcome = hook.drive_wait(flow, job_id, sleep=None)
    assert outcome is not None and outcome.ok


def test_wait_for_job_returns_the_job_raises_errors_and_times_out(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    with pytest.raises(JobNotFoundError):
        hook.wait_for_job("JOB-00000000-0000-0000-0000-000000000000", schedule=QUICK, timeout=10)
    emulator.admin.settings(records_per_second=0)
    job_id = submit(hook)
    with pytest.raises(TimeoutError, match=r"still (queued|pending|inProgress) after 0 s"):
        hook.wait_for_job(job_id, schedule=QUICK, timeout=0.3)
    emulator.admin.fail_job(job_id)
    assert hook.wait_for_job(job_id, schedule=QUICK, timeout=10).status is JobStatus.FAILURE
    assert requests(emulator, "errors") == 0  # the job is returned; nobody asked for the report
