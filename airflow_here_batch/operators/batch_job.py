"""Operators for HERE Batch API v7 jobs: submit (and wait), download results, stop, delete, list.

The operators are thin: they read their arguments, call :class:`~airflow_here_batch.hooks.here_batch.
HereBatchHook`, defer to :class:`~airflow_here_batch.triggers.batch_job.BatchJobTrigger` or return.
Protocol rules live in :mod:`airflow_here_batch.api` (input validation in ``api.inputs``, results
parsing in ``api.outputs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_here_batch import DEFAULT_CONN_ID
from airflow_here_batch.api.errors import HereBatchError, JobNotFoundError, ResultsNotReadyError
from airflow_here_batch.api.models import BatchJob, JobStatus, OutputType, ServiceType
from airflow_here_batch.api.outcome import DEFAULT_MAX_OUTAGE
from airflow_here_batch.api.polling import PollSchedule
from airflow_here_batch.api.protocol import JobOptions
from airflow_here_batch.version_compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_here_batch.api.outcome import Deadline, JobOutcome
    from airflow_here_batch.api.spend import SpendBound
    from airflow_here_batch.files.input_source import PreparedInput
    from airflow_here_batch.hooks.here_batch import HereBatchHook
    from airflow_here_batch.hooks.submission import JobSubmission, SubmitInput, Submitted

# The hook, the trigger, input validation and results parsing are imported where they are used, not
# here: DAG files import this module at every parse, and only a running task needs them.

__all__ = [
    "BaseBatchJobOperator",
    "DeleteBatchJobOperator",
    "DownloadBatchResultsOperator",
    "ListBatchJobsOperator",
    "StopBatchJobOperator",
    "SubmitBatchJobOperator",
    "job_options_value",
    "reattach_tag",
    "tag_matches",
]


def _make_hook(conn_id: str) -> HereBatchHook:
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    return HereBatchHook(conn_id)


def _default_deferrable() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


#: Separator between a user's tag and the task-instance fingerprint in a job's HERE tag.
TAG_SEPARATOR = "_af"
_FINGERPRINT_LENGTH = 16
#: Key of the job id in Airflow 3.3's task-state store (survives retries of the same task instance).
STATE_KEY = "here_batch_job_id"
#: XCom key of a mapped submit's record count, pushed before its upload (the shared spend bound).
RECORDS_TO_SEND_KEY = "records_to_send"


def reattach_tag(user_tag: str | None, dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The HERE tag of a task instance's job: ``<user tag>_af<16 hex>``, or ``af<16 hex>`` without one.

    The fingerprint hashes dag id, task id, run id and map index, so every try of one task instance
    (retry, rerun after a lost worker) computes the same tag and finds the job it created before; the
    user's tag stays a recognisable prefix (see :func:`tag_matches`). The result fits HERE's
    256-character argument limit.
    """
    from airflow_here_batch.api.protocol import MAX_TAG_LENGTH

    key = "\x1f".join((dag_id, task_id, run_id, str(map_index)))
    fingerprint = "af" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:_FINGERPRINT_LENGTH]
    if not user_tag:
        return fingerprint
    room = MAX_TAG_LENGTH - len(TAG_SEPARATOR) - _FINGERPRINT_LENGTH
    return f"{user_tag[:room]}_{fingerprint}"


def tag_matches(job_tag: str | None, wanted: str) -> bool:
    """Whether ``job_tag`` is ``wanted`` itself or ``wanted`` plus a task-instance fingerprint."""
    if not job_tag:
        return False
    if job_tag == wanted:
        return True
    head, sep, tail = job_tag.rpartition(TAG_SEPARATOR)
    return bool(sep) and head == wanted and len(tail) == _FINGERPRINT_LENGTH and _is_hex(tail)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _job_result(job: BatchJob) -> dict[str, Any]:
    """The small XCom of the submit operator: a subset of the job summary, never a secret."""
    summary = job.summary()
    return {k: summary[k] for k in _RESULT_KEYS}


_RESULT_KEYS = ("job_id", "status", "records", "results_href", "errors_href", "tag")


def _is_remote(location: Any) -> bool:
    if isinstance(location, (str, os.PathLike)) and not hasattr(location, "protocol"):
        return "://" in str(location)
    return hasattr(location, "protocol")  # ObjectStoragePath


#: The :class:`~airflow_here_batch.api.protocol.JobOptions` fields, each also accepted as a keyword.
JOB_OPTION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(JobOptions))


def job_options_value(
    options: JobOptions | Mapping[str, Any] | None = None, **given: Any
) -> dict[str, Any]:
    """The one options value of an operator: ``options`` with the keyword fields ``given`` folded in.

    :param options: a :class:`~airflow_here_batch.api.protocol.JobOptions` (its fields left at their
        defaults count as not set) or a dict of its fields (values may be Jinja templates).
    :param given: JobOptions fields passed as keywords; ``None`` means not given.
    :returns: a plain dict of the fields set (enums as their text values), for a templated attribute.
    :raises ValueError: an unknown field, or a field set to two different values.
    :raises TypeError: ``options`` is neither a JobOptions nor a mapping.
    """
    if options is None:
        value: dict[str, Any] = {}
    elif isinstance(options, JobOptions):
        value = {
            f.name: getattr(options, f.name)
            for f in dataclasses.fields(JobOptions)
            if getattr(options, f.name) != f.default
        }
    elif isinstance(options, Mapping):
        value = dict(options)
    else:
        raise TypeError(f"options must be a JobOptions or a dict of its fields, got {type(options).__name__}")
    unknown = sorted(set(value) - set(JOB_OPTION_FIELDS))
    if unknown:
        raise ValueError(f"options: unknown fields {unknown}; JobOptions has {list(JOB_OPTION_FIELDS)}")
    for name, item in given.items():
        if name not in JOB_OPTION_FIELDS:
            raise ValueError(f"{name} is not a JobOptions field")
        if item is None:
            continue
        if value.get(name) is not None and _plain(value[name]) != _plain(item):
            raise ValueError(f"{name} is given twice, as {item!r} and in options as {value[name]!r}")
        value[name] = item
    return {k: _plain(v) for k, v in value.items() if v is not None}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


