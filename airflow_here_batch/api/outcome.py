"""What a HERE job state means for a waiting task: one rule for the operator, the sensor and the trigger.

Every wait mode (worker poke, reschedule, deferral to the triggerer) runs the one wait flow
(:func:`airflow_here_batch.api.wait.wait_flow`), which feeds HERE's answers and errors to
:class:`JobWait` and ends with one :class:`JobOutcome`:

========== ==================================================================== =====
kind       when                                                                 soft
========== ==================================================================== =====
success    ``completed`` (or ``stopped`` with ``allow_stopped``)                 -
failure    HERE failed the job (``failure``); carries the errors report's head  yes
stopped    the job rests ``stopped`` and ``allow_stopped`` is off               yes
deleted    the job was deleted before it completed                              yes
timeout    the wait's own ``timeout`` passed                                    yes
timeout    the task's ``execution_timeout`` passed (``reason="execution_timeout"``) no
error      HERE refused (bad credentials, unknown job, bad request) or an outage no
           lasted longer than ``max_outage``
========== ==================================================================== =====

"soft" means ``soft_fail=True`` may turn it into a skip: only HERE's verdicts on the job itself (and the
sensor's own timeout, as for every Airflow sensor) are soft; a technical error never is.

Transient errors (:func:`is_transient`: 429, 5xx, a dropped or timed-out connection, an answer that is
not valid JSON) never end a wait by themselves: the wait ends on them only when they have lasted
``max_outage`` seconds without one good answer (the outage rule), and never later than the deadline.
HERE's ``Retry-After`` always sets the next delay, bounded only by the deadline.

No I/O here: callers pass the clock (wall-clock epoch seconds) and HERE's answers in.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_here_batch.api.errors import (
    HereBatchError,
    JobNotFoundError,
    MalformedAnswerError,
    RateLimitError,
    ServerError,
    TooManyJobsError,
    TransportError,
)
from airflow_here_batch.api.models import BatchJob, JobStatus
from airflow_here_batch.api.polling import PollSchedule, ProgressTracker
from airflow_here_batch.api.retry import RetryPolicy

#: How many lines of HERE's errors report an outcome carries, and how long each may be.
ERRORS_HEAD_LINES = 10
ERRORS_HEAD_LINE_CHARS = 300
#: Default of the outage rule: a wait gives up after this many seconds without one good answer.
DEFAULT_MAX_OUTAGE = 3600.0

#: ``JobOutcome.reason`` of a timeout caused by the task's ``execution_timeout``.
EXECUTION_TIMEOUT = "execution_timeout"
#: ``JobOutcome.reason`` of a timeout caused by the wait's own ``timeout``.
WAIT_TIMEOUT = "timeout"


class JobWaitError(HereBatchError):
    """A wait ended on a technical error (HERE refused, an outage too long, ``execution_timeout``).

    Not an ``AirflowException`` on purpose: Airflow's sensors turn those into a skip under
    ``soft_fail`` when resumed after a deferral, but never this, so a bad credential fails the task
    in every wait mode.
    """


class OutcomeKind(str, enum.Enum):
    """How a wait ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    STOPPED = "stopped"
    DELETED = "deleted"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class JobOutcome:
    """How a wait ended, in serialisable form (a trigger event carries :meth:`to_event`).

    :param kind: see :class:`OutcomeKind`.
    :param job_id: HERE's job id.
    :param message: one sentence for the task log and the exception (already free of secrets: every
        server text is scrubbed where it enters, in :func:`~airflow_here_batch.api.errors.
        error_from_response`).
    :param job: the job's summary (:meth:`BatchJob.summary`) when HERE answered at least once.
    :param errors_head: ``failure`` only: the first lines of HERE's errors report.
    :param reason: ``timeout`` only: :data:`WAIT_TIMEOUT` or :data:`EXECUTION_TIMEOUT`.
    """

    kind: OutcomeKind
    job_id: str
    message: str
    job: Mapping[str, Any] | None = None
    errors_head: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def soft(self) -> bool:
        """Whether ``soft_fail`` may skip instead of failing (HERE's verdicts and the wait's timeout)."""
        if self.kind is OutcomeKind.TIMEOUT:
            return self.reason != EXECUTION_TIMEOUT
        return self.kind in (OutcomeKind.FAILURE, OutcomeKind.STOPPED, OutcomeKind.DELETED)

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS

    def text(self) -> str:
        """The message, followed by the errors report's first lines when there are any."""
        if not self.errors_head:
            return self.message
        return self.message + "\nFirst lines of HERE's errors report:\n  " + "\n  ".join(self.errors_head)

    def to_event(self) -> dict[str, Any]:
        """The trigger event payload: ``{"status", "job_id", "message", "job", "errors_head", "reason"}``."""
        return {
            "status": self.kind.value,
            "job_id": self.job_id,
            "message": self.message,
            "job": dict(self.job) if self.job is not None else None,
            "errors_head": list(self.errors_head),
            "reason": self.reason,
        }

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> JobOutcome:
        """Read a trigger event back (also events of older versions, which lack some keys)."""
        try:
            kind = OutcomeKind(str(event.get("status")))
        except ValueError:
            kind = OutcomeKind.ERROR
        return cls(
            kind=kind,
            job_id=str(event.get("job_id") or ""),
            message=str(event.get("message") or f"HERE batch job ended with {event.get('status')}"),
            job=event.get("job"),
            errors_head=tuple(str(line) for line in event.get("errors_head") or ()),
            reason=event.get("reason") or (WAIT_TIMEOUT if kind is OutcomeKind.TIMEOUT else None),
        )


