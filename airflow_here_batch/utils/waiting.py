"""How a task waits for a HERE job: the one deferral helper, the one sync wait and the one mapping of
a :class:`~airflow_here_batch.api.outcome.JobOutcome` to the task's end, for the operator and the sensor.

Both waits run the one wait flow, :func:`airflow_here_batch.api.wait.wait_flow`: :func:`defer_wait`
through the trigger's async driver, :func:`worker_wait` through the hook's sync driver
(:meth:`airflow_here_batch.hooks.here_batch.HereBatchHook.wait_outcome`).

The deadline of every wait is the earlier of ``timeout`` (counted from when the wait starts) and the
task's ``execution_timeout`` counted from the task's start: Airflow 3 does not apply
``execution_timeout`` while a task is deferred, so the trigger carries it.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_here_batch.api.outcome import (
    DEFAULT_MAX_OUTAGE,
    Deadline,
    JobOutcome,
    JobWait,
    JobWaitError,
    OutcomeKind,
    to_epoch,
    wait_deadline,
)
from airflow_here_batch.api.polling import PollSchedule

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context

__all__ = ["defer_wait", "raise_for_outcome", "task_deadline", "worker_wait"]

#: Seconds the deferral's own timeout (Airflow's backstop) leaves after the trigger's deadline.
BACKSTOP_SECONDS = 300.0


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _earlier(first: Deadline | None, second: Deadline | None) -> Deadline | None:
    if first is None or second is None:
        return first or second
    return first if first.at <= second.at else second


def task_deadline(
    task: BaseOperator,
    context: Context,
    timeout: float | timedelta | None,
    *,
    timeout_from_start: bool = False,
    worker: bool = False,
) -> Deadline | None:
    """The earlier of ``timeout`` and the task's start + its ``execution_timeout``.

    :param timeout_from_start: count ``timeout`` from the task's start (a sensor's timeout) instead of
        from now (the submit operator's wait, which begins after the upload).
    :param worker: the wait runs on the worker, where Airflow's own ``execution_timeout`` signal also
        runs: the wait's deadline comes a little earlier (a tenth, at most 2 s) so the shared rule
        (stop the job, the same message as in the triggerer) ends the wait, not the signal.
    """
    ti = context.get("ti")
    start = getattr(ti, "start_date", None) if ti is not None else None
    now = time.time()
    execution_timeout = _seconds(getattr(task, "execution_timeout", None))
    if worker and execution_timeout is not None:
        execution_timeout -= min(2.0, execution_timeout / 10)
    timeout_seconds = _seconds(timeout)
    if timeout_from_start and timeout_seconds is not None and start is not None:
        timeout_seconds = max(0.0, to_epoch(start) + timeout_seconds - now)  # type: ignore[operator]
    return wait_deadline(now, timeout=timeout_seconds, task_start=start, execution_timeout=execution_timeout)


def defer_wait(
    task: BaseOperator,
    context: Context,
    *,
    job_id: str,
    here_conn_id: str,
    poll_interval: float,
    max_poll_interval: float,
    timeout: float | timedelta | None,
    cancel_on_kill: bool,
    allow_stopped: bool,
    max_outage: float = DEFAULT_MAX_OUTAGE,
    method_name: str = "execute_complete",
    timeout_from_start: bool = False,
    not_after: Deadline | None = None,
) -> NoReturn:
    """Hand the wait to :class:`~airflow_here_batch.triggers.batch_job.BatchJobTrigger` (raises
    ``TaskDeferred``); the task resumes in ``method_name(context, event)``.

    :param not_after: a deadline the task fixed earlier (e.g. carried across an earlier deferral);
        the earlier of it and this call's own deadline ends the wait, with its reason.
    """
    from airflow_here_batch.triggers.batch_job import BatchJobTrigger

    deadline = _earlier(
        task_deadline(task, context, timeout, timeout_from_start=timeout_from_start), not_after
    )
    backstop = None
    if deadline is not None:
        backstop = timedelta(seconds=max(0.0, deadline.at - time.time()) + BACKSTOP_SECONDS)
    task.defer(
        trigger=BatchJobTrigger(
            job_id=job_id,
            here_conn_id=here_conn_id,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            deadline=None if deadline is None else deadline.at,
            deadline_reason=None if deadline is None else deadline.reason,
            cancel_on_kill=cancel_on_kill,
            allow_stopped=allow_stopped,
            max_outage=max_outage,
        ),
        method_name=method_name,
        # Backstop only: the trigger fires its own timeout event (and stops the job) first.
        timeout=backstop,
    )


def worker_wait(
    task: BaseOperator,
    context: Context,
    hook: Any,
    *,
    job_id: str,
    poll_interval: float,
    max_poll_interval: float,
    timeout: float | timedelta | None,
    cancel_on_kill: bool,
    allow_stopped: bool,
    max_outage: float = DEFAULT_MAX_OUTAGE,
    not_after: Deadline | None = None,
) -> JobOutcome:
    """Wait on the worker with the trigger's flow, driven by :meth:`HereBatchHook.wait_outcome`
    (stopping the job at the deadline when ``cancel_on_kill``); ``not_after`` as for :func:`defer_wait`.

    :returns: how the wait ended; :func:`raise_for_outcome` ends the task with it.
    """
    deadline = _earlier(task_deadline(task, context, timeout, worker=True), not_after)
    hook.deadline = None if deadline is None else deadline.at
    wait = JobWait(
        job_id,
        schedule=PollSchedule(poll_interval, max_poll_interval),
        deadline=deadline,
        max_outage=max_outage,
        allow_stopped=allow_stopped,
        started=time.time(),
    )
    try:
        return hook.wait_outcome(wait, stop_on_timeout=cancel_on_kill)  # type: ignore[no-any-return]
    finally:
        hook.deadline = None


def raise_for_outcome(outcome: JobOutcome, *, sensor: bool) -> None:
    """End the task as the outcome says; returns only for ``success``.

    * HERE's verdicts (failure, stopped, deleted): a sensor raises ``AirflowFailException`` (no retry,
      ``soft_fail`` skips); the operator raises ``AirflowException`` (a retry replaces the job).
    * The wait's own ``timeout``: a sensor raises ``AirflowSensorTimeout`` (``soft_fail`` skips, as
      for every sensor); the operator ``AirflowException``.
    * ``execution_timeout`` and technical errors (bad credentials, unknown job, an outage longer than
      ``max_outage``): :class:`~airflow_here_batch.api.outcome.JobWaitError` in every mode, which
      ``soft_fail`` never turns into a skip (Airflow skips any ``AirflowException`` raised on resume).
    """
    from airflow_here_batch.version_compat import AirflowException, AirflowFailException, AirflowSensorTimeout

    if outcome.kind is OutcomeKind.SUCCESS:
        return
    text = outcome.text()
    if not outcome.soft:
        raise JobWaitError(text)
    if not sensor:
        raise AirflowException(text)
    if outcome.kind is OutcomeKind.TIMEOUT:
        raise AirflowSensorTimeout(text)
    raise AirflowFailException(text)