class BaseBatchJobOperator(BaseOperator):
    """What :class:`SubmitBatchJobOperator` and a split's part (:class:`~airflow_here_batch.operators.split.
    RunSplitPartOperator`) share: the job options as one templated value, the wait settings, the
    reattach rule and how the task ends on an outcome. The submit steps themselves are
    :class:`~airflow_here_batch.hooks.submission.JobSubmission`'s; this class turns the task's
    arguments and context into its plain values and its results into XCom. Not used on its own; its
    arguments are documented on :class:`SubmitBatchJobOperator`.
    """

    template_fields: Sequence[str] = ("options",)

    def __init__(
        self,
        *,
        here_conn_id: str = DEFAULT_CONN_ID,
        options: JobOptions | Mapping[str, Any] | None = None,
        service: str | None = None,
        input_columns: str | Sequence[str] | None = None,
        input_delimiter: str | None = None,
        output_columns: str | Sequence[str] | None = None,
        output_delimiter: str | None = None,
        output_type: str | None = None,
        output_filter: str | Sequence[str] | None = None,
        tag: str | None = None,
        billing_tags: str | Sequence[str] | None = None,
        notification_ids: str | Sequence[str] | None = None,
        start_job: bool | None = None,
        compress: bool = False,
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        max_poll_interval: float = 300.0,
        timeout: float | timedelta | None = None,
        cancel_on_kill: bool = True,
        reattach: bool = True,
        allow_stopped: bool = False,
        max_outage: float = DEFAULT_MAX_OUTAGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        #: The job options (the JobOptions fields set, as a dict; templated).
        self.options = job_options_value(
            options,
            service=service,
            input_columns=input_columns,
            input_delimiter=input_delimiter,
            output_columns=output_columns,
            output_delimiter=output_delimiter,
            output_type=output_type,
            output_filter=output_filter,
            tag=tag,
            billing_tags=billing_tags,
            notification_ids=notification_ids,
            start_job=start_job,
        )
        ids = self.options.get("notification_ids")
        if ids is not None and "{{" not in str(ids):
            from airflow_here_batch.api.notifications import validate_notification_ids

            validate_notification_ids(ids)  # InvalidNotificationError (a ValueError)
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.here_conn_id = here_conn_id
        self.compress = compress
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.cancel_on_kill = cancel_on_kill
        self.reattach = reattach
        self.allow_stopped = allow_stopped
        self.max_outage = float(max_outage)
        self.job_id: str | None = None
        self._submission: JobSubmission | None = None

    @cached_property
    def hook(self) -> HereBatchHook:
        return _make_hook(self.here_conn_id)

    # -- task context -> plain values ---------------------------------------------------------------

    def _limit_requests(self, context: Context) -> None:
        """No request retry (``Retry-After`` included) sleeps past the task's ``execution_timeout``."""
        from airflow_here_batch.utils.waiting import task_deadline

        limit = task_deadline(self, context, None, worker=True)
        self.hook.deadline = None if limit is None else limit.at

    def _fixed_options(self) -> dict[str, Any]:
        """JobOptions fields this task sets whatever its arguments say."""
        return {}

    def _job_options(self, context: Context) -> JobOptions:
        """The rendered options with this task instance's HERE tag; checked as HERE would."""
        from airflow_here_batch.api.notifications import InvalidNotificationError, validate_notification_ids
        from airflow_here_batch.api.protocol import InvalidJobOptionsError

        if not isinstance(self.options, Mapping):
            raise AirflowException(f"options must be a dict of JobOptions fields, got {self.options!r}")
        fields = dict(self.options)
        try:
            fields["service"] = ServiceType.from_name(fields.get("service", ServiceType.GEOCODE))
            fields["notification_ids"] = validate_notification_ids(fields.get("notification_ids")) or None
            fields["tag"] = self._here_tag(context, fields.get("tag"))
            options = JobOptions(**{**fields, **self._fixed_options()})
            options.to_query()
        except (InvalidJobOptionsError, InvalidNotificationError) as exc:
            raise AirflowException(f"invalid job options: {exc}") from None
        except ValueError as exc:
            raise AirflowException(str(exc)) from None
        return options

    def _here_tag(self, context: Context, tag: str | None) -> str | None:
        if not self.reattach:
            return tag or None
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        index = -1 if map_index is None else int(map_index)
        return reattach_tag(tag, ti.dag_id, ti.task_id, ti.run_id, index)

    def _submission_for(self, context: Context) -> JobSubmission:
        """This run's :class:`~airflow_here_batch.hooks.submission.JobSubmission` (made once)."""
        if self._submission is None:
            from airflow_here_batch.hooks.submission import JobSubmission

            options = self._job_options(context)
            self._submission = JobSubmission(
                self.hook, options, reattach=self.reattach, compress=self.compress, log=self.log
            )
        return self._submission

    @staticmethod
    def _state_store(context: Context) -> Any:
        # Airflow >= 3.3 puts a task-state store in the context; older 3.x have none.
        return context.get("task_state_store")  # type: ignore[misc]

    def _stored_job_id(self, context: Context) -> str | None:
        store = self._state_store(context)
        if store is None or not self.reattach:
            return None
        try:
            stored = store.get(STATE_KEY)
        except Exception as exc:
            self.log.warning("HERE Batch: task state store unavailable (%s); looking up by tag", exc)
            return None
        return str(stored) if stored else None

    def _remember(self, context: Context, job_id: str) -> None:
        store = self._state_store(context)
        if store is None or not self.reattach:
            return
        try:
            store.set(STATE_KEY, job_id)
        except Exception as exc:  # the tag still finds the job; never fail a submitted task for this
            self.log.warning("HERE Batch: could not keep job id %s in the task state store: %s", job_id, exc)

    # -- the submit sequence ------------------------------------------------------------------------

    def _submit(self, context: Context, source: SubmitInput) -> Submitted:
        """Reattach to this task instance's job, or check ``source`` and create the job
        (:meth:`JobSubmission.submit <airflow_here_batch.hooks.submission.JobSubmission.submit>`;
        :attr:`_before_upload`, the spend check, gets the checked input first); pushes the XComs
        ``rejected`` and ``rejects_path`` of a new job."""
        from airflow_here_batch.api.inputs import InputValidationError

        submission = self._submission_for(context)
        before_upload: Callable[[Any], None] | None = getattr(self, "_before_upload", None)
        try:
            submitted = submission.submit(
                source, stored_job_id=self._stored_job_id(context), before_upload=before_upload
            )
        except InputValidationError as exc:
            hint = ""
            if source.on_bad_record == "fail" and not all(p.fatal for p in exc.problems):
                hint = (
                    "\nFix these records, or pass on_bad_record='skip' to submit the others (the bad "
                    "ones are written with their reasons to a rejects file)"
                )
            raise AirflowException(f"the input was not uploaded: {exc}{hint}") from None
        if submitted.created:
            context["ti"].xcom_push(key="rejected", value=submitted.rejected)
            if submitted.rejects_path is not None:  # Airflow 3.0's API refuses a None XCom value
                context["ti"].xcom_push(key="rejects_path", value=submitted.rejects_path)
        return submitted

    def _keep(self, context: Context, submitted: Submitted) -> BatchJob:
        """Keep the job id (task-state store, ``self.job_id`` for ``on_kill``, XCom ``job_id``)."""
        job = submitted.job
        if submitted.created:
            self._remember(context, job.id)
        self.job_id = job.id
        # ``submit.output["job_id"]`` in a DAG reads this XCom key (Airflow 3 XComArg key access).
        context["ti"].xcom_push(key="job_id", value=job.id)
        return job

    # -- wait and end -------------------------------------------------------------------------------

    def _wait(
        self,
        context: Context,
        job_id: str,
        *,
        timeout: float | None,
        not_after: Deadline | None = None,
        method_name: str = "execute_complete",
    ) -> JobOutcome:
        """Wait for the job to end with the shared rule (:mod:`airflow_here_batch.utils.waiting`):
        deferred (raises ``TaskDeferred``; the task resumes in ``method_name``) or on the worker."""
        from airflow_here_batch.utils.waiting import defer_wait, worker_wait

        wait_args: dict[str, Any] = {
            "job_id": job_id,
            "poll_interval": self.poll_interval,
            "max_poll_interval": self.max_poll_interval,
            "timeout": timeout,
            "not_after": not_after,
            "cancel_on_kill": self.cancel_on_kill,
            "allow_stopped": self.allow_stopped,
            "max_outage": self.max_outage,
        }
        if self.deferrable:
            defer_wait(self, context, here_conn_id=self.here_conn_id, method_name=method_name, **wait_args)
        return worker_wait(self, context, self.hook, **wait_args)

    def _ended_outcome(self, job: BatchJob) -> JobOutcome:
        """HERE's verdict on a job that has ended already (:func:`~airflow_here_batch.hooks.submission.
        ended_outcome`)."""
        from airflow_here_batch.hooks.submission import ended_outcome

        return ended_outcome(self.hook, job, allow_stopped=self.allow_stopped)

    def _finish(self, context: Context, outcome: JobOutcome) -> dict[str, Any]:
        """End the task as the shared rule says (:func:`~airflow_here_batch.utils.waiting.raise_for_outcome`);
        any second job found under this task instance's tag is stopped and reported first."""
        from airflow_here_batch.utils.waiting import raise_for_outcome

        submission = self._submission_for(context)
        submission.stop_extra_jobs(keep=outcome.job_id)
        extra = list(submission.extra_jobs)
        raise_for_outcome(outcome, sensor=False)
        self.log.info("HERE Batch: %s", outcome.message)
        job = dict(outcome.job or {})
        result = {k: job.get(k) for k in _RESULT_KEYS}
        if extra:
            result["extra_jobs_stopped"] = extra
        return result

    def on_kill(self) -> None:
        """Stop the HERE job when the task is killed (``cancel_on_kill``)."""
        if self.cancel_on_kill and self.job_id:
            from airflow_here_batch.hooks.submission import stop_quietly

            stop_quietly(self.hook, self.job_id, self.log)


class SubmitBatchJobOperator(BaseBatchJobOperator):
    """Validate an input, submit it as a HERE batch job and, optionally, wait for the job to end.

    Returns (XCom ``return_value``) ``{"job_id", "status", "records", "results_href", "errors_href",
    "tag"}`` and pushes the job id under the XCom key ``job_id`` as soon as the job exists, so
    ``submit.output["job_id"]`` works downstream (also while this task still waits).

    The input is checked against HERE's rules before anything is uploaded (header/columns, delimiter,
    4096-character lines, 512-character recIds, 1,000,000 records, 500 MB, the service's key column,
    billing tags); a problem fails the task with the line number and the fix.

    **Reattach, not duplicate.** With ``reattach=True`` (default) the job's HERE tag carries a
    fingerprint of dag id, task id, run id and map index (see :func:`reattach_tag`). When the same task
    instance runs again (retry, lost worker, rerun) it first looks for the job it created: by the id
    kept in Airflow 3.3's task-state store, else by that tag. A running, completed or submitted job is
    reused, a stopped one resumed; a failed or deleted one is replaced by a new job.

    **Kill.** ``on_kill`` stops the HERE job when ``cancel_on_kill``. While deferred, Airflow >= 3.3
    calls the trigger's ``on_kill``, which stops it; on Airflow 3.0-3.2 a kill during deferral leaves
    the job running (stop it with :class:`StopBatchJobOperator`). A deadline (``timeout``) passing stops
    the job in both modes.

    **Job options** (``service`` … ``start_job``, the fields of
    :class:`~airflow_here_batch.api.protocol.JobOptions`) go as keywords, or together as ``options``
    (a ``JobOptions`` or a dict of its fields), or both for different fields; the task keeps them as
    one templated dict, ``options``.

    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param options: the job options as one value: a :class:`~airflow_here_batch.api.protocol.JobOptions`
        or a dict of its fields. A field given here and as a keyword with another value raises
        ``ValueError``. (templated: every text in the dict)
    :param service: ``geocode``, ``revgeocode``, ``lookup`` or the service HRN; required (here or in
        ``options``). (templated)
    :param input: what to geocode: a local file path, an object-storage URI or
        :class:`~airflow.sdk.ObjectStoragePath` (``s3://bucket/in.csv``; streamed; gzip content is
        read decompressed whatever the name), ``bytes``, a list of dicts (rows, e.g. from XCom; a
        header is written from the keys), or inline text: a ``str`` is inline text exactly when it
        holds a line break, anything else is a path (see :mod:`airflow_here_batch.files.input_source`).
        (templated)
    :param input_columns: column names; omit when the input's first line is a header. (templated)
    :param input_delimiter: input delimiter, one character or ``\\t``; default ``|``. (templated)
    :param output_columns: output columns (HERE's defaults when omitted). (templated)
    :param output_delimiter: output delimiter; default ``|``. (templated)
    :param output_type: ``csv`` (default) or ``jsonl``.
    :param output_filter: jsonl only: comma-separated dotted paths to keep. (templated)
    :param tag: your label for the job (listing, bulk delete). With ``reattach`` the HERE tag becomes
        ``<tag>_af<fingerprint>``; :class:`ListBatchJobsOperator` and :class:`DeleteBatchJobOperator`
        match both forms. (templated)
    :param billing_tags: up to 6 HERE billing tags (list, or a string joined by ``+`` or ``,``). (templated)
    :param notification_ids: up to 5 HERE notification ids (BETA webhooks HERE calls with HTTP GET when
        the job ends; create them with :meth:`~airflow_here_batch.hooks.here_batch.HereBatchHook.
        create_notification`), a list or a comma-separated string, sent as HERE's ``notificationIds``.
        More than 5, an empty id or a duplicate fails before anything is uploaded (at DAG parse when
        not templated). (templated)
    :param start_job: start the job right away (default); ``False`` leaves it ``submitted``.
    :param compress: gzip the upload on the fly.
    :param wait_for_completion: wait until the job ends; then a failed, deleted or stopped job fails
        the task.
    :param deferrable: wait in the triggerer instead of a worker slot (default from
        ``[operators] default_deferrable``).
    :param poll_interval: first delay between two status calls, seconds (grows toward
        ``max_poll_interval`` and follows HERE's progress).
    :param max_poll_interval: longest delay between two status calls, seconds.
    :param timeout: longest wait in seconds; then the task fails (and the job is stopped when
        ``cancel_on_kill``). ``None`` waits without limit.
    :param cancel_on_kill: stop the HERE job when the task is killed or times out.
    :param reattach: find and reuse the job of an earlier try of this task instance (see above). Set
        ``False`` to always submit a new job and use ``tag`` verbatim.
    :param allow_stopped: when waiting, accept a stopped job as done (partial results).
    :param max_outage: seconds without one usable answer from HERE (429, 5xx, dropped connections)
        after which a wait fails; the same rule in the worker and the triggerer.
    :param input_conn_id: connection for an object-storage ``input`` (e.g. ``aws_default``).
    :param validate_input: check the input before upload (default); ``False`` skips the check pass
        (the upload still drops a leading byte-order mark and the CRs of CRLF line endings).
    :param on_bad_record: ``"fail"`` (default): any bad record fails the task before upload, listing
        up to 20 problems with counts by kind. ``"skip"``: bad records are left out and written with
        their reasons to ``rejects.jsonl`` under the base location (see
        :func:`airflow_here_batch.files.locations.base_location`); XCom keys ``rejected`` (count) and
        ``rejects_path`` (URI or ``None``) say so. Problems with the input as a whole still fail, and
        so does skipping when the input has no recId column (HERE would renumber the rest). See
        docs/operators.md, "What each bad input gets".
    :param max_records_to_send: the most records this run may upload (a number, or a template such as
        ``"{{ params.max_records_to_send }}"``; empty/``None``: ``[here_batch] max_records_to_send``,
        none when unset). The count is the validation pass's, taken before anything is uploaded; above
        it the task fails (no retry) naming the count and the bound. **Mapped** instances of one task
        (``expand``) count together: each pushes its count (XCom ``records_to_send``) before its check
        and checks the sum of the counts its siblings of the same DAG run have pushed so far, its own
        included. Whichever instance pushes last sees every count pushed before it, so the instances
        that upload never send more than the bound together (an instance refused leaves its count, so
        later ones are refused too: raise the bound, or fix the input). Needs ``validate_input=True``
        (the count comes from that pass). A reattached job was counted by the try that created it.
        (templated)
    :param price_per_1000_records: price for the estimated cost in the log and XCom (default
        ``[here_batch] price_per_1000_records``; none built in). (templated)
    :param dry_run: check and count the input, report what a real run would upload (XCom
        ``{"dry_run": True, "records_to_send", "estimated_cost", "max_records_to_send",
        "bound_exceeded"}``) and create no HERE job (not even the look-up of an earlier try's job).
        (templated)
    :raises ValueError: (at DAG parse) no ``service``, a field given twice with two values, bad
        notification ids, ``wait_for_completion`` without ``start_job``, a bad ``on_bad_record``.
    """

    template_fields: Sequence[str] = (
        "input",
        "options",
        "max_records_to_send",
        "price_per_1000_records",
        "dry_run",
    )
    ui_color = "#48dad0"

    def __init__(
        self,
        *,
        input: Any,
        input_conn_id: str | None = None,
        validate_input: bool = True,
        on_bad_record: str = "fail",
        wait_for_completion: bool = False,
        max_records_to_send: int | str | None = None,
        price_per_1000_records: float | str | None = None,
        dry_run: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_records_to_send = max_records_to_send
        self.price_per_1000_records = price_per_1000_records
        self.dry_run = dry_run
        if "service" not in self.options:
            raise ValueError("service is required: pass service='geocode' (revgeocode, lookup) or options")
        if wait_for_completion and self.options.get("start_job") is False:
            raise ValueError(
                "wait_for_completion=True needs start_job=True: a job that is not started never ends"
            )
        if on_bad_record not in ("fail", "skip"):
            raise ValueError(f"on_bad_record={on_bad_record!r}: use 'fail' or 'skip'")
        self.input = input
        self.input_conn_id = input_conn_id
        self.validate_input = validate_input
        self.on_bad_record = on_bad_record
        self.wait_for_completion = wait_for_completion
        # Jinja drops one trailing newline of a template, so "recId|q\n" would render as a path.
        self._inline_text = isinstance(input, str) and ("\n" in input or "\r" in input)

    def _fixed_options(self) -> dict[str, Any]:
        # rows: the header line written from the keys says the columns
        return {"input_columns": None} if isinstance(self.input, (list, tuple)) else {}

    def _input(self, context: Context) -> SubmitInput:
        from airflow_here_batch.hooks.submission import SubmitInput

        return SubmitInput(
            self.input,
            input_columns=self.options.get("input_columns"),
            delimiter=self._submission_for(context).options.input_delimiter,
            conn_id=self.input_conn_id,
            inline_text=self._inline_text,
            validate=self.validate_input,
            on_bad_record=self.on_bad_record,
            rejects_location=_rejects_location(context) if self.on_bad_record == "skip" else None,
        )

    def _bound(self) -> SpendBound:
        from airflow_here_batch.utils.spend import resolve_bound

        try:
            return resolve_bound(self.max_records_to_send, self.price_per_1000_records)
        except ValueError as exc:
            raise AirflowFailException(f"the input was not uploaded: {exc}") from None

    def _spend_check(self, context: Context, bound: SpendBound) -> Callable[[Any], None]:
        """The check run between the validation pass and the upload (see ``max_records_to_send``)."""
        from airflow_here_batch.api.spend import SendReason, SpendLimitExceeded, total

        def check(prepared: PreparedInput) -> None:
            if bound.limit is None:
                return
            if prepared.report is None:
                raise AirflowFailException(
                    f"the input was not uploaded: max_records_to_send={bound.limit} ({bound.origin}) needs "
                    "the record count of the validation pass: set validate_input=True"
                )
            count = prepared.report.records
            ti = context["ti"]
            map_index = getattr(ti, "map_index", -1)
            expanded = _mapped_count(context) if map_index is not None and map_index >= 0 else None
            what = "this task"
            counted = count
            if map_index is not None and map_index >= 0 and expanded:
                ti.xcom_push(key=RECORDS_TO_SEND_KEY, value=count)  # before the check: see the docstring
                others = [i for i in range(int(expanded)) if i != map_index]
                pulled = (
                    ti.xcom_pull(task_ids=ti.task_id, key=RECORDS_TO_SEND_KEY, map_indexes=others)
                    if others
                    else []
                )
                values = pulled if isinstance(pulled, (list, tuple)) else [pulled]
                counted = count + total(values)
                what = f"the {expanded} mapped instances of {ti.task_id} together (as counted so far)"
            try:
                bound.check(counted, {SendReason.INPUT.value: counted}, what=what)
            except SpendLimitExceeded as exc:
                raise AirflowFailException(str(exc)) from None
            self.log.info("HERE Batch: %s", bound.describe(count, {SendReason.INPUT.value: count}))

        return check

    def _dry_run(self, context: Context, bound: SpendBound) -> dict[str, Any]:
        """Check and count the input; report what a real run would upload. No HERE request."""
        from airflow_here_batch.api.inputs import InputValidationError
        from airflow_here_batch.api.spend import SendReason, SpendLimitExceeded, estimate_cost

        submission = self._submission_for(context)
        try:
            prepared = submission.prepare(self._input(context))
        except InputValidationError as exc:
            raise AirflowException(f"dry run: the input would not be uploaded: {exc}") from None
        count = prepared.report.records if prepared.report is not None else None
        result: dict[str, Any] = {
            "dry_run": True,
            "job_id": None,
            "records_to_send": count,
            "rejected": prepared.rejected,
            "estimated_cost": None if count is None else estimate_cost(count, bound.price_per_1000),
            "max_records_to_send": bound.limit,
            "bound_exceeded": False,
        }
        if count is None:
            self.log.info("HERE Batch: dry run: validate_input=False, so the records were not counted")
            return result
        by_reason = {SendReason.INPUT.value: count}
        described = bound.describe(count, by_reason, dry_run=True)
        self.log.info("HERE Batch: dry run: %s; no job created", described)
        try:
            bound.check(count, by_reason, what="this task")
        except SpendLimitExceeded as exc:
            result["bound_exceeded"] = True
            self.log.warning("HERE Batch: dry run: a real run would be refused:\n%s", exc)
        return result

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_here_batch.api.outcome import is_finished
        from airflow_here_batch.utils.spend import resolve_dry_run

        bound = self._bound()
        try:
            dry_run = resolve_dry_run(self.dry_run)
        except ValueError as exc:
            raise AirflowFailException(f"the input was not uploaded: {exc}") from None
        _check_destinations(self, context)  # a dry run checks them too: a real run would fail there
        if dry_run:
            return self._dry_run(context, bound)
        self._limit_requests(context)
        self._before_upload = self._spend_check(context, bound)
        submitted = self._submit(context, self._input(context))
        job = self._keep(context, submitted)
        if not self.wait_for_completion:
            result = _job_result(job)
            extra = self._submission_for(context).extra_jobs
            if extra:
                result["extra_jobs_stopped"] = list(extra)
            return result
        if is_finished(job):
            return self._finish(context, self._ended_outcome(job))
        return self._finish(context, self._wait(context, job.id, timeout=self.timeout))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: return the job summary or fail with HERE's details."""
        from airflow_here_batch.api.outcome import JobOutcome

        self.job_id = event.get("job_id") or self.job_id
        return self._finish(context, JobOutcome.from_event(event))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the input location as input, the HERE job as output (OpenLineage provider only)."""
        from airflow_here_batch.utils.lineage import submit_lineage

        return submit_lineage(self)


def _mapped_count(context: Context) -> int:
    """How many instances the mapped task of ``context`` has in its DAG run: the context's
    ``expanded_ti_count`` when set, else the task-instance count the API server gives (Airflow >= 3.1),
    else ``[core] max_map_length`` (an upper bound: the siblings' counts are read one index at a time)."""
    expanded = context.get("expanded_ti_count")
    if expanded:
        return int(expanded)
    ti = context["ti"]
    count = getattr(type(ti), "get_ti_count", None)
    if count is not None:
        with contextlib.suppress(Exception):
            found = int(count(dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id]))
            if found > 0:
                return found
    from airflow.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def _check_destinations(task: BaseOperator, context: Context) -> None:
    """Every place the tasks downstream of ``task`` write to, checked before a job is created."""
    from airflow_here_batch.utils.destinations import DestinationCheckError, check_destinations

    try:
        check_destinations(task, context)
    except DestinationCheckError as exc:
        raise AirflowException(str(exc)) from None


def _rejects_location(context: Context) -> Any:
    """Where ``on_bad_record="skip"`` writes the rejects: ``<base location>/<dag>/<run>/<task>/``."""
    from airflow_here_batch.files.locations import rejects_location

    ti = context["ti"]
    return rejects_location(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))


class DownloadBatchResultsOperator(BaseOperator):
    """Download a finished job's results and/or errors report, atomically.

    The download streams (gzip transfer) into a temporary file; only a complete download is moved to
    ``destination``, so a failed download never leaves a partial file there. For an object-storage
    destination the complete file is uploaded under a temporary name and then renamed.

    **Nothing to download.** HERE answers 204 when a job has no results (or, commonly, no errors).
    Then nothing is written (unless ``create_empty``) and the result is
    ``{"path": None, "bytes": 0, "rows": 0, "empty": True}`` (``rows`` is ``[]`` for ``records``).

    Returns ``{"path", "bytes", "rows", "empty"}`` where ``bytes`` is the decompressed size and
    ``rows`` the number of data rows (header excluded); with ``output_format="records"``, ``rows`` is
    the list of parsed rows (dicts) and ``count`` their number. With ``what="both"`` it returns
    ``{"results": {...}, "errors": {...}}`` and ``destination`` is a folder receiving
    ``results.<csv|jsonl|geojson>`` and ``errors.txt``.

    :param job_id: the HERE job id. (templated)
    :param destination: object-storage URI (``s3://bucket/geo/{{ ds }}/results.csv``,
        ``file:///shared/geo/``) or a local path (worker-local: only for one machine); a folder (ending
        with ``/``, or always with ``what="both"``) gets default file names. Default: the folder
        ``<base location>/output/<dag_id>/<run_id>/<task_id>/`` (``[here_batch] base_location``, see
        :mod:`airflow_here_batch.files.locations`); with ``what="results", output_format="records"`` and
        no destination nothing is written. (templated)
    :param what: ``results``, ``errors`` or ``both``.
    :param output_format: ``raw`` (HERE's file as is), ``geojson`` (a FeatureCollection of the rows
        with a position; results only) or ``records`` (rows parsed into XCom; results only, refused
        above ``max_records_rows``). The errors report is always written raw.
    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param destination_conn_id: connection for an object-storage destination.
    :param max_records_rows: most rows ``records`` may return to XCom.
    :param create_empty: on 204, write an empty file (an empty FeatureCollection for geojson).
    :param policy: the quality policy (:class:`~airflow_here_batch.api.quality.AcceptancePolicy` or a
        dict of its arguments; default the default policy). With ``records`` and ``geojson`` every row
        carries its record's ``matchQuality``, ``accepted`` and ``candidates``
        (:func:`airflow_here_batch.api.outputs.with_quality`), and the result has ``quality``:
        ``{"records_accepted", "records_not_accepted", "verdicts"}``.
    :param review_destination: where to write the review file of the records not accepted (results
        only; ``|``-delimited ``recId|matchQuality|candidates|chosenCandidate|reviewedAt``, the top 5
        candidates as JSON; written for any ``output_format``). The result then has ``review`` (its
        location) and ``records_review``. (templated)

    Results files only tell the verdict what HERE answered, not what the input asked for: a street or
    area match counts as not precise enough (the table path knows the request and decides better).
    """

    template_fields: Sequence[str] = ("job_id", "destination", "review_destination")
    ui_color = "#8fd3ff"

    def __init__(
        self,
        *,
        job_id: str,
        destination: Any = None,
        what: str = "results",
        output_format: str = "raw",
        here_conn_id: str = DEFAULT_CONN_ID,
        destination_conn_id: str | None = None,
        max_records_rows: int = 10_000,
        create_empty: bool = False,
        policy: Any = None,
        review_destination: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_here_batch.api.quality import AcceptancePolicy

        self.policy = AcceptancePolicy.of(policy)
        self.review_destination = review_destination
        if what not in ("results", "errors", "both"):
            raise ValueError(f"what={what!r}: use 'results', 'errors' or 'both'")
        if output_format not in ("raw", "geojson", "records"):
            raise ValueError(f"output_format={output_format!r}: use 'raw', 'geojson' or 'records'")
        self.job_id = job_id
        self.destination = destination
        self.what = what
        self.output_format = output_format
        self.here_conn_id = here_conn_id
        self.destination_conn_id = destination_conn_id
        self.max_records_rows = int(max_records_rows)
        self.create_empty = create_empty

    @cached_property
    def hook(self) -> HereBatchHook:
        return _make_hook(self.here_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        if self.destination is None and not (self.output_format == "records" and self.what == "results"):
            self.destination = self._default_destination(context)
            self.log.info("HERE Batch: no destination given; writing to %s", self.destination)
        result = self._download(context)
        self._lineage_result = result
        self._annotate_outlets(context, result)
        return result

    def here_batch_destinations(self, context: Context) -> list[Any]:
        """Where this task will write (the folder of its files), for the check made before the job is
        created (:func:`~airflow_here_batch.utils.destinations.check_destinations`)."""
        from airflow_here_batch.files.locations import default_destination
        from airflow_here_batch.utils.destinations import Destination, known

        if self.destination is None:
            if self.output_format == "records" and self.what == "results":
                return []  # rows into XCom, no file
            ti = context["ti"]
            folder = default_destination(ti.dag_id, ti.run_id, self.task_id)
            return [Destination("folder", folder, None, self.task_id)]
        rendered = known(self.render_template(self.destination, context))
        if rendered is None:
            return []
        folder = rendered if self.what == "both" or rendered.endswith("/") else rendered.rsplit("/", 1)[0]
        return [Destination("folder", folder or ".", self.destination_conn_id, self.task_id)]

    def _default_destination(self, context: Context) -> str:
        from airflow_here_batch.files.locations import default_destination

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return default_destination(ti.dag_id, ti.run_id, ti.task_id, -1 if map_index is None else map_index)

    def _annotate_outlets(self, context: Context, result: dict[str, Any]) -> None:
        """Put where the files went (and the job id and row counts) on each outlet's asset event."""
        if not self.outlets:
            return
        from airflow_here_batch.utils.lineage import asset_event_extra

        extra = asset_event_extra(self.job_id, result)
        events = context["outlet_events"]
        for outlet in self.outlets:
            with contextlib.suppress(Exception):  # an outlet that is not an asset (e.g. an alias)
                events[outlet].extra.update(extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the HERE job as input, the written files as outputs (OpenLineage provider only)."""
        from airflow_here_batch.utils.lineage import download_lineage

        return download_lineage(self, getattr(self, "_lineage_result", None))

    def _download(self, context: Context) -> dict[str, Any]:
        try:
            job = self.hook.get_job(self.job_id)
        except HereBatchError as exc:
            raise AirflowException(str(exc)) from None
        if job.status is JobStatus.DELETED:
            raise AirflowException(f"job {job.id} is deleted: HERE removed its results and errors")
        ext = "jsonl" if job.output_type is OutputType.JSONL else "csv"
        if self.output_format == "geojson":
            ext = "geojson"
        try:
            if self.what == "both":
                folder = str(self.destination).rstrip("/")
                return {
                    "results": self._one(job, "results", f"{folder}/results.{ext}"),
                    "errors": self._one(job, "errors", f"{folder}/errors.txt"),
                }
            destination = self.destination
            if destination is not None and str(destination).endswith("/"):
                destination = f"{destination}{'results.' + ext if self.what == 'results' else 'errors.txt'}"
            return self._one(job, self.what, destination)
        except ResultsNotReadyError:
            raise AirflowException(
                f"job {job.id} is {job.status.value}: HERE has its files once it completed, failed or was "
                "stopped; wait for it first (BatchJobSensor or wait_for_completion=True)"
            ) from None
        except HereBatchError as exc:
            raise AirflowException(str(exc)) from None

    def _one(self, job: BatchJob, kind: str, destination: Any) -> dict[str, Any]:
        from airflow_here_batch.api.outputs import iter_rows, with_quality, write_geojson
        from airflow_here_batch.api.quality import QualityCounts

        fmt = self.output_format if kind == "results" else "raw"
        download = self.hook.download_results if kind == "results" else self.hook.download_errors
        if fmt == "raw" and destination is not None and not _is_remote(destination):
            # Straight to the destination: the hook writes a temporary file beside it and renames it
            # when complete, so there is no second copy and never a partial file.
            target = Path(str(destination)).expanduser()
            written = download(job.id, target)
            if written is None:
                self.log.info("HERE Batch: job %s has no %s (HERE answered 204)", job.id, kind)
                return self._empty(fmt, destination)
            rows_count = _count_rows(target)
            self.log.info(
                "HERE Batch: %s of job %s: %d bytes, %d rows -> %s", kind, job.id, written, rows_count, target
            )
            return {"path": str(target), "bytes": written, "rows": rows_count, "empty": False}
        with tempfile.TemporaryDirectory(prefix="here-batch-") as tmp:
            raw = Path(tmp) / "download"
            written = download(job.id, raw)
            if written is None:
                self.log.info("HERE Batch: job %s has no %s (HERE answered 204)", job.id, kind)
                return self._empty(fmt, destination)
            counts = QualityCounts()
            review: list[Any] | None = [] if kind == "results" and self.review_destination else None
            if fmt == "records":
                rows = self._records(raw, counts, review)
                path = self._place(raw, destination) if destination is not None else None
                result = {"path": path, "bytes": written, "rows": rows, "count": len(rows), "empty": False}
                return self._with_quality(result, counts, review, tmp)
            if fmt == "geojson":
                staged = Path(tmp) / "staged.geojson"
                with raw.open("rb") as source, staged.open("w", encoding="utf-8") as out:
                    rows_q = with_quality(iter_rows(source), self.policy, counts=counts, review=review)
                    features, skipped = write_geojson(rows_q, out)
                if skipped:
                    self.log.info("HERE Batch: %d result rows have no position and were left out", skipped)
                path = self._place(staged, destination)
                result = {"path": path, "bytes": staged.stat().st_size, "rows": features, "empty": False}
                return self._with_quality(result, counts, review, tmp)
            if review is not None:  # raw: the file as it is, read once more for the review file
                with raw.open("rb") as source:
                    for _ in with_quality(iter_rows(source), self.policy, counts=counts, review=review):
                        pass
            rows_count = _count_rows(raw)
            path = self._place(raw, destination)
            self.log.info(
                "HERE Batch: %s of job %s: %d bytes, %d rows -> %s", kind, job.id, written, rows_count, path
            )
            result = {"path": path, "bytes": written, "rows": rows_count, "empty": False}
            return self._with_quality(result, counts, review, tmp) if review is not None else result

    def _with_quality(
        self, result: dict[str, Any], counts: Any, review: list[Any] | None, tmp: str
    ) -> dict[str, Any]:
        """``result`` with the run's ``quality`` counts, and the review file written when asked for."""
        from airflow_here_batch.api.outputs import write_review

        result["quality"] = counts.summary()
        self.log.info("HERE Batch: quality: %s", counts.describe())
        if review is not None:
            staged = Path(tmp) / "review.csv"
            with staged.open("w", encoding="utf-8") as out:
                result["records_review"] = write_review(review, out)
            result["review"] = self._place(staged, self.review_destination)
        return result

    def _records(
        self, raw: Path, counts: Any = None, review: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        from airflow_here_batch.api.outputs import iter_rows, with_quality

        rows: list[dict[str, Any]] = []
        with raw.open("rb") as source:
            for row in with_quality(iter_rows(source), self.policy, counts=counts, review=review):
                if len(rows) >= self.max_records_rows:
                    raise AirflowException(
                        f"the results have more than {self.max_records_rows} rows, too many for XCom: use "
                        "output_format='raw' and read the file downstream, or raise max_records_rows"
                    )
                rows.append(row)
        return rows

    def _empty(self, fmt: str, destination: Any) -> dict[str, Any]:
        path = None
        if self.create_empty and destination is not None:
            from airflow_here_batch.files.atomic import atomic_open

            target = self._target(destination)
            with atomic_open(target, "w", conn_id=self.destination_conn_id) as out:
                out.write('{"type": "FeatureCollection", "features": []}\n' if fmt == "geojson" else "")
            path = str(target)
        return {"path": path, "bytes": 0, "rows": [] if fmt == "records" else 0, "empty": True}

    def _target(self, destination: Any) -> Any:
        """``destination`` as an ``ObjectStoragePath`` (remote) or a local ``Path`` (``~`` expanded)."""
        from airflow_here_batch.files.locations import storage_path

        if _is_remote(destination):
            return storage_path(destination, self.destination_conn_id)
        return Path(str(destination)).expanduser()

    def _place(self, staged: Path, destination: Any) -> str:
        """Move a complete local file to ``destination`` atomically (temp name + rename)."""
        from airflow_here_batch.files.atomic import place_file

        return place_file(staged, self._target(destination), remote=_is_remote(destination))


def _count_rows(path: Path) -> int:
    """Data rows of a downloaded results or errors file, counted by newlines (no parsing).

    CSV results and errors reports start with a header line (``recId…``); JSONL results have none.
    """
    lines = 0
    first = b""
    last = b"\n"
    with path.open("rb") as source:
        while chunk := source.read(1024 * 1024):
            if not first:
                first = chunk[:1]
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    has_header = bool(first) and first != b"{"
    return max(0, lines - 1) if has_header else lines


class StopBatchJobOperator(BaseOperator):
    """Stop (halt) a HERE batch job; it can be resumed later, processed records stay billed.

    :param job_id: the HERE job id. (templated)
    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param wait_for_stop: wait until HERE reports the job ``stopped`` (or ended).
    :param poll_interval: delay between two status calls while waiting, seconds.
    :param timeout: longest wait, seconds.
    """

    template_fields: Sequence[str] = ("job_id",)

    def __init__(
        self,
        *,
        job_id: str,
        here_conn_id: str = DEFAULT_CONN_ID,
        wait_for_stop: bool = False,
        poll_interval: float = 5.0,
        timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.here_conn_id = here_conn_id
        self.wait_for_stop = wait_for_stop
        self.poll_interval = poll_interval
        self.timeout = timeout

    def execute(self, context: Context) -> dict[str, Any]:
        hook = _make_hook(self.here_conn_id)
        try:
            job = hook.stop_job(self.job_id)
            if self.wait_for_stop and not (job.is_terminal or job.status is JobStatus.STOPPED):
                job = hook.wait_for_job(
                    self.job_id,
                    schedule=PollSchedule(self.poll_interval, max(self.poll_interval, 60.0)),
                    timeout=self.timeout,
                )
        except (HereBatchError, TimeoutError) as exc:
            raise AirflowException(str(exc)) from None
        self.log.info("HERE Batch: job %s is %s", job.id, job.status.value)
        return job.summary()


def _statuses(status: str | Sequence[str] | None, *, name: str = "status") -> list[str]:
    """``status`` as a list: one status, ``any``, or several (a list, or a comma-separated string)."""
    if status is None:
        return []
    items = [x.strip() for x in status.split(",")] if isinstance(status, str) else [str(x) for x in status]
    items = [x for x in items if x]
    if not items:
        raise ValueError(f"{name} is empty: pass 'any' or a HERE status such as 'completed'")
    return items


def _prefixes(tag_prefix: str | Sequence[str] | None) -> tuple[str, ...]:
    if tag_prefix is None:
        return ()
    items = (tag_prefix,) if isinstance(tag_prefix, str) else tuple(tag_prefix)
    if not items or any(not p for p in items):
        raise ValueError("tag_prefix must be a non-empty string or a list of them")
    return items


def _older_than(value: timedelta | None) -> timedelta | None:
    if value is None:
        return None
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValueError(f"older_than must be a positive timedelta, e.g. timedelta(days=7); got {value!r}")
    return value


class _JobFilter:
    """The jobs an operator acts on: HERE's ``status``/``tag`` filters, then age and tag prefix here.

    HERE lists by one status and an exact tag (shared doc §4); it has no time or prefix filter, so
    those run on the listed jobs. Age is measured from the job's ``created`` time (HERE: RFC 3339 UTC)
    to the wall clock when the task runs; a job without ``created`` never matches an age filter.
    """

    def __init__(
        self,
        statuses: list[str],
        tag: str | None,
        prefixes: tuple[str, ...],
        older_than: timedelta | None,
    ) -> None:
        self.statuses = statuses or ["any"]
        self.tag = tag or None
        self.prefixes = prefixes
        self.older_than = older_than

    def jobs(self, hook: HereBatchHook) -> list[BatchJob]:
        import pendulum

        cutoff = pendulum.now("UTC") - self.older_than if self.older_than is not None else None
        seen: dict[str, BatchJob] = {}
        for status in dict.fromkeys(self.statuses):
            listed = (
                hook.list_jobs_created_before(cutoff, status=status)
                if cutoff is not None
                else hook.list_jobs(status=status)
            )
            for job in listed:
                if self.tag and not tag_matches(job.tag, self.tag):
                    continue
                if self.prefixes and not (job.tag and job.tag.startswith(self.prefixes)):
                    continue
                seen.setdefault(job.id, job)
        return sorted(seen.values(), key=lambda j: j.created.timestamp() if j.created else 0.0, reverse=True)

    def describe(self) -> str:
        parts = [f"status {'/'.join(self.statuses)}"]
        if self.tag:
            parts.append(f"tag {self.tag}")
        if self.prefixes:
            parts.append(f"tag prefix {'/'.join(self.prefixes)}")
        if self.older_than is not None:
            parts.append(f"created more than {self.older_than} ago")
        return ", ".join(parts)


class DeleteBatchJobOperator(BaseOperator):
    """Delete one HERE batch job, or every job matching a status (and tag, tag prefix, age).

    Deleting removes the job's input, results and errors; its metadata stays readable by id. With
    ``tag``, jobs whose tag is ``tag`` plus a task-instance fingerprint (see
    :class:`SubmitBatchJobOperator` ``reattach``) are deleted too.

    HERE's bulk delete (``DELETE /batch/jobs?status=&tag=``) is used when only ``status`` and an
    exact ``tag`` are given; with ``older_than``, ``tag_prefix`` or several statuses the jobs are
    listed, filtered here and deleted one by one (HERE has no time or prefix filter).

    Returns ``{"total": int, "job_ids": [...]}``.

    :param job_id: delete this job. (templated)
    :param status: bulk delete jobs in this status (``any``, ``completed``, ``failure``, ``stopped``,
        ``submitted``, ``queued``, ``pending``, ``inProgress``), or a list of them
        (``["completed", "failure"]``). (templated)
    :param tag: with ``status``: only jobs with this tag. (templated)
    :param tag_prefix: with ``status``: only jobs whose tag starts with this prefix (or one of these
        prefixes), e.g. your project's ``"nightly-geocode-"``. (templated)
    :param older_than: with ``status``: only jobs whose ``created`` time is more than this long before
        the task runs, e.g. ``timedelta(days=7)``. A job without a ``created`` time is kept.
    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param ignore_missing: with ``job_id``: an unknown job is not an error.
    :raises ValueError: neither or both of ``job_id`` and ``status``; a filter with ``job_id``; an
        ``older_than`` that is not a positive timedelta (all at DAG parse).
    """

    template_fields: Sequence[str] = ("job_id", "status", "tag", "tag_prefix")

    def __init__(
        self,
        *,
        job_id: str | None = None,
        status: str | Sequence[str] | None = None,
        tag: str | None = None,
        tag_prefix: str | Sequence[str] | None = None,
        older_than: timedelta | None = None,
        here_conn_id: str = DEFAULT_CONN_ID,
        ignore_missing: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (job_id is None) == (status is None):
            raise ValueError("pass either job_id (one job) or status (bulk delete, e.g. status='failure')")
        if job_id is not None and (tag is not None or tag_prefix is not None or older_than is not None):
            raise ValueError("tag, tag_prefix and older_than apply to a bulk delete by status, not to job_id")
        self.job_id = job_id
        self.status = status
        self.tag = tag
        self.tag_prefix = tag_prefix
        self.older_than = _older_than(older_than)
        self.here_conn_id = here_conn_id
        self.ignore_missing = ignore_missing

    def execute(self, context: Context) -> dict[str, Any]:
        hook = _make_hook(self.here_conn_id)
        try:
            if self.job_id:
                try:
                    job = hook.delete_job(self.job_id)
                except JobNotFoundError:
                    if not self.ignore_missing:
                        raise
                    self.log.info("HERE Batch: job %s does not exist; nothing to delete", self.job_id)
                    return {"total": 0, "job_ids": []}
                return {"total": 1, "job_ids": [job.id]}
            statuses = _statuses(self.status)
            prefixes = _prefixes(self.tag_prefix)
            if len(statuses) == 1 and not prefixes and self.older_than is None:
                job_ids = self._bulk(hook, statuses[0])
            else:
                selection = _JobFilter(statuses, self.tag, prefixes, self.older_than)
                job_ids = []
                for job in selection.jobs(hook):
                    with contextlib.suppress(JobNotFoundError):
                        hook.delete_job(job.id)
                        job_ids.append(job.id)
                self.log.info("HERE Batch: selection: %s", selection.describe())
        except (HereBatchError, ValueError) as exc:
            raise AirflowException(str(exc)) from None
        self.log.info("HERE Batch: deleted %d jobs: %s", len(job_ids), ", ".join(job_ids) or "none")
        return {"total": len(job_ids), "job_ids": job_ids}

    def _bulk(self, hook: HereBatchHook, status: str) -> list[str]:
        deleted = hook.delete_jobs(status=status, tag=self.tag or None)
        job_ids = list(deleted.job_ids)
        if self.tag:
            for job in list(hook.list_jobs(status=status)):
                if job.id not in job_ids and job.tag != self.tag and tag_matches(job.tag, self.tag):
                    with contextlib.suppress(JobNotFoundError):
                        hook.delete_job(job.id)
                        job_ids.append(job.id)
        return job_ids


class ListBatchJobsOperator(BaseOperator):
    """List HERE batch jobs (HERE does not list deleted ones); returns their summaries, newest first.

    :param status: ``any`` (default), one status, or a list of them. (templated)
    :param tag: only jobs with this tag, with or without a task-instance fingerprint. (templated)
    :param tag_prefix: only jobs whose tag starts with this prefix (or one of these). (templated)
    :param older_than: only jobs whose ``created`` time is more than this long before the task runs,
        e.g. ``timedelta(days=7)``.
    :param here_conn_id: Airflow connection of type ``here_batch``.
    :param max_jobs: most summaries returned (XCom stays small); the newest are kept.
    """

    template_fields: Sequence[str] = ("status", "tag", "tag_prefix")

    def __init__(
        self,
        *,
        status: str | Sequence[str] = "any",
        tag: str | None = None,
        tag_prefix: str | Sequence[str] | None = None,
        older_than: timedelta | None = None,
        here_conn_id: str = DEFAULT_CONN_ID,
        max_jobs: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.status = status
        self.tag = tag
        self.tag_prefix = tag_prefix
        self.older_than = _older_than(older_than)
        self.here_conn_id = here_conn_id
        self.max_jobs = max_jobs

    def execute(self, context: Context) -> list[dict[str, Any]]:
        hook = _make_hook(self.here_conn_id)
        try:
            selection = _JobFilter(
                _statuses(self.status), self.tag, _prefixes(self.tag_prefix), self.older_than
            )
            jobs = selection.jobs(hook)
        except (HereBatchError, ValueError) as exc:
            raise AirflowException(str(exc)) from None
        if len(jobs) > self.max_jobs:
            self.log.warning("HERE Batch: %d jobs match; returning the newest %d", len(jobs), self.max_jobs)
        self.log.info("HERE Batch: %d jobs (%s)", len(jobs), selection.describe())
        return [j.summary() for j in jobs[: self.max_jobs]]