def is_transient(error: BaseException) -> bool:
    """Whether an error says nothing about the job and may pass: 429, 5xx, no usable answer.

    The one classification every wait uses; the hooks' per-request retries use the same classes
    (:meth:`~airflow_here_batch.api.retry.RetryPolicy.is_retryable`).
    """
    if isinstance(error, TooManyJobsError):
        return True
    return isinstance(error, (RateLimitError, ServerError, TransportError, MalformedAnswerError))


def needs_errors_head(job: BatchJob) -> bool:
    """A failed job's outcome carries the errors report's first lines: fetch them before :func:`verdict`."""
    return job.status is JobStatus.FAILURE


def is_finished(job: BatchJob) -> bool:
    """Whether a wait ends on this status: ``completed``, ``failure``, ``deleted`` or ``stopped``."""
    return job.status.is_terminal or job.status is JobStatus.STOPPED


def verdict(
    job: BatchJob, *, allow_stopped: bool = False, errors_head: Iterable[str] = ()
) -> JobOutcome | None:
    """HERE's answer as an outcome, or ``None`` while the job still runs (``submitted`` … ``inProgress``).

    :param allow_stopped: a ``stopped`` job counts as done (partial results).
    :param errors_head: for a ``failure``: the errors report's first lines (trimmed here).
    """
    counts = job.records
    summary = job.summary()
    if job.status is JobStatus.COMPLETED:
        return JobOutcome(
            OutcomeKind.SUCCESS,
            job.id,
            f"job {job.id} completed: {counts.succeeded} of {counts.total} records succeeded, "
            f"{counts.failed} failed, {counts.invalid} invalid",
            summary,
        )
    if job.status is JobStatus.FAILURE:
        head = tuple(str(line)[:ERRORS_HEAD_LINE_CHARS] for line in list(errors_head)[:ERRORS_HEAD_LINES])
        return JobOutcome(
            OutcomeKind.FAILURE,
            job.id,
            f"HERE reports job {job.id} as failed ({counts.processed}/{counts.total} records processed)",
            summary,
            head,
        )
    if job.status is JobStatus.DELETED:
        return JobOutcome(
            OutcomeKind.DELETED, job.id, f"job {job.id} was deleted before it completed", summary
        )
    if job.status is JobStatus.STOPPED:
        if allow_stopped:
            return JobOutcome(
                OutcomeKind.SUCCESS,
                job.id,
                f"job {job.id} is stopped with {counts.processed}/{counts.total} records processed; "
                "accepted as done (allow_stopped): results are partial",
                summary,
            )
        return JobOutcome(
            OutcomeKind.STOPPED,
            job.id,
            f"job {job.id} was stopped with {counts.processed}/{counts.total} records processed "
            "(start it again to resume, or set allow_stopped=True to accept partial results)",
            summary,
        )
    return None


