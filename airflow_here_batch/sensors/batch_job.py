"""Sensor that waits for a HERE batch job to end: poke, reschedule or deferrable."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_here_batch import DEFAULT_CONN_ID
from airflow_here_batch.api.errors import (
    HereBatchError,
    JobNotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
)
from airflow_here_batch.api.models import BatchJob, JobStatus
from airflow_here_batch.api.polling import ProgressTracker
from airflow_here_batch.version_compat import AirflowException, AirflowFailException, AirflowSensorTimeout

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_here_batch.hooks.here_batch import HereBatchHook

__all__ = ["BatchJobSensor"]


def _default_deferrable() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


class BatchJobSensor(BaseSensorOperator):
    """Wait until a HERE batch job has ended; succeed when it completed.

    * ``completed`` -> success; the task returns the job summary (XCom).
    * ``failure`` -> fails with HERE's details and the first lines of the errors report.
    * ``deleted`` -> fails.
    * ``stopped`` -> fails, unless ``allow_stopped=True`` (then success: partial results).

    Failures are raised as ``AirflowFailException`` (no retry: HERE's verdict will not change), so
    ``soft_fail=True`` turns them, and a timeout, into a skip. An unknown job fails the same way.
    Transient API errors (429, 5xx, dropped connections) are retried by the hook and, in
    deferrable mode, by the trigger; they never end the wait on their own.

    :param job_id: the HERE job id, e.g. ``"{{ ti.xcom_pull('submit')['job_id'] }}"``. (templated)
    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param poll_interval: seconds between two status calls (``poke_interval``); in deferrable mode the
        first delay, growing toward ``max_poll_interval`` with HERE's progress.
    :param max_poll_interval: longest delay between two status calls in deferrable mode.
    :param allow_stopped: accept a stopped job as done.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param cancel_on_kill: in deferrable mode, stop the job when the wait times out or a user kills the
        task (Airflow >= 3.3). Off by default: the sensor does not own the job.
    :param timeout: longest wait in seconds (``BaseSensorOperator``), also the trigger's deadline.
    :param soft_fail: skip instead of failing.
    :param mode: ``poke`` or ``reschedule`` (ignored when deferrable).
    """

    template_fields: Sequence[str] = ("job_id",)
    ui_color = "#c5e8f7"

    def __init__(
        self,
        *,
        job_id: str,
        here_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float | None = None,
        max_poll_interval: float = 300.0,
        allow_stopped: bool = False,
        deferrable: bool | None = None,
        cancel_on_kill: bool = False,
        **kwargs: Any,
    ) -> None:
        if poll_interval is not None:
            kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.job_id = job_id
        self.here_conn_id = here_conn_id
        self.max_poll_interval = max(float(max_poll_interval), float(self.poke_interval))
        self.allow_stopped = allow_stopped
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.cancel_on_kill = cancel_on_kill
        self._tracker = ProgressTracker()

    @cached_property
    def hook(self) -> HereBatchHook:
        from airflow_here_batch.hooks.here_batch import HereBatchHook  # not at DAG parse time

        return HereBatchHook(self.here_conn_id)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        try:
            job = self.hook.get_job(self.job_id)
        except JobNotFoundError as exc:
            raise AirflowFailException(f"job {self.job_id} does not exist at HERE: {exc}") from None
        except (RateLimitError, ServerError, TransportError) as exc:
            # Still failing after the hook's retries: keep waiting; the sensor's timeout bounds it.
            self.log.warning("HERE Batch: status of job %s unavailable, will ask again: %s", self.job_id, exc)
            return False
        level = self._tracker.observe(job, time.monotonic())
        self.log.log(level, "HERE Batch: %s", self._tracker.describe(job))
        return self._verdict(job)

    def _verdict(self, job: BatchJob) -> bool | PokeReturnValue:
        counts = job.records
        if job.status is JobStatus.COMPLETED or (job.status is JobStatus.STOPPED and self.allow_stopped):
            return PokeReturnValue(is_done=True, xcom_value=job.summary())
        if job.status is JobStatus.FAILURE:
            message = f"HERE reports job {job.id} as failed ({counts.processed}/{counts.total} processed)"
            try:
                head = self.hook.download_errors_head(job.id, 10)
            except HereBatchError as exc:
                head = []
                self.log.warning("HERE Batch: could not read the errors report of %s: %s", job.id, exc)
            if head:
                message += "\nFirst lines of HERE's errors report:\n  " + "\n  ".join(head)
            raise AirflowFailException(message)
        if job.status is JobStatus.DELETED:
            raise AirflowFailException(f"job {job.id} was deleted before it completed")
        if job.status is JobStatus.STOPPED:
            raise AirflowFailException(
                f"job {job.id} was stopped with {counts.processed}/{counts.total} records processed "
                "(resume it, or set allow_stopped=True to accept partial results)"
            )
        return False

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # One look first: a job that has already ended needs no trigger.
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        from airflow_here_batch.triggers.batch_job import BatchJobTrigger

        deadline = time.time() + float(self.timeout) if self.timeout is not None else None
        self.defer(
            trigger=BatchJobTrigger(
                job_id=self.job_id,
                here_conn_id=self.here_conn_id,
                poll_interval=float(self.poke_interval),
                max_poll_interval=self.max_poll_interval,
                deadline=deadline,
                cancel_on_kill=self.cancel_on_kill,
                allow_stopped=self.allow_stopped,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + 300) if self.timeout is not None else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: return the job summary, or fail/skip with HERE's details."""
        from airflow_here_batch.triggers.batch_job import EVENT_SUCCESS, EVENT_TIMEOUT

        status = event.get("status")
        message = str(event.get("message") or status)
        if status == EVENT_SUCCESS:
            self.log.info("HERE Batch: %s", message)
            return event.get("job")
        if status == EVENT_TIMEOUT:
            raise AirflowSensorTimeout(message)
        head = event.get("errors_head") or []
        if head:
            message += "\nFirst lines of HERE's errors report:\n  " + "\n  ".join(str(h) for h in head)
        if status == "error":
            raise AirflowException(message)
        raise AirflowFailException(message)
