"""The source side of the table pipeline: a query's rows into a HERE input file, sending only new or
changed records.

:class:`TableExtract` streams the query through the connection's ``DbApiHook`` (a server-side cursor on
PostgreSQL, ``fetchmany`` elsewhere), checks the columns and keys, maps each row to a HERE request
(:class:`~airflow_here_batch.tables.records.RecordMapping`) and writes ``input.csv`` and
``fingerprints.csv`` complete or not at all (:func:`airflow_here_batch.files.atomic.atomic_open`).
Incremental runs compare each record's fingerprint with the ones stored in the target table, or let the
database leave out unchanged rows itself (the pre-filter) when the target table is on the source's
connection. With a change column (``updated_at``-style) only the rows changed since the last written run,
and a safety window behind that mark, are read at all (:mod:`airflow_here_batch.tables.watermark`).

Whether a stored result is reused is one rule, :func:`reuse_condition`, applied in SQL both where the
stored fingerprints are read and in the pre-filter.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

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
    STATUS_FAILED,
    FingerprintIndex,
    MappingError,
    RecordMapping,
    plain_name,
)
from airflow_here_batch.tables.watermark import Watermark, load_watermark, source_digest

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import InputProblem
    from airflow_here_batch.api.recids import UniqueRecIds

__all__ = ["DEFAULT_CHANGE_WINDOW", "TableExtract", "reuse_condition", "table_or_query"]

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


def reuse_condition(
    dialect: SourceDialect, alias: str, *, resend_failed: bool, cutoff: Any
) -> tuple[str, list[Any]]:
    """The one rule of when a stored row's result is reused (its record not sent again), as SQL over the
    target table's row ``alias`` and its parameters. It is never NULL: a NULL proves nothing, so the row
    is not reused.

    ================  ==============================================  =====================
    setting           the stored row is reused only when              NULL in that column
    ================  ==============================================  =====================
    always            ``request_fingerprint`` is stored               sent again
    ``resend_failed`` ``status`` is not ``failed``                    sent again
    ``max_age``       ``geocoded_at`` is not older than the cutoff    sent again
    ================  ==============================================  =====================

    (The fingerprint itself is then compared with the record's: a different request is always sent.)

    :param cutoff: the oldest ``geocoded_at`` still reused, as a parameter of ``dialect``; ``None``
        without ``max_age``.
    """
    ph, a = dialect.placeholder, f"{alias}."
    where = [f"{a}request_fingerprint IS NOT NULL"]
    params: list[Any] = []
    if resend_failed:
        where.append(f"{a}status IS NOT NULL AND {a}status <> {ph}")
        params.append(STATUS_FAILED)
    if cutoff is not None:
        where.append(f"{a}geocoded_at IS NOT NULL AND {a}geocoded_at >= {ph}")
        params.append(cutoff)
    return " AND ".join(where), params


class TableExtract:
    """One query's rows -> ``input.csv`` (HERE lines) and ``fingerprints.csv`` (``rec_id|fingerprint|
    request_text`` of each record sent).

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
        :meth:`run`. A recId that two rows share fails in either mode.
    :param logger: where progress is logged (default: this module's logger).
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

    def run(
        self, folder: ObjectStoragePath, *, incremental: bool, rejects: ObjectStoragePath | None = None
    ) -> dict[str, Any]:
        """Write ``input.csv`` and ``fingerprints.csv`` into ``folder`` (both removed again when nothing
        is to be sent).

        :param incremental: leave out records whose fingerprint is stored in the target table (and, with
            ``change_column``, read only the rows changed since the mark).
        :param rejects: where ``on_bad_record="skip"`` writes the records it leaves out (JSON lines,
            :class:`~airflow_here_batch.files.input_source.RejectsFile`; default ``folder/rejects.jsonl``);
            written only when a record is left out.
        :returns: ``{"input": URI or None, "fingerprints": URI or None, "service", "input_columns",
            "records_total", "records_sent", "records_reused", "records_rejected", "rejects": URI or
            None, "watermark"}`` (``records_total``: the rows read, with ``change_column`` only those at or
            above the mark minus the window; ``watermark``: the mark to keep once the results are
            written, ``None`` without ``change_column``).
        :raises MappingError: for a missing column, a repeated recId (naming both rows and their key
            values), and with ``on_bad_record="fail"`` a record HERE would refuse (naming its row and
            key); nothing is left in ``folder`` then.
        :raises TargetTableError: when ``target_table`` exists and its columns do not fit the results
            (:func:`~airflow_here_batch.tables.targets.check_target_table`), before any row is read.
        :raises UnsupportedDialectError: when the target database is not supported (``target_table``).
        """
        started = time.monotonic()
        if self.target_table:  # before any HERE job is billed, not when the results come back
            from airflow_here_batch.tables.records import target_columns
            from airflow_here_batch.tables.targets import check_target_table

            columns = target_columns(self.mapping.output_columns)
            check_target_table(get_db_hook(self.target_conn_id), self.target_table, columns)
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
        if prefilter:
            known = FingerprintIndex()  # not needed: the database returns the stored fingerprint per row
            incremental = False
            self.log.info(
                "HERE Batch: %s is on the source's connection: the database compares each row with its "
                "stored result%s",
                self.target_table,
                " and leaves out rows whose raw values are unchanged" if self.mapping.raw_columns else "",
            )
        else:
            known = self.stored_fingerprints() if incremental else FingerprintIndex()
        input_path, fp_path = folder / "input.csv", folder / "fingerprints.csv"
        counts, rejects_uri, highest = self._extract(
            known, input_path, fp_path, incremental, prefilter, rejects or folder / "rejects.jsonl", since
        )
        sent = bool(counts["records_sent"])
        result = {
            "input": str(input_path) if sent else None,
            "fingerprints": str(fp_path) if sent else None,
            "service": self.mapping.service,
            "input_columns": self.mapping.here_columns,
            **counts,
            "rejects": rejects_uri,
            "watermark": mark.advanced(highest).to_xcom() if mark is not None else None,
        }
        if counts["records_rejected"]:
            self.log.warning(
                "HERE Batch: %d records left out (on_bad_record='skip'), written with their reasons to %s",
                counts["records_rejected"],
                rejects_uri,
            )
        if not sent:
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

    # --- what is stored -----------------------------------------------------------------------------

    def _cutoff(self, dialect: SourceDialect) -> Any:
        """The ``max_age`` limit as a parameter of ``dialect``, or ``None`` without ``max_age``."""
        if self.max_age is None:
            return None
        return dialect.timestamp(datetime.now(timezone.utc) - timedelta(seconds=self.max_age))

    def stored_fingerprints(self) -> FingerprintIndex:
        """The fingerprints in the target table that still count (not too old, not failed).

        :raises UnsupportedDialectError: when the target database is not supported.
        """
        assert self.target_table
        index = FingerprintIndex()
        dialect = table_dialect(get_db_hook(self.target_conn_id))
        conn = dialect.connect()
        try:
            if dialect.table_columns(conn, self.target_table) is None:
                self.log.info("HERE Batch: %s does not exist yet: every record is new", self.target_table)
                return index
            reusable, params = reuse_condition(
                dialect, "t", resend_failed=self.resend_failed, cutoff=self._cutoff(dialect)
            )
            sql = (
                f"SELECT t.request_fingerprint FROM {dialect.quote_name(self.target_table)} t "
                f"WHERE {reusable} ORDER BY {dialect.ordered('t.request_fingerprint')}"
            )
            cursor = dialect.stream_cursor(conn)
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
        known: FingerprintIndex,
        input_path: ObjectStoragePath,
        fp_path: ObjectStoragePath,
        incremental: bool,
        prefilter: bool,
        rejects_path: ObjectStoragePath,
        since: Any = None,
    ) -> tuple[dict[str, int], str | None, Any]:
        """Read the rows, write the files; the counts, the rejects file and the highest change-column
        value read (``None`` without a change column)."""
        from airflow_here_batch.api.inputs import (
            CheckedLine,
            InputChecker,
            InputValidationError,
            RejectedRow,
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
                cursor.execute(query, [*(self._read_params() or ()), *params])
                stored_index, force_index, text_index = len(names), len(names) + 1, len(names) + 2
            else:
                cursor = dialect.stream_cursor(conn)
                text = f", {key_sql}" if key_sql else ""
                self._execute(
                    cursor, f"SELECT here_batch_source.*{text} FROM {source} ORDER BY {quoted_key}"
                )
                text_index = len(names) if key_sql else None
                track = change_index >= 0
            # The row being mapped (number, key value, its fingerprints row): read by the labels and the
            # writer below, which handle each row before the next is read (the generators are lazy).
            current: list[Any] = [0, None, None]

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

            def requests() -> Iterator[dict[str, str]]:
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
                        current[0], current[1], current[2] = number, key_value, None
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
                        if incremental and fingerprint in known:
                            counts["records_reused"] += 1
                            continue
                        if prefilter and values[stored_index] == fingerprint and not values[force_index]:
                            counts["records_reused"] += 1  # raw values re-spelt, same request
                            continue
                        current[2] = (rec_id, fingerprint, mapping.raw_text(row))
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
            lines = rows_to_lines(
                requests(), columns=mapping.here_columns, delimiter=self.delimiter, on_bad_row="mark"
            )
            encoded = (line if line.__class__ is RejectedRow else line.encode("utf-8") for line in lines)
            with atomic_open(input_path, "w") as input_file, atomic_open(fp_path, "w") as fp_file:
                out, fp_out = BlockWriter(input_file), BlockWriter(fp_file)
                fp_writer = csv.writer(fp_out, delimiter="|", lineterminator="\n")
                fp_writer.writerow(("rec_id", "fingerprint", "request_text"))
                try:
                    for checked in checker.check(encoded):
                        if checked.problems:
                            refuse(list(checked.problems), checked.text)
                            continue
                        out.write(checked.text + "\n")
                        if not checked.header:
                            counts["records_sent"] += 1
                            fp_writer.writerow(current[2])
                except InputValidationError as exc:
                    raise MappingError(f"{label()}: {exc}", column=key, key=current[1]) from None
                cursor.close()
                if not prefilter and finder.finish():
                    self._confirm_duplicates(conn, dialect, key, finder)
                out.flush()
                fp_out.flush()
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
        return counts, rejects_uri, highest

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
        """The rows read that may have changed: new, raw values differing from ``request_text``, or not
        reusable (:func:`reuse_condition`); with the stored fingerprint and a force flag (1: not reusable)
        appended to each row. Without raw columns (templates, ``at``) every row read comes back, with
        them. The parameters returned follow :meth:`_read_params`."""
        mapping = self.mapping
        assert self.target_table
        reusable, params = reuse_condition(
            dialect, "t", resend_failed=self.resend_failed, cutoff=self._cutoff(dialect)
        )
        where, where_params = "", []
        if mapping.raw_columns is not None:
            raw = dialect.raw_text_sql("s", [resolved[c] for c in mapping.raw_columns])
            where = f"WHERE t.request_text IS NULL OR t.request_text <> {raw} OR NOT ({reusable}) "
            where_params = params
        key_text = dialect.key_text_sql(f"s.{quoted_key}")
        query = (
            f"SELECT s.*, t.request_fingerprint, CASE WHEN {reusable} THEN 0 ELSE 1 END, {key_text} "
            f"FROM {self._from(dialect, 's', parameters=True)} "
            f"LEFT JOIN {dialect.quote_name(self.target_table)} t "
            f"ON t.rec_id = {key_text} "
            f"{where}ORDER BY s.{quoted_key}"
        )
        return query, params + where_params


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


def _as_seconds(value: timedelta | float | int | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
