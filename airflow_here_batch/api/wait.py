"""The wait for a HERE job to end, written once as a protocol: every waiter drives this generator.

Modelled on httpx's ``auth_flow``: :func:`wait_flow` is a generator that *yields what to do next* and
*receives the answer*; the drivers only do the I/O and know nothing of the rules:

=========================== ========================================== ================================
the flow yields             the driver does                            and sends back
=========================== ========================================== ================================
:data:`READ_STATUS`         ``get_job(job_id)``                        the ``BatchJob``, or the
                                                                       ``HereBatchError`` it raised
:data:`READ_ERRORS_HEAD`    ``download_errors_head(job_id,             the lines (``list[str]``), or
                            ERRORS_HEAD_LINES)``                       the error
:data:`STOP_JOB`            ``stop_job(job_id)``                       anything (``None``), or the error
a number (``float``)        sleeps that many seconds                   ``None``
a :class:`JobOutcome`       ends the wait with it (the flow is done)   -
=========================== ========================================== ================================

The drivers: :meth:`airflow_here_batch.hooks.here_batch.HereBatchHook.drive_wait`
(sync: the hook's ``wait_outcome``/``wait_for_job``, the submit operator's worker wait, and the
sensor's poke, which drives the same flow up to its first sleep and keeps it for the next poke) and
``airflow_here_batch.triggers.batch_job.drive_wait`` (async, in the triggerer).

The rules (what a state means, the outage rule, ``Retry-After`` and backoff, the deadline) are
:class:`~airflow_here_batch.api.outcome.JobWait`'s; this module only orders the steps, logs the
progress lines and asks for the errors report's head. No I/O here: the clock is a parameter
(``time.time`` by default, wall-clock epoch seconds) and log lines go to the logger passed in.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol

from airflow_here_batch.api.models import BatchJob
from airflow_here_batch.api.outcome import ERRORS_HEAD_LINES, JobOutcome, JobWait, needs_errors_head


class WaitRequest(enum.Enum):
    """A call the flow asks its driver to make (about ``JobWait.job_id``)."""

    #: ``GET /jobs/{id}``; answer: the ``BatchJob`` or the ``HereBatchError``.
    STATUS = "status"
    #: the first :data:`~airflow_here_batch.api.outcome.ERRORS_HEAD_LINES` lines of the errors report;
    #: answer: ``list[str]`` or the ``HereBatchError``.
    ERRORS_HEAD = "errors_head"
    #: ``PUT /jobs/{id}/stop`` (the deadline passed with ``stop_on_timeout``); answer: ``None`` (or the
    #: job) when HERE accepted, else the error.
    STOP = "stop"


READ_STATUS = WaitRequest.STATUS
READ_ERRORS_HEAD = WaitRequest.ERRORS_HEAD
STOP_JOB = WaitRequest.STOP

#: What the flow yields: a request, a sleep in seconds (a ``float``), or the final outcome.
WaitStep = WaitRequest | float | JobOutcome
#: What a driver sends back: ``None`` (after a sleep or a stop), a ``BatchJob``, the errors head lines,
#: or the exception the call raised.
WaitAnswer = BatchJob | list[str] | BaseException | None
WaitFlow = Generator[WaitStep, Any, None]


class WaitLog(Protocol):
    """What the flow logs through: a ``logging.Logger`` (or Airflow's task/trigger logger)."""

    def log(self, level: int, msg: str, *args: Any) -> Any: ...

    def info(self, msg: str, *args: Any) -> Any: ...

    def warning(self, msg: str, *args: Any) -> Any: ...


_log = logging.getLogger(__name__)


def note_stop(log: WaitLog, job_id: str, error: BaseException | None) -> bool:
    """Log how a stop request went (``error`` is what it raised, or ``None``); True when HERE accepted.

    The one wording of that line, for the flow's deadline path and the tasks' and trigger's ``on_kill``.
    """
    if error is not None:
        log.warning("HERE Batch: could not stop job %s: %s", job_id, error)
        return False
    log.info("HERE Batch: asked HERE to stop job %s", job_id)
    return True


def ended_flow(wait: JobWait, job: BatchJob, *, log: WaitLog = _log, errors_head: bool = True) -> WaitFlow:
    """The end of a wait on a job that has ended (:func:`~airflow_here_batch.api.outcome.is_finished`):
    ask for the errors report's head when the job failed, then yield the outcome.

    Also usable on its own, for a job found ended before any wait began.

    :param errors_head: ask for the errors report's head of a failed job (off: the outcome has none).
    """
    head: Any = ()
    if errors_head and needs_errors_head(job):
        answer = yield READ_ERRORS_HEAD
        if isinstance(answer, BaseException):
            log.warning("HERE Batch: could not read the errors report of %s: %s", job.id, answer)
        else:
            head = answer
    yield wait.outcome(job, head)


def wait_flow(
    wait: JobWait,
    *,
    stop_on_timeout: bool = False,
    errors_head: bool = True,
    log: WaitLog = _log,
    clock: Callable[[], float] = time.time,
) -> WaitFlow:
    """The wait for ``wait.job_id`` to end, as a generator of :data:`WaitStep` (see the module doc).

    Each poll: past the deadline -> (stop the job when ``stop_on_timeout``) the ``timeout`` outcome;
    else read the status. A failed read goes to :meth:`JobWait.failed` (an ``error`` outcome for a
    refusal or an outage longer than ``max_outage``; else a warning and the backoff /``Retry-After``
    sleep of :meth:`JobWait.delay_after_error`). A good answer logs the progress line (INFO or DEBUG,
    :meth:`JobWait.observe`), and either ends the wait (:func:`ended_flow`) or sleeps
    :meth:`JobWait.next_delay`. The last step is always a :class:`JobOutcome`.

    A driver that stops at the first sleep has made one poll (a sensor's poke); sending ``None`` to
    the same flow later goes on with the next poll, with the outage and progress state kept.

    :param stop_on_timeout: ask HERE to stop the job when the deadline passes.
    :param errors_head: see :func:`ended_flow`.
    :param log: where the progress and warning lines go.
    :param clock: wall-clock epoch seconds (``time.time``).
    """
    while True:
        if wait.expired(clock()):
            stopped = None
            if stop_on_timeout:
                answer = yield STOP_JOB
                stopped = note_stop(log, wait.job_id, answer if isinstance(answer, BaseException) else None)
            yield wait.timed_out(stopped=stopped)
            return
        answer = yield READ_STATUS
        now = clock()
        if isinstance(answer, BaseException):
            outcome = wait.failed(answer, now)
            if outcome is not None:
                yield outcome
                return
            log.warning(
                "HERE Batch: status of job %s unavailable for %.0f s (max_outage %.0f s): %s",
                wait.job_id,
                now - (wait.outage_since or now),
                wait.max_outage,
                answer,
            )
            yield wait.delay_after_error(answer, now)
            continue
        log.log(wait.observe(answer, now), "HERE Batch: %s", wait.tracker.describe(answer))
        if wait.ended(answer, now):
            yield from ended_flow(wait, answer, log=log, errors_head=errors_head)
            return
        yield wait.next_delay(now)


__all__ = [
    "ERRORS_HEAD_LINES",
    "READ_ERRORS_HEAD",
    "READ_STATUS",
    "STOP_JOB",
    "WaitAnswer",
    "WaitFlow",
    "WaitLog",
    "WaitRequest",
    "WaitStep",
    "ended_flow",
    "note_stop",
    "wait_flow",
]
