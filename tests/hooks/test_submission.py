"""The submit steps (hooks/submission.py) against the emulator: reattach or create, upload, start, stop a
second job under the tag, the verdict on an ended job, the start within HERE's job slots."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from airflow_here_batch.api import JobOptions, JobStatus, PollSchedule
from airflow_here_batch.api.inputs import InputValidationError
from airflow_here_batch.api.outcome import Deadline, OutcomeKind
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks.here_batch import HereBatchHook
from airflow_here_batch.hooks.submission import (
    JobSubmission,
    NoSlot,
    SubmitInput,
    ended_outcome,
    slot_hook,
    try_start,
)

INLINE = "recId|q\n1|Invalidenstraße 116, 10115 Berlin\n2|10 Downing Street, London\n"
FAST = PollSchedule(poll_interval=0.05, max_poll_interval=0.2)
TAG = "sub-test_af0123456789abcdef"
BAD = "recId|q\n1|Berlin\n" + "7" * 600 + "|Paris\n2|London\n"  # line 3: a recId over 512 characters


def _submission(hook: HereBatchHook, **options: object) -> JobSubmission:
    return JobSubmission(hook, JobOptions(service="geocode", tag=TAG, **options))  # type: ignore[arg-type]


def _tagged(emulator: EmulatorServer, tag: str = TAG) -> list[dict[str, object]]:
    return [j for j in emulator.admin.jobs() if j.get("tag") == tag]


def test_submit_creates_one_job_under_its_tag_and_a_second_submit_reattaches(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    first = _submission(hook).submit(SubmitInput(INLINE))
    assert first.created and first.rejected == 0 and first.rejects_path is None
    assert first.job.tag == TAG
    # start_job: HERE runs it (a job created with startJob=false would stay submitted)
    assert hook.wait_for_job(first.job.id, schedule=FAST, timeout=30).status is JobStatus.COMPLETED
    again = _submission(hook).submit(SubmitInput(INLINE))
    assert not again.created and again.job.id == first.job.id
    assert len(_tagged(emulator)) == 1  # nothing uploaded twice


def test_the_kept_id_wins_over_the_tag(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    kept = hook.create_job(INLINE.encode(), options=JobOptions(service="geocode", tag="elsewhere"))
    submitted = _submission(hook).submit(SubmitInput(INLINE), stored_job_id=kept.id)
    assert not submitted.created and submitted.job.id == kept.id
    assert _tagged(emulator) == []


def test_without_reattach_every_submit_creates_a_job(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    options = JobOptions(service="geocode", tag="plain-tag")  # type: ignore[arg-type]
    ids = {JobSubmission(hook, options, reattach=False).submit(SubmitInput(INLINE)).job.id for _ in range(2)}
    assert len(ids) == 2 and len(_tagged(emulator, "plain-tag")) == 2


def test_a_failed_earlier_job_is_replaced(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    first = _submission(hook).submit(SubmitInput(INLINE)).job
    emulator.admin.fail_job(first.id, reason="injected")
    again = _submission(hook).submit(SubmitInput(INLINE))
    assert again.created and again.job.id != first.id


def test_a_submitted_earlier_job_is_started_only_when_start_job(hook: HereBatchHook) -> None:
    created = _submission(hook, start_job=False).submit(SubmitInput(INLINE))
    assert created.created and created.job.status is JobStatus.SUBMITTED
    kept = _submission(hook, start_job=False).previous_job()
    assert kept is not None and kept.id == created.job.id and kept.status is JobStatus.SUBMITTED
    started = _submission(hook).previous_job()
    assert started is not None and started.id == created.job.id and started.status is not JobStatus.SUBMITTED


def test_a_second_job_under_the_tag_is_stopped_and_reported(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    emulator.admin.settings(records_per_second=0)  # hold: both jobs keep running
    options = JobOptions(service="geocode", tag=TAG)
    jobs = [hook.create_job(INLINE.encode(), options=options) for _ in range(2)]
    submission = _submission(hook)
    job = submission.previous_job()
    assert job is not None and job.id in {j.id for j in jobs}
    other = next(j.id for j in jobs if j.id != job.id)
    assert submission.extra_jobs == [other]
    assert submission.stop_extra_jobs(keep=job.id) == []  # reported once
    assert emulator.admin.stats()["requests"].get("stop_job", 0) == 1  # the other one only
    assert hook.get_job(job.id).status is not JobStatus.STOPPED


def test_a_bad_input_creates_no_job(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    with pytest.raises(InputValidationError):
        _submission(hook).submit(SubmitInput(BAD))
    assert emulator.admin.jobs() == []


def test_skipped_records_go_to_the_rejects_location(hook: HereBatchHook, tmp_path: Path) -> None:
    from airflow_here_batch.files.locations import storage_path

    target = storage_path(tmp_path / "rejects.jsonl")
    source = SubmitInput(BAD, on_bad_record="skip", rejects_location=target)
    submitted = _submission(hook).submit(source)
    assert submitted.created and submitted.rejected == 1
    assert submitted.rejects_path == str(target) and '"line": 3' in target.read_text()


def test_ended_outcome_is_heres_verdict(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    done = _submission(hook).submit(SubmitInput(INLINE)).job
    done = hook.wait_for_job(done.id, schedule=FAST, timeout=30)
    assert ended_outcome(hook, done, allow_stopped=False).kind is OutcomeKind.SUCCESS
    failed = hook.create_job(INLINE.encode(), options=JobOptions(service="geocode"))
    emulator.admin.fail_job(failed.id, reason="injected")
    outcome = ended_outcome(hook, hook.get_job(failed.id), allow_stopped=False)
    assert outcome.kind is OutcomeKind.FAILURE and outcome.job_id == failed.id
    emulator.admin.settings(records_per_second=0)
    running = hook.create_job(INLINE.encode(), options=JobOptions(service="geocode"))
    with pytest.raises(ValueError, match="not ended"):
        ended_outcome(hook, hook.get_job(running.id), allow_stopped=False)


def test_try_start_reports_no_free_slot_with_a_delay_within_the_deadline(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    emulator.admin.settings(max_running_jobs=0)  # no free slot
    second = hook.create_job(INLINE.encode(), options=JobOptions(service="geocode", start_job=False))
    hook.deadline = time.time() + 60
    starter = slot_hook(hook)  # the same connection and deadline; 429 E6004291 not retried in place
    assert starter.here_conn_id == hook.here_conn_id and starter.deadline == hook.deadline
    assert starter.settings.retry.retry_too_many_jobs is False
    answer = try_start(starter, second.id, deadline=None, retry_delay=1.0)
    assert isinstance(answer, NoSlot) and answer.delay == 5.0  # the emulator's Retry-After
    soon = Deadline(time.time() + 2.0)
    answer = try_start(starter, second.id, deadline=soon, retry_delay=1.0)
    assert isinstance(answer, NoSlot) and 0.0 <= answer.delay <= 2.0
    emulator.admin.settings(max_running_jobs=2)
    started = try_start(starter, second.id, deadline=None, retry_delay=1.0)
    assert not isinstance(started, NoSlot) and started.status is not JobStatus.SUBMITTED


def test_steps_log_to_the_given_logger(hook: HereBatchHook, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("task-under-test")
    with caplog.at_level(logging.INFO, logger="task-under-test"):
        JobSubmission(hook, JobOptions(service="geocode", tag=TAG), log=log).submit(SubmitInput(INLINE))
        JobSubmission(hook, JobOptions(service="geocode", tag=TAG), log=log).submit(SubmitInput(INLINE))
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "task-under-test")
    assert "submitted job" in text and f"found by its tag {TAG}" in text
