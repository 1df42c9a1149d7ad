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
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_here_batch.api.quality import (
    DEFAULT_POLICY,
    AcceptancePolicy,
    QualityCounts,
    RecordQuality,
    RowClassifier,
    Verdict,
)
from airflow_here_batch.api.spend import SKIP_REASONS, SkipReason
from airflow_here_batch.files.locations import storage_path
from airflow_here_batch.tables.dialect import copy_value, table_dialect, text_lines
from airflow_here_batch.tables.records import (
    FINGERPRINT_LENGTH,
    QUALITY_COLUMNS,
    STATUS_FAILED,
    STATUS_SKIPPED,
    FingerprintMerge,
    ResultLayout,
    TargetColumn,
    parse_error_line,
    target_columns,
)
from airflow_here_batch.tables.targets import TargetTableError, added_by_sink, check_target_table

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

__all__ = [
    "MERGE_WINDOW",
    "REVIEW_COLUMNS",
    "Lines",
    "ResultSink",
    "TargetTableError",
    "WriteCountError",
    "open_lines",
]

log = logging.getLogger(__name__)

#: Fingerprint entries the sink keeps while matching results that come back out of order (~6 MB).
MERGE_WINDOW = 20_000
_STAGE = "here_batch_stage"
_FINGERPRINTS = "here_batch_fingerprints"
_REVIEW_STAGE = "here_batch_review_stage"
#: Candidates kept per record in the review list.
REVIEW_CANDIDATES = 5

