"""The one wait (``api.wait.wait_flow``) driven with canned answers on a fake clock: every branch, no I/O.

The drivers in the hook (sync) and the trigger (async) only make the calls these tests answer by hand;
the same flow runs against the emulator in ``tests/triggers`` and ``tests/hooks``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_here_batch.api.errors import (
    AuthenticationError,
    JobNotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    error_from_response,
    scrub,
)
from airflow_here_batch.api.models import BatchJob
from airflow_here_batch.api.outcome import (
    ERRORS_HEAD_LINES,
    EXECUTION_TIMEOUT,
    Deadline,
    JobOutcome,
    JobWait,
    OutcomeKind,
)
from airflow_here_batch.api.polling import PollSchedule
from airflow_here_batch.api.wait import (
    READ_ERRORS_HEAD,
    READ_STATUS,
    STOP_JOB,
    WaitFlow,
    ended_flow,
    note_stop,
    wait_flow,
)

HRN = "hrn:here:service::olp-here:search-geocode-7"
KEY = "k3y-Secret-0123456789abcdef"
START = 1_000_000.0


def job(status: str, processed: int = 4) -> BatchJob:
    counts = {"total": 10, "processed": processed}
    return BatchJob.from_dict({"id": "JOB-1", "serviceHrn": HRN, "status": status, "records": counts})


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Log:
    """Records what the flow logs: ``(level, text)``."""

    lines: list[tuple[int, str]] = field(default_factory=list)

    def log(self, level: int, msg: str, *args: Any) -> None:
        self.lines.append((level, msg % args))

    def info(self, msg: str, *args: Any) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, msg, *args)

    def texts(self, level: int) -> list[str]:
        return [text for lvl, text in self.lines if lvl == level]


@dataclass
class Run:
    outcome: JobOutcome | None
    steps: list[Any]
    sleeps: list[float]


def drive(
    flow: WaitFlow,
    clock: Clock,
    statuses: Iterable[BatchJob | BaseException],
    *,
    head: list[str] | BaseException | None = None,
    stop: BaseException | None = None,
    one_poll: bool = False,
    call_seconds: float = 0.0,
) -> Run:
    """A driver with canned answers: each status call takes ``call_seconds`` on the clock, a sleep
    moves the clock on; ``one_poll`` stops at the first sleep, as a sensor's poke does."""
    answers = iter(statuses)
    steps: list[Any] = []
    sleeps: list[float] = []
    answer: Any = None
    for _ in range(10_000):
        step = flow.send(answer)
        steps.append(step)
        answer = None
        if step is READ_STATUS:
            clock.now += call_seconds
            answer = next(answers)
        elif step is READ_ERRORS_HEAD:
            answer = head if head is not None else []
        elif step is STOP_JOB:
            answer = stop
        elif isinstance(step, JobOutcome):
            return Run(step, steps, sleeps)
        else:
            assert isinstance(step, float) and step >= 0.0, step
            if one_poll:
                return Run(None, steps, sleeps)
            sleeps.append(step)
            clock.now += step
    raise AssertionError("the flow never ended")


def forever(answer: BatchJob | BaseException) -> Iterable[BatchJob | BaseException]:
    while True:
        yield answer


def new_wait(**kwargs: Any) -> JobWait:
    kwargs.setdefault("schedule", PollSchedule(10.0, 60.0))
    kwargs.setdefault("started", START)
    return JobWait("JOB-1", **kwargs)


# -- HERE's verdicts -----------------------------------------------------------------------------------


def test_completed_after_polls_with_progress_lines() -> None:
    clock, log = Clock(), Log()
    run = drive(
        wait_flow(new_wait(), log=log, clock=clock),
        clock,
        [job("queued", 0), job("inProgress", 2), job("inProgress", 5), job("completed", 10)],
    )
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.SUCCESS
    assert run.outcome.job is not None and run.outcome.job["status"] == "completed"
    assert run.steps.count(READ_STATUS) == 4 and READ_ERRORS_HEAD not in run.steps
    assert len(run.sleeps) == 3 and all(10.0 <= s <= 60.0 for s in run.sleeps)
    progress = log.texts(logging.INFO)
    assert len(progress) == 4 and "job JOB-1 inProgress: 5/10 records (50.0%)" in progress[2]


def test_an_unchanged_answer_logs_at_debug() -> None:
    clock, log = Clock(), Log()
    drive(wait_flow(new_wait(), log=log, clock=clock), clock, [job("queued", 0)] * 3 + [job("completed")])
    assert len(log.texts(logging.DEBUG)) == 2 and len(log.texts(logging.INFO)) == 2


