"""Trigger that waits for a HERE batch job in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_here_batch.api.errors import (
    HereBatchError,
    JobNotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
)
from airflow_here_batch.api.models import BatchJob, JobStatus
from airflow_here_batch.api.polling import PollSchedule, ProgressTracker
from airflow_here_batch.api.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook

#: Event statuses the trigger can fire.
EVENT_SUCCESS = "success"
EVENT_FAILURE = "failure"
EVENT_STOPPED = "stopped"
EVENT_DELETED = "deleted"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"

#: How many lines of HERE's errors report a failure event carries, and how long each may be.
ERRORS_HEAD_LINES = 10
ERRORS_HEAD_LINE_CHARS = 300
#: Seconds ``on_kill`` / the deadline path give the stop request.
STOP_TIMEOUT = 30.0


def deadline_to_epoch(deadline: float | int | str | datetime | None) -> float | None:
    """An absolute wall-clock deadline as epoch seconds (accepts epoch seconds, ISO text or datetime)."""
    if deadline is None or deadline == "":
        return None
    if isinstance(deadline, datetime):
        return deadline.timestamp()
    if isinstance(deadline, (int, float)):
        return float(deadline)
    text = str(deadline).strip()
    try:
        return float(text)
    except ValueError:
        pass
    import pendulum

    parsed = pendulum.parse(text)
    if not isinstance(parsed, datetime):
        raise ValueError(f"deadline {deadline!r} is not a date-time")
    return parsed.timestamp()


class BatchJobTrigger(BaseTrigger):
    """Poll a HERE batch job until it ends, then fire exactly one event.

    The trigger serialises only ids and settings; the job's state always comes from HERE, so a
    triggerer restart (which rebuilds the trigger from these kwargs) loses nothing.

    The event's payload is ``{"status", "job_id", "message", "job"}`` where ``job`` is the job's
    summary (:meth:`~airflow_here_batch.api.models.BatchJob.summary`) or ``None``, and ``status`` is
    ``success`` (completed, or stopped with ``allow_stopped``), ``failure`` (HERE failed the job; then
    ``errors_head`` holds the first lines of HERE's errors report), ``stopped``, ``deleted``,
    ``timeout`` (the deadline passed) or ``error`` (the API refused, e.g. unknown job, bad credentials,
    or too many consecutive transient failures).

    :param job_id: the HERE job id (``JOB-…``).
    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param poll_interval: first (and shortest) delay between two status calls, seconds.
    :param max_poll_interval: longest delay between two status calls, seconds.
    :param deadline: absolute wall-clock deadline (epoch seconds or an ISO 8601 string), or ``None``.
        When reached, a ``timeout`` event fires (and the job is stopped when ``cancel_on_kill``).
    :param cancel_on_kill: stop the HERE job when the deadline passes, or when a user kills the
        deferred task (Airflow >= 3.3 calls :meth:`on_kill`). ``cleanup()`` never stops the job.
    :param allow_stopped: treat a ``stopped`` job as done (``success`` event, partial results).
    :param max_transient_errors: consecutive polls that may fail with a transient error (429, 5xx,
        dropped connection; each already retried by the hook) before an ``error`` event fires.
    """

    def __init__(
        self,
        job_id: str,
        here_conn_id: str = "here_batch_default",
        poll_interval: float = 10.0,
        max_poll_interval: float = 300.0,
        deadline: float | str | None = None,
        cancel_on_kill: bool = True,
        allow_stopped: bool = False,
        max_transient_errors: int = 10,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.here_conn_id = here_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.deadline = deadline_to_epoch(deadline)
        self.cancel_on_kill = cancel_on_kill
        self.allow_stopped = allow_stopped
        self.max_transient_errors = int(max_transient_errors)

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
                "max_transient_errors": self.max_transient_errors,
            },
        )

    def _hook(self) -> HereBatchAsyncHook:
        from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook  # not at DAG parse time

        # Hook-level retries stay short so the trigger's own loop (which logs and honours the
        # deadline) decides how long a HERE outage is tolerated.
        policy = RetryPolicy(
            max_retries=2,
            backoff_base=min(self.poll_interval, 2.0),
            backoff_max=self.max_poll_interval,
        )
        return HereBatchAsyncHook(self.here_conn_id, retry_policy=policy)

    def _event(self, status: str, message: str, job: BatchJob | None = None, **extra: Any) -> TriggerEvent:
        payload: dict[str, Any] = {
            "status": status,
            "job_id": self.job_id,
            "message": message,
            "job": job.summary() if job is not None else None,
            **extra,
        }
        return TriggerEvent(payload)

    def _remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll HERE until the job ends or the deadline passes; yield one event and return."""
        schedule = PollSchedule(self.poll_interval, self.max_poll_interval)
        tracker = ProgressTracker()
        started = time.monotonic()
        failures = 0
        job: BatchJob | None = None
        hook = self._hook()
        try:
            async with hook:
                while True:
                    remaining = self._remaining()
                    if remaining is not None and remaining <= 0:
                        yield await self._timeout_event(hook, job)
                        return
                    try:
                        job = await hook.get_job(self.job_id)
                    except (RateLimitError, ServerError, TransportError) as exc:
                        failures += 1
                        if failures > self.max_transient_errors:
                            yield self._event(
                                EVENT_ERROR,
                                f"gave up on job {self.job_id} after {failures} failed status calls "
                                f"in a row: {exc}",
                                job,
                            )
                            return
                        # Same backoff rule as the hooks (Retry-After wins), scaled to the poll interval.
                        outage = RetryPolicy(
                            backoff_base=self.poll_interval, backoff_max=self.max_poll_interval
                        )
                        delay = outage.delay(failures, exc)
                        if remaining is not None:
                            delay = max(0.0, min(delay, remaining))
                        self.log.warning(
                            "HERE Batch: status of job %s unavailable (%s of %s tolerated), next try in "
                            "%.1f s: %s",
                            self.job_id,
                            failures,
                            self.max_transient_errors,
                            delay,
                            exc,
                        )
                        await asyncio.sleep(delay)
                        continue
                    except JobNotFoundError as exc:
                        yield self._event(EVENT_ERROR, f"job {self.job_id} does not exist at HERE: {exc}")
                        return
                    except (HereBatchError, ValueError) as exc:
                        yield self._event(EVENT_ERROR, f"could not read job {self.job_id}: {exc}", job)
                        return
                    failures = 0
                    level = tracker.observe(job, time.monotonic())
                    self.log.log(level, "HERE Batch: %s", tracker.describe(job))
                    if job.status.is_terminal or job.status is JobStatus.STOPPED:
                        yield await self._final_event(hook, job)
                        return
                    delay = schedule.next_delay(
                        time.monotonic() - started,
                        eta=tracker.eta(job),
                        remaining=self._remaining(),
                    )
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            # Triggerer shutdown, redistribution or a user kill: the job is left alone here (a user
            # kill stops it through on_kill), and the cancellation must propagate.
            self.log.info("HERE Batch: stopped watching job %s (trigger cancelled)", self.job_id)
            raise

    async def _final_event(self, hook: HereBatchAsyncHook, job: BatchJob) -> TriggerEvent:
        """The event for a job that has ended (``is_terminal``) or rests ``stopped``."""
        status = job.status
        counts = job.records
        if status is JobStatus.COMPLETED:
            return self._event(
                EVENT_SUCCESS,
                f"job {job.id} completed: {counts.succeeded} of {counts.total} records succeeded, "
                f"{counts.failed} failed, {counts.invalid} invalid",
                job,
            )
        if status is JobStatus.FAILURE:
            head: list[str] = []
            try:
                head = await hook.download_errors_head(job.id, ERRORS_HEAD_LINES)
            except HereBatchError as exc:
                self.log.warning("HERE Batch: could not read the errors report of %s: %s", job.id, exc)
            return self._event(
                EVENT_FAILURE,
                f"HERE reports job {job.id} as failed ({counts.processed}/{counts.total} records processed)",
                job,
                errors_head=[line[:ERRORS_HEAD_LINE_CHARS] for line in head],
            )
        if status is JobStatus.DELETED:
            return self._event(EVENT_DELETED, f"job {job.id} was deleted before it completed", job)
        if status is JobStatus.STOPPED:
            if self.allow_stopped:
                return self._event(
                    EVENT_SUCCESS,
                    f"job {job.id} is stopped with {counts.processed}/{counts.total} records processed; "
                    "accepted as done (allow_stopped): results are partial",
                    job,
                )
            return self._event(
                EVENT_STOPPED,
                f"job {job.id} was stopped with {counts.processed}/{counts.total} records processed "
                "(start it again to resume, or set allow_stopped=True to accept partial results)",
                job,
            )
        raise ValueError(f"job {job.id} is {status.value}, which has no final event")

    async def _timeout_event(self, hook: HereBatchAsyncHook, job: BatchJob | None) -> TriggerEvent:
        message = f"job {self.job_id} did not finish before the deadline"
        if job is not None:
            message += f" (last seen {job.status.value}, {job.records.processed}/{job.records.total} records)"
        if self.cancel_on_kill:
            stopped = await self._stop(hook)
            message += "; the job was stopped" if stopped else "; stopping the job failed"
        return self._event(EVENT_TIMEOUT, message, job)

    async def _stop(self, hook: HereBatchAsyncHook) -> bool:
        try:
            await asyncio.wait_for(hook.stop_job(self.job_id), STOP_TIMEOUT)
        except (HereBatchError, asyncio.TimeoutError) as exc:
            self.log.warning("HERE Batch: could not stop job %s: %s", self.job_id, exc)
            return False
        self.log.info("HERE Batch: asked HERE to stop job %s", self.job_id)
        return True

    async def cleanup(self) -> None:
        """Nothing to release beyond run()'s own session; never stops the job (restarts are normal)."""

    async def on_kill(self) -> None:
        """Airflow >= 3.3: a user killed the deferred task; stop the HERE job when ``cancel_on_kill``."""
        if not self.cancel_on_kill:
            self.log.info("HERE Batch: task killed; job %s left running (cancel_on_kill=False)", self.job_id)
            return
        async with self._hook() as hook:
            await self._stop(hook)
