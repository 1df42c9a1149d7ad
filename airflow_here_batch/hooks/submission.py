"""The submit sequence of one task instance's HERE job, with no task context.

Reattach or create: find the job an earlier try of the task instance created (by the id it kept, else
by its unique tag) and reuse it, else check the input, create the job under that tag (a create whose
answer was lost is found by the tag, see :meth:`HereBatchHook.create_job`) and upload; start it, and
stop any second job found under the tag. Plain values in (a hook, :class:`JobOptions` with the tag,
:class:`SubmitInput`, a deadline), plain results out (:class:`Submitted`, :class:`BatchJob`,
:class:`NoSlot`, :class:`~airflow_here_batch.api.outcome.JobOutcome`): the operators
(:mod:`airflow_here_batch.operators.batch_job`, :mod:`airflow_here_batch.operators.split`) gather the
values from their arguments and the task context, and push the results to XCom.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_here_batch.api.errors import HereBatchError, JobNotFoundError, TooManyJobsError
from airflow_here_batch.api.models import BatchJob, JobStatus

if TYPE_CHECKING:
    from airflow_here_batch.api.outcome import Deadline, JobOutcome
    from airflow_here_batch.api.protocol import JobOptions
    from airflow_here_batch.files.input_source import PreparedInput
    from airflow_here_batch.hooks.here_batch import HereBatchHook

__all__ = ["JobSubmission", "NoSlot", "SubmitInput", "Submitted", "ended_outcome", "slot_hook", "try_start"]

#: A failed or deleted job of an earlier try is replaced by a new one, never reused.
_REPLACED = (JobStatus.FAILURE, JobStatus.DELETED)


@dataclass(frozen=True)
class SubmitInput:
    """What to upload and how to check it first.

    :param value: the input (path, URI, ``ObjectStoragePath``, bytes, rows or inline text; see
        :mod:`airflow_here_batch.files.input_source`).
    :param input_columns: the column names when the input has no header (with rows: their order).
    :param delimiter: the input delimiter, one character or ``\\t``.
    :param conn_id: connection for an object-storage input.
    :param inline_text: a ``str`` that was inline text before template rendering.
    :param validate: check every record before the upload (``False``: upload as it is, BOM and CRs dropped).
    :param on_bad_record: ``"fail"`` or ``"skip"`` (bad records go to ``rejects_location``).
    :param rejects_location: where ``"skip"`` writes the rejects file (an ``ObjectStoragePath``).
    """

    value: Any
    input_columns: str | Sequence[str] | None = None
    delimiter: str = "|"
    conn_id: str | None = None
    inline_text: bool = False
    validate: bool = True
    on_bad_record: str = "fail"
    rejects_location: Any = None


@dataclass(frozen=True)
class Submitted:
    """The job of a submit: created now (``created``), or an earlier try's, reattached.

    ``rejected``/``rejects_path``: records left out by ``on_bad_record="skip"`` and the rejects file's
    URI (``0``/``None`` for a reattached job: its input was checked by the try that created it).
    """

    job: BatchJob
    created: bool
    rejected: int = 0
    rejects_path: str | None = None


@dataclass(frozen=True)
class NoSlot:
    """HERE has no free job slot (429 ``E6004291``): start again in ``delay`` seconds."""

    delay: float
    code: str


@dataclass
class JobSubmission:
    """One task instance's job at HERE: reattach to it, or check the input, create and upload it.

    :param hook: the sync hook (its ``deadline`` bounds every request's retries).
    :param options: the job's options; with ``reattach`` its ``tag`` is unique to the task instance
        (:func:`airflow_here_batch.operators.batch_job.reattach_tag`). ``start_job`` also says whether
        a reattached ``submitted`` or ``stopped`` job is started.
    :param reattach: look for the job of an earlier try, and use the tag to find a create whose
        answer was lost; ``False`` always creates a new job.
    :param compress: gzip the upload on the fly.
    :param log: where the steps are logged (the task's logger).
    """

    hook: HereBatchHook
    options: JobOptions
    reattach: bool = True
    compress: bool = False
    log: logging.Logger | Any = field(default_factory=lambda: logging.getLogger(__name__))
    #: Ids of second jobs found under the tag (stopped unless ended), in the order found.
    extra_jobs: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str | None:
        """The tag that finds this task instance's jobs, or ``None`` without reattach."""
        return self.options.tag if self.reattach and self.options.tag else None

    def submit(
        self,
        source: SubmitInput,
        *,
        stored_job_id: str | None = None,
        before_upload: Callable[[PreparedInput], None] | None = None,
    ) -> Submitted:
        """The whole sequence: reattach (:meth:`previous_job`), else prepare and create (:meth:`create`).

        :param stored_job_id: the id an earlier try kept (Airflow 3.3's task-state store), or ``None``.
        :param before_upload: called with the prepared (checked and counted) input before the job is
            created; raising stops the submit with nothing uploaded (the spend bound).
        :raises airflow_here_batch.api.inputs.InputValidationError: the input cannot be uploaded.
        :raises HereBatchError: HERE refused a request (``CreateOutcomeUnknownError`` included).
        """
        job = self.previous_job(stored_job_id) if self.reattach else None
        if job is not None:
            return Submitted(job, created=False)
        prepared = self.prepare(source)
        if before_upload is not None:
            before_upload(prepared)
        job = self.create(prepared)
        return Submitted(job, created=True, rejected=prepared.rejected, rejects_path=prepared.rejects_path)

    def prepare(self, source: SubmitInput) -> PreparedInput:
        """Classify and check the input in one streaming pass (:func:`~airflow_here_batch.files.
        input_source.prepare_input`); writes the rejects file of ``on_bad_record="skip"``."""
        from airflow_here_batch.files.input_source import prepare_input

        rejects = source.rejects_location
        return prepare_input(
            source.value,
            service=self.options.service,
            input_columns=source.input_columns,
            delimiter=source.delimiter,
            conn_id=source.conn_id,
            inline_text=source.inline_text,
            validate=source.validate,
            on_bad_record=source.on_bad_record,
            rejects_target=None if rejects is None else (lambda: rejects),
            log=self.log,
        )

    def create(self, prepared: PreparedInput) -> BatchJob:
        """Create the job and upload the prepared input (``options.start_job`` starts it)."""
        with prepared.upload_data() as data:
            job = self.hook.create_job(
                data, options=self.options, compress=self.compress, reattach_by_tag=self.tag is not None
            )
        self.log.info("HERE Batch: submitted job %s (status %s, tag %s)", job.id, job.status.value, job.tag)
        return job

    def previous_job(self, stored_job_id: str | None = None) -> BatchJob | None:
        """The job an earlier try created, to reuse; ``None`` when there is none or it must be replaced.

        Found by ``stored_job_id``, else by the tag (a running, completed or stopped job before a
        failed one). A failed or deleted job is replaced (``None``). With ``options.start_job`` a
        ``stopped`` job is resumed and a ``submitted`` one started. Any other job under the tag is
        stopped (:meth:`stop_extra_jobs`).
        """
        job: BatchJob | None = None
        found_by = "the task-state store"
        if stored_job_id:
            with contextlib.suppress(JobNotFoundError):
                job = self.hook.get_job(str(stored_job_id))
        tag = self.tag
        if job is None and tag:
            found_by = f"its tag {tag}"
            candidates = self.hook.find_jobs_by_tag(tag)
            usable = [j for j in candidates if j.status not in _REPLACED]
            job = (usable or candidates or [None])[0]
        if job is not None and tag:
            self.stop_extra_jobs(keep=job.id)
        if job is None:
            return None
        if job.status in _REPLACED:
            self.log.warning(
                "HERE Batch: the earlier job %s of this task instance is %s; submitting a new one",
                job.id,
                job.status.value,
            )
            return None
        self.log.info(
            "HERE Batch: reattaching to job %s (%s) created by an earlier try of this task instance, found "
            "by %s",
            job.id,
            job.status.value,
            found_by,
        )
        if job.status in (JobStatus.STOPPED, JobStatus.SUBMITTED) and self.options.start_job:
            # A stopped job resumes; a submitted one was created but never started (start_job=True
            # asks for a running job, and waiting on a submitted one would never end).
            self.log.info("HERE Batch: starting job %s (%s)", job.id, job.status.value)
            job = self.hook.start_job(job.id)
        return job

    def stop_extra_jobs(self, keep: str | None) -> list[str]:
        """Stop and report every job under the tag but ``keep``; returns the ids newly found.

        A create whose answer was lost may land at HERE after a later try uploaded again; the tag
        finds such a second job, which is stopped (processed records stay billed) and named in the log
        and in :attr:`extra_jobs`. A failed or deleted job is an earlier try's, replaced by design.
        """
        tag = self.tag
        if tag is None:
            return []
        try:
            jobs = self.hook.find_jobs_by_tag(tag)
        except HereBatchError as exc:
            self.log.warning("HERE Batch: could not look for other jobs under tag %s: %s", tag, exc)
            return []
        known = {keep, *self.extra_jobs}
        extra = [j for j in jobs if j.id not in known and j.status not in _REPLACED]
        for other in extra:
            self.log.warning(
                "HERE Batch: job %s (%s) is a second job of this task instance (tag %s): stopping it; "
                "job %s is the one this task uses",
                other.id,
                other.status.value,
                tag,
                keep,
            )
            if not other.is_terminal and other.status is not JobStatus.STOPPED:
                stop_quietly(self.hook, other.id, self.log)
        self.extra_jobs.extend(j.id for j in extra)
        return [j.id for j in extra]


def stop_quietly(hook: HereBatchHook, job_id: str, log: logging.Logger | Any) -> None:
    """Ask HERE to stop ``job_id``; a refusal is logged, never raised."""
    try:
        job = hook.stop_job(job_id)
        log.info("HERE Batch: asked HERE to stop job %s (now %s)", job_id, job.status.value)
    except HereBatchError as exc:
        log.warning("HERE Batch: could not stop job %s: %s", job_id, exc)


def ended_outcome(hook: HereBatchHook, job: BatchJob, *, allow_stopped: bool) -> JobOutcome:
    """HERE's verdict on a job that has ended already, with the first lines of its errors report.

    :raises ValueError: the job has not ended (see :func:`~airflow_here_batch.api.outcome.is_finished`).
    """
    from airflow_here_batch.api.outcome import needs_errors_head, verdict

    head: list[str] = []
    if needs_errors_head(job):
        with contextlib.suppress(HereBatchError):
            head = hook.download_errors_head(job.id, 10)
    outcome = verdict(job, allow_stopped=allow_stopped, errors_head=head)
    if outcome is None:
        raise ValueError(f"job {job.id} is {job.status.value}: it has not ended")
    return outcome


def slot_hook(hook: HereBatchHook) -> HereBatchHook:
    """A hook like ``hook`` (connection, deadline) that does not retry 429 ``E6004291`` in place, for
    :func:`try_start`: the caller waits for a free slot itself (deferred)."""
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    policy = dataclasses.replace(hook.settings.retry, retry_too_many_jobs=False)
    return HereBatchHook(hook.here_conn_id, retry_policy=policy, deadline=hook.deadline)


def try_start(
    hook: HereBatchHook, job_id: str, *, deadline: Deadline | None, retry_delay: float
) -> BatchJob | NoSlot:
    """Start (or resume) ``job_id`` once; HERE's 429 ``E6004291`` (no free job slot) gives :class:`NoSlot`.

    :param hook: a hook from :func:`slot_hook`.
    :param deadline: the delay never reaches past it.
    :param retry_delay: seconds to wait when HERE sends no ``Retry-After``.
    :raises HereBatchError: any other refusal.
    """
    try:
        return hook.start_job(job_id)
    except TooManyJobsError as exc:
        delay = float(exc.retry_after if exc.retry_after is not None else retry_delay)
        if deadline is not None:
            delay = max(0.0, min(delay, deadline.at - time.time()))
        return NoSlot(delay, exc.code)
