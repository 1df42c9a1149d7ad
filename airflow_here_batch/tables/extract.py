"""The source side of the table pipeline: a query's rows into a HERE input file, sending only new or
changed records, each with its reason, within a bound.

:class:`TableExtract` streams the query through the connection's ``DbApiHook`` (a server-side cursor on
PostgreSQL, ``fetchmany`` elsewhere), checks the columns and keys, maps each row to a HERE request
(:class:`~airflow_here_batch.tables.records.RecordMapping`) and writes ``input.csv`` and
``fingerprints.csv`` complete or not at all (:func:`airflow_here_batch.files.atomic.atomic_open`).
Incremental runs compare each record's fingerprint with the ones stored in the target table, or let the
database leave out unchanged rows itself (the pre-filter) when the target table is on the source's
connection. With a change column (``updated_at``-style) only the rows changed since the last written run,
and a safety window behind that mark, are read at all (:mod:`airflow_here_batch.tables.watermark`).
Whether a stored result is reused is one rule, :func:`reuse_condition` (its parts,
:func:`reuse_terms`, name the reason of a record sent again), applied in SQL both where the stored
records are read and in the pre-filter. Every record sent has a reason
(:class:`~airflow_here_batch.api.spend.SendReason`); a record whose query is empty is not sent but listed
in ``skipped.csv``
(:func:`~airflow_here_batch.api.inputs.empty_query`); the count is checked against the run's
:class:`~airflow_here_batch.api.spend.SpendBound` before the files are kept.

A record is looked at in this order: a NULL key (no recId: a bad record), its reason to be sent (an
unchanged record is reused whatever it holds), an empty query (skipped or refused, ``on_empty_query``:
never a bad record), then HERE's input rules on its line (a bad record: ``on_bad_record``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_here_batch.api.models import ServiceType
from airflow_here_batch.api.spend import (
    SendCounts,
    SendReason,
    SkipReason,
    SpendBound,
    SpendLimitExceeded,
    breakdown,
    parse_choice,
)
from airflow_here_batch.files.atomic import atomic_open
from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.dialect import (
    SourceDialect,
    TableDialect,
    source_dialect,
    source_query,
    table_dialect,
)
from airflow_here_batch.tables.records import (
    FINGERPRINT_VERSION,
    REQUEST_PART,
    SCOPE_CURRENT,
    SCOPE_LEGACY,
    SCOPE_OUTPUTS,
    SCOPE_VERSION,
    STATUS_FAILED,
    MappingError,
    RecordMapping,
    StoredRecords,
    plain_name,
    scope_state,
)
from airflow_here_batch.tables.watermark import Watermark, load_watermark, source_digest

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import InputProblem
    from airflow_here_batch.api.recids import UniqueRecIds

__all__ = ["DEFAULT_CHANGE_WINDOW", "TableExtract", "reuse_condition", "reuse_terms", "table_or_query"]

log = logging.getLogger(__name__)

#: How far behind the change-column mark each run reads again (late commits, clock skew between writers).
DEFAULT_CHANGE_WINDOW = timedelta(hours=1)


def table_or_query(source: str) -> str:
    """A source given as a table name (``table`` or ``schema.table``, as the database spells it,
    unquoted) as the query of all its columns; a query as it is."""
    try:
        return f"SELECT * FROM {plain_name(str(source).strip().rstrip(';').strip())}"
    except ValueError:
        return str(source)


def reuse_terms(
    dialect: SourceDialect, alias: str, *, resend_failed: bool, cutoff: Any
) -> list[tuple[SendReason, str, list[Any]]]:
    """The parts of :func:`reuse_condition`, each as ``(reason, SQL, parameters)``: ``reason`` is why
    the record is sent again when that part does not hold (:class:`~airflow_here_batch.api.spend.SendReason`).
    Each part is never NULL."""
    ph, a = dialect.placeholder, f"{alias}."
    terms: list[tuple[SendReason, str, list[Any]]] = [
        (SendReason.CHANGED, f"{a}request_fingerprint IS NOT NULL", [])
    ]
    if cutoff is not None:
        expired = f"{a}geocoded_at IS NOT NULL AND {a}geocoded_at >= {ph}"
        terms.append((SendReason.EXPIRED, expired, [cutoff]))
    if resend_failed:
        failed = f"{a}status IS NOT NULL AND {a}status <> {ph}"
        terms.append((SendReason.FAILED_BEFORE, failed, [STATUS_FAILED]))
    return terms


def reuse_condition(
    dialect: SourceDialect, alias: str, *, resend_failed: bool, cutoff: Any
) -> tuple[str, list[Any]]:
    """The one rule of when a stored row's result is reused (its record not sent again), as SQL over the
    target table's row ``alias`` and its parameters. It is never NULL: a NULL proves nothing, so the row
    is not reused.

    ================  ==============================================  =====================  =================
    setting           the stored row is reused only when              NULL in that column    reason when not
    ================  ==============================================  =====================  =================
    always            ``request_fingerprint`` is stored               sent again             ``changed``
    ``max_age``       ``geocoded_at`` is not older than the cutoff    sent again             ``expired``
    ``resend_failed`` ``status`` is not ``failed``                    sent again             ``failed_before``
    ================  ==============================================  =====================  =================

    (The fingerprint itself is then compared with the record's: a different request is always sent.)
    The parts, with their reasons: :func:`reuse_terms`.

    :param cutoff: the oldest ``geocoded_at`` still reused, as a parameter of ``dialect``; ``None``
        without ``max_age``.
    """
    terms = reuse_terms(dialect, alias, resend_failed=resend_failed, cutoff=cutoff)
    return " AND ".join(sql for _, sql, _ in terms), [p for _, _, params in terms for p in params]


class TableExtract:
    """One query's rows -> ``input.csv`` (HERE lines), ``fingerprints.csv`` (``rec_id|fingerprint|
    request_text`` of each record sent) and ``skipped.csv`` (the same for each record not sent because its
    query is empty).

    Why each record is sent (:class:`~airflow_here_batch.api.spend.SendReason`): ``new`` (its key is not
    in the target table), ``changed`` (its request differs from the stored one), ``expired``
    (``max_age``), ``failed_before`` (``resend_failed``), ``full_refresh``, ``not_incremental``, and,
    only when asked, ``output_columns_changed`` / ``fingerprint_version_changed`` (the stored result was
    asked with other output columns, or its fingerprint is of another version: by default such records
    keep their stored result and are counted in ``records_would_resend``). A table written before
    fingerprint version 2 is read through :meth:`RecordMapping.legacy_fingerprint
    <airflow_here_batch.tables.records.RecordMapping.legacy_fingerprint>`: its unchanged records stay
    unchanged.

    :param conn_id: Airflow connection of the source database (any common.sql ``DbApiHook``).
    :param sql: one query returning the key and the mapped columns, as it runs in the database
        (trailing comments and ``;`` allowed: :func:`~airflow_here_batch.tables.dialect.source_query`),
        or a table name (:func:`table_or_query`).
    :param mapping: how a row becomes a HERE request.
    :param parameters: query parameters (DB-API style of the connection's driver), or ``None``.
    :param target_table: the table the results are written to (incremental runs read it).
    :param target_conn_id: its connection (default ``conn_id``).
    :param max_age: re-send records geocoded longer ago than this (``timedelta`` or seconds).
    :param resend_failed: also re-send unchanged records whose last geocoding failed.
    :param change_column: a column of the query that every write of a row sets to a higher value
        (``updated_at``, a version): incremental runs read only the rows at or above the last written
        run's mark minus ``change_window``, and the rows where it is NULL
        (:mod:`~airflow_here_batch.tables.watermark`). Needs ``target_table``.
    :param change_window: how far behind the mark each run reads again: longer than the longest write
        transaction plus the clock difference between writers (``timedelta``, or a number: seconds, or
        the column's own unit for a numeric column).
    :param fetch_size: rows per ``fetchmany``.
    :param delimiter: the input file's delimiter.
    :param on_bad_record: ``"fail"``: a record HERE would refuse (HERE's input rules,
        :class:`~airflow_here_batch.api.inputs.InputChecker`; a value with a line break; a NULL key; a
        bad position) fails the run before anything is written; ``"skip"``: such records are left out,
        counted in ``records_rejected`` and written with their reasons to the rejects file given to
        :meth:`run`. A recId that two rows share fails in either mode. A record whose query is empty is
        not a bad record (``on_empty_query``; it is looked at first).
    :param logger: where progress is logged (default: this module's logger).
    :param on_output_columns_change: ``"keep"`` (default) or ``"resend"`` the records whose stored result
        was asked with other output columns.
    :param on_fingerprint_version_change: ``"keep"`` (default) or ``"resend"`` the records whose stored
        fingerprint is of another version (and whose request does not match under it).
    :param on_empty_query: ``"skip"`` (default: not sent, written as ``skipped``) or ``"fail"`` (the run
        fails before anything is written, naming the key) for a record whose query is empty.
    :param bound: the most records the run may send (checked after the pass, before the files are kept).
    :raises ValueError: for a choice other than the ones named.
    :raises MappingError: for an empty query or one holding several statements.
    :raises ValueError: ``change_column`` without ``target_table``, or with mapping-style ``parameters``.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        sql: str,
        mapping: RecordMapping,
        parameters: Any = None,
        target_table: str | None = None,
        target_conn_id: str | None = None,
        max_age: timedelta | float | None = None,
        resend_failed: bool = False,
        change_column: str | None = None,
        change_window: timedelta | float = DEFAULT_CHANGE_WINDOW,
        fetch_size: int = 10_000,
        delimiter: str = "|",
        on_bad_record: str = "fail",
        logger: logging.Logger | None = None,
        on_output_columns_change: str = "keep",
        on_fingerprint_version_change: str = "keep",
        on_empty_query: str = "skip",
        bound: SpendBound | None = None,
    ) -> None:
        if on_bad_record not in ("fail", "skip"):
            raise ValueError(f"on_bad_record must be 'fail' or 'skip', got {on_bad_record!r}")
        self.conn_id = conn_id
        try:
            self.sql = source_query(table_or_query(sql))
        except ValueError as exc:
            raise MappingError(str(exc)) from None
        self.on_bad_record = on_bad_record
        self.mapping = mapping
        self.parameters = parameters
        self.target_table = target_table
        self.target_conn_id = target_conn_id or conn_id
        self.max_age = _as_seconds(max_age)
        self.resend_failed = resend_failed
        self.change_column = change_column or None
        self.change_window = change_window
        if self.change_column and not target_table:
            raise ValueError("change_column needs target_table: the mark is kept beside the target table")
        if self.change_column and parameters is not None and not isinstance(parameters, (list, tuple)):
            raise ValueError("with change_column, give the query's parameters as a list (positional)")
        #: The change filter of this run: (quoted change column, lowest value read), or None: every row.
        self._filter: tuple[str, Any] | None = None
        self.fetch_size = int(fetch_size)
        self.delimiter = delimiter
        self.log = logger or log
        outputs = parse_choice(on_output_columns_change, name="on_output_columns_change")
        self.resend_outputs = outputs == "resend"
        self.resend_version = (
            parse_choice(on_fingerprint_version_change, name="on_fingerprint_version_change") == "resend"
        )
        if on_empty_query not in ("skip", "fail"):
            raise ValueError(f"on_empty_query={on_empty_query!r}: use 'skip' (default) or 'fail'")
        self.on_empty_query = on_empty_query
        self.bound = bound or SpendBound()

    def run(
        self,
        folder: ObjectStoragePath,
        *,
        incremental: bool,
        full_refresh: bool = False,
        dry_run: bool = False,
        rejects: ObjectStoragePath | None = None,
    ) -> dict[str, Any]:
        """Write ``input.csv``, ``fingerprints.csv`` and ``skipped.csv`` into ``folder`` (each removed
        again when it would be empty).

        :param incremental: leave out records whose fingerprint is stored in the target table (and, with
            ``change_column``, read only the rows changed since the mark).
        :param full_refresh: every record is sent (reason ``full_refresh``; no comparison).
        :param dry_run: the same pass and files, reported as what a real run would send; a count above
            the bound is reported (``bound_exceeded``), not raised.
        :param rejects: where ``on_bad_record="skip"`` writes the records it leaves out (JSON lines,
            :class:`~airflow_here_batch.files.input_source.RejectsFile`; default ``folder/rejects.jsonl``);
            written only when a record is left out (a dry run too).
        :returns: ``{"input": URI or None, "fingerprints": URI or None, "skipped": URI or None,
            "service", "input_columns", "records_total", "records_sent", "records_reused",
            "records_rejected", "rejects": URI or None, "records_sent_by_reason", "records_skipped",
            "records_skipped_by_reason", "records_would_resend", "estimated_cost",
            "max_records_to_send", "bound_exceeded", "dry_run", "watermark"}`` (``records_total``: the
            rows read, with ``change_column`` only those at or above the mark minus the window;
            ``watermark``: the mark to keep once the results are written, ``None`` without
            ``change_column``; a dry run's is never kept, as nothing is written).
        :raises MappingError: for a missing column, a repeated recId (naming both rows and their key
            values), an empty query with ``on_empty_query="fail"``, and with ``on_bad_record="fail"`` a
            record HERE would refuse (naming its row and key); nothing is left in ``folder`` then.
        :raises SpendLimitExceeded: more records to send than the bound; nothing is left in ``folder``.
        :raises TargetTableError: when ``target_table`` exists and its columns do not fit the results
            (:func:`~airflow_here_batch.tables.targets.check_target_table`), before any row is read (a
            dry run too: a real run would fail there).
        :raises UnsupportedDialectError: when the target database is not supported (``target_table``).
        """
        started = time.monotonic()
        if self.target_table:  # before any HERE job is billed, not when the results come back
            from airflow_here_batch.tables.records import target_columns
            from airflow_here_batch.tables.targets import check_target_table

            columns = target_columns(self.mapping.output_columns)
            check_target_table(get_db_hook(self.target_conn_id), self.target_table, columns)
        if full_refresh:
            incremental = False
        mark = self.watermark() if self.change_column else None
        since = mark.since(self.change_window) if mark is not None and incremental else None
        if mark is not None:
            self.log.info(
                "HERE Batch: change column %s: %s",
                self.change_column,
                f"reading the rows from {since!r} (mark {mark.value!r} minus the window)"
                if since is not None
                else "reading every row (no mark kept yet, or a full refresh)",
            )
        prefilter = incremental and self.can_prefilter()
        stored: StoredRecords | None = None
        if prefilter:
            self.log.info(
                "HERE Batch: %s is on the source's connection: the database compares each row with its "
                "stored result%s",
                self.target_table,
                " and leaves out rows whose raw values are unchanged" if self.mapping.raw_columns else "",
            )
        elif incremental:
            stored = self.stored_records()
        base = SendReason.FULL_REFRESH if full_refresh else SendReason.NOT_INCREMENTAL
        paths = {name: folder / f"{name}.csv" for name in ("input", "fingerprints", "skipped")}
        counts, reasons, rejects_uri, highest = self._extract(
            stored, paths, prefilter, base, rejects or folder / "rejects.jsonl", since
        )
        sent, skipped = counts["records_sent"], reasons.total_skipped
        try:
            self.bound.check(sent, reasons.sent, what="this run")
            exceeded = None
        except SpendLimitExceeded as exc:
            if not dry_run:
                _remove(paths.values())
                raise
            exceeded = str(exc)
        result: dict[str, Any] = {
            "input": str(paths["input"]) if sent else None,
            "fingerprints": str(paths["fingerprints"]) if sent else None,
            "skipped": str(paths["skipped"]) if skipped else None,
            "service": self.mapping.service,
            "input_columns": self.mapping.here_columns,
            **counts,
            "rejects": rejects_uri,
            **reasons.summary(self.bound.price_per_1000),
            "max_records_to_send": self.bound.limit,
            "bound_exceeded": bool(exceeded),
            "dry_run": dry_run,
            "watermark": mark.advanced(highest).to_xcom() if mark is not None else None,
        }
        _remove([p for n, p in paths.items() if not result[n]])
        if counts["records_rejected"]:
            self.log.warning(
                "HERE Batch: %d records left out (on_bad_record='skip'), written with their reasons to %s",
                counts["records_rejected"],
                rejects_uri,
            )
        self.log.info(
            "HERE Batch: %d records in the query; %s; %d unchanged (reused); %d skipped (%s) in %.1f s%s",
            counts["records_total"],
            self.bound.describe(sent, reasons.sent, dry_run=dry_run),
            counts["records_reused"],
            skipped,
            breakdown(reasons.skipped),
            time.monotonic() - started,
            f" -> {result['input']}" if result["input"] else "",
        )
        for reason, n in result["records_would_resend"].items():
            outputs = reason == SendReason.OUTPUT_COLUMNS_CHANGED
            choice = "on_output_columns_change" if outputs else "on_fingerprint_version_change"
            self.log.warning(
                "HERE Batch: %d records keep their stored results though %s; re-sending them would send "
                "%d more records: pass %s='resend' (or the DAG param) to do so",
                n,
                "the output columns changed"
                if outputs
                else f"their fingerprints are of another version than {FINGERPRINT_VERSION}",
                n,
                choice,
            )
        if exceeded:
            self.log.warning("HERE Batch: dry run: a real run would be refused:\n%s", exceeded)
        return result

    # --- what is stored -----------------------------------------------------------------------------

    def _cutoff(self, dialect: SourceDialect) -> Any:
        """The ``max_age`` limit as a parameter of ``dialect``, or ``None`` without ``max_age``."""
        if self.max_age is None:
            return None
        return dialect.timestamp(datetime.now(timezone.utc) - timedelta(seconds=self.max_age))

    def _force_terms(self, dialect: SourceDialect, alias: str) -> list[tuple[str, int, list[Any]]]:
        """``(SQL condition, flag, parameters)`` of each configured force, the parts of
        :func:`reuse_terms` that do not hold: ``max_age`` (flag :attr:`StoredRecords.EXPIRED`) and
        ``resend_failed`` (:attr:`StoredRecords.FAILED`)."""
        flags = {SendReason.EXPIRED: StoredRecords.EXPIRED, SendReason.FAILED_BEFORE: StoredRecords.FAILED}
        terms = reuse_terms(dialect, alias, resend_failed=self.resend_failed, cutoff=self._cutoff(dialect))
        return [(f"NOT ({sql})", flags[reason], params) for reason, sql, params in terms if reason in flags]

    def stored_records(self) -> StoredRecords:
        """What the target table holds: each row's key, fingerprint and force flags.

        :raises UnsupportedDialectError: when the target database is not supported.
        """
        assert self.target_table
        stored = StoredRecords(self.mapping.scope)
        dialect = table_dialect(get_db_hook(self.target_conn_id))
        conn = dialect.connect()
        try:
            if dialect.table_columns(conn, self.target_table) is None:
                self.log.info("HERE Batch: %s does not exist yet: every record is new", self.target_table)
                return stored
            terms = self._force_terms(dialect, "t")
            flags = " + ".join(f"CASE WHEN {sql} THEN {flag} ELSE 0 END" for sql, flag, _ in terms) or "0"
            sql = (
                f"SELECT t.rec_id, t.request_fingerprint, {flags} "
                f"FROM {dialect.quote_name(self.target_table)} t "
                f"ORDER BY {dialect.ordered('t.request_fingerprint')}"
            )
            cursor = dialect.stream_cursor(conn)
            cursor.execute(sql, [p for _, _, params in terms for p in params])
            add = stored.add
            while batch := cursor.fetchmany(self.fetch_size):
                for rec_id, fingerprint, force in batch:
                    add(rec_id, fingerprint, int(force or 0))
            cursor.close()
            conn.rollback()
        finally:
            conn.close()
        current, outputs, version, legacy = stored.scopes
        self.log.info(
            "HERE Batch: %d records stored in %s (fingerprints: %d as now, %d with other output columns, "
            "%d of another version, %d of version 1)",
            len(stored),
            self.target_table,
            current,
            outputs,
            version,
            legacy,
        )
        return stored

    def watermark(self) -> Watermark:
        """The change-column mark kept for this source and target table (no value when none is kept).

        :raises UnsupportedDialectError: when the target database is not supported.
        """
        assert self.target_table and self.change_column
        mark = Watermark(self.target_table, source_digest(self.sql, self.change_column), self.change_column)
        dialect = table_dialect(get_db_hook(self.target_conn_id))
        conn = dialect.connect()
        try:
            return load_watermark(dialect, conn, mark)
        finally:
            conn.close()

    def can_prefilter(self) -> bool:
        """Whether the database compares the rows with their stored results itself: the target table on
        the source's connection (PostgreSQL, SQLite or MySQL/MariaDB) and already holding ``request_text``.
        With a column mapping (no templates, no ``at``) it leaves out the rows whose raw values are
        unchanged; with templates or ``at`` only with a change column (the few rows read are joined to
        their stored fingerprints instead of every stored fingerprint being read). Only with
        ``parameters=None`` (the query is embedded in a larger one with its own parameters)."""
        if self.parameters is not None:
            return False
        if self.mapping.raw_columns is None and not self.change_column:
            return False
        if self.target_conn_id != self.conn_id or not self.target_table:
            return False
        dialect = source_dialect(get_db_hook(self.conn_id))
        if not isinstance(dialect, TableDialect):
            return False
        conn = dialect.connect()
        try:
            columns = dialect.table_columns(conn, self.target_table)
        finally:
            conn.close()
        return columns is not None and "request_text" in {c.lower() for c in columns}

    # --- reading the source -------------------------------------------------------------------------

    def _read_params(self) -> list[Any] | None:
        """The parameters of a statement reading :meth:`_from`: the user's, then the change filter's."""
        if self._filter is None:
            return None if self.parameters is None else list(self.parameters)
        return [*(self.parameters or ()), self._filter[1]]

    def _execute(self, cursor: Any, sql: str) -> None:
        """Run a statement around the user's query (:meth:`_from`): with the user's (and the change
        filter's) parameters, or with none at all (an empty tuple would make a ``%s``-style driver read a
        ``%`` in the query, ``LIKE 'a%'``, as a placeholder)."""
        params = self._read_params()
        if params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)

    def _from(self, dialect: SourceDialect, alias: str, *, parameters: bool = False) -> str:
        """The rows this run reads, as a derived table: the user's query, or with a change column only
        its rows at or above the filter's value and those where the column is NULL.

        :param parameters: the statement passes parameters of its own after :meth:`_read_params`.
        """
        if self._filter is None:
            return dialect.subquery(self.sql, alias, parameters=parameters)
        quoted, _ = self._filter
        # the filter's value is a parameter: a % of a query without parameters of its own is doubled
        inner = dialect.subquery(self.sql, "here_batch_changed", parameters=self.parameters is None)
        return f"(SELECT * FROM {inner} WHERE {quoted} IS NULL OR {quoted} >= {dialect.placeholder}) {alias}"

    def _change_name(self, names: list[str]) -> str | None:
        """The query's name of the change column (case ignored, as PostgreSQL folds unquoted names).

        :raises MappingError: when the query does not return it.
        """
        if self.change_column is None:
            return None
        if self.change_column in names:
            return self.change_column
        lowered = {n.lower(): n for n in names}
        if self.change_column.lower() in lowered:
            return lowered[self.change_column.lower()]
        raise MappingError(
            f"the query returns no change column {self.change_column!r} (it returns {names}): add it to "
            "the SELECT or fix change_column",
            column=self.change_column,
        )

    def _extract(
        self,
        stored: StoredRecords | None,
        paths: Mapping[str, ObjectStoragePath],
        prefilter: bool,
        base: SendReason,
        rejects_path: ObjectStoragePath,
        since: Any = None,
    ) -> tuple[dict[str, int], SendCounts, str | None, Any]:
        """Read the rows, write the files; the counts, the reasons, the rejects file and the highest
        change-column value read (``None`` without a change column)."""
        from airflow_here_batch.api.inputs import (
            CheckedLine,
            InputChecker,
            InputValidationError,
            RejectedRow,
            empty_query,
            rows_to_lines,
        )
        from airflow_here_batch.api.recids import UniqueRecIds
        from airflow_here_batch.files.input_source import RejectsFile

        mapping = self.mapping
        dialect = source_dialect(get_db_hook(self.conn_id))
        self._filter = None
        source = self._from(dialect, "here_batch_source")
        skip = self.on_bad_record == "skip"
        highest: Any = None
        conn = dialect.connect()
        counts = {"records_total": 0, "records_sent": 0, "records_reused": 0, "records_rejected": 0}
        reasons = SendCounts()
        service = ServiceType(mapping.service)
        rejects = RejectsFile(rejects_path) if skip else None
        finder = UniqueRecIds()  # recIds of every row (sent or not): the target table is keyed by them
        try:
            probe = conn.cursor()
            self._execute(probe, f"SELECT * FROM {source} WHERE 1 = 0")
            names = [d[0] for d in probe.description]
            probe.close()
            resolved = mapping.check_columns(names)
            key = resolved[mapping.key_column]
            quoted_key = dialect.quote(key)
            positions = {column: names.index(actual) for column, actual in resolved.items()}
            key_index = positions[mapping.key_column]
            change = self._change_name(names)
            change_index = names.index(change) if change is not None else -1
            if change is not None and since is not None:
                self._filter = (dialect.quote(change), since)
                source = self._from(dialect, "here_batch_source")
            track = False  # the highest change value is tracked while reading (not by the pre-filter)
            # The key's text (recId) as the database spells it, where its SQL is known (dialect.py).
            key_sql = dialect.key_text_sql(f"here_batch_source.{quoted_key}")
            text_index: int | None = None
            if prefilter:  # the database leaves rows out: the keys are checked over every row first
                assert isinstance(dialect, TableDialect)
                quoted_change = dialect.quote(change) if change is not None else None
                total, highest = self._check_keys(
                    conn, dialect, key, finder, nulls=not skip, change=quoted_change
                )
                query, params = self._prefilter_query(dialect, resolved, quoted_key)
                cursor = dialect.stream_cursor(conn)
                dialect.read_whole(conn)  # the pre-filter reads its result to the end
                cursor.execute(query, params)
                n = len(names)
                stored_index, force_index, present_index, text_index = n, n + 1, n + 2, n + 3
            else:
                cursor = dialect.stream_cursor(conn)
                text = f", {key_sql}" if key_sql else ""
                self._execute(
                    cursor, f"SELECT here_batch_source.*{text} FROM {source} ORDER BY {quoted_key}"
                )
                text_index = len(names) if key_sql else None
                track = change_index >= 0
            legacy = stored is not None and stored.legacy
            scope = mapping.scope
            resend_outputs, resend_version = self.resend_outputs, self.resend_version
            expired_flag, failed_flag = StoredRecords.EXPIRED, StoredRecords.FAILED
            add_reason = reasons.add

            def scoped(state: int, request: Mapping[str, str]) -> SendReason | None:
                """A stored result of the same request asked under another scope: re-sent only when the
                user chose so, else kept and counted (``records_would_resend``)."""
                if state == SCOPE_CURRENT:
                    return None
                if state not in (SCOPE_OUTPUTS, SCOPE_VERSION):
                    return SendReason.CHANGED  # a version-1 fingerprint met by a version-2 one: not ours
                outputs = state == SCOPE_OUTPUTS
                reason = SendReason.FINGERPRINT_VERSION_CHANGED
                if outputs:
                    reason = SendReason.OUTPUT_COLUMNS_CHANGED
                if resend_outputs if outputs else resend_version:
                    return reason
                if not empty_query(service, request):  # an empty query would not be re-sent either
                    reasons.keep(reason)
                return None

            def reason_of(rec_id: str, request: Mapping[str, str], fingerprint: str) -> SendReason | None:
                """Why the record is sent (compared with ``stored``), or ``None`` when it is not."""
                assert stored is not None
                code = stored.code(fingerprint)
                if code is None and legacy:
                    old = stored.code(mapping.legacy_fingerprint(request))
                    if old is not None and old & 3 == SCOPE_LEGACY:
                        code = old & ~3  # version 1 matched: same request, same output columns
                if code is None:
                    return SendReason.CHANGED if stored.has_key(rec_id) else SendReason.NEW
                if code & expired_flag:
                    return SendReason.EXPIRED
                if code & failed_flag:
                    return SendReason.FAILED_BEFORE
                return scoped(code & 3, request)

            def prefiltered(
                values: Sequence[Any], request: Mapping[str, str], fingerprint: str
            ) -> SendReason | None:
                """Why a row the pre-filter returned is sent, from the stored fingerprint beside it."""
                if not values[present_index]:
                    return SendReason.NEW  # (no stored row: its force flags say nothing)
                force = values[force_index] or 0
                if force & 1:
                    return SendReason.EXPIRED
                if force & 2:
                    return SendReason.FAILED_BEFORE
                stored_fp = values[stored_index]
                if stored_fp == fingerprint:
                    return None  # raw values re-spelt, same request
                if not stored_fp:
                    return SendReason.CHANGED
                state = scope_state(stored_fp, scope)
                if state == SCOPE_LEGACY:
                    same = stored_fp == mapping.legacy_fingerprint(request)
                    return None if same else SendReason.CHANGED
                if stored_fp[:REQUEST_PART] != fingerprint[:REQUEST_PART]:
                    return SendReason.CHANGED
                return scoped(state, request)

            # The row being mapped (number, key value, its fingerprints row, its reason): read by the
            # labels and the writer below, which handle each row before the next is read (the generators
            # are lazy).
            current: list[Any] = [0, None, None, None]

            def label(_: int = 0) -> str:
                return _row_label(current[0], key, current[1])

            def refuse(problems: list[InputProblem], record: str) -> None:
                """A record HERE would refuse: rejected (skip), or the run fails naming it."""
                from dataclasses import replace

                where = label()
                problems = [replace(p, line=current[0], where=where) for p in problems]
                if rejects is None:
                    raise MappingError(
                        f"{where}: {problems[0].message} (or pass on_bad_record='skip' to send the other "
                        "records and write this one to a rejects file)",
                        column=key,
                        key=current[1],
                    )
                counts["records_rejected"] += 1
                rejects.write(CheckedLine(current[0], record, False, tuple(problems)))

            def requests(skip_writer: Any) -> Iterator[dict[str, str]]:
                """The requests to send, in key order. The order of the checks: a NULL key (a bad
                record: no recId to store it under), the reason to send (an unchanged record is reused),
                an empty query (skipped or refused by ``on_empty_query``, never a bad record); HERE's input
                rules follow on the line (``checker`` below)."""
                from airflow_here_batch.api.inputs import InputProblem

                nonlocal highest
                number = 0
                while batch := cursor.fetchmany(self.fetch_size):
                    for values in batch:
                        number += 1
                        if track:
                            changed = values[change_index]
                            if changed is not None and (highest is None or changed > highest):
                                highest = changed
                        key_value = values[key_index]
                        current[0], current[1], current[2], current[3] = number, key_value, None, None
                        counts["records_total"] += 1
                        row = {column: values[i] for column, i in positions.items()}
                        if key_value is None:
                            refuse(
                                [
                                    InputProblem(
                                        "recid-empty",
                                        f"the key column {key!r} is NULL: every row needs a key for recId; "
                                        f"filter NULLs out (WHERE {key} IS NOT NULL) or fix the rows",
                                        field=key,
                                    )
                                ],
                                _row_json(row),
                            )
                            continue
                        rec_id = dialect.key_text(
                            key_value, values[text_index] if text_index is not None else None, column=key
                        )
                        if not prefilter:
                            finder.add(rec_id, number)
                        try:
                            request = mapping.request(row, rec_id)
                        except MappingError as exc:
                            refuse([InputProblem("row", str(exc), field=exc.column)], _row_json(row))
                            continue
                        fingerprint = mapping.fingerprint(request)
                        if stored is not None:
                            reason = reason_of(rec_id, request, fingerprint)
                        elif prefilter:
                            reason = prefiltered(values, request, fingerprint)
                        else:
                            reason = base
                        if reason is None:
                            counts["records_reused"] += 1
                            continue
                        if empty_query(service, request):
                            if self.on_empty_query == "fail":
                                raise _empty_query(mapping, label(), rec_id)
                            reasons.skip(SkipReason.EMPTY_QUERY)
                            skip_writer.writerow((rec_id, fingerprint, mapping.raw_text(row)))
                            continue
                        current[2], current[3] = (rec_id, fingerprint, mapping.raw_text(row)), reason
                        yield request

            # HERE's input rules on each line as it is made (so a refusal names the row and its key);
            # limits are the submit's (or the split's): one extract may hold more than one job.
            checker = InputChecker(
                service=mapping.service,
                delimiter=self.delimiter,
                max_records=sys.maxsize,
                max_bytes=sys.maxsize,
                label=label,
                unique_recids=False,  # recIds are checked over every row, sent or not (finder)
                allow_empty=True,  # nothing to send is no error: input is then None
            )
            with (
                atomic_open(paths["input"], "w") as input_file,
                atomic_open(paths["fingerprints"], "w") as fp_file,
                atomic_open(paths["skipped"], "w") as skip_file,
            ):
                out, fp_out = BlockWriter(input_file), BlockWriter(fp_file)
                skip_out = BlockWriter(skip_file)
                fp_writer = csv.writer(fp_out, delimiter="|", lineterminator="\n")
                fp_writer.writerow(("rec_id", "fingerprint", "request_text"))
                skip_writer = csv.writer(skip_out, delimiter="|", lineterminator="\n")
                skip_writer.writerow(("rec_id", "fingerprint", "request_text"))
                lines = rows_to_lines(
                    requests(skip_writer),
                    columns=mapping.here_columns,
                    delimiter=self.delimiter,
                    on_bad_row="mark",
                )
                encoded = (line if line.__class__ is RejectedRow else line.encode("utf-8") for line in lines)
                try:
                    for checked in checker.check(encoded):
                        if checked.problems:
                            refuse(list(checked.problems), checked.text)
                            continue
                        out.write(checked.text + "\n")
                        if not checked.header:
                            counts["records_sent"] += 1
                            add_reason(current[3])
                            fp_writer.writerow(current[2])
                except InputValidationError as exc:
                    raise MappingError(f"{label()}: {exc}", column=key, key=current[1]) from None
                cursor.close()
                if not prefilter and finder.finish():
                    self._confirm_duplicates(conn, dialect, key, finder)
                out.flush()
                fp_out.flush()
                skip_out.flush()
            conn.rollback()
            if prefilter:  # rows the database left out are unchanged: reused
                counts["records_reused"] += total - counts["records_total"]
                counts["records_total"] = total
            rejects_uri = rejects.commit() if rejects is not None else None
        except BaseException:
            if rejects is not None:
                rejects.discard()
            raise
        finally:
            conn.close()
        return counts, reasons, rejects_uri, highest

    # --- the keys: never NULL (fail mode), never one recId for two rows --------------------------

    def _key_rows(
        self, conn: Any, dialect: SourceDialect, key: str
    ) -> Iterator[tuple[int, Any, str | None]]:
        """``(row number, key value, recId)`` of every row of the query, ordered by the key column ``key``
        (the numbers the extract gives its rows; recId ``None`` for a NULL key)."""
        quoted = dialect.quote(key)
        key_sql = dialect.key_text_sql(quoted)
        cursor = dialect.stream_cursor(conn)
        source = self._from(dialect, "here_batch_source")
        text = f", {key_sql}" if key_sql else ""
        self._execute(cursor, f"SELECT {quoted}{text} FROM {source} ORDER BY {quoted}")
        number = 0
        while batch := cursor.fetchmany(self.fetch_size):
            for row in batch:
                number += 1
                value = row[0]
                if value is None:
                    yield number, value, None
                else:
                    yield number, value, dialect.key_text(value, row[1] if key_sql else None, column=key)
        cursor.close()

    def _check_keys(
        self,
        conn: Any,
        dialect: TableDialect,
        key: str,
        finder: UniqueRecIds,
        *,
        nulls: bool,
        change: str | None = None,
    ) -> tuple[int, Any]:
        """Row count of the rows read and their highest change-column value (``change``: the quoted
        column, or ``None``: no value), keys checked over every row read (the pre-filter never sees
        every row).

        The database counts first (``COUNT(*)``, ``COUNT(key)``, ``COUNT(DISTINCT <the key's text>)``:
        0.24 s for 1,000,000 rows, P8); only when a NULL or a repeated text shows are the keys read, to
        name the rows (a text the database repeats but the recIds do not is no refusal).

        :param nulls: refuse a NULL key here (fail mode; in skip mode the row is rejected when read).
        :raises MappingError: naming the first NULL key's row, or the first recId two rows share.
        """
        quoted = dialect.quote(key)
        source = self._from(dialect, "here_batch_source")
        cursor = conn.cursor()
        self._execute(
            cursor,
            f"SELECT COUNT(*), COUNT({quoted}), COUNT(DISTINCT {dialect.key_text_sql(quoted)}), "
            f"{f'MAX({change})' if change else 'NULL'} FROM {source}",  # no MAX(uuid) in PostgreSQL
        )
        total, keyed, distinct, top = cursor.fetchone()
        cursor.close()
        highest = top if change is not None else None
        if keyed == total and distinct == keyed:
            return int(total), highest
        total = 0
        for number, _value, rec_id in self._key_rows(conn, dialect, key):
            total = number
            if rec_id is None:
                if nulls:
                    raise MappingError(
                        f"{_row_label(number, key, None)}: the key column {key!r} is NULL: every row needs a "
                        f"key for recId; filter NULLs out (WHERE {key} IS NOT NULL) or fix the rows",
                        column=key,
                    )
                continue
            finder.add(rec_id, number)
        if finder.finish():
            self._confirm_duplicates(conn, dialect, key, finder)
        return total, highest

    def _confirm_duplicates(self, conn: Any, dialect: SourceDialect, key: str, finder: UniqueRecIds) -> None:
        """The second pass of :class:`~airflow_here_batch.api.recids.UniqueRecIds` (a hash repeated):
        the keys read again, the repeats confirmed on their text.

        :raises MappingError: naming the first two rows of the first repeated recId, their key values
            and the recId.
        """
        values: dict[str, list[Any]] = {}
        for number, value, rec_id in self._key_rows(conn, dialect, key):
            if rec_id is None:
                continue
            if finder.wanted(rec_id):
                finder.add(rec_id, number)
                values.setdefault(rec_id, []).append(value)
        finder.finish()
        duplicates = finder.duplicates()
        if duplicates:
            raise _duplicate_keys(key, duplicates, values)

    def _prefilter_query(
        self, dialect: TableDialect, resolved: Mapping[str, str], quoted_key: str
    ) -> tuple[str, list[Any]]:
        """The rows read that may have changed: new, raw values differing from ``request_text``, not
        reusable (:func:`reuse_condition`), or stored under another scope (output columns, fingerprint
        version: classified in Python); with the stored fingerprint, the force flags (1: expired, 2:
        failed, the parts of :func:`reuse_terms`) and whether the key is stored appended to each row.
        Without raw columns (templates, ``at``) every row read comes back, with them. The parameters
        returned are all of the statement's, in order (the flags', :meth:`_read_params`, the filter's)."""
        mapping = self.mapping
        assert self.target_table
        terms = self._force_terms(dialect, "t")
        bits = {StoredRecords.EXPIRED: 1, StoredRecords.FAILED: 2}
        flags = " + ".join(f"CASE WHEN {sql} THEN {bits[flag]} ELSE 0 END" for sql, flag, _ in terms) or "0"
        flag_params = [p for _, _, params in terms for p in params]
        where, where_params = "", []
        if mapping.raw_columns is not None:
            raw = dialect.raw_text_sql("s", [resolved[c] for c in mapping.raw_columns])
            reusable, params = reuse_condition(
                dialect, "t", resend_failed=self.resend_failed, cutoff=self._cutoff(dialect)
            )
            where = (
                f"WHERE t.request_text IS NULL OR t.request_text <> {raw} OR NOT ({reusable}) "
                f"OR SUBSTR(t.request_fingerprint, {REQUEST_PART + 1}) <> {dialect.placeholder} "
            )
            where_params = [*params, mapping.scope]
        key_text = dialect.key_text_sql(f"s.{quoted_key}")
        query = (
            f"SELECT s.*, t.request_fingerprint, {flags}, CASE WHEN t.rec_id IS NULL THEN 0 ELSE 1 END, "
            f"{key_text} "
            f"FROM {self._from(dialect, 's', parameters=True)} "
            f"LEFT JOIN {dialect.quote_name(self.target_table)} t "
            f"ON t.rec_id = {key_text} "
            f"{where}ORDER BY s.{quoted_key}"
        )
        return query, [*flag_params, *(self._read_params() or ()), *where_params]


class BlockWriter:
    """Collects small writes and passes them on in blocks of about 1 MB (an object-storage file pays a
    wrapper call per write). Call :meth:`flush` before the stream is closed."""

    def __init__(self, stream: Any, size: int = 1 << 20) -> None:
        self.stream = stream
        self.size = size
        self.parts: list[str] = []
        self.pending = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.pending += len(text)
        if self.pending >= self.size:
            self.flush()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.parts:
            self.stream.write("".join(self.parts))
            self.parts, self.pending = [], 0


def _row_label(number: int, column: str, value: Any) -> str:
    """A source row as the user finds it: ``row 7 of the query (ordered by id), key 'A-1'``."""
    key = "NULL" if value is None else repr(value)
    return f"row {number} of the query (ordered by {column}), key {key}"


def _row_json(row: Mapping[str, Any]) -> str:
    return json.dumps(dict(row), ensure_ascii=False, default=str)


def _duplicate_keys(column: str, duplicates: list[Any], values: Mapping[str, list[Any]]) -> MappingError:
    """The refusal of recIds that several rows share: the first two rows and key values of the first."""
    from airflow_here_batch.api.recids import RECID_RULE

    first = duplicates[0]
    shown = values.get(first.rec_id, [])
    keys = f"{shown[0]!r} and {shown[1]!r}" if len(shown) > 1 else repr(first.rec_id)
    more = len(duplicates) - 1
    also = f" ({more} more recId{'s' if more > 1 else ''} repeated too)" if more else ""
    return MappingError(
        f"rows {first.lines[0]} and {first.lines[1]} of the query (ordered by {column}) have the key values "
        f"{keys}, which both become recId {first.rec_id!r}{also}; {RECID_RULE}: deduplicate the rows "
        "(e.g. SELECT DISTINCT ON, GROUP BY) or choose a unique key column",
        column=column,
        key=first.rec_id,
    )


def _empty_query(mapping: RecordMapping, where: str, rec_id: str) -> MappingError:
    """The refusal of an empty query (``on_empty_query="fail"``), naming the row (``where``), the
    service's query columns and the source columns they come from."""
    from airflow_here_batch.api.inputs import REQUIRED_COLUMNS

    wanted = [c for c in REQUIRED_COLUMNS[ServiceType(mapping.service)] if c in mapping.here_columns]
    sources = [mapping.columns.get(c) or mapping.templates.get(c) or c for c in wanted]
    return MappingError(
        f"{where}: its query ({', '.join(wanted)} from {', '.join(map(repr, sources))}) is "
        "empty, NULL or blank: HERE would fail the record and bill it; fill it, filter such rows out in "
        "the query, or pass on_empty_query='skip' (not sent, written as 'skipped')",
        column=sources[0] if sources else None,
        key=rec_id,
    )


def _remove(paths: Iterable[ObjectStoragePath]) -> None:
    for path in paths:
        with contextlib.suppress(Exception):
            path.unlink()


def _as_seconds(value: timedelta | float | int | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
