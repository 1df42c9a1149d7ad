"""How often to ask HERE for a job's status while waiting, and how to report progress.

HERE advises polling every ~10 s for small jobs and every 30-60 s for large ones. The schedule here
starts at ``poll_interval`` and grows with the time already waited (``growth`` of it, so completion is
noticed within about that fraction of the elapsed time), capped at ``max_poll_interval``. Once HERE's
counters give a processing rate (two ``inProgress`` answers), it polls at the estimated completion
instead, within the same bounds; a job that speeds up is then noticed up to that delay late.
A ``Retry-After`` from HERE always wins over a shorter delay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from airflow_here_batch.api.models import BatchJob, JobStatus, RecordCounts


@dataclass(frozen=True)
class PollSchedule:
    """The delay before the next status call.

    :param poll_interval: first and shortest delay, in seconds.
    :param max_poll_interval: longest delay between two calls.
    :param growth: the delay grows to this fraction of the time already waited.
    """

    poll_interval: float = 10.0
    max_poll_interval: float = 300.0
    growth: float = 0.1

    def __post_init__(self) -> None:
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {self.poll_interval}")
        if self.max_poll_interval < self.poll_interval:
            raise ValueError("max_poll_interval must be at least poll_interval")

    def next_delay(
        self,
        elapsed: float,
        *,
        eta: float | None = None,
        retry_after: float | None = None,
        remaining: float | None = None,
    ) -> float:
        """Seconds to sleep before the next call.

        :param elapsed: seconds since the wait began.
        :param eta: estimated seconds until the job completes, when a rate is known.
        :param retry_after: HERE's ``Retry-After`` from the last answer, if any.
        :param remaining: seconds until the caller's deadline; the delay never sleeps past it.
        """
        if eta is not None:
            # HERE's counters say when the job should end: poll then (a job that turns out slower
            # is polled again after poll_interval), never sooner than poll_interval.
            delay = min(self.max_poll_interval, max(self.poll_interval, eta))
        else:
            delay = min(self.max_poll_interval, max(self.poll_interval, self.growth * elapsed))
        if retry_after is not None:
            delay = max(delay, retry_after)
        if remaining is not None:
            delay = min(delay, max(0.0, remaining))
        return delay


@dataclass(slots=True)  # a triggerer holds one per waiting job
class ProgressTracker:
    """Rate and ETA from successive observations of one job; wall-clock seconds in, no I/O.

    :param repeat_unchanged_after: seconds after which an unchanged job is worth a progress line again.
    """

    last_processed: int | None = None
    last_time: float | None = None
    rate: float | None = None
    repeat_unchanged_after: float = 300.0
    last_reported: tuple[JobStatus, RecordCounts] | None = None
    last_report_time: float | None = None

    def observe(self, job: BatchJob, now: float) -> int:
        """Record one status answer; return the level its progress line deserves.

        ``logging.INFO`` when the status or a counter moved since the last INFO line, or when that line
        is ``repeat_unchanged_after`` seconds old (a heartbeat while a job waits in HERE's queue);
        otherwise ``logging.DEBUG``. An unchanged answer only repeats the previous line, and in a
        triggerer writing it costs more CPU than the status call itself (benchmark P1).

        A rate needs two ``inProgress`` answers in a row: an earlier ``queued``/``pending`` answer
        would fold the queue time into the rate, halve it and double the ETA, so such answers only
        reset the reference point.
        """
        level = self._level(job, now)
        processed = job.records.processed
        if job.status is not JobStatus.IN_PROGRESS:
            self.last_processed = self.last_time = None
            return level
        if self.last_processed is not None and self.last_time is not None:
            dt = now - self.last_time
            if dt > 0 and processed >= self.last_processed:
                current = (processed - self.last_processed) / dt
                # Smooth, so one slow interval does not swing the ETA wildly.
                self.rate = current if self.rate is None else 0.5 * self.rate + 0.5 * current
        self.last_processed = processed
        self.last_time = now
        return level

    def _level(self, job: BatchJob, now: float) -> int:
        key = (job.status, job.records)
        if (
            key == self.last_reported
            and self.last_report_time is not None
            and now - self.last_report_time < self.repeat_unchanged_after
        ):
            return logging.DEBUG
        self.last_reported, self.last_report_time = key, now
        return logging.INFO

    def eta(self, job: BatchJob) -> float | None:
        if job.status is not JobStatus.IN_PROGRESS or not self.rate:
            return None
        remaining = job.records.pending or max(
            0, (job.records.valid or job.records.total) - job.records.processed
        )
        return remaining / self.rate

    def describe(self, job: BatchJob) -> str:
        """One log line: ``JOB-… inProgress: 1200/5000 records (24.0%), 310 records/s, ETA 12 s``."""
        counts = job.records
        text = f"job {job.id} {job.status.value}: {counts.processed}/{counts.total} records"
        text += f" ({counts.progress * 100:.1f}%)"
        if counts.failed or counts.invalid:
            text += f", {counts.failed} failed, {counts.invalid} invalid"
        if self.rate:
            text += f", {self.rate:.0f} records/s"
        eta = self.eta(job)
        if eta is not None:
            text += f", ETA {eta:.0f} s"
        return text