def test_failure_asks_for_the_errors_head_once_and_carries_it() -> None:
    clock = Clock()
    lines = [f"line {i}" for i in range(30)]
    run = drive(wait_flow(new_wait(), clock=clock), clock, [job("inProgress"), job("failure")], head=lines)
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.FAILURE and run.outcome.soft
    assert run.steps.count(READ_ERRORS_HEAD) == 1
    assert run.outcome.errors_head == tuple(lines[:ERRORS_HEAD_LINES])
    assert "First lines of HERE's errors report" in run.outcome.text()


def test_failure_whose_errors_head_cannot_be_read_still_ends_as_failure() -> None:
    clock, log = Clock(), Log()
    run = drive(wait_flow(new_wait(), log=log, clock=clock), clock, [job("failure")], head=ServerError("503"))
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.FAILURE
    assert run.outcome.errors_head == ()
    assert any("could not read the errors report of JOB-1" in t for t in log.texts(logging.WARNING))


def test_failure_without_errors_head_makes_no_request() -> None:
    clock = Clock()
    run = drive(wait_flow(new_wait(), errors_head=False, clock=clock), clock, [job("failure")])
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.FAILURE
    assert READ_ERRORS_HEAD not in run.steps


@pytest.mark.parametrize(
    ("allow_stopped", "kind", "words"),
    [(False, OutcomeKind.STOPPED, "allow_stopped=True"), (True, OutcomeKind.SUCCESS, "partial")],
)
def test_stopped(allow_stopped: bool, kind: OutcomeKind, words: str) -> None:
    clock = Clock()
    run = drive(wait_flow(new_wait(allow_stopped=allow_stopped), clock=clock), clock, [job("stopped")])
    assert run.outcome is not None and run.outcome.kind is kind and words in run.outcome.message


def test_deleted() -> None:
    clock = Clock()
    run = drive(wait_flow(new_wait(), clock=clock), clock, [job("inProgress"), job("deleted")])
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.DELETED and run.outcome.soft


def test_ended_flow_on_its_own_for_a_job_found_ended() -> None:
    clock = Clock()
    run = drive(ended_flow(new_wait(), job("failure")), clock, [], head=["bad row"])
    assert run.steps[0] is READ_ERRORS_HEAD
    assert run.outcome is not None and run.outcome.errors_head == ("bad row",)


# -- errors: the outage rule, refusals, Retry-After ---------------------------------------------------------


def test_transient_errors_within_max_outage_do_not_end_the_wait() -> None:
    clock, log = Clock(), Log()
    answers = [ServerError("503", status=503), TransportError("reset"), job("inProgress"), job("completed")]
    run = drive(wait_flow(new_wait(max_outage=60.0), log=log, clock=clock), clock, answers)
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.SUCCESS
    warnings = log.texts(logging.WARNING)
    assert len(warnings) == 2 and "status of job JOB-1 unavailable for 0 s (max_outage 60 s)" in warnings[0]
    # Backoff from the retry policy: poll_interval, doubling, with jitter in [half, full].
    assert 5.0 <= run.sleeps[0] <= 10.0 and 10.0 <= run.sleeps[1] <= 20.0


def test_transient_errors_beyond_max_outage_end_with_an_error() -> None:
    clock = Clock()
    wait = new_wait(max_outage=100.0)
    run = drive(wait_flow(wait, clock=clock), clock, forever(ServerError("HTTP 503", status=503)))
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.ERROR and not run.outcome.soft
    assert "no usable answer for 100 s (max_outage)" in run.outcome.message
    assert clock.now == START + 100.0  # the last sleep ends exactly when the outage limit is reached
    assert run.steps.count(READ_STATUS) >= 4  # backoffs of at most 10, 20 and 40 s before the limit


def test_a_good_answer_ends_an_outage() -> None:
    clock = Clock()
    outage = [ServerError("503", status=503)] * 3
    answers = [*outage, job("inProgress"), *outage, job("completed")]
    run = drive(wait_flow(new_wait(max_outage=70.0), clock=clock), clock, answers, call_seconds=10.0)
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.SUCCESS


@pytest.mark.parametrize(
    "error", [AuthenticationError("HTTP 401", status=401), JobNotFoundError("HTTP 404 unknown job")]
)
def test_a_refusal_ends_the_wait_at_once(error: Exception) -> None:
    clock = Clock()
    run = drive(wait_flow(new_wait(), clock=clock), clock, [job("inProgress"), error])
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.ERROR and not run.outcome.soft
    assert run.steps.count(READ_STATUS) == 2 and len(run.sleeps) == 1
    assert run.outcome.job is not None  # the last job seen


