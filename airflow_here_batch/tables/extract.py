"""The source side of the table pipeline: a query's rows into a HERE input file, sending only new or
changed records.

:class:`TableExtract` streams the query through the connection's ``DbApiHook`` (a server-side cursor on
PostgreSQL, ``fetchmany`` elsewhere), checks the columns and keys, maps each row to a HERE request
(:class:`~airflow_here_batch.tables.records.RecordMapping`) and writes ``input.csv`` and
``fingerprints.csv`` complete or not at all (:func:`airflow_here_batch.files.atomic.atomic_open`).
Incremental runs compare each record's fingerprint with the ones stored in the target table, or let the
database leave out unchanged rows itself (the pre-filter) when the target table is on the source's
connection.
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
from airflow_here_batch.tables.records import STATUS_FAILED, FingerprintIndex, MappingError, RecordMapping

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import InputProblem
    from airflow_here_batch.api.recids import UniqueRecIds

__all__ = ["TableExtract"]

log = logging.getLogger(__name__)


class TableExtract:
    """One query's rows -> ``input.csv`` (HERE lines) and ``fingerprints.csv`` (``rec_id|fingerprint|
    request_text`` of each record sent).

    :param conn_id: Airflow connection of the source database (any common.sql ``DbApiHook``).
    :param sql: one query returning the key and the mapped columns, as it runs in the database
        (trailing comments and ``;`` allowed: :func:`~airflow_here_batch.tables.dialect.source_query`).
    :param mapping: how a row becomes a HERE request.
    :param parameters: query parameters (DB-API style of the connection's driver), or ``None``.
    :param target_table: the table the results are written to (incremental runs read it).
    :param target_conn_id: its connection (default ``conn_id``).
    :param max_age: re-send records geocoded longer ago than this (``timedelta`` or seconds).
    :param resend_failed: also re-send unchanged records whose last geocoding failed.
    :param fetch_size: rows per ``fetchmany``.
    :param delimiter: the input file's delimiter.
    :param on_bad_record: ``"fail"``: a record HERE would refuse (HERE's input rules,
        :class:`~airflow_here_batch.api.inputs.InputChecker`; a value with a line break; a NULL key; a
        bad position) fails the run before anything is written; ``"skip"``: such records are left out,
        counted in ``records_rejected`` and written with their reasons to the rejects file given to
        :meth:`run`. A recId that two rows share fails in either mode.
    :param logger: where progress is logged (default: this module's logger).
    :raises MappingError: for an empty query or one holding several statements.
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
        fetch_size: int = 10_000,
        delimiter: str = "|",
        on_bad_record: str = "fail",
        logger: logging.Logger | None = None,
    ) -> None:
        if on_bad_record not in ("fail", "skip"):
            raise ValueError(f"on_bad_record must be 'fail' or 'skip', got {on_bad_record!r}")
        self.conn_id = conn_id
        try:
            self.sql = source_query(sql)
        except ValueError as exc:
            raise MappingError(str(exc)) from None
        self.on_bad_record = on_bad_record
        self.mapping = mapping
        self.parameters = parameters
        self.target_table = target_table
        self.target_conn_id = target_conn_id or conn_id
        self.max_age = _as_seconds(max_age)
        self.resend_failed = resend_failed
        self.fetch_size = int(fetch_size)
        self.delimiter = delimiter
        self.log = logger or log

    def run(
        self, folder: ObjectStoragePath, *, incremental: bool, rejects: ObjectStoragePath | None = None
    ) -> dict[str, Any]:
        """Write ``input.csv`` and ``fingerprints.csv`` into ``folder`` (both removed again when nothing
        is to be sent).

        :param incremental: leave out records whose fingerprint is stored in the target table.
        :param rejects: where ``on_bad_record="skip"`` writes the records it leaves out (JSON lines,
            :class:`~airflow_here_batch.files.input_source.RejectsFile`; default ``folder/rejects.jsonl``);
            written only when a record is left out.
        :returns: ``{"input": URI or None, "fingerprints": URI or None, "service", "input_columns",
            "records_total", "records_sent", "records_reused", "records_rejected", "rejects": URI or
            None}``.
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
        prefilter = incremental and self.can_prefilter()
        if prefilter:
            known = FingerprintIndex()  # not needed: the database returns the stored fingerprint per row
            incremental = False
            self.log.info(
                "HERE Batch: %s is on the source's connection: the database leaves out rows whose raw "
                "values are unchanged",
                self.target_table,
            )
        else:
            known = self.stored_fingerprints() if incremental else FingerprintIndex()
        input_path, fp_path = folder / "input.csv", folder / "fingerprints.csv"
        counts, rejects_uri = self._extract(
            known, input_path, fp_path, incremental, prefilter, rejects or folder / "rejects.jsonl"
        )
        sent = bool(counts["records_sent"])
        result = {
            "input": str(input_path) if sent else None,
            "fingerprints": str(fp_path) if sent else None,
            "service": self.mapping.service,
            "input_columns": self.mapping.here_columns,
            **counts,
            "rejects": rejects_uri,
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
        conn = dialect.hook.get_conn()
        try:
            if dialect.table_columns(conn, self.target_table) is None:
                self.log.info("HERE Batch: %s does not exist yet: every record is new", self.target_table)
                return index
            ph = dialect.placeholder
            where = ["request_fingerprint IS NOT NULL"]
            params: list[Any] = []
            if self.resend_failed:
                where.append(f"status <> {ph}")
                params.append(STATUS_FAILED)
            cutoff = self._cutoff(dialect)
            if cutoff is not None:
                where.append(f"geocoded_at >= {ph}")
                params.append(cutoff)
            sql = (
                f"SELECT request_fingerprint FROM {dialect.quote_name(self.target_table)} "
                f"WHERE {' AND '.join(where)} ORDER BY {dialect.ordered('request_fingerprint')}"
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

    def can_prefilter(self) -> bool:
        """Whether the database can leave out unchanged rows itself: a column mapping (no templates, no
        ``at``), the target table on the source's connection (PostgreSQL or SQLite) and already holding
        ``request_text``. Only with ``parameters=None`` (the query is embedded in a larger one with its
        own parameters)."""
        if self.mapping.raw_columns is None or self.parameters is not None:
            return False
        if self.target_conn_id != self.conn_id or not self.target_table:
            return False
        dialect = source_dialect(get_db_hook(self.conn_id))
        if not isinstance(dialect, TableDialect):
            return False
        conn = dialect.hook.get_conn()
        try:
            columns = dialect.table_columns(conn, self.target_table)
        finally:
            conn.close()
        return columns is not None and "request_text" in {c.lower() for c in columns}

    # --- reading the source -------------------------------------------------------------------------

    def _execute(self, cursor: Any, sql: str) -> None:
        """Run a statement around the user's query: with the user's parameters, or with none at all
        (an empty tuple would make a ``%s``-style driver read a ``%`` in the query, ``LIKE 'a%'``, as a
        placeholder)."""
        if self.parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, self.parameters)

    def _extract(
        self,
        known: FingerprintIndex,
        input_path: ObjectStoragePath,
        fp_path: ObjectStoragePath,
        incremental: bool,
        prefilter: bool,
        rejects_path: ObjectStoragePath,
    ) -> tuple[dict[str, int], str | None]:
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
        source = dialect.subquery(self.sql, "here_batch_source")
        skip = self.on_bad_record == "skip"
        conn = dialect.hook.get_conn()
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
            if prefilter:  # the database leaves rows out: the keys are checked over every row first
                assert isinstance(dialect, TableDialect)
                total = self._check_keys(conn, dialect, key, finder, nulls=not skip)
                query, params = self._prefilter_query(dialect, resolved, quoted_key)
                cursor = dialect.stream_cursor(conn)
                dialect.read_whole(conn)  # the pre-filter reads its result to the end
                cursor.execute(query, params)
                stored_index, force_index = len(names), len(names) + 1
            else:
                cursor = dialect.stream_cursor(conn)
                self._execute(cursor, f"SELECT * FROM {source} ORDER BY {quoted_key}")
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

                number = 0
                while batch := cursor.fetchmany(self.fetch_size):
                    for values in batch:
                        number += 1
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
                        rec_id = _rec_id(key_value)
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
        return counts, rejects_uri

    # --- the keys: never NULL (fail mode), never one recId for two rows --------------------------

    def _key_rows(self, conn: Any, dialect: SourceDialect, key: str) -> Iterator[tuple[int, Any]]:
        """``(row number, key value)`` of every row of the query, ordered by the key column ``key`` (the
        numbers the extract gives its rows)."""
        quoted = dialect.quote(key)
        cursor = dialect.stream_cursor(conn)
        source = dialect.subquery(self.sql, "here_batch_source")
        self._execute(cursor, f"SELECT {quoted} FROM {source} ORDER BY {quoted}")
        number = 0
        while batch := cursor.fetchmany(self.fetch_size):
            for (value,) in batch:
                number += 1
                yield number, value
        cursor.close()

    def _check_keys(
        self, conn: Any, dialect: TableDialect, key: str, finder: UniqueRecIds, *, nulls: bool
    ) -> int:
        """Row count of the query, keys checked over every row (the pre-filter never sees every row).

        The database counts first (``COUNT(*)``, ``COUNT(key)``, ``COUNT(DISTINCT CAST(key AS TEXT))``:
        0.24 s for 1,000,000 rows, P8); only when a NULL or a repeated text shows are the keys read, to
        name the rows (a text the database repeats but the recIds do not is no refusal).

        :param nulls: refuse a NULL key here (fail mode; in skip mode the row is rejected when read).
        :raises MappingError: naming the first NULL key's row, or the first recId two rows share.
        """
        quoted = dialect.quote(key)
        source = dialect.subquery(self.sql, "here_batch_source")
        cursor = conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*), COUNT({quoted}), COUNT(DISTINCT {dialect.text(quoted)}) FROM {source}"
        )
        total, keyed, distinct = cursor.fetchone()
        cursor.close()
        if keyed == total and distinct == keyed:
            return int(total)
        total = 0
        for number, value in self._key_rows(conn, dialect, key):
            total = number
            if value is None:
                if nulls:
                    raise MappingError(
                        f"{_row_label(number, key, None)}: the key column {key!r} is NULL: every row needs a "
                        f"key for recId; filter NULLs out (WHERE {key} IS NOT NULL) or fix the rows",
                        column=key,
                    )
                continue
            finder.add(_rec_id(value), number)
        if finder.finish():
            self._confirm_duplicates(conn, dialect, key, finder)
        return total

    def _confirm_duplicates(self, conn: Any, dialect: SourceDialect, key: str, finder: UniqueRecIds) -> None:
        """The second pass of :class:`~airflow_here_batch.api.recids.UniqueRecIds` (a hash repeated):
        the keys read again, the repeats confirmed on their text.

        :raises MappingError: naming the first two rows of the first repeated recId, their key values
            and the recId.
        """
        values: dict[str, list[Any]] = {}
        for number, value in self._key_rows(conn, dialect, key):
            if value is None:
                continue
            rec_id = _rec_id(value)
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
        """The source rows that may have changed: new, raw values differing from ``request_text``, no
        fingerprint yet, or forced (``resend_failed``, ``max_age``); with the stored fingerprint and a
        force flag appended to each row."""
        mapping = self.mapping
        assert self.target_table and mapping.raw_columns is not None
        raw = dialect.raw_text_sql("s", [resolved[c] for c in mapping.raw_columns])
        ph = dialect.placeholder
        force: list[str] = []
        params: list[Any] = []
        if self.resend_failed:
            force.append(f"t.status = {ph}")
            params.append(STATUS_FAILED)
        cutoff = self._cutoff(dialect)
        if cutoff is not None:
            force.append(f"t.geocoded_at < {ph}")
            params.append(cutoff)
        forced = " OR ".join(force) or "1 = 0"
        query = (
            f"SELECT s.*, t.request_fingerprint, CASE WHEN {forced} THEN 1 ELSE 0 END "
            f"FROM {dialect.subquery(self.sql, 's', parameters=True)} "
            f"LEFT JOIN {dialect.quote_name(self.target_table)} t "
            f"ON t.rec_id = {dialect.text(f's.{quoted_key}')} "
            f"WHERE t.rec_id IS NULL OR t.request_fingerprint IS NULL OR t.request_text IS NULL "
            f"OR t.request_text <> {raw} OR {forced} "
            f"ORDER BY s.{quoted_key}"
        )
        return query, params + params


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


def _rec_id(value: Any) -> str:
    """The recId of a key value (its text)."""
    return value if value.__class__ is str else str(value)


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
