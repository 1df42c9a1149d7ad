"""Sensor that waits for a HERE batch job to end: poke, reschedule or deferrable."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_here_batch import DEFAULT_CONN_ID
from airflow_here_batch.api.errors import HereBatchError
from airflow_here_batch.api.outcome import DEFAULT_MAX_OUTAGE, JobOutcome, JobWait
from airflow_here_batch.api.polling import PollSchedule
from airflow_here_batch.api.wait import WaitFlow, note_stop, wait_flow

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_here_batch.hooks.here_batch import HereBatchHook

__all__ = ["BatchJobSensor"]


def _default_deferrable() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


class BatchJobSensor(BaseSensorOperator):
    """Wait until a HERE batch job has ended; succeed when it completed.

    What a job state means is decided by :mod:`airflow_here_batch.api.outcome`, the same rule in
    poke, reschedule and deferrable mode (and for the submit operator):

    * ``completed`` -> success; the task returns the job summary (XCom).
    * ``failure`` -> fails with HERE's details and the first lines of the errors report.
    * ``deleted`` -> fails.
    * ``stopped`` -> fails, unless ``allow_stopped=True`` (then success: partial results).

    HERE's verdicts are raised as ``AirflowFailException`` (no retry: HERE's verdict will not change)
    and the sensor's ``timeout`` as ``AirflowSensorTimeout``: ``soft_fail=True`` turns those into a
    skip. A technical error (bad credentials, unknown job, an outage longer than ``max_outage``) and
    the task's ``execution_timeout`` fail the task in every mode, whatever ``soft_fail`` says.
    Transient API errors (429, 5xx, dropped connections, garbled answers) are retried by the hook and
    then by the outage rule; only ``max_outage`` seconds without one usable answer end the wait.

    :param job_id: the HERE job id, e.g. ``"{{ ti.xcom_pull('submit')['job_id'] }}"``. (templated)
    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param poll_interval: seconds between two status calls (``poke_interval``); in deferrable mode the
        first delay, growing toward ``max_poll_interval`` with HERE's progress.
    :param max_poll_interval: longest delay between two status calls in deferrable mode.
    :param allow_stopped: accept a stopped job as done.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param cancel_on_kill: in deferrable mode, stop the job when the wait times out or a user kills the
        task (Airflow >= 3.3). Off by default: the sensor does not own the job.
    :param max_outage: seconds without one usable answer from HERE after which the wait fails
        (poke and deferrable mode; reschedule mode forgets an outage between two pokes).
    :param timeout: longest wait in seconds (``BaseSensorOperator``), also the trigger's deadline.
    :param soft_fail: skip instead of failing on HERE's verdicts and on the timeout.
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
        max_outage: float = DEFAULT_MAX_OUTAGE,
        **kwargs: Any,
    ) -> None:
        if poll_interval is not None:
            kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.job_id = job_id
        self.here_conn_id = here_conn_id
        self.max_poll_interval = max(float(self.poke_interval), float(max_poll_interval))
        self.allow_stopped = allow_stopped
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.cancel_on_kill = cancel_on_kill
        self.max_outage = float(max_outage)
        self._flow: WaitFlow | None = None

    @cached_property
    def hook(self) -> HereBatchHook:
        from airflow_here_batch.hooks.here_batch import HereBatchHook  # not at DAG parse time

        return HereBatchHook(self.here_conn_id)

    def _job_flow(self, context: Context) -> WaitFlow:
        """The wait's flow, made at the first poke and kept for the next ones (poke mode: the outage
        and progress state carry over; reschedule mode: each poke is a new task run, a new flow)."""
        if self._flow is None:
            from airflow_here_batch.utils.waiting import task_deadline

            # The sensor's timeout counts from the task's start, as in deferrable mode. Reschedule
            # mode: Airflow measures it across reschedules itself.
            deadline = task_deadline(
                self,
                context,
                None if self.reschedule else self.timeout,
                timeout_from_start=True,
                worker=True,
            )
            self.hook.deadline = None if deadline is None else deadline.at  # bounds Retry-After too
            wait = JobWait(
                self.job_id,
                schedule=PollSchedule(float(self.poke_interval), self.max_poll_interval),
                deadline=deadline,
                max_outage=self.max_outage,
                allow_stopped=self.allow_stopped,
                started=time.time(),
            )
            self._flow = wait_flow(wait, stop_on_timeout=self.cancel_on_kill, log=self.log)
        return self._flow

    def poke(self, context: Context) -> bool | PokeReturnValue:
        outcome = self._poke_once(context)
        if outcome is None:
            return False
        return self._finish(outcome)

    def _poke_once(self, context: Context) -> JobOutcome | None:
        """One poll of the wait's flow (the trigger's flow, driven up to its next sleep): the outcome
        when the wait ends, else None."""
        return self.hook.drive_wait(self._job_flow(context), self.job_id, sleep=None)

    def _finish(self, outcome: JobOutcome) -> PokeReturnValue:
        from airflow_here_batch.utils.waiting import raise_for_outcome

        raise_for_outcome(outcome, sensor=True)
        self.log.info("HERE Batch: %s", outcome.message)
        return PokeReturnValue(is_done=True, xcom_value=dict(outcome.job or {}))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # One look first: a job that has already ended (or an error) needs no trigger.
        outcome = self._poke_once(context)
        if outcome is not None:
            return self._finish(outcome).xcom_value
        from airflow_here_batch.utils.waiting import defer_wait

        defer_wait(
            self,
            context,
            job_id=self.job_id,
            here_conn_id=self.here_conn_id,
            poll_interval=float(self.poke_interval),
            max_poll_interval=self.max_poll_interval,
            timeout=self.timeout,
            cancel_on_kill=self.cancel_on_kill,
            allow_stopped=self.allow_stopped,
            max_outage=self.max_outage,
            timeout_from_start=True,
        )

    def on_kill(self) -> None:
        """Poke mode: stop the job when the task is killed and ``cancel_on_kill`` (deferred: the
        trigger's ``on_kill``)."""
        if not self.cancel_on_kill:
            return
        error: HereBatchError | None = None
        try:
            self.hook.stop_job(self.job_id)
        except HereBatchError as exc:
            error = exc
        note_stop(self.log, self.job_id, error)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: return the job summary, or fail/skip with HERE's details."""
        return self._finish(JobOutcome.from_event(event)).xcom_value