def error_outcome(job_id: str, error: BaseException, job: BatchJob | None = None) -> JobOutcome:
    """A refusal that ends the wait (unknown job, bad credentials, bad request, an outage too long)."""
    if isinstance(error, JobNotFoundError):
        message = f"job {job_id} does not exist at HERE: {error}"
    else:
        message = f"could not read job {job_id}: {error}"
    return JobOutcome(OutcomeKind.ERROR, job_id, message, job.summary() if job is not None else None)


def outage_outcome(job_id: str, error: BaseException, seconds: float, job: BatchJob | None) -> JobOutcome:
    return JobOutcome(
        OutcomeKind.ERROR,
        job_id,
        f"gave up on job {job_id}: HERE gave no usable answer for {seconds:.0f} s (max_outage): {error}",
        job.summary() if job is not None else None,
    )


def timeout_outcome(
    job_id: str, job: BatchJob | None, *, reason: str = WAIT_TIMEOUT, stopped: bool | None = None
) -> JobOutcome:
    """The deadline passed.

    :param reason: :data:`WAIT_TIMEOUT` (the wait's ``timeout``) or :data:`EXECUTION_TIMEOUT`.
    :param stopped: ``True`` the job was asked to stop, ``False`` stopping failed, ``None`` not tried.
    """
    what = "the task's execution_timeout" if reason == EXECUTION_TIMEOUT else "its timeout"
    message = f"job {job_id} did not finish before {what}"
    if job is not None:
        message += f" (last seen {job.status.value}, {job.records.processed}/{job.records.total} records)"
    if stopped is True:
        message += "; the job was asked to stop"
    elif stopped is False:
        message += "; stopping the job failed"
    return JobOutcome(
        OutcomeKind.TIMEOUT, job_id, message, job.summary() if job is not None else None, reason=reason
    )


# -------------------------------------------------------------------------------------------------
# Times and deadlines


def to_epoch(value: float | int | str | datetime | None) -> float | None:
    """An absolute time as epoch seconds: epoch numbers, ISO 8601 text or a datetime.

    A time without a zone (naive ``datetime`` or ISO text) is read as UTC, the same for both forms, as
    Airflow stores every time in UTC.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"deadline {value!r} is not a time")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    import pendulum

    parsed = pendulum.parse(text, tz="UTC")  # a zone in the text wins; none means UTC
    if not isinstance(parsed, datetime):
        raise ValueError(f"deadline {value!r} is not a date-time")
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a wait must end (epoch seconds) and why (:data:`WAIT_TIMEOUT` / :data:`EXECUTION_TIMEOUT`)."""

    at: float
    reason: str = WAIT_TIMEOUT


def wait_deadline(
    now: float,
    *,
    timeout: float | None = None,
    task_start: float | str | datetime | None = None,
    execution_timeout: float | None = None,
) -> Deadline | None:
    """The earlier of ``now + timeout`` and ``task_start + execution_timeout`` (seconds), or None.

    Airflow 3 does not apply ``execution_timeout`` to a deferred task: the trigger's deadline carries it.
    """
    candidates: list[Deadline] = []
    if timeout is not None:
        candidates.append(Deadline(now + float(timeout), WAIT_TIMEOUT))
    if execution_timeout is not None:
        start = to_epoch(task_start) if task_start is not None else None
        candidates.append(
            Deadline((now if start is None else start) + float(execution_timeout), EXECUTION_TIMEOUT)
        )
    if not candidates:
        return None
    return min(candidates, key=lambda d: d.at)


# -------------------------------------------------------------------------------------------------
# The wait itself


