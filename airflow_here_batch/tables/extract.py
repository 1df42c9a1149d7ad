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
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_here_batch.files.atomic import atomic_open
from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.dialect import SourceDialect, TableDialect, source_dialect, table_dialect
from airflow_here_batch.tables.records import STATUS_FAILED, FingerprintIndex, MappingError, RecordMapping

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = ["TableExtract"]

log = logging.getLogger(__name__)


class TableExtract:
    """One query's rows -> ``input.csv`` (HERE lines) and ``fingerprints.csv`` (``rec_id|fingerprint|
    request_text`` of each record sent).

    :param conn_id: Airflow connection of the source database (any common.sql ``DbApiHook``).
    :param sql: one ``SELECT`` (a trailing ``;`` is dropped) returning the key and the mapped columns.
    :param mapping: how a row becomes a HERE request.
    :param parameters: query parameters (DB-API style of the connection's driver), or ``None``.
    :param target_table: the table the results are written to (incremental runs read it).
    :param target_conn_id: its connection (default ``conn_id``).
    :param max_age: re-send records geocoded longer ago than this (``timedelta`` or seconds).
    :param resend_failed: also re-send unchanged records whose last geocoding failed.
    :param fetch_size: rows per ``fetchmany``.
    :param delimiter: the input file's delimiter.
    :param logger: where progress is logged (default: this module's logger).
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
        logger: logging.Logger | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.sql = str(sql).strip().rstrip(";")
        self.mapping = mapping
        self.parameters = parameters
        self.target_table = target_table
        self.target_conn_id = target_conn_id or conn_id
        self.max_age = _as_seconds(max_age)
        self.resend_failed = resend_failed
        self.fetch_size = int(fetch_size)
        self.delimiter = delimiter
        self.log = logger or log

    def run(self, folder: ObjectStoragePath, *, incremental: bool) -> dict[str, Any]:
        """Write ``input.csv`` and ``fingerprints.csv`` into ``folder`` (both removed again when nothing
        is to be sent).

        :param incremental: leave out records whose fingerprint is stored in the target table.
        :returns: ``{"input": URI or None, "fingerprints": URI or None, "service", "input_columns",
            "records_total", "records_sent", "records_reused"}``.
        :raises MappingError: for a missing column, a NULL or repeated key, a bad position; nothing is
            left in ``folder`` then.
        :raises UnsupportedDialectError: when ``target_table`` is given and its database is not one the
            sink writes to (before the query is read).
        """
        started = time.monotonic()
        if self.target_table:  # a target the sink cannot write is refused before anything is uploaded
            table_dialect(get_db_hook(self.target_conn_id))
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
        counts = self._extract(known, input_path, fp_path, incremental, prefilter)
        sent = bool(counts["records_sent"])
        result = {
            "input": str(input_path) if sent else None,
            "fingerprints": str(fp_path) if sent else None,
            "service": self.mapping.service,
            "input_columns": self.mapping.here_columns,
            **counts,
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
        conn = dialect.connect()
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
        ``at``), the target table on the source's connection (PostgreSQL, SQLite, MySQL) and already holding
        ``request_text``. Only with ``parameters=None`` (the query is embedded in a larger one with its
        own parameters)."""
        if self.mapping.raw_columns is None or self.parameters is not None:
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

    def _params(self) -> Any:
        return self.parameters if self.parameters is not None else ()

    def _extract(
        self,
        known: FingerprintIndex,
        input_path: ObjectStoragePath,
        fp_path: ObjectStoragePath,
        incremental: bool,
        prefilter: bool,
    ) -> dict[str, int]:
        from airflow_here_batch.api.inputs import rows_to_lines

        mapping = self.mapping
        dialect = source_dialect(get_db_hook(self.conn_id))
        sql = self.sql
        conn = dialect.connect()
        counts = {"records_total": 0, "records_sent": 0, "records_reused": 0}
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
            # The key's text (recId) as the database spells it, where its SQL is known (dialect.py).
            key_sql = dialect.key_text_sql(f"here_batch_source.{quoted_key}")
            text_index: int | None = None
            cursor = dialect.stream_cursor(conn)
            if prefilter:
                assert isinstance(dialect, TableDialect)
                total = self._check_keys(conn, key, dialect.key_text_sql(quoted_key) or quoted_key)
                query, params = self._prefilter_query(dialect, resolved, quoted_key)
                dialect.read_whole(conn)  # the pre-filter reads its result to the end
                cursor.execute(query, params)
                stored_index, force_index, text_index = len(names), len(names) + 1, len(names) + 2
            else:
                text = f", {key_sql}" if key_sql else ""
                cursor.execute(
                    f"SELECT here_batch_source.*{text} FROM ({sql}) here_batch_source ORDER BY {quoted_key}",
                    self._params(),
                )
                text_index = len(names) if key_sql else None

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
                        rec_id = dialect.key_text(
                            key_value, values[text_index] if text_index is not None else None, column=key
                        )
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
        return counts

    # --- the database-side pre-filter -----------------------------------------------------------

    def _check_keys(self, conn: Any, key: str, quoted_key: str) -> int:
        """Row count of the query; NULL or repeated keys refused (the pre-filter never sees every row).
        ``quoted_key``: the key's text (``key_text_sql``), so two values of one text are a repeat.

        :raises MappingError: naming the key column, or the first repeated key.
        """
        sql = self.sql
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
            raise _duplicate_key(key, str(duplicate))
        cursor.close()
        return int(total)

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
        key_text = dialect.key_text_sql(f"s.{quoted_key}")
        query = (
            f"SELECT s.*, t.request_fingerprint, CASE WHEN {forced} THEN 1 ELSE 0 END, {key_text} "
            f"FROM ({self.sql}) s LEFT JOIN {dialect.quote_name(self.target_table)} t "
            f"ON t.rec_id = {key_text} "
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