#: The review table: one row per record not accepted. ``address`` is the request's raw source values
#: (``request_text``, `` | ``-joined), ``candidates`` HERE's top candidates as JSON, ``chosen_candidate``
#: and ``reviewed_at`` are a person's (kept while the record's request is unchanged).
REVIEW_COLUMNS: tuple[TargetColumn, ...] = (
    TargetColumn("rec_id"),
    TargetColumn("address"),
    TargetColumn("match_quality"),
    TargetColumn("candidates"),
    TargetColumn("chosen_candidate"),
    TargetColumn("reviewed_at", "timestamp"),
    TargetColumn("request_fingerprint"),
    TargetColumn("job_id"),
    TargetColumn("flagged_at", "timestamp"),
)
_REVIEW_STAGED = (
    "rec_id",
    "address",
    "match_quality",
    "candidates",
    "request_fingerprint",
    "job_id",
    "flagged_at",
)
_REVIEW_KEPT = ("chosen_candidate", "reviewed_at")

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
            yield text_lines(stream)

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
    :param policy: which records are accepted (:class:`~airflow_here_batch.api.quality.AcceptancePolicy`;
        default :data:`~airflow_here_batch.api.quality.DEFAULT_POLICY`).
    :param review_table: the review table (:data:`REVIEW_COLUMNS`; created if missing) that holds exactly
        the records not accepted; ``None``: no review table.
    :param verdict: ``False`` writes no quality columns and judges nothing (no review table either): the
        sink as it was before the verdict (benchmark P10's baseline).
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
        policy: AcceptancePolicy | None = None,
        review_table: str | None = None,
        verdict: bool = True,
    ) -> None:
        self.dialect = table_dialect(hook)
        self.policy = policy or DEFAULT_POLICY
        self.verdict = verdict
        self.review_table = review_table if verdict else None
        self.quoted_review = self.dialect.quote_name(review_table) if review_table else None
        self.table = table
        self.quoted_table = self.dialect.quote_name(table)
        self.columns = target_columns(output_columns, quality=verdict)
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
        #: Review rows go into the review table by plain ``COPY`` (see :attr:`direct`).
        self.review_direct = False
        #: The run's records counted by verdict (:class:`~airflow_here_batch.api.quality.QualityCounts`).
        self.quality = QualityCounts()
        #: Rows of the review table after the run (``None`` without one).
        self.review_rows: int | None = None
        # Review rows of the records generated but not yet committed (flushed with their batch).
        self._review: list[tuple[Any, ...]] = []
        self._job_id: str | None = None  # the job whose files are being written
        self._kept: dict[int, list[tuple[str, int]]] = {}  # header -> the cells a review row keeps

    def write(
        self,
        jobs: Sequence[tuple[str | None, Lines, Lines]],
        fingerprints: Lines,
        skipped: Lines | None = None,
    ) -> dict[str, int]:
        """Write each job's results and errors: ``jobs`` holds ``(job id, results, errors)``; then the
        records the extract did not send (``skipped``: its ``skipped.csv``, ``rec_id|fingerprint|
        request_text``) as ``status = 'skipped'`` with the reason as ``error_code``/``error_message``
        and no job id.

        Each row's fingerprint and request text come from the extract's file by an ordered merge
        (:class:`~airflow_here_batch.tables.records.FingerprintMerge`: the file lists the records in
        the order they were sent); a row the merge misses (HERE does not promise the input order, shared
        doc §12 #8) is looked up in SQL, from the file loaded into a temporary table only then.

        :returns: ``{"results": records written from the results, "errors": failed records written,
            "skipped": skipped records written}``, as the database confirmed them (rowcounts), and
            checked after the last commit against the rows of this run (its ``geocoded_at``) the table
            holds.
        :raises TargetTableError: when an existing table lacks columns or has one of a wrong type
            (:func:`~airflow_here_batch.tables.targets.check_target_table`; nothing written).
        :raises WriteCountError: when the table holds fewer (or more) rows of this run than were confirmed.
        :raises ValueError: when ``fingerprints`` is not the extract's fingerprints file.
        """
        dialect = self.dialect
        conn = dialect.connect()
        counts = {"results": 0, "errors": 0, "skipped": 0}
        try:
            self._prepare(conn)
            conn.commit()
            with fingerprints() as lines:
                merge = self._merge(lines)
                self.fingerprints = fingerprints if merge is not None else None
                take = merge.take if merge is not None else _no_fingerprint
                for job_id, results, errors in jobs:
                    with results() as lines:
                        if lines is not None:
                            fast = lines if dialect.copy else None
                            rows = self._result_rows(lines, take) if fast is None else iter(())
                            counts["results"] += self._write_rows(conn, rows, job_id, merge, lines=fast)
                    with errors() as lines:
                        if lines is not None:
                            rows = self._error_rows(lines, take)
                            counts["errors"] += self._write_rows(conn, rows, job_id, merge)
            if skipped is not None:  # each entry carries its own fingerprint and request text
                with skipped() as entries:
                    if entries is not None:
                        rows = self._skipped_rows(entries)
                        counts["skipped"] += self._write_rows(conn, rows, None, None)
            self._settle_review(conn)
            confirmed = counts["results"] + counts["errors"] + counts["skipped"]
            held = self._held(conn)
            if held != confirmed:
                raise WriteCountError(self.table, confirmed, held)
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
            # request_text and the quality columns (added after such tables were made), and the column of
            # an output column added since the table was made (text; a re-send fills it, see
            # on_output_columns_change): check_target_table lets them be missing (added_by_sink); added
            # here, NULL in the rows already there.
            for column in added_by_sink(self.columns):
                if column.name not in have:
                    sql = dialect.column_sql(column, key=False)
                    cursor.execute(f"ALTER TABLE {self.quoted_table} ADD COLUMN {sql}")
                    self.log.info("HERE Batch: added column %s to %s", column.name, self.table)
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
        if self.review_table:
            cursor.execute(dialect.create_table_sql(self.review_table, REVIEW_COLUMNS)[0])
            cursor.execute(dialect.drop_temporary_sql(_REVIEW_STAGE))
            staged = [c for c in REVIEW_COLUMNS if c.name in _REVIEW_STAGED]
            stage = dialect.create_temporary_sql(_REVIEW_STAGE, staged, key=False, per_transaction=True)
            cursor.execute(stage)
            # As the target: a review table that held no rows, beside a target taking plain COPYs, takes
            # its rows by plain COPY too (a conflict turns both back to upserts).
            cursor.execute(f"SELECT 1 FROM {self.quoted_review} LIMIT 1")
            self.review_direct = self.direct and cursor.fetchone() is None
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

    def _records(
        self, lines: Iterator[str], layout: ResultLayout, delimiter: str
    ) -> Iterator[tuple[list[list[str]], bool]]:
        """The results lines grouped by record: ``(rows of one record, best first, whether its first
        line needs COPY escaping)``. A record's items follow each other (``seqNumber`` 1..``seqLength``);
        an item whose record's first item was not seen is skipped (only the first is written)."""
        seq_i, len_i, width = layout.seq, layout.seq_length, layout.width
        if not self.verdict:  # each line on its own (only a record's first item is written)
            len_i = None
        pending: list[list[str]] | None = None
        pending_special = False
        wanted = 0
        for line in lines:
            text = line.rstrip("\r\n")
            special = '"' in text or "\\" in text or "\t" in text or "\r" in text
            if special:
                cells = layout.split(text, delimiter)
            else:
                if not text.strip():
                    continue
                cells = text.split(delimiter)
            if len(cells) < width:
                cells += [""] * (width - len(cells))
            seq = cells[seq_i] if seq_i is not None else ""
            if seq in ("1", ""):
                if pending is not None:
                    yield pending, pending_special
                    pending = None
                count = cells[len_i] if len_i is not None else ""
                if count in ("1", "", "0"):
                    yield [cells], special
                    continue
                pending, pending_special = [cells], special
                try:
                    wanted = int(count)
                except ValueError:
                    wanted = 1
            elif pending is not None and cells[layout.rec_id] == pending[0][layout.rec_id]:
                pending.append(cells)
            else:
                continue
            if len(pending) >= wanted:
                yield pending, pending_special
                pending = None
        if pending is not None:
            yield pending, pending_special

    def _judged(
        self,
        classifier: RowClassifier,
        rows: list[list[str]],
        rec_id: str,
        positioned: bool,
        request_text: str | None,
        fingerprint: str | None,
    ) -> RecordQuality:
        """The record's quality, counted for the run, and its review row noted when not accepted."""
        quality = classifier.judge(rows, positioned, request_text or None)
        self.quality.add(quality)
        if not quality.accepted and self.review_table:
            self._note_review(rec_id, request_text, fingerprint, quality.verdict, rows, classifier)
        return quality

    def _note_review(
        self,
        rec_id: str,
        request_text: str | None,
        fingerprint: str | None,
        verdict: Verdict,
        rows: list[list[str]],
        classifier: RowClassifier | None,
    ) -> None:
        header = classifier.header if classifier is not None else []
        kept = self._kept.get(id(header)) if header else ()
        if kept is None:
            kept = [(name, i) for i, name in enumerate(header) if name.lower() not in ("recid", "seqlength")]
            self._kept = {id(header): kept}
        candidates = [{name: cells[i] for name, i in kept if cells[i]} for cells in rows[:REVIEW_CANDIDATES]]
        address = (request_text or "").replace("\x1f", " | ")
        listed = _JSON(candidates)
        self._review.append((rec_id, address, verdict.value, listed, fingerprint, self._job_id, self.stamp))

    def _result_rows(self, lines: Iterator[str], take: Any) -> Iterator[tuple[Any, ...]]:
        """``(rec_id, status, lat, lng, match_level, *fields, match_quality, accepted, query_score,
        candidates, error_code, error_message, request_text, request_fingerprint)`` per record."""
        found = self._layout(lines)
        if found is None:
            return
        layout, delimiter = found
        classifier = RowClassifier(layout.header, self.policy)
        for rows, _ in self._records(lines, layout, delimiter):
            values = layout.values(rows[0])
            if values is None:
                continue
            request_text, fingerprint = take(values[0])
            if not self.verdict:
                yield (*values, None, None, request_text, fingerprint)
                continue
            q = self._judged(classifier, rows, values[0], values[2] is not None, request_text, fingerprint)
            yield (*values, q.verdict.value, q.accepted, q.query_score, q.candidates, None, None,
                   request_text, fingerprint)

    def _result_copy_lines(self, lines: Iterator[str], take: Any, tail: str) -> Iterator[tuple[str, bool]]:
        """The results as complete ``COPY`` text lines of the target table (PostgreSQL): ``(line, whether
        the merge missed its fingerprint)``. The same rows as :meth:`_result_rows`, built without the
        intermediate values when the line needs no escaping (the common case)."""
        found = self._layout(lines)
        if found is None:
            return
        layout, delimiter = found
        classifier = RowClassifier(layout.header, self.policy)
        errors = "\t\\N\t\\N\t"  # error_code, error_message
        join = "\t".join
        judged = self._judged
        verdict = self.verdict
        review = bool(self.review_table)
        texts: dict[RecordQuality, str] = {}
        # The common record (one candidate, a position, a verdict the input's wording cannot change):
        # key cells -> (quality, its COPY text), and how often each was met (added up at the end).
        key_of, fixed = classifier.key, classifier.fixed
        fast: dict[Any, tuple[RecordQuality, str]] = {}
        hits: dict[Any, int] = {}
        for rows, special in self._records(lines, layout, delimiter):
            if special:
                values = layout.values(rows[0])
                if values is None:
                    continue
                request_text, fingerprint = take(values[0])
                if not verdict:
                    row = (*values, None, None, request_text, fingerprint)
                    yield "\t".join([copy_value(v) for v in row]) + tail, fingerprint is None
                    continue
                q = judged(classifier, rows, values[0], values[2] is not None, request_text, fingerprint)
                row = (*values, q.verdict.value, q.accepted, q.query_score, q.candidates, None, None,
                       request_text, fingerprint)
                yield "\t".join([copy_value(v) for v in row]) + tail, fingerprint is None
                continue
            first = rows[0]
            cells = layout.copy_cells(first)
            if cells is None:
                continue
            request_text, fingerprint = take(cells[0])
            if not verdict:
                quality = ""
            else:
                key = key_of(first) if len(rows) == 1 and cells[2] != "\\N" else None
                hit = fast.get(key) if key is not None else None
                if hit is not None:
                    q, quality = hit
                    hits[key] += 1
                    if review and not q.accepted:
                        self._note_review(cells[0], request_text, fingerprint, q.verdict, rows, classifier)
                else:
                    q = judged(classifier, rows, cells[0], cells[2] != "\\N", request_text, fingerprint)
                    quality = texts.get(q)  # type: ignore[assignment]
                    if quality is None:
                        score = repr(q.query_score) if q.query_score is not None else "\\N"
                        flag = "1" if q.accepted else "0"  # as copy_value spells a boolean
                        quality = f"\t{q.verdict.value}\t{flag}\t{score}\t{q.candidates}"
                        if len(texts) < 10_000:
                            texts[q] = quality
                    if key is not None and len(fast) < 10_000 and fixed(key) is q:
                        fast[key] = (q, quality)
                        hits[key] = 0
            if fingerprint is None:
                yield f"{join(cells)}{quality}{errors}\\N\t\\N{tail}", True
                continue
            if "\\" in request_text or "\t" in request_text or "\n" in request_text or "\r" in request_text:
                request_text = copy_value(request_text)
            yield f"{join(cells)}{quality}{errors}{request_text}\t{fingerprint}{tail}", False
        for key, count in hits.items():
            self.quality.add_many(fast[key][0], count)

    def _error_rows(self, lines: Iterator[str], take: Any) -> Iterator[tuple[Any, ...]]:
        fields = [None] * (len(self.columns) - 5 - (len(QUALITY_COLUMNS) if self.verdict else 0) - 6)
        for line in lines:
            parsed = parse_error_line(line)
            if parsed is None:
                continue
            rec_id, code, message = parsed
            request_text, fingerprint = take(rec_id)
            if not self.verdict:
                yield (rec_id, STATUS_FAILED, None, None, None, *fields, code or None, message or None,
                       request_text, fingerprint)
                continue
            self.quality.add(Verdict.FAILED, False)
            if self.review_table:
                self._note_review(rec_id, request_text, fingerprint, Verdict.FAILED, [], None)
            yield (rec_id, STATUS_FAILED, None, None, None, *fields, Verdict.FAILED.value, False, None, 0,
                   code or None, message or None, request_text, fingerprint)

    def _skipped_rows(self, lines: Iterator[str] | None) -> Iterator[tuple[Any, ...]]:
        """A ``skipped`` row per entry of the extract's ``skipped.csv`` (after its header)."""
        if lines is None:
            return
        fields = [None] * (len(self.columns) - 5 - (len(QUALITY_COLUMNS) if self.verdict else 0) - 6)
        # Never sent, so never judged: no match quality, not accepted, no score, no candidate.
        quality = (None, False, None, 0) if self.verdict else ()
        code = SkipReason.EMPTY_QUERY.value
        message = SKIP_REASONS[SkipReason.EMPTY_QUERY]
        for entry in itertools.islice(csv.reader(lines, delimiter="|"), 1, None):
            if entry:
                text = entry[2] if len(entry) > 2 else ""
                yield (entry[0], STATUS_SKIPPED, None, None, None, *fields, *quality, code, message, text,
                       entry[1])

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
        self._job_id = job_id
        total = 0
        if self.dialect.copy:
            tail = "\t" + copy_value(job_id) + "\t" + copy_value(self.stamp) + "\n"
            if lines is not None:
                copy_lines = self._result_copy_lines(lines, take, tail)
            else:
                copy_lines = (
                    ("\t".join([copy_value(v) for v in row]) + tail, row[-1] is None) for row in rows
                )
            while count := self._write_copy_batch(conn, copy_lines, merge is not None):
                total += count
            return total
        stamp = self.stamp
        full = ((*row, job_id, stamp) for row in rows)
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
                self._flush_review(conn)
                conn.commit()
                return int(confirmed)
            except Exception as exc:
                self.fingerprints_loaded = loaded
                with contextlib.suppress(Exception):
                    conn.rollback()
                if not self.dialect.unique_violation(exc):  # a key is there already: upsert instead
                    raise
                self.direct = False
                self.review_direct = False
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
                self._flush_review(conn)
                conn.commit()
        except BaseException:
            if loaded:  # rolled back with the batch
                self.fingerprints_loaded = False
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        return int(confirmed) if confirmed is not None and confirmed >= 0 else len(batch)

    # --- the review table ---------------------------------------------------------------------------

    def _flush_review(self, conn: Any) -> None:
        """The review rows of the batch being committed, upserted in its transaction: a record's row is
        replaced, keeping ``chosen_candidate`` and ``reviewed_at`` while its request fingerprint (taken
        from the target row just written) is unchanged."""
        if not self.review_table or not self._review:
            return
        dialect = self.dialect
        pending, self._review = self._review, []
        batch = pending
        try:
            if self.review_direct:  # rows with their fingerprint straight in; the others upserted
                direct = [r for r in pending if r[4] is not None]
                dialect.insert_rows(conn, self.quoted_review, _REVIEW_STAGED, direct, len(direct))
                pending = [r for r in pending if r[4] is None]
                if not pending:
                    return
            self._upsert_review(conn, pending)
        except BaseException:
            self._review = batch + self._review  # the batch is retried as upserts, or the run fails
            raise

    def _upsert_review(self, conn: Any, pending: list[tuple[Any, ...]]) -> None:
        dialect = self.dialect
        dialect.insert_rows(conn, _REVIEW_STAGE, _REVIEW_STAGED, pending, len(pending))
        quote = dialect.quote_name
        # The fingerprint comes with the row; a row the merge missed takes it from the target row just
        # written, by one primary-key lookup (COALESCE evaluates the subquery only for such rows).
        fingerprint = (
            f"COALESCE(s.{quote('request_fingerprint')}, (SELECT t.{quote('request_fingerprint')} "
            f"FROM {self.quoted_table} t WHERE t.{quote('rec_id')} = s.{quote('rec_id')}))"
        )
        columns = list(_REVIEW_STAGED)
        select = (
            "SELECT "
            + ", ".join(fingerprint if c == "request_fingerprint" else f"s.{quote(c)}" for c in columns)
            + f" FROM {_REVIEW_STAGE} s WHERE true"
        )
        sql = dialect.keep_upsert_sql(
            self.review_table, columns, select, kept=_REVIEW_KEPT, unless_changed="request_fingerprint"
        )
        cursor = conn.cursor()
        cursor.execute(sql)
        if not dialect.temporary_clears_on_commit:
            cursor.execute(f"DELETE FROM {_REVIEW_STAGE}")
        cursor.close()

    def _settle_review(self, conn: Any) -> None:
        """At the end of the run: drop the review rows of records now accepted (or gone from the target),
        so the review table holds exactly the records not accepted; count its rows."""
        if not self.review_table:
            return
        quote = self.dialect.quote_name
        cursor = conn.cursor()
        # Still direct: the review table was empty and no key was written twice, so each of its rows is
        # a record this run did not accept; nothing to drop.
        if not self.review_direct:
            cursor.execute(
                f"DELETE FROM {self.quoted_review} WHERE NOT EXISTS (SELECT 1 FROM {self.quoted_table} t "
                f"WHERE t.{quote('rec_id')} = {self.quoted_review}.{quote('rec_id')} "
                f"AND t.{quote('accepted')} = false)"
            )
        cursor.execute(f"SELECT COUNT(*) FROM {self.quoted_review}")
        self.review_rows = int(cursor.fetchone()[0])
        cursor.close()
        conn.commit()


#: Compact JSON, as :func:`~airflow_here_batch.api.quality.candidates_json` writes it.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _no_fingerprint(rec_id: str) -> tuple[None, None]:
    return None, None
