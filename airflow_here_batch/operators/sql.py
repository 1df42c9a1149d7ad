"""A database table in and out of HERE batch jobs: only new or changed records sent.

Two operators, around the usual submit / wait / download tasks, thin adapters over the SQL pipeline in
:mod:`airflow_here_batch.tables` (arguments in, XCom out):

* :class:`SqlToBatchInputOperator` (:class:`~airflow_here_batch.tables.extract.TableExtract`) streams a
  SQL query's rows through any common.sql ``DbApiHook`` connection, maps each row to a HERE request and
  writes the records to send to an object-storage file (the input of ``SubmitBatchJobOperator``), plus
  the fingerprint of each one. With ``incremental=True`` a record whose normalised request has the same
  fingerprint as the one stored with its last geocoding is not sent.
* :class:`BatchResultsToSqlOperator` (:class:`~airflow_here_batch.tables.sink.ResultSink`) writes a job's
  results and errors report into a target table (created if missing), keyed by ``rec_id``: an upsert per
  batch, one transaction per batch.

Between the tasks only object-storage locations (under
:func:`airflow_here_batch.files.locations.base_location`), the job id and counters travel through
XCom. Supported target dialects: PostgreSQL, SQLite and MySQL/MariaDB
(:mod:`airflow_here_batch.tables.dialect`). The source can be any ``DbApiHook`` connection.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_here_batch.api.quality import AcceptancePolicy, default_policy
from airflow_here_batch.files.locations import base_location, rejects_location, storage_path
from airflow_here_batch.tables.connections import (
    EMBEDDED_CONN_ID,
    embedded_database_path,
    get_db_hook,
    table_asset,
)
from airflow_here_batch.tables.extract import DEFAULT_CHANGE_WINDOW, TableExtract
from airflow_here_batch.tables.records import MappingError, RecordMapping, plain_name, target_columns
from airflow_here_batch.tables.sink import ResultSink, TargetTableError, WriteCountError, open_lines
from airflow_here_batch.version_compat import AirflowException, AirflowFailException, AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

__all__ = [
    "EMBEDDED_CONN_ID",
    "BatchResultsToSqlOperator",
    "SqlToBatchInputOperator",
    "embedded_database_path",
    "get_db_hook",
    "table_asset",
]


class SqlToBatchInputOperator(BaseOperator):
    """Stream a SQL query's rows into a HERE batch input file, sending only new or changed records.

    The query runs as ``SELECT * FROM (<sql>) ORDER BY <key_column>`` through the connection's
    ``DbApiHook`` (a server-side cursor on PostgreSQL, ``fetchmany(fetch_size)`` elsewhere), so the
    table is never held in memory; any query the database runs works (trailing ``-- comment``, ``/* */``
    or ``;`` included). Before the first row is read the result columns are checked against the
    mapping; while reading, each record is checked against HERE's input rules, and two rows whose keys
    become one recId fail the task (whatever their order; 5 bytes a row). All of this happens before
    anything is uploaded, and the error names the row, its key and the column.

    **Incremental runs** (``incremental=True``; caching is opt-in, see HERE's terms on storing results):
    each record's fingerprint (:meth:`~airflow_here_batch.tables.records.RecordMapping.fingerprint`:
    service, recId, the normalised query values, ``in``, ``lang``, constants, output columns) is compared
    with the fingerprints stored in ``target_table`` by :class:`BatchResultsToSqlOperator`. Unchanged
    records are not sent (``records_reused``); new and changed ones are. Rows deleted from the source stay
    in the target table (nothing deletes them). ``max_age`` re-sends records geocoded longer ago;
    records that failed are not re-sent while their input is unchanged (they would fail again and be
    billed again) unless ``resend_failed=True``.

    Writes, under ``destination`` (default: ``<base location>/sql/<dag_id>/<run_id>/``),
    ``input.csv`` (HERE lines, header ``recId|...``, through
    :func:`airflow_here_batch.api.inputs.rows_to_lines`) and ``fingerprints.csv`` (``rec_id|fingerprint``
    of each record sent), each written under a temporary name and renamed when complete.

    **A change column** (``change_column="updated_at"``, with ``incremental=True``): only the rows whose
    column is at or above the mark of the last written run minus ``change_window`` (and those where it is
    NULL) are read; the mark is kept beside the target table by :class:`BatchResultsToSqlOperator` once
    the results are written (:mod:`airflow_here_batch.tables.watermark` says why the window makes it safe
    against late commits and clock skew). ``records_total`` then counts the rows read.

    Returns (XCom) ``{"input": URI or None, "fingerprints": URI or None, "records_total",
    "records_sent", "records_reused", "records_rejected", "rejects": URI or None, "service",
    "input_columns", "watermark"}``; ``input`` is ``None`` when nothing is to be sent.

    :param conn_id: Airflow connection of the source database (any common.sql ``DbApiHook``).
    :param sql: one query returning the key and the mapped columns, as you would run it in the
        database (a ``.sql`` file's trailing comments and ``;`` are fine), or a table name (every
        column). (templated)
    :param key_column: the column that becomes ``recId`` (unique, never NULL).
    :param service: ``geocode``, ``revgeocode`` or ``lookup``.
    :param columns: HERE column -> source column, e.g. ``{"q": "address", "in": "country"}``.
    :param templates: HERE column -> ``str.format`` template over source columns.
    :param constants: HERE column -> constant value (e.g. ``{"lang": "en-US"}``).
    :param at_columns: ``(lat column, lng column)`` for ``at`` (reverse geocoding).
    :param output_columns: the job's output columns (must equal the submit task's).
    :param parameters: query parameters (DB-API style of the connection's driver). (templated)
    :param incremental: skip records whose fingerprint is already stored in ``target_table``.
    :param target_table: the table :class:`BatchResultsToSqlOperator` writes. (templated)
    :param target_conn_id: its connection (default ``conn_id``).
    :param max_age: re-send records geocoded longer ago than this (``timedelta`` or seconds).
    :param resend_failed: also re-send unchanged records whose last geocoding failed.
    :param change_column: a column of the query every write of a row raises (``updated_at``): read only
        the rows changed since the last written run (needs ``incremental`` and ``target_table``).
    :param change_window: how far behind the mark each run reads again (``timedelta`` or seconds; default
        one hour): longer than the longest write transaction plus the clock difference between writers.
    :param destination: object-storage folder for the files. (templated)
    :param destination_conn_id: connection for that storage (default: the base location's).
    :param fetch_size: rows per ``fetchmany``.
    :param delimiter: the input delimiter of the file (``|``).
    :param full_refresh: send every record this run even when ``incremental`` (a bool, or a templated
        ``"true"``/``"false"``, e.g. ``"{{ params.full_refresh }}"``). (templated)
    :param max_records_to_send: the most records this run may send (a number, or a template such as
        ``"{{ params.max_records_to_send }}"``); above it the task fails before anything is written or
        uploaded, naming the count by reason. Empty/``None``: ``[here_batch] max_records_to_send``
        (none when unset). (templated)
    :param price_per_1000_records: price for the estimated cost in the log and XCom (default
        ``[here_batch] price_per_1000_records``; no price is built in). (templated)
    :param dry_run: read, check, fingerprint and count as a real run, write the files (so the split can
        be planned from them), and report: the results task of a dry run writes nothing to the target
        table and no HERE job is created downstream (``dry_run: True`` in XCom). A count above the bound
        is reported, not raised. (templated)
    :param on_output_columns_change: ``"keep"`` (default: records stored with other output columns keep
        their results; the log and ``records_would_resend`` say how many) or ``"resend"``. (templated)
    :param on_fingerprint_version_change: the same for records whose stored fingerprint is of another
        version. (templated)
    :param on_empty_query: ``"skip"`` (default: a record whose query is empty, NULL or blank is not sent
        and is written to the table as ``status = 'skipped'``) or ``"fail"`` (the task fails, naming the
        key). An empty query is checked before HERE's input rules: it is never a bad record. (templated)
    :param on_bad_record: ``"fail"`` (default): a record HERE would refuse (e.g. a line break in an
        address, a NULL key) fails the task, naming its row and key; ``"skip"``: such records are left
        out (not sent, not stored: the next run tries them again) and written with their reasons to
        ``rejects.jsonl`` where the submit operator writes its rejects
        (``<base location>/<dag_id>/<run_id>/<task_id>/rejects.jsonl``); XCom ``records_rejected``
        and ``rejects`` say so. A recId two rows share fails in either mode.

    Returns also ``records_sent_by_reason`` (``{"new": 300, "changed": 22}``: see
    :class:`~airflow_here_batch.api.spend.SendReason`), ``records_skipped``,
    ``records_skipped_by_reason``, ``records_would_resend``, ``estimated_cost``,
    ``max_records_to_send``, ``dry_run`` and ``skipped`` (URI of the skipped records, or ``None``).

    The work is :class:`airflow_here_batch.tables.extract.TableExtract`'s.

    :raises MappingError: (as the task's error) for a missing column, a NULL or duplicate key.
    """

    template_fields: Sequence[str] = (
        "sql",
        "parameters",
        "target_table",
        "destination",
        "full_refresh",
        "max_records_to_send",
        "price_per_1000_records",
        "dry_run",
        "on_output_columns_change",
        "on_fingerprint_version_change",
        "on_empty_query",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}
    ui_color = "#cfe8ff"

    def __init__(
        self,
        *,
        conn_id: str,
        sql: str,
        key_column: str,
        service: str = "geocode",
        columns: Mapping[str, str] | None = None,
        templates: Mapping[str, str] | None = None,
        constants: Mapping[str, str] | None = None,
        at_columns: Sequence[str] | None = None,
        output_columns: Sequence[str] = (),
        parameters: Any = None,
        incremental: bool = False,
        target_table: str | None = None,
        target_conn_id: str | None = None,
        max_age: timedelta | float | None = None,
        resend_failed: bool = False,
        change_column: str | None = None,
        change_window: timedelta | float = DEFAULT_CHANGE_WINDOW,
        destination: Any = None,
        destination_conn_id: str | None = None,
        fetch_size: int = 10_000,
        delimiter: str = "|",
        full_refresh: bool | str = False,
        max_records_to_send: int | str | None = None,
        price_per_1000_records: float | str | None = None,
        dry_run: bool | str = False,
        on_output_columns_change: str = "keep",
        on_fingerprint_version_change: str = "keep",
        on_empty_query: str = "skip",
        on_bad_record: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_bad_record not in ("fail", "skip"):
            raise ValueError(f"on_bad_record must be 'fail' or 'skip', got {on_bad_record!r}")
        self.on_bad_record = on_bad_record
        self.full_refresh = full_refresh
        self.max_records_to_send = max_records_to_send
        self.price_per_1000_records = price_per_1000_records
        self.dry_run = dry_run
        self.on_output_columns_change = on_output_columns_change
        self.on_fingerprint_version_change = on_fingerprint_version_change
        self.on_empty_query = on_empty_query
        self.conn_id = conn_id
        self.sql = sql
        self.key_column = key_column
        self.service = service
        self.columns = dict(columns or {})
        self.templates = dict(templates or {})
        self.constants = dict(constants or {})
        self.at_columns = tuple(at_columns) if at_columns else None
        self.output_columns = list(output_columns)
        self.parameters = parameters
        self.incremental = incremental
        self.target_table = target_table
        self.target_conn_id = target_conn_id
        self.max_age = max_age
        self.resend_failed = resend_failed
        self.change_column = change_column
        self.change_window = change_window
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.fetch_size = int(fetch_size)
        self.delimiter = delimiter
        if incremental and not target_table:
            raise ValueError("incremental=True needs target_table: the table the results are written to")
        if change_column and not incremental:
            raise ValueError(
                "change_column needs incremental=True: it reads only the rows changed since the mark"
            )
        # Checked when the DAG is parsed, not at 2 a.m.
        self._mapping = self._make_mapping()

    def _make_mapping(self) -> RecordMapping:
        return RecordMapping(
            service=self.service,
            key_column=self.key_column,
            columns=self.columns,
            templates=self.templates,
            constants=self.constants,
            at_columns=self.at_columns,
            output_columns=self.output_columns,
        )

    def _extraction(self) -> TableExtract:
        """The extract of this task's (rendered) arguments.

        :raises ValueError: for a bound, price or choice that is not one.
        """
        from airflow_here_batch.utils.spend import resolve_bound

        return TableExtract(
            conn_id=self.conn_id,
            sql=self.sql,
            mapping=self._make_mapping(),
            parameters=self.parameters,
            target_table=self.target_table,
            target_conn_id=self.target_conn_id,
            max_age=self.max_age,
            resend_failed=self.resend_failed,
            change_column=self.change_column,
            change_window=self.change_window,
            fetch_size=self.fetch_size,
            delimiter=self.delimiter,
            on_bad_record=self.on_bad_record,
            logger=self.log,
            on_output_columns_change=self.on_output_columns_change,
            on_fingerprint_version_change=self.on_fingerprint_version_change,
            on_empty_query=str(self.on_empty_query or "skip").strip().lower(),
            bound=resolve_bound(self.max_records_to_send, self.price_per_1000_records),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_here_batch.api.spend import SpendLimitExceeded, parse_bool
        from airflow_here_batch.operators.batch_job import _check_destinations

        try:
            full_refresh = parse_bool(self.full_refresh, name="full_refresh")
            dry_run = parse_bool(self.dry_run, name="dry_run")
            extraction = self._extraction()
        except ValueError as exc:
            raise AirflowFailException(f"nothing was uploaded: {exc}") from None
        # The sink's table, the merge's folder: before anything is sent (a dry run checks them too: a
        # real run would fail there).
        _check_destinations(self, context)
        if dry_run:
            self.log.info("HERE Batch: dry run: counting what a real run would send; nothing is sent")
        try:
            ti = context.get("ti") if self.on_bad_record == "skip" else None
            rejects = (  # where every task's skipped records go (the extract's folder without a task)
                rejects_location(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))
                if ti is not None
                else None
            )
            return extraction.run(
                self._folder(context),
                incremental=self.incremental and not full_refresh,
                full_refresh=full_refresh,
                dry_run=dry_run,
                rejects=rejects,
            )
        except (MappingError, TargetTableError) as exc:
            raise AirflowException(f"nothing was uploaded: {exc}") from None
        except SpendLimitExceeded as exc:  # a retry would count the same: no retry
            raise AirflowFailException(str(exc)) from None

    def _folder(self, context: Context) -> ObjectStoragePath:
        if self.destination:
            return storage_path(str(self.destination).rstrip("/"), self.destination_conn_id)
        run_id = str(context["run_id"]).replace(":", "_").replace("+", "_")
        return base_location("sql", self.dag_id, run_id, self.task_id)


class BatchResultsToSqlOperator(BaseOperator):
    """Write a HERE job's results and errors report into a table keyed by ``rec_id``, batch by batch.

    The table is created if missing (:func:`~airflow_here_batch.tables.records.target_columns`:
    ``rec_id`` primary key, ``status`` ``ok``/``no_match``/``failed``, ``lat``/``lng`` floats,
    ``match_level``, one text column per chosen output column, ``error_code``/``error_message`` for
    failed records, ``request_fingerprint``, ``job_id``, ``geocoded_at``). An existing table must have
    these columns (the task says which are missing).

    Each batch of ``batch_size`` rows goes into a temporary staging table (``COPY`` on PostgreSQL,
    ``executemany`` elsewhere) and is upserted from there (``INSERT ... SELECT ... ON CONFLICT (rec_id)
    DO UPDATE``), in one transaction: a failure (the database going away, a constraint) leaves whole
    batches written and the failed batch not at all, never half of one; rerunning writes every record
    again without duplicates (or, from a new run with ``incremental=True``, sends only the records not
    yet written). ``DbApiHook.insert_rows`` does not fit: it commits on its own connection per chunk.
    On PostgreSQL, a table that held no rows when the task started takes each batch by a plain ``COPY``
    into the table, still one transaction per batch (a batch that conflicts after all is rolled back
    and upserted). Each row's fingerprint comes from the extract's file by an ordered merge
    (:class:`~airflow_here_batch.tables.records.FingerprintMerge`), looked up in SQL for the rows
    the merge misses.

    Only the first item of each record is kept (``seqNumber`` 1, HERE's best match). A record HERE lists
    in the errors report gets ``status = 'failed'``, NULL coordinates and HERE's code and message.

    Returns (XCom) ``{"table", "job_id", "records_total", "records_sent", "records_reused",
    "records_failed", "records_written", "records_missing", "records_sent_by_reason",
    "records_skipped", "records_skipped_by_reason", "records_would_resend", "estimated_cost",
    "dry_run"}`` (``records_missing``: sent but in neither file; ``records_written`` includes the
    skipped records' rows). The counts of the extract task are
    taken from ``extract`` (its XCom dict); its skipped records (an empty query) are written as
    ``status = 'skipped'`` (never judged: ``match_quality`` NULL, not accepted, not counted by the
    match-rate gate). When the extract was a dry run, nothing is written (not even the table
    created), the summary (what a real run would have sent) is pushed and the task ends *skipped*, so no
    asset event announces an unchanged table (nor is a change-column mark kept). An output column added
    since the table was made gets its column (text, NULL in the rows written before). When the extract
    read a change column, its new mark is kept once every row is written
    (:func:`~airflow_here_batch.tables.watermark.save_watermark`), so a run that fails before reads the
    same rows again.

    Each record written gets a quality verdict (:mod:`airflow_here_batch.api.quality`): the columns
    ``match_quality`` (``exact``, ``interpolated``, ``street``, ``area``, ``ambiguous``, ``no_match``,
    ``failed``), ``accepted`` (under ``policy``), ``query_score`` and ``candidates``. The records not
    accepted are also in ``review_table`` with their top candidates (a person fixes the address in the
    source, which re-sends it, or fills ``chosen_candidate``/``reviewed_at``, kept while the address is
    unchanged). **Match-rate gate:** when the share of accepted records among those written falls below
    ``min_accepted_share``, the task fails (``on_low_match_rate="fail"``) or warns (``"warn"``), with the
    counts by verdict; the rows are written and flagged either way.

    Returns (XCom) ``{"table", "job_id", "records_total", "records_sent", "records_reused",
    "records_failed", "records_written", "records_missing", "records_accepted", "records_review",
    "verdicts", "review_table"}`` (``records_missing``: sent but in neither file; ``records_accepted``:
    records written and accepted this run; ``verdicts``: this run's records by verdict;
    ``records_review``: rows of the review table after the run, ``None`` without one). The counts of the
    extract task are taken from ``extract`` (its XCom dict). When the extract read a change column, its new
    mark is kept once every row is written (:func:`~airflow_here_batch.tables.watermark.save_watermark`),
    so a run that fails before reads the same rows again.

    :param conn_id: Airflow connection of the target database (PostgreSQL, SQLite or MySQL/MariaDB).
    :param table: target table (``name`` or ``schema.name``). (templated)
    :param output_columns: the job's output columns (the table's field columns follow them).
    :param job_id: the HERE job id written into each row; a list (one per ``results`` item) when the
        run's records were split into several jobs. (templated)
    :param results: location of the job's results file (CSV output), a list of them (one per job), or
        ``None``. (templated)
    :param errors: location of its errors report (a list, aligned with ``results``), or ``None``.
        (templated)
    :param extract: the extract task's XCom dict (fingerprints location and counts). (templated)
    :param storage_conn_id: connection for the object storage of these files.
    :param batch_size: rows per transaction.
    :param policy: which records are accepted: an
        :class:`~airflow_here_batch.api.quality.AcceptancePolicy` or a dict of its arguments (default:
        ``exact`` and ``interpolated``; ``street``/``area`` only as precise as the input asked;
        ``queryScore`` >= 0.8; never ``ambiguous``; for reverse geocoding and lookup, as the extract
        says, no score minimum and no input precision: HERE gives no ``queryScore`` for them).
    :param review_table: the review table (default ``""``: ``<table>_review``; ``None``: none).
        (templated)
    :param min_accepted_share: the match-rate gate's bound, 0..1 (``None``: no gate).
    :param on_low_match_rate: ``"fail"`` (the task fails after writing) or ``"warn"``.

    The work is :class:`airflow_here_batch.tables.sink.ResultSink`'s.
    """

    template_fields: Sequence[str] = ("table", "job_id", "results", "errors", "extract", "review_table")
    ui_color = "#cfe8ff"

    def __init__(
        self,
        *,
        conn_id: str,
        table: str,
        output_columns: Sequence[str] = (),
        job_id: str | None = None,
        results: Any = None,
        errors: Any = None,
        extract: Any = None,
        storage_conn_id: str | None = None,
        batch_size: int = 10_000,
        policy: AcceptancePolicy | Mapping[str, Any] | None = None,
        review_table: str | None = "",
        min_accepted_share: float | None = None,
        on_low_match_rate: str = "fail",
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs and "{{" not in table:
            kwargs["outlets"] = [table_asset(conn_id, table)]
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.output_columns = list(output_columns)
        self.job_id = job_id
        self.results = results
        self.errors = errors
        self.extract = extract
        self.storage_conn_id = storage_conn_id
        self.batch_size = int(batch_size)
        # Checked when the DAG is parsed. None: the service's default, known from the extract at run time.
        self.policy = None if policy is None else AcceptancePolicy.of(policy)
        if on_low_match_rate not in ("fail", "warn"):
            raise ValueError(f"on_low_match_rate={on_low_match_rate!r}: use 'fail' or 'warn'")
        if min_accepted_share is not None and not 0.0 <= float(min_accepted_share) <= 1.0:
            raise ValueError(f"min_accepted_share={min_accepted_share!r}: give a share between 0 and 1")
        self.min_accepted_share = None if min_accepted_share is None else float(min_accepted_share)
        self.on_low_match_rate = on_low_match_rate
        # "" (the default): <table>_review; None: no review table.
        self.review_table = f"{table}_review" if review_table == "" else review_table
        target_columns(self.output_columns)
        plain_name(table)
        if self.review_table and "{{" not in self.review_table:
            plain_name(self.review_table)

    def here_batch_destinations(self, context: Context) -> list[Any]:
        """The target table, for the check made before any HERE job is created
        (:func:`~airflow_here_batch.utils.destinations.check_destinations`)."""
        from airflow_here_batch.utils.destinations import Destination, known

        table = known(self.render_template(self.table, context))
        if table is None:
            return []
        return [Destination("table", table, self.conn_id, self.task_id, self.output_columns)]

    def execute(self, context: Context) -> dict[str, Any]:
        started = time.monotonic()
        extract = self.extract if isinstance(self.extract, Mapping) else {}
        summary: dict[str, Any] = {
            "table": self.table,
            "job_id": list(self.job_id) if isinstance(self.job_id, (list, tuple)) else self.job_id or None,
            "records_total": int(extract.get("records_total") or 0),
            "records_sent": int(extract.get("records_sent") or 0),
            "records_reused": int(extract.get("records_reused") or 0),
            "records_failed": 0,
            "records_written": 0,
            "records_missing": 0,
            "records_sent_by_reason": dict(extract.get("records_sent_by_reason") or {}),
            "records_skipped": int(extract.get("records_skipped") or 0),
            "records_skipped_by_reason": dict(extract.get("records_skipped_by_reason") or {}),
            "records_would_resend": dict(extract.get("records_would_resend") or {}),
            "estimated_cost": extract.get("estimated_cost"),
            "dry_run": bool(extract.get("dry_run")),
        }
        if summary["dry_run"]:
            self.log.info(
                "HERE Batch: dry run: nothing written to %s; a real run would send %d records (%s) and "
                "skip %d",
                self.table,
                summary["records_sent"],
                ", ".join(f"{n} {r}" for r, n in summary["records_sent_by_reason"].items()) or "none",
                summary["records_skipped"],
            )
            # Skipped, so that no asset event announces a table that did not change.
            context["ti"].xcom_push(key="return_value", value=summary)
            raise AirflowSkipException("dry run: nothing written")
        hook = get_db_hook(self.conn_id)
        sink = ResultSink(
            hook,
            self.table,
            self.output_columns,
            batch_size=self.batch_size,
            logger=self.log,
            policy=self.policy or default_policy(extract.get("service")),
            review_table=self.review_table or None,
        )
        store = self.storage_conn_id
        jobs = [(job, open_lines(res, store), open_lines(err, store)) for job, res, err in self._jobs()]
        try:
            written = sink.write(
                jobs,
                open_lines(extract.get("fingerprints"), store),
                open_lines(extract.get("skipped"), store) if extract.get("skipped") else None,
            )
        except (TargetTableError, WriteCountError) as exc:
            raise AirflowException(str(exc)) from None
        summary["records_written"] = written["results"] + written["errors"] + written["skipped"]
        summary["records_failed"] = written["errors"]
        if extract.get("watermark"):
            self._keep_watermark(hook, extract["watermark"])
        summary["records_missing"] = max(0, summary["records_sent"] - written["results"] - written["errors"])
        quality = sink.quality.summary()
        summary["records_accepted"] = quality["records_accepted"]
        summary["records_review"] = sink.review_rows
        summary["verdicts"] = quality["verdicts"]
        summary["review_table"] = self.review_table or None
        if summary["records_missing"]:
            self.log.warning(
                "HERE Batch: %d records sent are in neither the results nor the errors report; their rows "
                "were left as they were",
                summary["records_missing"],
            )
        self.log.info(
            "HERE Batch: records_total=%d records_sent=%d (%s) records_reused=%d records_failed=%d "
            "records_skipped=%d (%d rows written to %s in %.1f s)",
            summary["records_total"],
            summary["records_sent"],
            ", ".join(f"{n} {r}" for r, n in summary["records_sent_by_reason"].items()) or "none",
            summary["records_reused"],
            summary["records_failed"],
            summary["records_skipped"],
            summary["records_written"],
            self.table,
            time.monotonic() - started,
        )
        self.log.info(
            "HERE Batch: quality: %s; review table %s: %s rows",
            sink.quality.describe(),
            self.review_table or "(none)",
            summary["records_review"],
        )
        message = sink.quality.gate(self.min_accepted_share)
        if message is not None:
            if self.on_low_match_rate == "fail":
                raise AirflowException(f"{message} (table {self.table})")
            self.log.warning("HERE Batch: %s (table %s)", message, self.table)
        self._annotate_outlets(context, summary)
        return summary

    def _keep_watermark(self, hook: Any, data: Mapping[str, Any]) -> None:
        """Keep the extract's change-column mark beside the table (after the write: never ahead of it)."""
        from airflow_here_batch.tables.watermark import keep_watermark

        mark = keep_watermark(hook, dict(data))
        self.log.info("HERE Batch: change column %s: mark %r kept", mark.change_column, mark.value)

    def _annotate_outlets(self, context: Context, summary: Mapping[str, Any]) -> None:
        """Put the table, the job ids and the counts on each outlet's asset event (``extra``), so a
        DAG scheduled on the asset sees what changed (``triggering_asset_events``)."""
        keys = (
            "table",
            "job_id",
            "records_sent",
            "records_sent_by_reason",
            "records_skipped",
            "records_written",
            "records_failed",
        )
        for outlet in self.outlets or ():
            with contextlib.suppress(Exception):  # an outlet that is not an asset (e.g. an alias)
                context["outlet_events"][outlet].extra.update({k: summary[k] for k in keys})

    def _jobs(self) -> list[tuple[str | None, Any, Any]]:
        """``(job id, results location, errors location)`` per job: one, or one per item of lists. A
        location rendered from an absent one (``""``, ``"None"``: a job with no errors report) is ``None``."""
        jobs = self._located()
        return [(j, _no_location(r), _no_location(e)) for j, r, e in jobs]

    def _located(self) -> list[tuple[str | None, Any, Any]]:
        if not isinstance(self.results, (list, tuple)):
            return [(self.job_id or None, self.results, self.errors)]
        count = len(self.results)
        jobs = self.job_id if isinstance(self.job_id, (list, tuple)) else [self.job_id] * count
        errors = self.errors
        if not isinstance(errors, (list, tuple)):
            errors = [errors] + [None] * (count - 1)
        if len(jobs) != count or len(errors) != count:
            raise ValueError(
                f"results has {count} locations but job_id {len(jobs)} and errors {len(errors)}: give one "
                "per job, in the same order"
            )
        return [(j or None, r, e) for j, r, e in zip(jobs, self.results, errors, strict=True)]


def _no_location(value: Any) -> Any:
    """``None`` for a location that names no file: ``None``, ``""`` or ``"None"`` (a template over an
    absent XCom value, e.g. the errors report of a job that had none)."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    return value
