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
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_here_batch.files.atomic import atomic_open
from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.dialect import SourceDialect, TableDialect, source_dialect, table_dialect
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

__all__ = ["DEFAULT_CHANGE_WINDOW", "TableExtract", "reuse_condition", "source_query"]

log = logging.getLogger(__name__)

#: How far behind the change-column mark each run reads again (late commits, clock skew between writers).
DEFAULT_CHANGE_WINDOW = timedelta(hours=1)


def source_query(source: str) -> str:
    """The query of a source given as a table name (``table`` or ``schema.table``: every column, the name
    as the database spells it, unquoted) or as a ``SELECT`` (a trailing ``;`` dropped)."""
    text = str(source).strip().rstrip(";").strip()
    try:
        return f"SELECT * FROM {plain_name(text)}"
    except ValueError:
        return text


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
    :param sql: one ``SELECT`` (a trailing ``;`` is dropped) returning the key and the mapped columns, or
        a table name (:func:`source_query`).
    :param mapping: how a row becomes a HERE request.
    :param parameters: query parameters (DB-API style of the connection's driver), or ``None``; a list
        with ``change_column``.
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
    :param logger: where progress is logged (default: this module's logger).
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
        logger: logging.Logger | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.sql = source_query(sql)
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
        self.fetch_size = int(fetch_size)
        self.delimiter = delimiter
        self.log = logger or log

    def run(self, folder: ObjectStoragePath, *, incremental: bool) -> dict[str, Any]:
        """Write ``input.csv`` and ``fingerprints.csv`` into ``folder`` (both removed again when nothing
        is to be sent).

        :param incremental: leave out records whose fingerprint is stored in the target table (and, with
            ``change_column``, read only the rows changed since the mark).
        :returns: ``{"input": URI or None, "fingerprints": URI or None, "service", "input_columns",
            "records_total", "records_sent", "records_reused", "watermark"}`` (``records_total``: the rows
            read, with ``change_column`` only those at or above the mark minus the window;
            ``watermark``: the mark to keep once the results are written, ``None`` without
            ``change_column``).
        :raises MappingError: for a missing column, a NULL or repeated key, a bad position; nothing is
            left in ``folder`` then.
        :raises UnsupportedDialectError: for an incremental run whose target database is not supported.
        """
        started = time.monotonic()
        mark = self.watermark() if self.change_column else None
        since = mark.since(self.change_window) if mark is not None and incremental else None
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
        if mark is not None:
            self.log.info(
                "HERE Batch: change column %s: %s",
                self.change_column,
                f"reading the rows from {since!r} (mark {mark.value!r} minus the window)"
                if since is not None
                else "reading every row (no mark kept yet, or a full refresh)",
            )
        input_path, fp_path = folder / "input.csv", folder / "fingerprints.csv"
        counts, highest = self._extract(known, input_path, fp_path, incremental, prefilter, since)
        sent = bool(counts["records_sent"])
        result = {
            "input": str(input_path) if sent else None,
            "fingerprints": str(fp_path) if sent else None,
            "service": self.mapping.service,
            "input_columns": self.mapping.here_columns,
            **counts,
            "watermark": mark.advanced(highest).to_xcom() if mark is not None else None,
        }
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
        conn = dialect.hook.get_conn()
        try:
            return load_watermark(dialect, conn, mark)
        finally:
            conn.close()

    def can_prefilter(self) -> bool:
        """Whether the database compares the rows with their stored results itself: the target table on
        the source's connection (PostgreSQL or SQLite) and already holding ``request_text``. With a column
        mapping (no templates, no ``at``) it leaves out the rows whose raw values are unchanged; with
        templates or ``at`` only with a change column (the few rows read are joined to their stored
        fingerprints instead of every stored fingerprint being read). Only with ``parameters`` ``None`` or
        a list (the query is embedded in a larger one with its own positional parameters)."""
        if self.mapping.raw_columns is None and not self.change_column:
            return False
        if self.parameters is not None and not isinstance(self.parameters, (list, tuple)):
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

    def _params(self) -> Any:
        return self.parameters if self.parameters is not None else ()

    def _source(self, dialect: SourceDialect, change: str | None, since: Any) -> tuple[str, Any]:
        """The query (and its parameters) that reads the rows: every row, or with a change column only
        those at or above ``since`` and those where it is NULL."""
        if change is None or since is None:
            return self.sql, self._params()
        q = dialect.quote(change)
        ph = dialect.placeholder
        sql = f"SELECT * FROM ({self.sql}) here_batch_changed WHERE {q} IS NULL OR {q} >= {ph}"
        return sql, [*self._params(), since]

    def _extract(
        self,
        known: FingerprintIndex,
        input_path: ObjectStoragePath,
        fp_path: ObjectStoragePath,
        incremental: bool,
        prefilter: bool,
        since: Any = None,
    ) -> tuple[dict[str, int], Any]:
        """Read the rows, write the files; the counts and the highest change-column value read (``None``
        without a change column)."""
        from airflow_here_batch.api.inputs import rows_to_lines

        mapping = self.mapping
        dialect = source_dialect(get_db_hook(self.conn_id))
        sql = self.sql
        conn = dialect.hook.get_conn()
        counts = {"records_total": 0, "records_sent": 0, "records_reused": 0}
        highest: Any = None
        try:
            probe = conn.cursor()
            probe.execute(f"SELECT * FROM ({sql}) here_batch_source WHERE 1 = 0", self._params())
            names = [d[0] for d in probe.description]
            probe.close()
            resolved = mapping.check_columns(names)
            key = resolved[mapping.key_column]
            quoted_key = dialect.quote(key)
            positions = {column: names.index(actual) for column, actual in resolved.items()}
            key_index = positions[mapping.key_column]
            change = self._change_name(names)
            change_index = names.index(change) if change is not None else -1
            source, source_params = self._source(dialect, change, since)
            track = False  # the highest change value is tracked here (not by the pre-filter's count)
            cursor = dialect.stream_cursor(conn)
            if prefilter:
                assert isinstance(dialect, TableDialect)
                quoted_change = dialect.quote(change) if change is not None else None
                total, highest = self._check_keys(conn, key, quoted_key, source, source_params, quoted_change)
                query, params = self._prefilter_query(dialect, resolved, quoted_key, source)
                dialect.read_whole(conn)  # the pre-filter reads its result to the end
                cursor.execute(query, [*source_params, *params])
                stored_index, force_index = len(names), len(names) + 1
            else:
                ordered = f"SELECT * FROM ({source}) here_batch_source ORDER BY {quoted_key}"
                cursor.execute(ordered, source_params)
                track = change_index >= 0

            def requests(fp_writer: Any) -> Iterator[dict[str, str]]:
                nonlocal highest
                previous: str | None = None
                number = 0
                while batch := cursor.fetchmany(self.fetch_size):
                    for values in batch:
                        number += 1
                        if track:
                            changed = values[change_index]
                            if changed is not None and (highest is None or changed > highest):
                                highest = changed
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
                            raise _duplicate_key(key, rec_id)
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

            with atomic_open(input_path, "w") as input_file, atomic_open(fp_path, "w") as fp_file:
                out, fp_out = BlockWriter(input_file), BlockWriter(fp_file)
                fp_writer = csv.writer(fp_out, delimiter="|", lineterminator="\n")
                fp_writer.writerow(("rec_id", "fingerprint", "request_text"))
                out.writelines(
                    rows_to_lines(requests(fp_writer), columns=mapping.here_columns, delimiter=self.delimiter)
                )
                out.flush()
                fp_out.flush()
            cursor.close()
            conn.rollback()
            if prefilter:  # rows the database left out are unchanged: reused
                counts["records_reused"] += total - counts["records_total"]
                counts["records_total"] = total
        finally:
            conn.close()
        return counts, highest

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

    # --- the database-side pre-filter -----------------------------------------------------------

    def _check_keys(
        self, conn: Any, key: str, quoted_key: str, sql: str, params: Any, change: str | None
    ) -> tuple[int, Any]:
        # change: the quoted change column, or None
        """Row count of the rows read and their highest change-column value (``None`` without one); NULL
        or repeated keys refused (the pre-filter never sees every row).

        :raises MappingError: naming the key column, or the first repeated key.
        """
        cursor = conn.cursor()
        highest = f"MAX({change or quoted_key})"
        cursor.execute(
            f"SELECT COUNT(*), COUNT({quoted_key}), COUNT(DISTINCT {quoted_key}), {highest} "
            f"FROM ({sql}) here_batch_source",
            params,
        )
        total, keyed, distinct, top = cursor.fetchone()
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
                f"HAVING COUNT(*) > 1 ORDER BY {quoted_key} LIMIT 1",
                params,
            )
            (duplicate,) = cursor.fetchone()
            cursor.close()
            raise _duplicate_key(key, str(duplicate))
        cursor.close()
        return int(total), (top if change is not None else None)

    def _prefilter_query(
        self, dialect: TableDialect, resolved: Mapping[str, str], quoted_key: str, source: str
    ) -> tuple[str, list[Any]]:
        """The rows of ``source`` that may have changed: new, raw values differing from ``request_text``,
        or not reusable (:func:`reuse_condition`); with the stored fingerprint and a force flag (1: not
        reusable) appended to each row. The parameters returned follow ``source``'s own."""
        mapping = self.mapping
        assert self.target_table
        reusable, params = reuse_condition(
            dialect, "t", resend_failed=self.resend_failed, cutoff=self._cutoff(dialect)
        )
        where, where_params = "", []
        if mapping.raw_columns is not None:  # else (templates, at) every row read is compared in Python
            raw = dialect.raw_text_sql("s", [resolved[c] for c in mapping.raw_columns])
            where = f"WHERE t.request_text IS NULL OR t.request_text <> {raw} OR NOT ({reusable}) "
            where_params = params
        query = (
            f"SELECT s.*, t.request_fingerprint, CASE WHEN {reusable} THEN 0 ELSE 1 END "
            f"FROM ({source}) s LEFT JOIN {dialect.quote_name(self.target_table)} t "
            f"ON t.rec_id = {dialect.text(f's.{quoted_key}')} "
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


def _duplicate_key(column: str, rec_id: str) -> MappingError:
    return MappingError(
        f"key {rec_id!r} appears more than once in column {column!r}: recId must be unique; deduplicate "
        "the rows (e.g. SELECT DISTINCT ON, GROUP BY) or choose a unique key column",
        column=column,
        key=rec_id,
    )


def _as_seconds(value: timedelta | float | int | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
