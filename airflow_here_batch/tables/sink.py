"""The target side of the table pipeline: HERE jobs' results and errors reports into one table.

:class:`ResultSink` creates the target table when missing (or checks an existing one), then writes each
job's files batch by batch: a batch is staged in a temporary table and upserted from there, in one
transaction (PostgreSQL: ``COPY``, and a plain ``COPY`` into a table that held no rows). Each row's
fingerprint and request text come from the extract's ``fingerprints.csv`` by an ordered merge, looked up
in SQL for the rows the merge misses. :func:`open_lines` reads a file from object storage as lines.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_here_batch.files.locations import storage_path
from airflow_here_batch.tables.dialect import copy_value, table_dialect
from airflow_here_batch.tables.records import (
    FINGERPRINT_LENGTH,
    STATUS_FAILED,
    FingerprintMerge,
    ResultLayout,
    TargetColumn,
    parse_error_line,
    target_columns,
)
from airflow_here_batch.tables.targets import TargetTableError, check_target_table

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

__all__ = ["MERGE_WINDOW", "Lines", "ResultSink", "TargetTableError", "WriteCountError", "open_lines"]

log = logging.getLogger(__name__)

#: Fingerprint entries the sink keeps while matching results that come back out of order (~6 MB).
MERGE_WINDOW = 20_000
_STAGE = "here_batch_stage"
_FINGERPRINTS = "here_batch_fingerprints"

#: A file to read: called, it gives a context manager of the file's lines (``None``: no file).
Lines = Callable[[], AbstractContextManager[Iterator[str] | None]]


class WriteCountError(RuntimeError):
    """The rows the database confirmed writing differ from the rows of the run the table holds after
    the last commit (a recId written twice, or another writer replacing rows of the run).

    :ivar confirmed: row writes the database confirmed (rowcounts of the upserts and ``COPY``).
    :ivar held: rows of this run (its ``geocoded_at``) in the table.
    """

    def __init__(self, table: str, confirmed: int, held: int) -> None:
        super().__init__(
            f"table {table}: the database confirmed {confirmed:,} row writes but holds {held:,} rows of this "
            "run: a recId was written twice (the same record in two results files, or in the results and "
            "the errors report) or another writer replaced rows of this run meanwhile; the written rows "
            "stay, but the run is not reported as complete: check the files given to the sink"
        )
        self.confirmed = confirmed
        self.held = held


def open_lines(location: Any, conn_id: str | None = None) -> Lines:
    """The file at ``location`` (a URI, path or ``ObjectStoragePath``; ``None`` or ``""``: no file) as
    :data:`Lines`: UTF-8 text, each line with its ``\\n`` (only ``\\n`` ends a line, as for HERE)."""

    @contextlib.contextmanager
    def opened() -> Iterator[Iterator[str] | None]:
        if not location:
            yield None
            return
        with storage_path(location, conn_id).open("r", encoding="utf-8", newline="") as stream:
            yield _lines(stream)

    return opened


class ResultSink:
    """Writes HERE jobs' results and errors into ``table``, keyed by ``rec_id``, batch by batch.

    One sink writes one run: it holds the run's state (whether batches go into the table by plain
    ``COPY``, the fingerprints file and whether it is loaded for the lookup).

    :param hook: the target database's hook (PostgreSQL, SQLite or MySQL/MariaDB).
    :param table: target table (``name`` or ``schema.name``).
    :param output_columns: the jobs' output columns (the table's columns follow them,
        :func:`~airflow_here_batch.tables.records.target_columns`).
    :param batch_size: rows per transaction.
    :param geocoded_at: the ``geocoded_at`` of every row written (default: now, UTC).
    :param merge_window: fingerprint entries kept while matching (default :data:`MERGE_WINDOW`).
    :param logger: where progress is logged (default: this module's logger).
    :raises UnsupportedDialectError: for a database other than PostgreSQL, SQLite and MySQL/MariaDB.
    :raises ValueError: for a table or column name that is not plain.
    """

    def __init__(
        self,
        hook: DbApiHook,
        table: str,
        output_columns: Sequence[str],
        *,
        batch_size: int = 10_000,
        geocoded_at: datetime | None = None,
        merge_window: int | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.dialect = table_dialect(hook)
        self.table = table
        self.quoted_table = self.dialect.quote_name(table)
        self.columns = target_columns(output_columns)
        self.names = [c.name for c in self.columns]
        self.batch_size = int(batch_size)
        self.merge_window = merge_window or MERGE_WINDOW
        self.stamp = self.dialect.timestamp(geocoded_at or datetime.now(timezone.utc))
        self.upsert = self._upsert_sql()
        self.log = logger or log
        # Run state.
        #: Batches go into the table by plain ``COPY`` (PostgreSQL, a table that held no rows).
        self.direct = False
        #: The extract's fingerprints file, for the SQL lookup of rows the merge misses.
        self.fingerprints: Lines | None = None
        #: Whether that file is in the temporary lookup table (in the current transaction).
        self.fingerprints_loaded = False

    def write(self, jobs: Sequence[tuple[str | None, Lines, Lines]], fingerprints: Lines) -> dict[str, int]:
        """Write each job's results and errors: ``jobs`` holds ``(job id, results, errors)``.

        Each row's fingerprint and request text come from the extract's file by an ordered merge
        (:class:`~airflow_here_batch.tables.records.FingerprintMerge`: the file lists the records in
        the order they were sent); a row the merge misses (HERE does not promise the input order, shared
        doc §12 #8) is looked up in SQL, from the file loaded into a temporary table only then.

        :returns: ``{"results": records written from the results, "errors": failed records written}``,
            as the database confirmed them (rowcounts), and checked after the last commit against the
            rows of this run (its ``geocoded_at``) the table holds.
        :raises TargetTableError: when an existing table lacks columns or has one of a wrong type
            (:func:`~airflow_here_batch.tables.targets.check_target_table`; nothing written).
        :raises WriteCountError: when the table holds fewer (or more) rows of this run than were confirmed.
        :raises ValueError: when ``fingerprints`` is not the extract's fingerprints file.
        """
        dialect = self.dialect
        conn = dialect.connect()
        counts = {"results": 0, "errors": 0}
        try:
            self._prepare(conn)
            conn.commit()
            with fingerprints() as lines:
                merge = self._merge(lines)
                self.fingerprints = fingerprints if merge is not None else None
                for job_id, results, errors in jobs:
                    with results() as lines:
                        if lines is not None:
                            rows = self._result_rows(lines)
                            fast = lines if dialect.copy else None
                            counts["results"] += self._write_rows(conn, rows, job_id, merge, lines=fast)
                    with errors() as lines:
                        if lines is not None:
                            rows = self._error_rows(lines)
                            counts["errors"] += self._write_rows(conn, rows, job_id, merge)
            held = self._held(conn)
            if held != counts["results"] + counts["errors"]:
                raise WriteCountError(self.table, counts["results"] + counts["errors"], held)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        return counts

    def _held(self, conn: Any) -> int:
        """Rows of this run in the table (its ``geocoded_at``), after the last commit."""
        cursor = conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {self.quoted_table} WHERE geocoded_at = {self.dialect.placeholder}",
            (self.stamp,),
        )
        (held,) = cursor.fetchone()
        cursor.close()
        conn.rollback()
        return int(held)

    # --- the tables ---------------------------------------------------------------------------------

    def _upsert_sql(self) -> str:
        """The upsert of one staged batch. Every row carries every column; a row whose fingerprint the
        merge missed has NULL ``request_fingerprint`` and gets it here, by one primary-key lookup (CASE
        evaluates the subquery only for such rows; a join would hash the whole fingerprints table for
        every batch)."""
        quote = self.dialect.quote_name
        data = [c for c in self.names if c not in ("request_text", "request_fingerprint")]
        both = self.dialect.concat(["f.fingerprint", "COALESCE(f.request_text, '')"])
        info = (
            f"CASE WHEN s.request_fingerprint IS NULL THEN (SELECT {both} "
            f"FROM {_FINGERPRINTS} f WHERE f.rec_id = s.rec_id) END"
        )
        select = (
            "SELECT "
            + ", ".join(f"s.{quote(c)}" for c in data)
            + ", CASE WHEN s.request_fingerprint IS NULL "
            f"THEN SUBSTR(s.here_batch_info, {FINGERPRINT_LENGTH + 1}) ELSE s.request_text END, "
            "CASE WHEN s.request_fingerprint IS NULL "
            f"THEN SUBSTR(s.here_batch_info, 1, {FINGERPRINT_LENGTH}) ELSE s.request_fingerprint END "
            f"FROM (SELECT s.*, {info} AS here_batch_info FROM {_STAGE} s) s WHERE true"
        )
        return self.dialect.upsert_sql(self.table, [*data, "request_text", "request_fingerprint"], select)

    def _prepare(self, conn: Any) -> None:
        """Create the table (or check its columns), decide :attr:`direct`, make the temporary tables."""
        dialect = self.dialect
        exists = check_target_table(dialect.hook, self.table, self.columns, conn=conn)
        cursor = conn.cursor()
        if not exists:
            for statement in dialect.create_table_sql(self.table, self.columns):
                cursor.execute(statement)
            self.log.info("HERE Batch: created table %s", self.table)
            self.direct = dialect.copy
        else:
            have = {c.lower() for c in dialect.table_columns(conn, self.table) or ()}
            if "request_text" not in have:  # bookkeeping added after the table was made
                cursor.execute(f"ALTER TABLE {self.quoted_table} ADD COLUMN request_text TEXT")
            # An empty table takes plain COPYs (no key can conflict); a batch that does conflict after
            # all (a concurrent writer, a key twice) is rolled back and upserted instead.
            cursor.execute(f"SELECT 1 FROM {self.quoted_table} LIMIT 1")
            self.direct = dialect.copy and cursor.fetchone() is None
        cursor.execute(dialect.drop_temporary_sql(_STAGE))
        cursor.execute(dialect.drop_temporary_sql(_FINGERPRINTS))
        # A batch may hold a key twice (two results files): the staging table has no key.
        cursor.execute(dialect.create_temporary_sql(_STAGE, self.columns, key=False, per_transaction=True))
        lookup = [TargetColumn("rec_id"), TargetColumn("fingerprint"), TargetColumn("request_text")]
        cursor.execute(dialect.create_temporary_sql(_FINGERPRINTS, lookup))
        cursor.close()
        self.fingerprints_loaded = False

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
        return FingerprintMerge(csv.reader(lines, delimiter="|"), request_text=text, window=self.merge_window)

    def _load_fingerprints(self, conn: Any) -> None:
        """The whole fingerprints file into the temporary table, inside the current batch's transaction
        (only when the merge missed a row; a rollback empties it again)."""
        assert self.fingerprints is not None
        with self.fingerprints() as lines:
            assert lines is not None
            header = next(lines, "")
            names = next(csv.reader([header], delimiter="|"), [])
            self.dialect.load_csv(conn, _FINGERPRINTS, names, lines)
        self.fingerprints_loaded = True

    # --- the rows -----------------------------------------------------------------------------------

    def _layout(self, lines: Iterator[str]) -> tuple[ResultLayout, str] | None:
        """The results header (the first non-blank line) read off ``lines``: its layout and delimiter."""
        from airflow_here_batch.api.outputs import detect_delimiter
        from airflow_here_batch.api.records import split_record

        for line in lines:
            text = line.lstrip("\ufeff").rstrip("\r\n")
            if text:
                delimiter = detect_delimiter(text)
                return ResultLayout(split_record(text, delimiter), self.columns), delimiter
        return None

    def _result_rows(self, lines: Iterator[str]) -> Iterator[tuple[Any, ...]]:
        """``(rec_id, status, lat, lng, match_level, *fields, error_code, error_message)`` per record."""
        found = self._layout(lines)
        if found is None:
            return
        layout, delimiter = found
        for line in lines:
            if '"' in line:
                cells = layout.split(line, delimiter)
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
                cells = layout.split(text, delimiter)
                values = layout.values(cells)
                if values is None:
                    continue
                request_text, fingerprint = take(values[0])
                row = (*values, None, None, request_text, fingerprint)
                yield "\t".join([copy_value(v) for v in row]) + tail, fingerprint is None
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
                request_text = copy_value(request_text)
            yield f"{join(cells)}{errors}{request_text}\t{fingerprint}{tail}", False

    def _error_rows(self, lines: Iterator[str]) -> Iterator[tuple[Any, ...]]:
        fields = [None] * (len(self.columns) - 11)
        for line in lines:
            parsed = parse_error_line(line)
            if parsed is None:
                continue
            rec_id, code, message = parsed
            yield (rec_id, STATUS_FAILED, None, None, None, *fields, code or None, message or None)

    # --- the batches --------------------------------------------------------------------------------

    def _write_rows(
        self,
        conn: Any,
        rows: Iterator[tuple[Any, ...]],
        job_id: str | None,
        merge: FingerprintMerge | None,
        lines: Iterator[str] | None = None,
    ) -> int:
        """Rows completed with their bookkeeping, in batches of ``batch_size``, one transaction each
        (``lines``: the results file itself, for the ``COPY`` fast path instead of ``rows``)."""
        take = merge.take if merge is not None else _no_fingerprint
        total = 0
        if self.dialect.copy:
            tail = "\t" + copy_value(job_id) + "\t" + copy_value(self.stamp) + "\n"
            if lines is not None:
                copy_lines = self._result_copy_lines(lines, take, tail)
            else:
                copy_lines = (
                    ("\t".join([copy_value(v) for v in (*row, *fp)]) + tail, fp[1] is None)
                    for row in rows
                    for fp in (take(row[0]),)
                )
            while count := self._write_copy_batch(conn, copy_lines, merge is not None):
                total += count
            return total
        stamp = self.stamp
        full = ((*row, *take(row[0]), job_id, stamp) for row in rows)
        while True:
            before = merge.missed if merge is not None else 0
            batch = list(itertools.islice(full, self.batch_size))
            if not batch:
                return total
            missed = merge is not None and merge.missed != before
            total += self._stage_batch(conn, batch, missed=missed)

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
        opened = self.dialect.open_copy(cursor, self.quoted_table, self.names) if self.direct else None
        if opened is not None:
            loaded = self.fingerprints_loaded
            try:
                with opened as copy:
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
                copied = self.dialect.rows_loaded(cursor)  # rows loaded, as the database counts them
                confirmed = copied if copied is not None and copied >= 0 else len(taken) - len(missed)
                if missed:
                    confirmed += self._stage_batch(conn, missed, missed=lookup, commit=False)
                conn.commit()
                return int(confirmed)
            except Exception as exc:
                self.fingerprints_loaded = loaded
                with contextlib.suppress(Exception):
                    conn.rollback()
                if not self.dialect.unique_violation(exc):  # a key is there already: upsert instead
                    raise
                self.direct = False
                for line, miss in batch:  # the rest of the batch, if the COPY stopped early
                    taken.append(line)
                    if miss and lookup:
                        missed.append(line)
                return self._stage_batch(conn, taken, missed=bool(missed) and lookup)
        for line, miss in batch:
            taken.append(line)
            if miss and lookup:
                missed.append(line)
        cursor.close()
        if not taken:
            return 0
        return self._stage_batch(conn, taken, missed=bool(missed) and lookup)

    def _stage_batch(self, conn: Any, batch: list[Any], *, missed: bool, commit: bool = True) -> int:
        """Stage one batch and upsert it, in one transaction (committed, or rolled back on any error);
        the rows the database says the upsert wrote.
        ``missed``: some row lacks its fingerprint (the merge missed it), so the fingerprints file is
        loaded for the lookup first. ``batch``: rows, or ``COPY`` text lines where the dialect copies."""
        dialect = self.dialect
        loaded = False
        try:
            if missed and self.fingerprints is not None and not self.fingerprints_loaded:
                self._load_fingerprints(conn)
                loaded = True
            dialect.insert_rows(conn, _STAGE, self.names, batch, len(batch), text=dialect.copy)
            cursor = conn.cursor()
            cursor.execute(self.upsert)
            confirmed = dialect.rows_upserted(cursor, len(batch))  # as the database counts them
            if not dialect.temporary_clears_on_commit:
                cursor.execute(f"DELETE FROM {_STAGE}")
            cursor.close()
            if commit:
                conn.commit()
        except BaseException:
            if loaded:  # rolled back with the batch
                self.fingerprints_loaded = False
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        return int(confirmed) if confirmed is not None and confirmed >= 0 else len(batch)


def _no_fingerprint(rec_id: str) -> tuple[None, None]:
    return None, None


def _lines(stream: Any, size: int = 1 << 20) -> Iterator[str]:
    """The lines of a text stream, each with its ``\\n``, read in blocks of ``size`` characters.

    Only ``\\n`` ends a line (as for HERE); ``str.splitlines`` would also split at other characters.
    """
    carry = ""
    while block := stream.read(size):
        parts = (carry + block).split("\n")
        carry = parts.pop()
        for part in parts:
            yield part + "\n"
    if carry:
        yield carry