def test_retry_after_sets_the_delay_above_max_poll_interval() -> None:
    clock = Clock()
    answers = [RateLimitError("429", retry_after=120.0)] * 2 + [job("completed")]
    run = drive(wait_flow(new_wait(schedule=PollSchedule(1.0, 5.0)), clock=clock), clock, answers)
    assert run.sleeps == [120.0, 120.0]
    assert run.outcome is not None and run.outcome.ok


def test_retry_after_never_sleeps_past_the_deadline() -> None:
    clock = Clock()
    wait = new_wait(deadline=Deadline(START + 50.0))
    run = drive(wait_flow(wait, clock=clock), clock, forever(RateLimitError("429", retry_after=120.0)))
    assert run.sleeps == [50.0]
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.TIMEOUT


def test_error_texts_reach_the_outcome_scrubbed() -> None:
    body = f'{{"title": "Unauthorized", "cause": "apiKey={KEY} refused"}}'.encode()
    error = error_from_response(401, {}, body, operation="get job JOB-1", scrub=lambda t: scrub(t, [KEY]))
    clock, log = Clock(), Log()
    run = drive(wait_flow(new_wait(), log=log, clock=clock), clock, [error])
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.ERROR
    assert KEY not in str(run.outcome.to_event()) and KEY not in str(log.lines)


# -- the deadline ---------------------------------------------------------------------------------------


def test_deadline_ends_with_timeout_and_never_sleeps_past_it() -> None:
    clock = Clock()
    wait = new_wait(deadline=Deadline(START + 95.0))
    run = drive(wait_flow(wait, clock=clock), clock, forever(job("inProgress")))
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.TIMEOUT and run.outcome.soft
    assert clock.now == START + 95.0 and STOP_JOB not in run.steps
    assert "did not finish before its timeout (last seen inProgress, 4/10 records)" in run.outcome.message


@pytest.mark.parametrize(
    ("stop", "words"), [(None, "the job was asked to stop"), (ServerError("503"), "stopping the job failed")]
)
def test_deadline_with_stop_on_timeout_asks_to_stop(stop: BaseException | None, words: str) -> None:
    clock, log = Clock(), Log()
    wait = new_wait(deadline=Deadline(START + 30.0, EXECUTION_TIMEOUT))
    flow = wait_flow(wait, stop_on_timeout=True, log=log, clock=clock)
    run = drive(flow, clock, forever(job("inProgress")), stop=stop)
    assert run.steps.count(STOP_JOB) == 1 and run.steps[-2] is STOP_JOB
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.TIMEOUT
    assert words in run.outcome.message
    assert run.outcome.reason == EXECUTION_TIMEOUT and not run.outcome.soft


def test_a_wait_past_its_deadline_makes_no_call() -> None:
    clock = Clock()
    run = drive(wait_flow(new_wait(deadline=Deadline(START - 1.0)), clock=clock), clock, [])
    assert run.steps == [run.outcome] and run.outcome is not None and run.outcome.job is None


def test_outage_never_outlasts_the_deadline() -> None:
    clock = Clock()
    wait = new_wait(deadline=Deadline(START + 40.0), max_outage=3600.0)
    run = drive(wait_flow(wait, clock=clock), clock, forever(ServerError("503", status=503)))
    assert run.outcome is not None and run.outcome.kind is OutcomeKind.TIMEOUT and clock.now == START + 40.0


# -- one poll at a time (a sensor's poke) -------------------------------------------------------------------


def test_one_poll_at_a_time_keeps_the_outage_across_polls() -> None:
    clock = Clock()
    flow = wait_flow(new_wait(max_outage=100.0), clock=clock)
    first = drive(flow, clock, [ServerError("503", status=503)], one_poll=True)
    assert first.outcome is None and first.steps[0] is READ_STATUS
    clock.now += 60.0  # Airflow's poke_interval, not the flow's delay
    assert drive(flow, clock, [ServerError("503", status=503)], one_poll=True).outcome is None
    clock.now += 60.0
    last = drive(flow, clock, [ServerError("503", status=503)], one_poll=True)
    assert last.outcome is not None and "no usable answer for 120 s" in last.outcome.message


def test_one_poll_at_a_time_ends_on_heres_verdict() -> None:
    clock = Clock()
    flow = wait_flow(new_wait(), clock=clock)
    assert drive(flow, clock, [job("inProgress")], one_poll=True).outcome is None
    done = drive(flow, clock, [job("completed")], one_poll=True)
    assert done.outcome is not None and done.outcome.ok


def test_note_stop() -> None:
    log = Log()
    assert note_stop(log, "JOB-1", None) is True
    assert note_stop(log, "JOB-1", ServerError("HTTP 503")) is False
    assert log.lines == [
        (logging.INFO, "HERE Batch: asked HERE to stop job JOB-1"),
        (logging.WARNING, "HERE Batch: could not stop job JOB-1: HTTP 503"),
    ]
