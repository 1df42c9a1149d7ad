"""Trigger that waits for a HERE batch job in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_here_batch.api.errors import HereBatchError
from airflow_here_batch.api.outcome import (
    ERRORS_HEAD_LINE_CHARS,
    ERRORS_HEAD_LINES,
    EXECUTION_TIMEOUT,
    WAIT_TIMEOUT,
    Deadline,
    JobOutcome,
    JobWait,
    OutcomeKind,
    to_epoch,
)
from airflow_here_batch.api.polling import PollSchedule
from airflow_here_batch.api.retry import RetryPolicy
from airflow_here_batch.api.wait import (
    READ_ERRORS_HEAD,
    READ_STATUS,
    STOP_JOB,
    WaitFlow,
    note_stop,
    wait_flow,
)

if TYPE_CHECKING:
    from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook

#: Event statuses the trigger can fire (:class:`~airflow_here_batch.api.outcome.OutcomeKind`).
EVENT_SUCCESS = OutcomeKind.SUCCESS.value
EVENT_FAILURE = OutcomeKind.FAILURE.value
EVENT_STOPPED = OutcomeKind.STOPPED.value
EVENT_DELETED = OutcomeKind.DELETED.value
EVENT_TIMEOUT = OutcomeKind.TIMEOUT.value
EVENT_ERROR = OutcomeKind.ERROR.value

__all__ = [
    "ERRORS_HEAD_LINES",
    "ERRORS_HEAD_LINE_CHARS",
    "BatchJobTrigger",
    "deadline_to_epoch",
    "drive_wait",
    "stop_job",
]

#: Seconds ``on_kill`` / the deadline path give the stop request.
STOP_TIMEOUT = 30.0


def deadline_to_epoch(deadline: float | int | str | datetime | None) -> float | None:
    """An absolute wall-clock deadline as epoch seconds (epoch seconds, ISO text or datetime; a time
    without a zone is UTC). See :func:`airflow_here_batch.api.outcome.to_epoch`."""
    return to_epoch(deadline)


class BatchJobTrigger(BaseTrigger):
    """Poll a HERE batch job until it ends, then fire exactly one event.

    The trigger serialises only ids and settings; the job's state always comes from HERE, so a
    triggerer restart (which rebuilds the trigger from these kwargs) loses nothing. What a state means
    is decided by :mod:`airflow_here_batch.api.outcome`, the same rule the sensor and the operator
    apply when they wait on a worker.

    The event's payload is :meth:`JobOutcome.to_event`: ``{"status", "job_id", "message", "job",
    "errors_head", "reason"}``, where ``status`` is ``success`` (completed, or stopped with
    ``allow_stopped``), ``failure`` (HERE failed the job; ``errors_head`` holds the first lines of its
    errors report), ``stopped``, ``deleted``, ``timeout`` (the deadline passed; ``reason`` says whether
    it was the wait's ``timeout`` or the task's ``execution_timeout``) or ``error`` (HERE refused: unknown
    job, bad credentials; or no usable answer for ``max_outage`` seconds). Every text in it is free of
    secrets (scrubbed where HERE's answers enter the code).

    :param job_id: the HERE job id (``JOB-…``).
    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param poll_interval: first (and shortest) delay between two status calls, seconds.
    :param max_poll_interval: longest delay between two status calls, seconds.
    :param deadline: absolute wall-clock deadline (epoch seconds, ISO 8601 text or a datetime; naive
        times are UTC), or ``None``. When reached, a ``timeout`` event fires (and the job is stopped
        when ``cancel_on_kill``).
    :param cancel_on_kill: stop the HERE job when the deadline passes, or when a user kills the
        deferred task (Airflow >= 3.3 calls :meth:`on_kill`). ``cleanup()`` never stops the job.
    :param allow_stopped: treat a ``stopped`` job as done (``success`` event, partial results).
    :param max_outage: seconds without one usable answer (429, 5xx, dropped connections, garbled
        bodies; each call already retried by the hook) after which an ``error`` event fires.
    :param deadline_reason: ``timeout`` or ``execution_timeout``: which limit ``deadline`` is.
    :param max_transient_errors: ignored; accepted so triggers serialised by older versions load.
    """

    def __init__(
        self,
        job_id: str,
        here_conn_id: str = "here_batch_default",
        poll_interval: float = 10.0,
        max_poll_interval: float = 300.0,
        deadline: float | str | datetime | None = None,
        cancel_on_kill: bool = True,
        allow_stopped: bool = False,
        max_outage: float = 3600.0,  # DEFAULT_MAX_OUTAGE, as a literal (benchmarks read the defaults)
        deadline_reason: str = "timeout",
        max_transient_errors: int | None = None,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.here_conn_id = here_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.deadline = deadline_to_epoch(deadline)
        self.cancel_on_kill = cancel_on_kill
        self.allow_stopped = allow_stopped
        self.max_outage = float(max_outage)
        self.deadline_reason = EXECUTION_TIMEOUT if deadline_reason == EXECUTION_TIMEOUT else WAIT_TIMEOUT

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "here_conn_id": self.here_conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
                "allow_stopped": self.allow_stopped,
                "max_outage": self.max_outage,
                "deadline_reason": self.deadline_reason,
            },
        )

    def _hook(self) -> HereBatchAsyncHook:
        from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook  # not at DAG parse time

        # Hook-level retries stay short so the wait's outage rule (which logs and honours the
        # deadline) decides how long a HERE outage is tolerated.
        policy = RetryPolicy(
            max_retries=2,
            backoff_base=min(self.poll_interval, 2.0),
            backoff_max=self.max_poll_interval,
        )
        return HereBatchAsyncHook(self.here_conn_id, retry_policy=policy, deadline=self.deadline)

    def _wait(self) -> JobWait:
        return JobWait(
            self.job_id,
            schedule=PollSchedule(self.poll_interval, self.max_poll_interval),
            deadline=None if self.deadline is None else Deadline(self.deadline, self.deadline_reason),
            max_outage=self.max_outage,
            allow_stopped=self.allow_stopped,
            started=time.time(),
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll HERE until the job ends or the deadline passes; yield one event and return."""
        flow = wait_flow(self._wait(), stop_on_timeout=self.cancel_on_kill, log=self.log)
        hook = self._hook()
        try:
            async with hook:
                outcome = await drive_wait(flow, self.job_id, hook)
            yield TriggerEvent(outcome.to_event())
        except asyncio.CancelledError:
            # Triggerer shutdown, redistribution or a user kill: the job is left alone here (a user
            # kill stops it through on_kill), and the cancellation must propagate.
            self.log.info("HERE Batch: stopped watching job %s (trigger cancelled)", self.job_id)
            raise

    async def cleanup(self) -> None:
        """Nothing to release beyond run()'s own session; never stops the job (restarts are normal)."""

    async def on_kill(self) -> None:
        """Airflow >= 3.3: a user killed the deferred task; stop the HERE job when ``cancel_on_kill``."""
        if not self.cancel_on_kill:
            self.log.info("HERE Batch: task killed; job %s left running (cancel_on_kill=False)", self.job_id)
            return
        hook = self._hook()
        async with hook:
            note_stop(self.log, self.job_id, await stop_job(hook, self.job_id))


async def stop_job(hook: HereBatchAsyncHook, job_id: str) -> BaseException | None:
    """Ask HERE to stop the job, within :data:`STOP_TIMEOUT` seconds; the error, or None when accepted.

    The deadline has passed (or the task was killed): the stop request gets its own short deadline,
    not the wait's.
    """
    hook.deadline = None
    try:
        await asyncio.wait_for(hook.stop_job(job_id), STOP_TIMEOUT)
    except (HereBatchError, asyncio.TimeoutError) as exc:
        return exc
    return None


async def drive_wait(flow: WaitFlow, job_id: str, hook: HereBatchAsyncHook) -> JobOutcome:
    """The async driver of a :data:`~airflow_here_batch.api.wait.WaitFlow` (the sync one is
    :meth:`airflow_here_batch.hooks.here_batch.HereBatchHook.drive_wait`):
    make the calls the flow asks for on ``hook`` (an open session), sleep without blocking the loop
    when it says so, and return its outcome. Only I/O here; every rule is the flow's.
    """
    answer: Any = None
    while True:
        step = flow.send(answer)
        answer = None
        if step is READ_STATUS:
            try:
                answer = await hook.get_job(job_id)
            except HereBatchError as exc:
                answer = exc
        elif step is READ_ERRORS_HEAD:
            try:
                answer = await hook.download_errors_head(job_id, ERRORS_HEAD_LINES)
            except HereBatchError as exc:
                answer = exc
        elif step is STOP_JOB:
            answer = await stop_job(hook, job_id)
        elif isinstance(step, JobOutcome):
            return step
        else:
            await asyncio.sleep(step)
