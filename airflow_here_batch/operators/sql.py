"""A database table in and out of HERE batch jobs: only new or changed records sent.

Two operators, around the usual submit / wait / download tasks:

* :class:`SqlToBatchInputOperator` streams a SQL query's rows through any common.sql ``DbApiHook``
  connection (server-side cursor on PostgreSQL, ``fetchmany`` elsewhere), maps each row to a HERE
  request, and writes the records to send to an object-storage file (the input of
  ``SubmitBatchJobOperator``), plus the fingerprint of each one. With ``incremental=True`` a record whose
  normalised request has the same fingerprint as the one stored with its last geocoding is not sent.
* :class:`BatchResultsToSqlOperator` writes a job's results and errors report into a target table
  (created if missing), keyed by ``rec_id``: an upsert per batch, one transaction per batch.

Between the tasks only object-storage locations (under
:func:`airflow_here_batch.files.locations.base_location`), the job id and counters travel through
XCom. The pure rules (mapping, fingerprint, result rows, SQL shapes) are in
:mod:`airflow_here_batch.tables.records`.

Supported target dialects: PostgreSQL and SQLite (``INSERT ... ON CONFLICT DO UPDATE``). The source can be
any ``DbApiHook`` connection.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_here_batch.tables.connections import (
    EMBEDDED_CONN_ID,
    embedded_database_path,
    get_db_hook,
    table_asset,
)
from airflow_here_batch.tables.dialect import (
    _copy_value,
    _dialect,
    _insert_many,
    _placeholder,
    _sqlstate,
    _table_columns,
    _temp,
    create_table_sql,
    quote_identifier,
    raw_text_sql,
    upsert_sql,
)
from airflow_here_batch.tables.extract import _as_seconds, _AtomicFile, _location
from airflow_here_batch.tables.records import (
    FINGERPRINT_LENGTH,
    STATUS_FAILED,
    FingerprintIndex,
    FingerprintMerge,
    MappingError,
    RecordMapping,
    ResultLayout,
    parse_error_line,
    target_columns,
)
from airflow_here_batch.tables.sink import (
    _FINGERPRINTS,
    _STAGE,
    MERGE_WINDOW,
    _lines,
    _no_fingerprint,
    layout_split,
)

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
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
    table is never held in memory. Before the first row is read the result columns are checked against
    the mapping; while reading, a NULL or repeated key fails the task. Both happen before anything is
    uploaded, and the error names the column or the key.

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

    Returns (XCom) ``{"input": URI or None, "fingerprints": URI or None, "records_total",
    "records_sent", "records_reused", "service", "input_columns"}``; ``input`` is ``None`` when nothing
    is to be sent.

    :param conn_id: Airflow connection of the source database (any common.sql ``DbApiHook``).
    :param sql: one ``SELECT`` (no trailing ``;``) returning the key and the mapped columns. (templated)
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
    :param destination: object-storage folder for the files. (templated)
    :param destination_conn_id: connection for that storage (default: the base location's).
    :param fetch_size: rows per ``fetchmany``.
    :param delimiter: the input delimiter of the file (``|``).
    :param full_refresh: send every record this run even when ``incremental`` (a bool, or a templated
        ``"true"``/``"false"``, e.g. ``"{{ params.full_refresh }}"``). (templated)
    :raises MappingError: (as the task's error) for a missing column, a NULL or duplicate key.
    """

    template_fields: Sequence[str] = ("sql", "parameters", "target_table", "destination", "full_refresh")
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
        destination: Any = None,
        destination_conn_id: str | None = None,
        fetch_size: int = 10_000,
        delimiter: str = "|",
        full_refresh: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.full_refresh = full_refresh
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
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.fetch_size = int(fetch_size)
        self.delimiter = delimiter
        if incremental and not target_table:
            raise ValueError("incremental=True needs target_table: the table the results are written to")
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

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_here_batch.version_compat import AirflowException

        started = time.monotonic()
        mapping = self._make_mapping()
        full_refresh = str(self.full_refresh).strip().lower() in ("1", "true", "yes", "on")
        incremental = self.incremental and not full_refresh
        prefilter = incremental and self._can_prefilter(mapping)
        if prefilter:
            known = FingerprintIndex()  # not needed: the database returns the stored fingerprint per row
            incremental = False
            self.log.info(
                "HERE Batch: %s is on the source's connection: the database leaves out rows whose raw "
                "values are unchanged",
                self.target_table,
            )
        else:
            known = self._stored_fingerprints() if incremental else FingerprintIndex()
        folder = self._folder(context)
        input_path, fp_path = folder / "input.csv", folder / "fingerprints.csv"
        try:
            counts = self._extract(mapping, known, input_path, fp_path, incremental, prefilter)
        except MappingError as exc:
            raise AirflowException(f"nothing was uploaded: {exc}") from None
        result = {
            "input": str(input_path) if counts["records_sent"] else None,
            "fingerprints": str(fp_path) if counts["records_sent"] else None,
            "service": mapping.service,
            "input_columns": mapping.here_columns,
            **counts,
        }
        if not counts["records_sent"]:
            for path in (input_path, fp_path):
                with contextlib.suppress(Exception):
                    path.unlink()
        self.log.info(
            "HERE Batch: %d records in the query, %d to send, %d unchanged (reused) in %.1f s%s",
            counts["records_total"],
            counts["records_sent"],
            counts["records_reused"],
            time.monotonic() - started,
            f" -> {result['input']}" if result["input"] else "",
        )
        return result

    def _folder(self, context: Context) -> ObjectStoragePath:
        if self.destination:
            return _location(str(self.destination).rstrip("/"), self.destination_conn_id)
        from airflow_here_batch.files.locations import base_location

        run_id = str(context["run_id"]).replace(":", "_").replace("+", "_")
        return base_location("sql", self.dag_id, run_id, self.task_id)

    def _stored_fingerprints(self) -> FingerprintIndex:
        """The fingerprints in the target table that still count (not too old, not failed)."""
        index = FingerprintIndex()
        hook = get_db_hook(self.target_conn_id or self.conn_id)
        dialect = _dialect(hook)
        conn = hook.get_conn()
        try:
            assert self.target_table
            if _table_columns(conn, self.target_table) is None:
                self.log.info("HERE Batch: %s does not exist yet: every record is new", self.target_table)
                return index
            ph = _placeholder(dialect)
            where = ["request_fingerprint IS NOT NULL"]
            params: list[Any] = []
            if self.resend_failed:
                where.append(f"status <> {ph}")
                params.append(STATUS_FAILED)
            max_age = _as_seconds(self.max_age)
            if max_age is not None:
                cutoff = datetime.now(timezone.utc) - timedelta(seconds=max_age)
                where.append(f"geocoded_at >= {ph}")
                params.append(cutoff if dialect == "postgresql" else cutoff.isoformat())
            collate = ' COLLATE "C"' if dialect == "postgresql" else ""
            sql = (
                f"SELECT request_fingerprint FROM {quote_identifier(self.target_table)} "
                f"WHERE {' AND '.join(where)} ORDER BY request_fingerprint{collate}"
            )
            cursor = self._stream_cursor(conn, dialect)
            cursor.execute(sql, params)
            while batch := cursor.fetchmany(self.fetch_size):
                for (fingerprint,) in batch:
                    index.add(fingerprint)
            cursor.close()
            conn.rollback()
        finally:
            conn.close()
        self.log.info("HERE Batch: %d fingerprints stored in %s", len(index), self.target_table)
        return index

    @staticmethod
    def _stream_cursor(conn: Any, dialect: str) -> Any:
        if dialect == "postgresql":  # server-side (named) cursor: rows arrive as fetched
            return conn.cursor(name=f"here_batch_{uuid.uuid4().hex[:12]}")
        return conn.cursor()

    def _extract(
        self,
        mapping: RecordMapping,
        known: FingerprintIndex,
        input_path: ObjectStoragePath,
        fp_path: ObjectStoragePath,
        incremental: bool,
        prefilter: bool = False,
    ) -> dict[str, int]:
        from airflow_here_batch.api.inputs import rows_to_lines

        hook = get_db_hook(self.conn_id)
        dialect = _dialect(hook)
        sql = str(self.sql).strip().rstrip(";")
        conn = hook.get_conn()
        counts = {"records_total": 0, "records_sent": 0, "records_reused": 0}
        try:
            probe = conn.cursor()
            probe.execute(f"SELECT * FROM ({sql}) here_batch_source WHERE 1 = 0", self._params())
            names = [d[0] for d in probe.description]
            probe.close()
            resolved = mapping.check_columns(names)
            key = resolved[mapping.key_column]
            quoted_key = '"' + key.replace('"', '""') + '"'
            positions = {column: names.index(actual) for column, actual in resolved.items()}
            key_index = positions[mapping.key_column]
            cursor = self._stream_cursor(conn, dialect)
            if prefilter:
                total = self._check_keys(conn, sql, key, quoted_key)
                query, params = self._prefilter_query(mapping, sql, resolved, quoted_key, dialect)
                if dialect == "postgresql":
                    # A cursor's plan is made for its first 10 % of rows by default: a nested loop of
                    # primary-key probes into the target per source row (1.9 s for 1,000,000 rows, P8).
                    # The pre-filter reads its result to the end: plan for the whole (a hash join,
                    # 1.0 s). For this transaction only.
                    setting = conn.cursor()
                    setting.execute("SET LOCAL cursor_tuple_fraction = 1.0")
                    setting.close()
                cursor.execute(query, params)
                stored_index, force_index = len(names), len(names) + 1
            else:
                cursor.execute(
                    f"SELECT * FROM ({sql}) here_batch_source ORDER BY {quoted_key}", self._params()
                )

            def requests(fp_writer: Any) -> Iterator[dict[str, str]]:
                previous: str | None = None
                number = 0
                while batch := cursor.fetchmany(self.fetch_size):
                    for values in batch:
                        number += 1
                        key_value = values[key_index]
                        if key_value is None:
                            raise MappingError(
                                f"row {number} of the query (ordered by {key}) has a NULL key column "
                                f"{key!r}: every row needs a key for recId; filter NULLs out "
                                f"(WHERE {key} IS NOT NULL) or fix the rows",
                                column=key,
                            )
                        rec_id = key_value if key_value.__class__ is str else str(key_value)
                        if rec_id == previous:
                            raise MappingError(
                                f"key {rec_id!r} appears more than once in column {key!r}: recId must be "
                                "unique; deduplicate the rows (e.g. SELECT DISTINCT ON, GROUP BY) or choose "
                                "a unique key column",
                                column=key,
                                key=rec_id,
                            )
                        previous = rec_id
                        row = {column: values[i] for column, i in positions.items()}
                        request = mapping.request(row, rec_id)
                        fingerprint = mapping.fingerprint(request)
                        counts["records_total"] += 1
                        if incremental and fingerprint in known:
                            counts["records_reused"] += 1
                            continue
                        if prefilter and values[stored_index] == fingerprint and not values[force_index]:
                            counts["records_reused"] += 1  # raw values re-spelt, same request
                            continue
                        counts["records_sent"] += 1
                        fp_writer.writerow((rec_id, fingerprint, mapping.raw_text(row)))
                        yield request

            with _AtomicFile(input_path) as out, _AtomicFile(fp_path) as fp_out:
                fp_writer = csv.writer(fp_out, delimiter="|", lineterminator="\n")
                fp_writer.writerow(("rec_id", "fingerprint", "request_text"))
                lines = rows_to_lines(
                    requests(fp_writer), columns=mapping.here_columns, delimiter=self.delimiter
                )
                out.writelines(lines)
            cursor.close()
            conn.rollback()
            if prefilter:  # rows the database left out are unchanged: reused
                counts["records_reused"] += total - counts["records_total"]
                counts["records_total"] = total
        finally:
            conn.close()
        return counts

    def _params(self) -> Any:
        return self.parameters if self.parameters is not None else ()

    # --- the database-side pre-filter -----------------------------------------------------------

    def _can_prefilter(self, mapping: RecordMapping) -> bool:
        """Whether the database can leave out unchanged rows itself: a column mapping (no templates, no
        ``at``), the target table on the source's connection and already holding ``request_text``.
        Only with ``parameters=None`` (the query is embedded in a larger one with its own parameters)."""
        if mapping.raw_columns is None or self.parameters is not None:
            return False
        if (self.target_conn_id or self.conn_id) != self.conn_id or not self.target_table:
            return False
        hook = get_db_hook(self.conn_id)
        if _dialect(hook) not in ("postgresql", "sqlite"):
            return False
        conn = hook.get_conn()
        try:
            columns = _table_columns(conn, self.target_table)
        finally:
            conn.close()
        return columns is not None and "request_text" in {c.lower() for c in columns}

    def _check_keys(self, conn: Any, sql: str, key: str, quoted_key: str) -> int:
        """Row count of the query; NULL or repeated keys refused (the pre-filter never sees every row).

        :raises MappingError: naming the key column, or the first repeated key.
        """
        cursor = conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*), COUNT({quoted_key}), COUNT(DISTINCT {quoted_key}) "
            f"FROM ({sql}) here_batch_source"
        )
        total, keyed, distinct = cursor.fetchone()
        if keyed != total:
            cursor.close()
            raise MappingError(
                f"{total - keyed} rows of the query have a NULL key column {key!r}: every row needs a key "
                f"for recId; filter NULLs out (WHERE {key} IS NOT NULL) or fix the rows",
                column=key,
            )
        if distinct != keyed:
            cursor.execute(
                f"SELECT {quoted_key} FROM ({sql}) here_batch_source GROUP BY {quoted_key} "
                f"HAVING COUNT(*) > 1 ORDER BY {quoted_key} LIMIT 1"
            )
            (duplicate,) = cursor.fetchone()
            cursor.close()
            rec_id = str(duplicate)
            raise MappingError(
                f"key {rec_id!r} appears more than once in column {key!r}: recId must be unique; deduplicate "
                "the rows (e.g. SELECT DISTINCT ON, GROUP BY) or choose a unique key column",
                column=key,
                key=rec_id,
            )
        cursor.close()
        return int(total)

    def _prefilter_query(
        self, mapping: RecordMapping, sql: str, resolved: Mapping[str, str], quoted_key: str, dialect: str
    ) -> tuple[str, list[Any]]:
        """The source rows that may have changed: new, raw values differing from ``request_text``, no
        fingerprint yet, or forced (``resend_failed``, ``max_age``); with the stored fingerprint and a
        force flag appended to each row."""
        assert self.target_table and mapping.raw_columns is not None
        raw = raw_text_sql("s", [resolved[c] for c in mapping.raw_columns])
        ph = _placeholder(dialect)
        force: list[str] = []
        params: list[Any] = []
        if self.resend_failed:
            force.append(f"t.status = {ph}")
            params.append(STATUS_FAILED)
        max_age = _as_seconds(self.max_age)
        if max_age is not None:
            cutoff = datetime.now(timezone.utc) - timedelta(seconds=max_age)
            force.append(f"t.geocoded_at < {ph}")
            params.append(cutoff if dialect == "postgresql" else cutoff.isoformat())
        forced = " OR ".join(force) or "1 = 0"
        query = (
            f"SELECT s.*, t.request_fingerprint, CASE WHEN {forced} THEN 1 ELSE 0 END "
            f"FROM ({sql}) s LEFT JOIN {quote_identifier(self.target_table)} t "
            f"ON t.rec_id = CAST(s.{quoted_key} AS TEXT) "
            f"WHERE t.rec_id IS NULL OR t.request_fingerprint IS NULL OR t.request_text IS NULL "
            f"OR t.request_text <> {raw} OR {forced} "
            f"ORDER BY s.{quoted_key}"
        )
        return query, params + params


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
    "records_failed", "records_written", "records_missing"}`` (``records_missing``: sent but in neither
    file). The counts of the extract task are taken from ``extract`` (its XCom dict).

    :param conn_id: Airflow connection of the target database (PostgreSQL or SQLite).
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
    """

    template_fields: Sequence[str] = ("table", "job_id", "results", "errors", "extract")
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
        self._columns = target_columns(self.output_columns)
        quote_identifier(table)

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
        }
        hook = get_db_hook(self.conn_id)
        written = self.write(
            hook,
            [(job, self._open_lines(res), self._open_lines(err)) for job, res, err in self._jobs()],
            fingerprints=self._open_lines(extract.get("fingerprints")),
        )
        summary["records_written"] = written["results"] + written["errors"]
        summary["records_failed"] = written["errors"]
        summary["records_missing"] = max(0, summary["records_sent"] - summary["records_written"])
        if summary["records_missing"]:
            self.log.warning(
                "HERE Batch: %d records sent are in neither the results nor the errors report; their rows "
                "were left as they were",
                summary["records_missing"],
            )
        self.log.info(
            "HERE Batch: records_total=%d records_sent=%d records_reused=%d records_failed=%d "
            "(%d rows written to %s in %.1f s)",
            summary["records_total"],
            summary["records_sent"],
            summary["records_reused"],
            summary["records_failed"],
            summary["records_written"],
            self.table,
            time.monotonic() - started,
        )
        self._annotate_outlets(context, summary)
        return summary

    def _annotate_outlets(self, context: Context, summary: Mapping[str, Any]) -> None:
        """Put the table, the job ids and the counts on each outlet's asset event (``extra``), so a
        DAG scheduled on the asset sees what changed (``triggering_asset_events``)."""
        keys = ("table", "job_id", "records_sent", "records_written", "records_failed")
        for outlet in self.outlets or ():
            with contextlib.suppress(Exception):  # an outlet that is not an asset (e.g. an alias)
                context["outlet_events"][outlet].extra.update({k: summary[k] for k in keys})

    def _jobs(self) -> list[tuple[str | None, Any, Any]]:
        """``(job id, results location, errors location)`` per job: one, or one per item of lists."""
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

    @contextlib.contextmanager
    def _opened(self, location: Any) -> Iterator[Iterator[str] | None]:
        if not location:
            yield None
            return
        path = _location(location, self.storage_conn_id)
        with path.open("r", encoding="utf-8", newline="") as stream:
            yield _lines(stream)

    def _open_lines(self, location: Any) -> Any:
        return lambda: self._opened(location)

    # --- writing --------------------------------------------------------------------------------

    def write(
        self,
        hook: DbApiHook,
        jobs: Sequence[tuple[str | None, Any, Any]],
        *,
        fingerprints: Any,
        geocoded_at: datetime | None = None,
    ) -> dict[str, int]:
        """Write each job's results and errors: ``jobs`` holds ``(job id, results, errors)`` where results
        and errors are callables returning a context manager of lines (or of ``None``).

        Each row's fingerprint and request text come from the extract's file by an ordered merge
        (:class:`~airflow_here_batch.tables.records.FingerprintMerge`: the file lists the records in
        the order they were sent); a row the merge misses (HERE does not promise the input order, shared
        doc §12 #8) is looked up in SQL, from the file loaded into a temporary table only then.

        :returns: ``{"results": records written from the results, "errors": failed records written}``.
        """
        dialect = _dialect(hook)
        conn = hook.get_conn()
        counts = {"results": 0, "errors": 0}
        try:
            self._prepare(conn, dialect)
            conn.commit()
            now = geocoded_at or datetime.now(timezone.utc)
            self._stamp = now if dialect == "postgresql" else now.isoformat()
            with fingerprints() as lines:
                merge = self._merge(lines)
                self._fingerprints = fingerprints if merge is not None else None
                for job_id, results, errors in jobs:
                    with results() as lines:
                        if lines is not None:
                            rows = self._result_rows(lines)
                            fast = lines if dialect == "postgresql" else None
                            counts["results"] += self._write_rows(
                                conn, dialect, rows, job_id, merge, lines=fast
                            )
                    with errors() as lines:
                        if lines is not None:
                            rows = self._error_rows(lines)
                            counts["errors"] += self._write_rows(conn, dialect, rows, job_id, merge)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        return counts

    def _prepare(self, conn: Any, dialect: str) -> None:
        existing = _table_columns(conn, self.table)
        cursor = conn.cursor()
        if existing is None:
            for statement in create_table_sql(dialect, self.table, self._columns):
                cursor.execute(statement)
            self.log.info("HERE Batch: created table %s", self.table)
            self._direct = dialect == "postgresql"
        else:
            have = {c.lower() for c in existing}
            if "request_text" not in have:  # bookkeeping added after the table was made
                cursor.execute(f"ALTER TABLE {quote_identifier(self.table)} ADD COLUMN request_text TEXT")
                have.add("request_text")
            missing = [c.name for c in self._columns if c.name not in have]
            if missing:
                from airflow_here_batch.version_compat import AirflowException

                raise AirflowException(
                    f"table {self.table} lacks the columns {missing} for these output columns: add them "
                    "(ALTER TABLE ... ADD COLUMN, text) or write to a new table"
                )
            # An empty table takes plain COPYs (no key can conflict); a batch that does conflict after
            # all (a concurrent writer, a key twice) is rolled back and upserted instead.
            cursor.execute(f"SELECT 1 FROM {quote_identifier(self.table)} LIMIT 1")
            self._direct = dialect == "postgresql" and cursor.fetchone() is None
        types = {
            "text": "TEXT",
            "float": "DOUBLE PRECISION" if dialect == "postgresql" else "REAL",
            "timestamp": "TIMESTAMP WITH TIME ZONE" if dialect == "postgresql" else "TEXT",
        }
        cursor.execute(f"DROP TABLE IF EXISTS {_temp(dialect, _STAGE)}")
        cursor.execute(f"DROP TABLE IF EXISTS {_temp(dialect, _FINGERPRINTS)}")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {_STAGE} ("
            + ", ".join(f"{quote_identifier(c.name)} {types[c.kind]}" for c in self._columns)
            + ")"
            # PostgreSQL empties it at each commit (cheaper than a DELETE per batch).
            + (" ON COMMIT DELETE ROWS" if dialect == "postgresql" else "")
        )
        cursor.execute(
            f"CREATE TEMPORARY TABLE {_FINGERPRINTS} "
            "(rec_id TEXT PRIMARY KEY, fingerprint TEXT, request_text TEXT)"
        )
        cursor.close()
        self._fingerprints_loaded = False
        # Every row carries every column; a row whose fingerprint the merge missed has NULL
        # request_fingerprint and gets it here, by one primary-key lookup (CASE evaluates the subquery
        # only for such rows; a join would hash the whole fingerprints table for every batch).
        self._names = [c.name for c in self._columns]
        data = [c for c in self._names if c not in ("request_text", "request_fingerprint")]
        info = (
            f"CASE WHEN s.request_fingerprint IS NULL THEN (SELECT f.fingerprint || "
            f"COALESCE(f.request_text, '') FROM {_FINGERPRINTS} f WHERE f.rec_id = s.rec_id) END"
        )
        select = (
            "SELECT "
            + ", ".join(f"s.{quote_identifier(c)}" for c in data)
            + ", CASE WHEN s.request_fingerprint IS NULL "
            f"THEN SUBSTR(s.here_batch_info, {FINGERPRINT_LENGTH + 1}) ELSE s.request_text END, "
            "CASE WHEN s.request_fingerprint IS NULL "
            f"THEN SUBSTR(s.here_batch_info, 1, {FINGERPRINT_LENGTH}) ELSE s.request_fingerprint END "
            f"FROM (SELECT s.*, {info} AS here_batch_info FROM {_STAGE} s) s WHERE true"
        )
        self._upsert = upsert_sql(dialect, self.table, [*data, "request_text", "request_fingerprint"], select)

    def _merge(self, lines: Iterator[str] | None) -> FingerprintMerge | None:
        """The extract's ``fingerprints.csv`` (header ``rec_id|fingerprint[|request_text]``) as a merge."""
        if lines is None:
            return None
        header = next(lines, "")
        names = next(csv.reader([header], delimiter="|"), [])
        if (
            not names
            or names[:2] != ["rec_id", "fingerprint"]
            or not set(names) <= {*names[:2], "request_text"}
        ):
            raise ValueError(f"not a fingerprints file of the extract task: header {header.strip()!r}")
        text = names.index("request_text") if "request_text" in names else None
        return FingerprintMerge(csv.reader(lines, delimiter="|"), request_text=text, window=MERGE_WINDOW)

    def _load_fingerprints(self, conn: Any, dialect: str) -> None:
        """The whole fingerprints file into the temporary table, inside the current batch's transaction
        (only when the merge missed a row; a rollback empties it again)."""
        with self._fingerprints() as lines:
            header = next(lines, "")
            names = next(csv.reader([header], delimiter="|"), [])
            cursor = conn.cursor()
            if dialect == "postgresql" and hasattr(cursor, "copy"):
                sql = f"COPY {_FINGERPRINTS} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv, DELIMITER '|')"
                with cursor.copy(sql) as copy:
                    block: list[str] = []
                    for line in lines:
                        block.append(line)
                        if len(block) >= 20_000:
                            copy.write("".join(block))
                            block = []
                    copy.write("".join(block))
                cursor.execute(f"ANALYZE {_FINGERPRINTS}")
            else:
                rows = csv.reader(lines, delimiter="|")
                _insert_many(conn, dialect, _FINGERPRINTS, names, rows, 10_000)
            cursor.close()
        self._fingerprints_loaded = True

    def _layout(self, lines: Iterator[str]) -> tuple[ResultLayout, str] | None:
        """The results header (the first non-blank line) read off ``lines``: its layout and delimiter."""
        from airflow_here_batch.api.outputs import detect_delimiter

        for line in lines:
            text = line.lstrip("\ufeff").rstrip("\r\n")
            if text:
                delimiter = detect_delimiter(text)
                return ResultLayout(layout_split(text, delimiter), self._columns), delimiter
        return None

    def _result_rows(self, lines: Iterator[str]) -> Iterator[tuple[Any, ...]]:
        """``(rec_id, status, lat, lng, match_level, *fields, error_code, error_message)`` per record."""
        found = self._layout(lines)
        if found is None:
            return
        layout, delimiter = found
        for line in lines:
            if '"' in line:
                cells = layout_split(line, delimiter)
            else:
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                cells = text.split(delimiter)
            values = layout.values(cells)
            if values is not None:
                yield (*values, None, None)

    def _result_copy_lines(self, lines: Iterator[str], take: Any, tail: str) -> Iterator[tuple[str, bool]]:
        """The results as complete ``COPY`` text lines of the target table (PostgreSQL): ``(line, whether
        the merge missed its fingerprint)``. The same rows as :meth:`_result_rows`, built without the
        intermediate values when the line needs no escaping (the common case)."""
        found = self._layout(lines)
        if found is None:
            return
        layout, delimiter = found
        errors = "\t\\N\t\\N\t"  # error_code, error_message
        join = "\t".join
        for line in lines:
            text = line.rstrip("\r\n")
            if '"' in text or "\\" in text or "\t" in text or "\r" in text:
                cells = layout_split(text, delimiter)
                values = layout.values(cells)
                if values is None:
                    continue
                request_text, fingerprint = take(values[0])
                row = (*values, None, None, request_text, fingerprint)
                yield "\t".join([_copy_value(v) for v in row]) + tail, fingerprint is None
                continue
            if not text.strip():
                continue
            cells = layout.copy_cells(text.split(delimiter))
            if cells is None:
                continue
            request_text, fingerprint = take(cells[0])
            if fingerprint is None:
                yield f"{join(cells)}{errors}\\N\t\\N{tail}", True
                continue
            if "\\" in request_text or "\t" in request_text or "\n" in request_text or "\r" in request_text:
                request_text = _copy_value(request_text)
            yield f"{join(cells)}{errors}{request_text}\t{fingerprint}{tail}", False

    def _error_rows(self, lines: Iterator[str]) -> Iterator[tuple[Any, ...]]:
        fields = [None] * (len(self._columns) - 11)
        for line in lines:
            parsed = parse_error_line(line)
            if parsed is None:
                continue
            rec_id, code, message = parsed
            yield (rec_id, STATUS_FAILED, None, None, None, *fields, code or None, message or None)

    def _write_rows(
        self,
        conn: Any,
        dialect: str,
        rows: Iterator[tuple[Any, ...]],
        job_id: str | None,
        merge: FingerprintMerge | None,
        lines: Iterator[str] | None = None,
    ) -> int:
        """Rows completed with their bookkeeping, in batches of ``batch_size``, one transaction each
        (``lines``: the results file itself, for the PostgreSQL fast path instead of ``rows``)."""
        take = merge.take if merge is not None else _no_fingerprint
        total = 0
        if dialect == "postgresql":
            tail = "\t" + _copy_value(job_id) + "\t" + _copy_value(self._stamp) + "\n"
            if lines is not None:
                copy_lines = self._result_copy_lines(lines, take, tail)
            else:
                copy_lines = (
                    ("\t".join([_copy_value(v) for v in (*row, *fp)]) + tail, fp[1] is None)
                    for row in rows
                    for fp in (take(row[0]),)
                )
            while count := self._write_copy_batch(conn, copy_lines, merge is not None):
                total += count
            return total
        stamp = self._stamp
        full = ((*row, *take(row[0]), job_id, stamp) for row in rows)
        while True:
            before = merge.missed if merge is not None else 0
            batch = list(itertools.islice(full, self.batch_size))
            if not batch:
                return total
            missed = merge is not None and merge.missed != before
            total += self._stage_batch(conn, dialect, batch, missed=missed)

    def _write_copy_batch(self, conn: Any, lines: Iterator[tuple[str, bool]], lookup: bool) -> int:
        """Up to ``batch_size`` COPY lines in one transaction, streamed while they are built (PostgreSQL
        parses one block while the next is made). Into a table that had no rows: a plain ``COPY``
        (rows whose fingerprint the merge missed are upserted with the lookup after it); a batch that
        conflicts after all (a concurrent writer, a key twice) is rolled back and upserted whole.

        :returns: the rows written (0 at the end of ``lines``).
        """
        taken: list[str] = []
        missed: list[str] = []
        batch = itertools.islice(lines, self.batch_size)
        cursor = conn.cursor()
        if self._direct and hasattr(cursor, "copy"):
            names = ", ".join(quote_identifier(c) for c in self._names)
            loaded = self._fingerprints_loaded
            try:
                with cursor.copy(f"COPY {quote_identifier(self.table)} ({names}) FROM STDIN") as copy:
                    block: list[str] = []
                    for line, miss in batch:
                        taken.append(line)
                        if miss and lookup:
                            missed.append(line)
                            continue
                        block.append(line)
                        if len(block) >= 1_000:
                            copy.write("".join(block))
                            block = []
                    copy.write("".join(block))
                if not taken:
                    conn.rollback()
                    return 0
                if missed:
                    self._stage_batch(conn, "postgresql", missed, missed=lookup, commit=False)
                conn.commit()
                return len(taken)
            except Exception as exc:
                self._fingerprints_loaded = loaded
                with contextlib.suppress(Exception):
                    conn.rollback()
                if _sqlstate(exc) != "23505":  # unique_violation: a key is there already
                    raise
                self._direct = False
                for line, miss in batch:  # the rest of the batch, if the COPY stopped early
                    taken.append(line)
                    if miss and lookup:
                        missed.append(line)
                return self._stage_batch(conn, "postgresql", taken, missed=bool(missed) and lookup)
        for line, miss in batch:
            taken.append(line)
            if miss and lookup:
                missed.append(line)
        cursor.close()
        if not taken:
            return 0
        return self._stage_batch(conn, "postgresql", taken, missed=bool(missed) and lookup)

    def _stage_batch(
        self, conn: Any, dialect: str, batch: list[Any], *, missed: bool, commit: bool = True
    ) -> int:
        """Stage one batch and upsert it, in one transaction (committed, or rolled back on any error).
        ``missed``: some row lacks its fingerprint (the merge missed it), so the fingerprints file is
        loaded for the lookup first."""
        loaded = False
        try:
            if missed and self._fingerprints is not None and not self._fingerprints_loaded:
                self._load_fingerprints(conn, dialect)
                loaded = True
            _insert_many(conn, dialect, _STAGE, self._names, batch, len(batch), text=dialect == "postgresql")
            cursor = conn.cursor()
            cursor.execute(self._upsert)
            if dialect != "postgresql":
                cursor.execute(f"DELETE FROM {_STAGE}")
            cursor.close()
            if commit:
                conn.commit()
        except BaseException:
            if loaded:  # rolled back with the batch
                self._fingerprints_loaded = False
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        return len(batch)
















