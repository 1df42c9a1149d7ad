"""Inputs of any size: split beyond HERE's per-job limits, run the parts side by side, merge in input order.

The shape is Airflow's own dynamic task mapping (see ``docs/split.md`` for why):

``plan`` (:class:`PlanSplitOperator`)
    reads the input once, streaming, validates it with :func:`~airflow_here_batch.api.inputs.
    validate_lines`, and writes the parts to object storage under the base location
    (:mod:`airflow_here_batch.files.locations`); returns one small dict per part.
``run`` (:class:`RunSplitPartOperator`, mapped over the parts, ``max_active_tis_per_dagrun`` =
``max_active_jobs``)
    one HERE job per part: upload, start within the concurrency limit (a 429 ``E6004291`` waits and
    retries), wait in the triggerer, download the part's results and errors next to its input. A retry
    reattaches to the part's job (the reattach tag carries the map index); a failed part is retried alone.
``merge`` (:class:`MergeSplitResultsOperator`)
    concatenates the parts' results and errors, in input order, into one results file and one errors
    report, written atomically; then removes the parts' files.

:func:`split_batch_job` builds the three as a task group.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_here_batch.api.errors import HereBatchError
from airflow_here_batch.api.models import BatchJob, JobStatus, OutputType
from airflow_here_batch.api.split import DEFAULT_MAX_ACTIVE_JOBS, part_name, safe_segment
from airflow_here_batch.files.atomic import atomic_open
from airflow_here_batch.files.locations import storage_path
from airflow_here_batch.files.parts import binary_lines, merge_files, write_parts
from airflow_here_batch.operators.batch_job import BaseBatchJobOperator, SubmitBatchJobOperator
from airflow_here_batch.triggers.slot_wait import SlotWaitTrigger, as_deadline
from airflow_here_batch.version_compat import AirflowException

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath
    from airflow.sdk.definitions.taskgroup import TaskGroup

    from airflow_here_batch.api.outcome import Deadline, JobOutcome

__all__ = [
    "FIXED_BY_SPLIT",
    "MergeSplitResultsOperator",
    "PlanSplitOperator",
    "RunSplitPartOperator",
    "split_batch_job",
    "write_parts",
]


def _work_folder(context: Context, split_id: str) -> ObjectStoragePath:
    from airflow_here_batch.files.locations import base_location

    ti = context["ti"]
    return base_location("split", safe_segment(ti.dag_id), safe_segment(ti.run_id), safe_segment(split_id))


def _uri(path: ObjectStoragePath) -> str:
    return str(path)


# -------------------------------------------------------------------------------------------------
# plan


class PlanSplitOperator(BaseOperator):
    """Validate an input of any size and write it as parts that each fit one HERE job.

    Returns the parts, in input order, as a list of ``{"index", "input", "conn_id", "records", "bytes",
    "first_record"}`` (``input``: the part file's object-storage URI). Map
    :class:`RunSplitPartOperator` over it.

    Nothing to send (an empty input, a header alone, or no input at all: ``None``, ``""`` or ``"None"``,
    what a SQL extract that found no row to send renders to) is not an error: the plan returns ``[]``,
    so no HERE job is created, the mapped parts are skipped, and so is the merge. An input of blank
    lines only is refused (it has no header). A recId on two records is refused, naming both lines.

    Before the input is read, every place the tasks downstream write to (the merge's folder, a SQL
    sink's table, a download's folder) is checked
    (:func:`~airflow_here_batch.utils.destinations.check_destinations`: a bucket that exists, a marker
    written and removed, a table whose columns fit), so a destination that cannot take the results fails
    here, before any job is billed.

    :param input: a local path (``.gz`` read decompressed), an object-storage URI or
        :class:`~airflow.sdk.ObjectStoragePath` (e.g. a file an upstream task exported), a list of
        dicts (rows), or inline text. (templated)
    :param service: ``geocode``, ``revgeocode`` or ``lookup`` (for the key-column check). (templated)
    :param split_id: names the parts' folder ``<base location>/split/<dag>/<run>/<split_id>/``.
    :param input_columns: column names when the input has no header line. (templated)
    :param input_delimiter: input delimiter, one character or ``\\t``. (templated)
    :param max_records_per_job: records per part (default and maximum: HERE's 1,000,000).
    :param max_bytes_per_job: uncompressed bytes per part, header included (default and maximum:
        HERE's 500 MB).
    :param input_conn_id: connection for an object-storage input.
    """

    template_fields: Sequence[str] = ("input", "service", "input_columns", "input_delimiter")
    ui_color = "#b8e6e1"

    def __init__(
        self,
        *,
        input: Any,
        service: str = "geocode",
        split_id: str = "split",
        input_columns: str | Sequence[str] | None = None,
        input_delimiter: str = "|",
        max_records_per_job: int | None = None,
        max_bytes_per_job: int | None = None,
        input_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_here_batch.api.split import SplitLimits

        self.limits = SplitLimits(
            **{
                k: v
                for k, v in (("max_records", max_records_per_job), ("max_bytes", max_bytes_per_job))
                if v is not None
            }
        )
        self.input = input
        self.service = service
        self.split_id = split_id
        self.input_columns = input_columns
        self.input_delimiter = input_delimiter
        self.input_conn_id = input_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_here_batch.api.inputs import InputValidationError
        from airflow_here_batch.operators.batch_job import _check_destinations

        _check_destinations(self, context)
        if self.input is None or (isinstance(self.input, str) and self.input in ("", "None")):
            self.log.info("HERE Batch: no input (nothing to send): no part, no HERE job")
            return []
        folder = _work_folder(context, self.split_id)
        if folder.exists():  # an earlier try: start clean (a part file is complete only when this returns)
            folder.rmdir(recursive=True)
        started = time.monotonic()
        source, columns = self.input, self.input_columns
        if isinstance(source, (list, tuple)):  # rows: a header is written from the keys (or columns)
            from airflow_here_batch.api.inputs import rows_to_lines

            source = "".join(rows_to_lines(source, columns=columns, delimiter=self.input_delimiter))
            columns = None
        try:
            with binary_lines(source, self.input_conn_id) as lines:
                parts = write_parts(
                    lines,
                    folder,
                    limits=self.limits,
                    service=self.service,
                    input_columns=columns,
                    delimiter=self.input_delimiter,
                    reread=functools.partial(binary_lines, source, self.input_conn_id),
                )
        except InputValidationError as exc:
            raise AirflowException(f"the input was not uploaded: {exc}") from None
        except UnicodeDecodeError as exc:
            raise AirflowException(f"the input was not uploaded: it is not UTF-8 ({exc})") from None
        records = sum(p["records"] for p in parts)
        if not parts:
            self.log.info("HERE Batch: the input holds no records (nothing to send): no part, no HERE job")
            return []
        self.log.info(
            "HERE Batch: %d records in %d parts of at most %d records / %d bytes, written to %s in %.1f s",
            records,
            len(parts),
            self.limits.max_records,
            self.limits.max_bytes,
            folder,
            time.monotonic() - started,
        )
        return parts


# -------------------------------------------------------------------------------------------------
# run one part


class RunSplitPartOperator(BaseBatchJobOperator):
    """One part of a split: one HERE job, started within the concurrency limit, waited for, collected.

    It shares :class:`~airflow_here_batch.operators.batch_job.SubmitBatchJobOperator`'s job options,
    wait settings and reattach rules (a retry of the task instance finds the part's job by the
    task-state store or by the tag, which carries the map index) and composes the same submit steps
    (:class:`~airflow_here_batch.hooks.submission.JobSubmission`):

    1. uploads the part with ``startJob=false`` (the plan validated it; every part carries its
       header), then starts it; HERE's 429 ``E6004291`` (too many concurrent jobs, shared doc §4/§11)
       waits ``Retry-After`` (deferred, no worker slot held) and tries again;
    2. waits for the job with the submit operator's rule (:mod:`airflow_here_batch.utils.waiting`:
       deferred to :class:`~airflow_here_batch.triggers.batch_job.BatchJobTrigger`, or on the worker);
    3. downloads the part's results and errors report next to its input (object storage, atomically).

    Deadline: the earlier of ``timeout`` (counted from the end of the upload; the wait for a free job
    slot counts) and the task's start + ``execution_timeout`` (applied here while deferred, which
    Airflow does not do). When it passes while the job runs, the job is stopped (``cancel_on_kill``);
    while the part still waits for a slot, the job was never started and is left ``submitted`` (a
    retry reattaches to it). What each job state means for the task is
    :mod:`airflow_here_batch.api.outcome`'s rule, ended by
    :func:`~airflow_here_batch.utils.waiting.raise_for_outcome` (``execution_timeout`` and technical
    errors raise :class:`~airflow_here_batch.api.outcome.JobWaitError`; HERE's verdicts and the
    ``timeout`` raise ``AirflowException``, so a retry replaces a failed job).

    Returns ``{"index", "job_id", "status", "records", "results", "errors", "output_type",
    "first_record", "conn_id"}`` (``results``/``errors``: URIs, ``None`` when HERE had none, 204), plus
    ``extra_jobs_stopped`` when a second job under the part's tag was found and stopped.

    :param part: one item of :class:`PlanSplitOperator`'s list (map over it with ``expand(part=...)``).
    :param deferrable: wait (for a slot, for the job) in the triggerer; default ``True``.
    :param kwargs: the job options and wait settings of
        :class:`~airflow_here_batch.operators.batch_job.SubmitBatchJobOperator` (``input_columns`` and
        ``start_job`` do not apply: every part has a header line and is started), and BaseOperator's.
    :raises ValueError: ``start_job=False`` (a part's job is always started).
    """

    template_fields: Sequence[str] = (*BaseBatchJobOperator.template_fields, "part")

    def __init__(self, *, part: Any = None, deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(deferrable=deferrable, **kwargs)
        if self.options.get("start_job") is False:
            raise ValueError("a split part always starts its job: drop start_job=False")
        self.part = part

    def _part(self) -> Mapping[str, Any]:
        if not isinstance(self.part, Mapping) or "input" not in self.part:
            raise AirflowException(f"part must be an item of PlanSplitOperator's result, got {self.part!r}")
        return self.part

    def _fixed_options(self) -> dict[str, Any]:
        # every part carries its header; upload only, started by _start within the concurrency rules
        return {"input_columns": None, "start_job": False}

    def execute(self, context: Context) -> dict[str, Any]:
        return self._run(context, deadline=None)

    def resume_start(self, context: Context, event: Any = None) -> dict[str, Any]:
        """After a deferred wait for a free job slot: find the part's job again and start it."""
        carried = event.get("deadline") if isinstance(event, Mapping) else None
        return self._run(context, deadline=as_deadline(carried))

    def _run(self, context: Context, *, deadline: Deadline | None) -> dict[str, Any]:
        from airflow_here_batch.hooks.submission import SubmitInput

        self._limit_requests(context)
        part = self._part()
        source = SubmitInput(
            storage_path(part["input"], part.get("conn_id")),
            delimiter=self._submission_for(context).options.input_delimiter,
            validate=False,  # the plan validated the whole input before writing any part
        )
        job = self._keep(context, self._submit(context, source))
        if deadline is None:  # the wait (for a slot, then for the job) begins after the upload
            from airflow_here_batch.utils.waiting import task_deadline

            deadline = task_deadline(self, context, self.timeout, worker=not self.deferrable)
        return self._start_and_wait(context, job, deadline)

    def _start_and_wait(self, context: Context, job: BatchJob, deadline: Deadline | None) -> dict[str, Any]:
        from airflow_here_batch.api.outcome import is_finished

        if job.status in (JobStatus.SUBMITTED, JobStatus.STOPPED):
            job = self._start(context, job, deadline)  # a stopped job of an earlier try resumes
        elif is_finished(job):  # reattached to a job that ended already
            return self._complete(context, self._ended_outcome(job))
        # timeout=None: the part's deadline (timeout and execution_timeout) was fixed once, after the upload
        outcome = self._wait(context, job.id, timeout=None, not_after=deadline, method_name="part_done")
        return self._complete(context, outcome)

    def _start(self, context: Context, job: BatchJob, deadline: Deadline | None) -> BatchJob:
        """Start (or resume) the job; HERE's 429 ``E6004291`` waits ``Retry-After`` and tries again.

        Deferrable: the wait for a slot is a deferral (no worker slot held, :class:`SlotWaitTrigger`
        carries the deadline) that resumes in :meth:`resume_start`. The deadline bounds it: once
        passed, the task ends with the shared ``timeout`` outcome (the job was never started, so there
        is nothing to stop).
        """
        from airflow_here_batch.api.outcome import timeout_outcome
        from airflow_here_batch.hooks.submission import NoSlot, slot_hook, try_start

        hook = slot_hook(self.hook)
        while True:
            if deadline is not None and time.time() >= deadline.at:
                self.log.warning("HERE Batch: no job slot became free for job %s before its deadline", job.id)
                # raises (a timeout is never a success): JobWaitError for execution_timeout
                self._finish(context, timeout_outcome(job.id, job, reason=deadline.reason))
            try:
                started = try_start(hook, job.id, deadline=deadline, retry_delay=self.poll_interval)
            except HereBatchError as exc:
                raise AirflowException(str(exc)) from None
            if not isinstance(started, NoSlot):
                return started
            self.log.info(
                "HERE Batch: too many concurrent jobs (HERE %s); starting job %s again in %.1f s",
                started.code,
                job.id,
                started.delay,
            )
            if self.deferrable:
                self.defer(
                    trigger=SlotWaitTrigger(time.time() + started.delay, deadline), method_name="resume_start"
                )
            time.sleep(started.delay)

    def part_done(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: collect the part, or end the task as the event's outcome says."""
        from airflow_here_batch.api.outcome import JobOutcome

        self._limit_requests(context)
        self.job_id = event.get("job_id") or self.job_id
        return self._complete(context, JobOutcome.from_event(event))

    def _complete(self, context: Context, outcome: JobOutcome) -> dict[str, Any]:
        """End the task as the shared rule says (:meth:`_finish` raises unless the outcome is
        ``success``), then download the part's results and errors."""
        finished = self._finish(context, outcome)
        try:
            job = self.hook.get_job(outcome.job_id)
        except HereBatchError as exc:
            raise AirflowException(str(exc)) from None
        result = self._collect(context, job)
        if finished.get("extra_jobs_stopped"):
            result["extra_jobs_stopped"] = finished["extra_jobs_stopped"]
        return result

    def _collect(self, context: Context, job: BatchJob) -> dict[str, Any]:
        part = self._part()
        folder = storage_path(part["input"], part.get("conn_id")).parent
        ext = "jsonl" if job.output_type is OutputType.JSONL else "csv"
        try:
            results = self._download(job.id, "results", folder / f"results.{ext}")
            errors = self._download(job.id, "errors", folder / "errors.txt")
        except HereBatchError as exc:
            raise AirflowException(str(exc)) from None
        counts = job.records
        self.log.info(
            "HERE Batch: part %s (job %s): %d/%d records succeeded, %d failed",
            part.get("index"),
            job.id,
            counts.succeeded,
            counts.total,
            counts.failed,
        )
        return {
            "index": part.get("index"),
            "first_record": part.get("first_record"),
            "job_id": job.id,
            "status": job.status.value,
            "records": job.summary()["records"],
            "results": results,
            "errors": errors,
            "output_type": ext,
            "conn_id": part.get("conn_id"),
        }

    def _download(self, job_id: str, kind: str, target: ObjectStoragePath) -> str | None:
        """Stream a download to ``target`` atomically; its URI, or None when HERE has none (204).

        A local target is written by the hook (:class:`~airflow_here_batch.files.atomic.AtomicFile`);
        an object-storage one is staged on local disk, then placed by
        :func:`~airflow_here_batch.files.atomic.place_file`: the provider's one temp-name-and-rename rule.
        """
        from airflow_here_batch.files.atomic import place_file

        download = self.hook.download_results if kind == "results" else self.hook.download_errors
        with contextlib.suppress(FileNotFoundError):
            target.unlink()  # an earlier try's file
        if target.protocol in ("file", "local"):
            written = download(job_id, Path(target.path))
            return None if written is None else _uri(target)
        with tempfile.TemporaryDirectory(prefix="here-batch-") as tmp:
            staged = Path(tmp) / "download"
            if download(job_id, staged) is None:
                return None
            place_file(staged, target, remote=True)
        return _uri(target)


# -------------------------------------------------------------------------------------------------
# merge


_COUNTERS = ("total", "valid", "invalid", "processed", "pending", "succeeded", "failed")


class MergeSplitResultsOperator(BaseOperator):
    """Merge the parts' results (and errors reports) into one file each, in the input's record order.

    Every part must be present (the merge is complete or fails, never half). The files are written
    under temporary names and renamed when complete. Then, with ``cleanup_parts``, the parts' folders
    (inputs and partial results) are removed; a ``summary.json`` written beside the output lets a retry
    after that return the same summary.

    Returns ``{"results", "errors", "parts", "job_ids", "records", "results_bytes", "results_rows",
    "errors_rows"}`` (``records``: HERE's counters summed over the parts; ``errors`` is None when no
    part reported any).

    :param parts: the mapped :class:`RunSplitPartOperator`'s results (``run.output``).
    :param destination: a folder (URI, ObjectStoragePath or local path) for ``results.<csv|jsonl>`` and
        ``errors.txt``; default ``<base location>/split/<dag>/<run>/<split_id>/merged/``. (templated)
    :param destination_conn_id: connection for an object-storage destination.
    :param split_id: the split's folder name (as given to :class:`PlanSplitOperator`).
    :param cleanup_parts: remove the parts' files after a successful merge.
    """

    template_fields: Sequence[str] = ("parts", "destination")
    ui_color = "#b8e6e1"

    def __init__(
        self,
        *,
        parts: Any,
        destination: Any = None,
        destination_conn_id: str | None = None,
        split_id: str = "split",
        cleanup_parts: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.parts = parts
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.split_id = split_id
        self.cleanup_parts = cleanup_parts

    def here_batch_destinations(self, context: Context) -> list[Any]:
        """The merge's folder, for the check the plan makes before any part's job is created
        (:func:`~airflow_here_batch.utils.destinations.check_destinations`)."""
        from airflow_here_batch.utils.destinations import Destination, known

        if not self.destination:  # under the base location, with its connection
            merged = _work_folder(context, self.split_id) / "merged"
            return [Destination("folder", merged, None, self.task_id)]
        folder = known(self.render_template(self.destination, context))
        conn_id = self.destination_conn_id
        return [] if folder is None else [Destination("folder", folder, conn_id, self.task_id)]

    def execute(self, context: Context) -> dict[str, Any]:
        work = _work_folder(context, self.split_id)
        if self.destination:
            folder = storage_path(self.destination, self.destination_conn_id)
        else:
            folder = work / "merged"
        summary_path = folder / "summary.json"
        parts = sorted((dict(p) for p in (self.parts or []) if p), key=lambda p: int(p["index"]))
        if [int(p["index"]) for p in parts] != list(range(len(parts))) or not parts:
            raise AirflowException(
                f"parts {[p.get('index') for p in parts]} are not a complete split: every part must succeed"
            )

        def located(key: str) -> list[ObjectStoragePath | None]:
            return [storage_path(p[key], p.get("conn_id")) if p.get(key) else None for p in parts]

        missing = [p for p in located("results") + located("errors") if p is not None and not p.exists()]
        if missing and summary_path.exists():
            self.log.info("HERE Batch: parts already merged and removed; summary from %s", summary_path)
            return json.loads(summary_path.read_text())
        if missing:
            raise AirflowException(f"part files are missing: {', '.join(str(m) for m in missing[:5])}")
        output_type = str(parts[0].get("output_type") or "csv")
        results = folder / f"results.{output_type}"
        errors = folder / "errors.txt"
        result_bytes, result_rows = merge_files(located("results"), results, output_type=output_type)
        with contextlib.suppress(FileNotFoundError):
            errors.unlink()
        _, error_rows = merge_files(located("errors"), errors, output_type="csv")
        records = {k: sum(int((p.get("records") or {}).get(k) or 0) for p in parts) for k in _COUNTERS}
        summary = {
            "results": _uri(results) if result_bytes else None,
            "errors": _uri(errors) if error_rows else None,
            "parts": len(parts),
            "job_ids": [p.get("job_id") for p in parts],
            "records": records,
            "results_bytes": result_bytes,
            "results_rows": result_rows,
            "errors_rows": error_rows,
        }
        with atomic_open(summary_path, "w") as out:
            out.write(json.dumps(summary))
        self.log.info(
            "HERE Batch: merged %d parts: %d result rows (%d bytes) -> %s; %d error lines%s",
            len(parts),
            result_rows,
            result_bytes,
            results,
            error_rows,
            f" -> {errors}" if error_rows else "",
        )
        if self.cleanup_parts:
            for p in parts:
                with contextlib.suppress(Exception):
                    part_folder = work / part_name(int(p["index"]))
                    if part_folder.exists():
                        part_folder.rmdir(recursive=True)
        return summary


# -------------------------------------------------------------------------------------------------
# the task group


#: SubmitBatchJobOperator arguments whose value a split fixes: the plan validates every record (a bad
#: one fails the plan, nothing is uploaded), and every part's job is started and waited for.
FIXED_BY_SPLIT: Mapping[str, Any] = MappingProxyType(
    {"validate_input": True, "on_bad_record": "fail", "wait_for_completion": True, "start_job": True}
)
#: SubmitBatchJobOperator arguments that go to the plan (which reads the input), not to the parts.
PLAN_ARGUMENTS = ("input_conn_id",)


def operator_arguments(operator_class: type[BaseOperator]) -> dict[str, inspect.Parameter]:
    """The named arguments of ``operator_class`` and its bases up to (not including) ``BaseOperator``."""
    arguments: dict[str, inspect.Parameter] = {}
    for klass in operator_class.mro():
        if klass is BaseOperator or not issubclass(klass, BaseOperator):
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if name != "self" and parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                arguments.setdefault(name, parameter)
    return arguments


def split_batch_job(
    *,
    group_id: str = "split",
    input: Any,
    destination: Any = None,
    destination_conn_id: str | None = None,
    max_records_per_job: int | None = None,
    max_bytes_per_job: int | None = None,
    max_active_jobs: int = DEFAULT_MAX_ACTIVE_JOBS,
    part_retries: int = 2,
    part_retry_delay: timedelta = timedelta(minutes=1),
    cleanup_parts: bool = True,
    compress: bool = True,
    deferrable: bool = True,
    poll_interval: float = 30.0,
    **submit_kwargs: Any,
) -> TaskGroup:
    """A task group that geocodes (or reverse geocodes, or looks up) an input of any size.

    ``<group_id>.plan`` >> ``<group_id>.run`` (mapped, one task instance per part, at most
    ``max_active_jobs`` at once) >> ``<group_id>.merge``. The merge task's XCom is the summary of
    :class:`MergeSplitResultsOperator` (``results``, ``errors``, ``records``, ...).

    ``input`` is anything :class:`PlanSplitOperator` reads, e.g. ``export.output`` of an upstream task
    that returns the URI of a file it wrote to object storage. ``part_retries`` retries a failed part
    (a job that ended in ``failure`` is replaced by a new one; one still running is reattached to).

    Every other argument is one of :class:`~airflow_here_batch.operators.batch_job.SubmitBatchJobOperator`'s,
    forwarded as it is: the job options (``service``, default ``geocode``; ``output_columns``,
    ``notification_ids`` ..., or ``options``), ``here_conn_id``, the wait settings (``timeout``,
    ``cancel_on_kill``, ``allow_stopped``, ``max_outage`` ...) to each part (``tag`` is the prefix of
    each part's reattach tag); ``input_columns``, ``input_delimiter`` and ``input_conn_id`` to the plan
    too. ``compress``, ``deferrable`` and ``poll_interval`` default to ``True``, ``True`` and 30 s here.
    The arguments in :data:`FIXED_BY_SPLIT` accept only the split's value.

    :raises TypeError: an argument SubmitBatchJobOperator does not take.
    :raises ValueError: for limits above HERE's, ``max_active_jobs`` below 1, a value of
        :data:`FIXED_BY_SPLIT` the split does not do, or job options given twice.
    """
    from airflow.sdk import TaskGroup

    from airflow_here_batch.operators.batch_job import JOB_OPTION_FIELDS, job_options_value

    if max_active_jobs < 1:
        raise ValueError(f"max_active_jobs must be at least 1, got {max_active_jobs}")
    unknown = [name for name in submit_kwargs if name not in operator_arguments(SubmitBatchJobOperator)]
    if unknown:
        raise TypeError(f"split_batch_job() got unexpected keyword arguments {unknown}")
    for name, fixed in FIXED_BY_SPLIT.items():
        given = submit_kwargs.pop(name, None)
        if given is not None and given != fixed:
            raise ValueError(f"split_batch_job does not take {name}={given!r}: a split always uses {fixed!r}")
    fields = {name: submit_kwargs.pop(name) for name in JOB_OPTION_FIELDS if name in submit_kwargs}
    options = job_options_value(submit_kwargs.pop("options", None), **fields)
    if options.pop("start_job", True) is not True:
        raise ValueError("split_batch_job starts every part's job: drop start_job=False from options")
    options.setdefault("service", "geocode")
    plan_kwargs = {name: submit_kwargs.pop(name) for name in PLAN_ARGUMENTS if name in submit_kwargs}
    homeless = [name for name in submit_kwargs if name not in operator_arguments(RunSplitPartOperator)]
    if homeless:  # a new SubmitBatchJobOperator argument that neither the plan nor the parts take
        raise TypeError(f"split_batch_job() cannot forward {homeless}: neither plan nor parts take it")
    with TaskGroup(group_id=group_id) as group:
        plan = PlanSplitOperator(
            task_id="plan",
            input=input,
            service=options["service"],
            split_id=group_id,
            max_records_per_job=max_records_per_job,
            max_bytes_per_job=max_bytes_per_job,
            **{name: options[name] for name in ("input_columns", "input_delimiter") if name in options},
            **plan_kwargs,
        )
        run = RunSplitPartOperator.partial(
            task_id="run",
            options=options,
            compress=compress,
            deferrable=deferrable,
            poll_interval=poll_interval,
            **submit_kwargs,
            retries=part_retries,
            retry_delay=part_retry_delay,
            max_active_tis_per_dagrun=max_active_jobs,
        ).expand(part=plan.output)
        MergeSplitResultsOperator(
            task_id="merge",
            parts=run.output,
            destination=destination,
            destination_conn_id=destination_conn_id,
            split_id=group_id,
            cleanup_parts=cleanup_parts,
        )
    return group