@dataclass(slots=True)  # a triggerer holds one per waiting job
class JobWait:
    """The state of one wait: its rules, fed HERE's answers and the clock.

    :func:`airflow_here_batch.api.wait.wait_flow` is the one loop that drives it (every wait mode
    runs that flow); the steps, per poll::

        if wait.expired(now):          -> stop the job when asked to; wait.timed_out(stopped)
        status call failed with e:     -> wait.failed(e, now) ends the wait, or sleep
                                          wait.delay_after_error(e, now)
        status call answered job:      -> wait.observe(job, now) (log level); if wait.ended(job, now):
                                          the errors head if needs_errors_head(job), wait.outcome(job, head)
                                          else sleep wait.next_delay(now)

    :param job_id: HERE's job id.
    :param schedule: the poll schedule.
    :param deadline: when the wait ends with a ``timeout`` outcome (None: never).
    :param max_outage: seconds of transient errors in a row (no good answer in between) after which the
        wait ends with an ``error`` outcome; never beyond ``deadline``.
    :param allow_stopped: a ``stopped`` job counts as done.
    :param backoff_max: longest backoff between two failed polls (a ``Retry-After`` may be longer).
    :param started: when the wait began (epoch seconds).
    """

    job_id: str
    schedule: PollSchedule = field(default_factory=PollSchedule)
    deadline: Deadline | None = None
    max_outage: float = DEFAULT_MAX_OUTAGE
    allow_stopped: bool = False
    backoff_max: float | None = None
    started: float = 0.0
    tracker: ProgressTracker = field(default_factory=ProgressTracker)
    last_job: BatchJob | None = None
    outage_since: float | None = None
    failures: int = 0

    def remaining(self, now: float) -> float | None:
        return None if self.deadline is None else self.deadline.at - now

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline.at

    def ended(self, job: BatchJob, now: float) -> bool:
        """Record a good answer (ends an outage); True when the wait ends on it."""
        self.last_job = job
        self.outage_since = None
        self.failures = 0
        return is_finished(job)

    def observe(self, job: BatchJob, now: float) -> int:
        """The log level the job's progress line deserves (see :meth:`ProgressTracker.observe`)."""
        return self.tracker.observe(job, now)

    def outcome(self, job: BatchJob, errors_head: Iterable[str] = ()) -> JobOutcome:
        result = verdict(job, allow_stopped=self.allow_stopped, errors_head=errors_head)
        if result is None:
            raise ValueError(f"job {job.id} is {job.status.value}: the wait has not ended")
        return result

    def failed(self, error: BaseException, now: float) -> JobOutcome | None:
        """A poll failed: the outcome that ends the wait, or None to try again (transient, within
        ``max_outage``)."""
        if not is_transient(error):
            return error_outcome(self.job_id, error, self.last_job)
        if self.outage_since is None:
            self.outage_since = now
        self.failures += 1
        if now - self.outage_since >= self.max_outage:
            return outage_outcome(self.job_id, error, now - self.outage_since, self.last_job)
        return None

    def delay_after_error(self, error: BaseException, now: float, rng: random.Random | None = None) -> float:
        """Backoff before the next poll after a transient error; ``Retry-After`` wins, the deadline and
        the outage limit bound it."""
        cap = self.backoff_max if self.backoff_max is not None else self.schedule.max_poll_interval
        policy = RetryPolicy(backoff_base=self.schedule.poll_interval, backoff_max=cap)
        here_error = error if isinstance(error, HereBatchError) else None
        delay = policy.delay(max(1, self.failures), here_error, rng=rng)
        bounds = [delay]
        if (remaining := self.remaining(now)) is not None:
            bounds.append(max(0.0, remaining))
        if self.outage_since is not None:
            bounds.append(max(0.0, self.outage_since + self.max_outage - now))
        return min(bounds)

    def next_delay(self, now: float) -> float:
        """Delay before the next poll after a good answer (the poll schedule, bounded by the deadline)."""
        eta = self.tracker.eta(self.last_job) if self.last_job is not None else None
        return self.schedule.next_delay(now - self.started, eta=eta, remaining=self.remaining(now))

    def timed_out(self, *, stopped: bool | None = None) -> JobOutcome:
        reason = self.deadline.reason if self.deadline is not None else WAIT_TIMEOUT
        return timeout_outcome(self.job_id, self.last_job, reason=reason, stopped=stopped)


__all__ = [
    "DEFAULT_MAX_OUTAGE",
    "ERRORS_HEAD_LINES",
    "ERRORS_HEAD_LINE_CHARS",
    "EXECUTION_TIMEOUT",
    "WAIT_TIMEOUT",
    "Deadline",
    "JobOutcome",
    "JobWait",
    "JobWaitError",
    "OutcomeKind",
    "error_outcome",
    "is_finished",
    "is_transient",
    "needs_errors_head",
    "outage_outcome",
    "timeout_outcome",
    "to_epoch",
    "verdict",
    "wait_deadline",
]
