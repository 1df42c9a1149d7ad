"""Geocode a database table in one call: :func:`geocode_table`, the whole nightly table job as a task group.

``<group_id>.extract`` (:class:`~airflow_here_batch.operators.sql.SqlToBatchInputOperator`)
    reads the source (a table or a query on any common.sql connection), sends only new or changed
    records (incremental by default; with ``change_column`` it reads only the rows changed since the last
    written run);
``<group_id>.plan`` >> ``<group_id>.run`` (mapped) (:mod:`airflow_here_batch.operators.split`)
    cuts the records into parts that each fit one HERE job and runs them, at most ``max_active_jobs`` at
    once, each waited for in the triggerer; skipped when nothing is to be sent;
``<group_id>.write`` (:class:`~airflow_here_batch.operators.sql.BatchResultsToSqlOperator`)
    upserts every part's results and errors into the target table (the Asset outlet), then keeps the
    change-column mark;
``<group_id>.merge``
    writes the run's merged ``results`` and ``errors`` files to ``destination`` and removes the parts;
``<group_id>.summary``
    returns the run's summary (below). A run with nothing to send ends here too, a success that says 0
    sent.

Cost (``docs/cost.md``): ``max_records_to_send`` bounds the records the run may send (checked by the
extract and by the plan, all parts together, before any upload); ``dry_run`` reads, counts and plans as
a real run and sends and writes nothing (``write`` ends skipped, the summary says what a real run would
send and why); ``on_output_columns_change``, ``on_fingerprint_version_change`` and ``on_empty_query`` go
to the extract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_here_batch.api.split import DEFAULT_MAX_ACTIVE_JOBS
from airflow_here_batch.operators.split import PlanSplitOperator, split_tasks
from airflow_here_batch.operators.sql import BatchResultsToSqlOperator, SqlToBatchInputOperator
from airflow_here_batch.tables.extract import DEFAULT_CHANGE_WINDOW
from airflow_here_batch.version_compat import AirflowException, AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.taskgroup import TaskGroup

__all__ = [
    "FIXED_BY_TABLE",
    "SUMMARY_KEYS",
    "GeocodeTablePlanOperator",
    "GeocodeTableSummaryOperator",
    "GeocodeTableWriteOperator",
    "geocode_table",
]

#: Submit arguments the table job sets itself: the input is the extract's file (its header and ``|``),
#: the job options come as keywords (``service`` and ``output_columns`` also make the fingerprints).
FIXED_BY_TABLE = ("input", "input_conn_id", "input_columns", "input_delimiter", "options")
#: The keys of the run's summary (the XCom of ``<group_id>.summary``).
SUMMARY_KEYS = (
    "table",
    "records_total",
    "records_sent",
    "records_reused",
    "records_failed",
    "records_written",
    "records_missing",
    "records_rejected",
    "records_skipped",
    "records_sent_by_reason",
    "records_skipped_by_reason",
    "records_would_resend",
    "estimated_cost",
    "dry_run",
    "records_accepted",
    "records_review",
    "verdicts",
    "job_ids",
    "results",
    "errors",
)
#: The summary's counts (integers) among :data:`SUMMARY_KEYS`, from the write task's XCom.
_COUNTS = tuple(
    k for k in SUMMARY_KEYS if k.startswith("records_") and not k.endswith(("_reason", "_resend"))
)


class GeocodeTablePlanOperator(PlanSplitOperator):
    """The split's plan (:class:`~airflow_here_batch.operators.split.PlanSplitOperator`) over the
    extract's XCom (``input``: the dict :class:`~airflow_here_batch.operators.sql.SqlToBatchInputOperator`
    returns): the parts of its input file, or skipped, with the HERE jobs after it, when nothing is to be
    sent.

    :raises AirflowSkipException: when the extract wrote no input (every record unchanged).
    """

    def execute(self, context: Context) -> list[dict[str, Any]]:
        extracted = self.input
        if not isinstance(extracted, Mapping):
            raise AirflowException(f"the extract returned {extracted!r}, not its summary")
        if not extracted.get("input"):
            raise AirflowSkipException(
                f"nothing to send: {extracted.get('records_reused', 0)} of "
                f"{extracted.get('records_total', 0)} records unchanged"
            )
        self.input = extracted["input"]
        return super().execute(context)


class GeocodeTableWriteOperator(BatchResultsToSqlOperator):
    """:class:`~airflow_here_batch.operators.sql.BatchResultsToSqlOperator` over the split's parts: each
    part's job id, results and errors, in part order.

    :param parts: the mapped ``run`` task's XComs (``run.output``); empty or ``None`` when nothing was
        sent (then nothing is written and the summary says 0). (templated)
    """

    template_fields: Sequence[str] = (*BatchResultsToSqlOperator.template_fields, "parts")

    def __init__(self, *, parts: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parts = parts

    def execute(self, context: Context) -> dict[str, Any]:
        done = sorted((dict(p) for p in (self.parts or ()) if p), key=lambda p: int(p["index"]))
        self.job_id = [p["job_id"] for p in done]  # type: ignore[assignment]
        self.results = [p.get("results") for p in done]
        self.errors = [p.get("errors") for p in done]
        return super().execute(context)


class GeocodeTableSummaryOperator(BaseOperator):
    """The summary of one :func:`geocode_table` run, from its write and merge tasks.

    Returns (XCom) ``{"table", "records_total", "records_sent", "records_reused", "records_failed",
    "records_written", "records_missing", "records_rejected", "records_skipped",
    "records_sent_by_reason", "records_skipped_by_reason", "records_would_resend", "estimated_cost",
    "dry_run", "records_accepted", "records_review", "verdicts", "job_ids", "results", "errors"}``
    (:data:`SUMMARY_KEYS`):
    ``records_total`` the rows read (with a change column, those changed since the mark and the window),
    ``records_sent`` the records sent to HERE, ``records_reused`` the unchanged ones, ``records_failed``
    those HERE could not geocode (their rows hold HERE's error), ``records_written`` the rows upserted,
    ``records_rejected`` those left out before upload (``on_bad_record="skip"``, listed in the extract's
    rejects file), ``records_skipped`` those not sent because their query is empty (written as
    ``skipped``), the reasons and the estimate as the extract gave them (``docs/cost.md``; a dry run's
    say what a real run would send), ``job_ids`` the HERE jobs in part order, ``results`` / ``errors``
    the URIs of the run's merged files (``None`` when nothing was sent or HERE reported no error).

    :param written: the write task's XCom. (templated)
    :param merged: the merge task's XCom (``None`` when skipped). (templated)
    :param extracted: the extract task's XCom (for ``records_rejected``). (templated)
    """

    template_fields: Sequence[str] = ("written", "merged", "extracted")
    ui_color = "#cfe8ff"

    def __init__(
        self, *, written: Any = None, merged: Any = None, extracted: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.written = written
        self.merged = merged
        self.extracted = extracted

    def execute(self, context: Context) -> dict[str, Any]:
        written = dict(self.written) if isinstance(self.written, Mapping) else {}
        merged = dict(self.merged) if isinstance(self.merged, Mapping) else {}
        extracted = dict(self.extracted) if isinstance(self.extracted, Mapping) else {}
        if not written:
            raise AirflowException("the write task returned no summary")
        jobs = written.get("job_id") or []
        summary: dict[str, Any] = {
            "table": written.get("table"),
            **{k: int(written.get(k) or 0) for k in _COUNTS},
            "records_rejected": int(extracted.get("records_rejected") or 0),
            **{k: dict(written.get(k) or {}) for k in SUMMARY_KEYS if k.endswith(("_reason", "_resend"))},
            "estimated_cost": written.get("estimated_cost"),
            "dry_run": bool(written.get("dry_run")),
            # the match quality (docs/quality.md): accepted, to review (None without a review table)
            "records_accepted": int(written.get("records_accepted") or 0),
            "records_review": written.get("records_review"),
            "verdicts": dict(written.get("verdicts") or {}),
            "job_ids": [jobs] if isinstance(jobs, str) else list(jobs),
            "results": merged.get("results"),
            "errors": merged.get("errors"),
        }
        self.log.info(
            "HERE Batch: %s: %s%d records read, %d %s to HERE (%s) in %d jobs, %d reused, %d skipped, "
            "%d failed, %d written",
            summary["table"],
            "dry run: " if summary["dry_run"] else "",
            summary["records_total"],
            summary["records_sent"],
            "would be sent" if summary["dry_run"] else "sent",
            ", ".join(f"{n} {r}" for r, n in summary["records_sent_by_reason"].items()) or "none",
            len(summary["job_ids"]),
            summary["records_reused"],
            summary["records_skipped"],
            summary["records_failed"],
            summary["records_written"],
        )
        return summary


def geocode_table(
    *,
    conn_id: str,
    source: str,
    key_column: str,
    target_table: str,
    group_id: str = "geocode",
    service: str = "geocode",
    columns: Mapping[str, str] | None = None,
    templates: Mapping[str, str] | None = None,
    constants: Mapping[str, str] | None = None,
    at_columns: Sequence[str] | None = None,
    output_columns: Sequence[str] = (),
    parameters: Any = None,
    target_conn_id: str | None = None,
    incremental: bool = True,
    full_refresh: bool | str = False,
    max_age: timedelta | float | None = None,
    resend_failed: bool = False,
    change_column: str | None = None,
    change_window: timedelta | float = DEFAULT_CHANGE_WINDOW,
    on_bad_record: str = "fail",
    on_empty_query: str = "skip",
    on_output_columns_change: str = "keep",
    on_fingerprint_version_change: str = "keep",
    max_records_to_send: int | str | None = None,
    price_per_1000_records: float | str | None = None,
    dry_run: bool | str = False,
    fetch_size: int = 10_000,
    write_batch_size: int = 10_000,
    destination: Any = None,
    destination_conn_id: str | None = None,
    outlets: Sequence[Any] | None = None,
    max_records_per_job: int | None = None,
    max_bytes_per_job: int | None = None,
    max_active_jobs: int = DEFAULT_MAX_ACTIVE_JOBS,
    cleanup_parts: bool = True,
    compress: bool = True,
    deferrable: bool = True,
    poll_interval: float = 30.0,
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=1),
    policy: Any = None,
    review_table: str | None = "",
    min_accepted_share: float | None = None,
    on_low_match_rate: str = "fail",
    **submit_kwargs: Any,
) -> TaskGroup:
    """A task group that geocodes (or reverse geocodes, or looks up) a database table into another, night
    after night, sending only the new and changed rows. Its last task, ``<group_id>.summary``, returns the
    run's summary (:class:`GeocodeTableSummaryOperator`: ``records_total``, ``records_sent``,
    ``records_reused``, ``records_failed``, ``records_written``, ``job_ids``, the merged files); a run with
    nothing to send is a success whose summary says 0 sent (the HERE tasks are skipped).

    The source side (:class:`~airflow_here_batch.operators.sql.SqlToBatchInputOperator`):

    :param conn_id: Airflow connection of the source (any common.sql ``DbApiHook``: PostgreSQL, SQLite,
        MySQL...); also the target's unless ``target_conn_id``.
    :param source: a table name (``addresses``, ``schema.addresses``: every column) or one ``SELECT``
        returning the key and the mapped columns. (templated)
    :param key_column: the column that becomes ``recId`` (unique, never NULL).
    :param service: ``geocode``, ``revgeocode`` or ``lookup``.
    :param columns: HERE column -> source column, e.g. ``{"q": "address", "in": "country_filter"}``
        (``q``, ``qq``, ``in``, ``at``, ``id``, ``lang``... as HERE's input names them).
    :param templates: HERE column -> ``str.format`` template over source columns.
    :param constants: HERE column -> constant value (e.g. ``{"lang": "en-US"}``).
    :param at_columns: ``(lat column, lng column)`` for ``at`` (reverse geocoding).
    :param output_columns: the job's output columns (the target table's columns follow them).
    :param parameters: query parameters of ``source`` (DB-API style of the driver). (templated)
    :param incremental: send only records whose normalised request differs from the one stored with their
        last result (caching: check HERE's terms on storing results); default ``True``.
    :param full_refresh: send every record this run (a bool or a template such as
        ``"{{ params.full_refresh }}"``). (templated)
    :param max_age: re-send records geocoded longer ago than this (``timedelta`` or seconds).
    :param resend_failed: also re-send unchanged records whose last geocoding failed.
    :param change_column: a source column every write raises (``updated_at``): read only the rows changed
        since the last written run, minus ``change_window`` (:mod:`airflow_here_batch.tables.watermark`).
    :param change_window: how far behind the mark each run reads again (default one hour): longer than
        the longest write transaction plus the clock difference between the writers.
    :param on_bad_record: a record HERE would refuse (a line break in a value, a NULL key...):
        ``"fail"`` the run before anything is uploaded (default), or ``"skip"`` it (counted in
        ``records_rejected``, written with its reason to the extract's rejects file). An empty query is
        not a bad record (``on_empty_query``).
    :param on_empty_query: a record whose query is empty, NULL or blank: ``"skip"`` (default: not sent,
        written as ``skipped``, counted in ``records_skipped``) or ``"fail"`` the run. (templated)
    :param on_output_columns_change: ``"keep"`` (default) the stored results of records asked with other
        output columns, or ``"resend"`` them (billed; the log says how many). (templated)
    :param on_fingerprint_version_change: the same for records whose stored fingerprint is of another
        version. (templated)
    :param max_records_to_send: the most records the run may send (a number or a template such as
        ``"{{ params.max_records_to_send }}"``; empty: ``[here_batch] max_records_to_send``); above it
        the run fails before any upload, naming the count by reason. Checked by the extract and by the
        plan (all parts together). (templated)
    :param price_per_1000_records: price for the estimated cost in the log and the summary (default
        ``[here_batch] price_per_1000_records``; none built in). (templated)
    :param dry_run: read, count and plan as a real run; create no HERE job and write nothing to
        ``target_table`` (a bool or a template such as ``"{{ params.dry_run }}"``). (templated)
    :param fetch_size: rows per ``fetchmany``.

    The target side (:class:`~airflow_here_batch.operators.sql.BatchResultsToSqlOperator`):

    :param target_table: the table the results are upserted into (created if missing). (templated)
    :param target_conn_id: its connection (PostgreSQL or SQLite; default ``conn_id``).
    :param write_batch_size: rows per transaction.
    :param outlets: the write task's outlets (default: the table's Asset,
        :func:`~airflow_here_batch.tables.connections.table_asset`).
    :param policy: which records are accepted (an :class:`~airflow_here_batch.api.quality.AcceptancePolicy`
        or a dict of its arguments; default: the sink's, ``docs/quality.md``).
    :param review_table: the table of the records not accepted, with their top candidates (default
        ``""``: ``<target_table>_review``; ``None``: none). (templated)
    :param min_accepted_share: the match-rate gate's bound, 0..1 (``None``: no gate).
    :param on_low_match_rate: below that bound, ``"fail"`` the write task (after writing) or ``"warn"``.

    The HERE jobs (:func:`~airflow_here_batch.operators.split.split_batch_job`):

    :param destination: folder (URI or path) of the run's merged ``results`` and ``errors.txt``
        (default: under the base location). (templated)
    :param destination_conn_id: connection for that storage.
    :param max_records_per_job: records per HERE job (default and maximum: HERE's 1,000,000).
    :param max_bytes_per_job: bytes per HERE job (default and maximum: HERE's 500 MB).
    :param max_active_jobs: HERE jobs running at once.
    :param cleanup_parts: remove the parts' files once merged.
    :param compress: gzip the uploads.
    :param deferrable: wait for the jobs in the triggerer.
    :param poll_interval: seconds between status requests.
    :param retries: retries of every task of the group (a part's retry reattaches to its job).
    :param retry_delay: the delay between them.
    :param submit_kwargs: every other argument of
        :class:`~airflow_here_batch.operators.batch_job.SubmitBatchJobOperator` (``here_conn_id``,
        ``tag``, ``timeout``, ``notification_ids``, ``output_type``...), forwarded to each part's job, as
        :func:`~airflow_here_batch.operators.split.split_batch_job` does; not those of
        :data:`FIXED_BY_TABLE`.
    :raises TypeError: an argument neither this function nor SubmitBatchJobOperator takes, or one of
        :data:`FIXED_BY_TABLE`.
    :raises ValueError: a mapping the service cannot use, ``change_column`` without ``incremental``, or
        a split setting :func:`~airflow_here_batch.operators.split.split_batch_job` refuses.
    :raises MappingError: (a ``ValueError``) for a mapping that names no column the service needs.
    """
    from airflow.sdk import TaskGroup

    fixed = [name for name in FIXED_BY_TABLE if name in submit_kwargs]
    if fixed:
        raise TypeError(
            f"geocode_table() sets {fixed} itself (the input is the extract's file; give job options as "
            "keywords, e.g. output_type='csv')"
        )
    common = {"retries": retries, "retry_delay": retry_delay}
    with TaskGroup(group_id=group_id) as group:
        extract = SqlToBatchInputOperator(
            task_id="extract",
            conn_id=conn_id,
            sql=source,
            key_column=key_column,
            service=service,
            columns=columns,
            templates=templates,
            constants=constants,
            at_columns=at_columns,
            output_columns=output_columns,
            parameters=parameters,
            incremental=incremental,
            target_table=target_table,
            target_conn_id=target_conn_id,
            max_age=max_age,
            resend_failed=resend_failed,
            change_column=change_column,
            change_window=change_window,
            on_bad_record=on_bad_record,
            on_empty_query=on_empty_query,
            on_output_columns_change=on_output_columns_change,
            on_fingerprint_version_change=on_fingerprint_version_change,
            max_records_to_send=max_records_to_send,
            price_per_1000_records=price_per_1000_records,
            dry_run=dry_run,
            fetch_size=fetch_size,
            full_refresh=full_refresh,
            **common,
        )
        plan, run, merge = split_tasks(
            split_id=group_id,
            input=extract.output,
            destination=destination,
            destination_conn_id=destination_conn_id,
            max_records_per_job=max_records_per_job,
            max_bytes_per_job=max_bytes_per_job,
            max_active_jobs=max_active_jobs,
            part_retries=retries,
            part_retry_delay=retry_delay,
            cleanup_parts=cleanup_parts,
            compress=compress,
            deferrable=deferrable,
            poll_interval=poll_interval,
            plan_class=GeocodeTablePlanOperator,
            max_records_to_send=max_records_to_send,  # the plan's bound: all parts together
            price_per_1000_records=price_per_1000_records,
            dry_run=dry_run,
            service=service,
            **({"output_columns": list(output_columns)} if output_columns else {}),
            input_delimiter=extract.delimiter,
            **submit_kwargs,
        )
        for task in (plan, merge):
            task.retries, task.retry_delay = retries, retry_delay
        write = GeocodeTableWriteOperator(
            task_id="write",
            conn_id=target_conn_id or conn_id,
            table=target_table,
            output_columns=output_columns,
            parts=run.output,
            extract=extract.output,
            batch_size=write_batch_size,
            policy=policy,
            review_table=review_table,
            min_accepted_share=min_accepted_share,
            on_low_match_rate=on_low_match_rate,
            trigger_rule="none_failed",  # runs (and reports) when nothing had to be sent
            **({"outlets": list(outlets)} if outlets is not None else {}),
            **common,
        )
        write >> merge  # the merged files are written, and the parts removed, once the table has them
        GeocodeTableSummaryOperator(
            task_id="summary",
            written=write.output,
            merged=merge.output,
            extracted=extract.output,
            trigger_rule="none_failed",
            **common,
        )
    return group
