"""The change-column high-water mark of an incremental source: read only the rows changed since the last
run, kept by the pipeline itself beside the target table.

A source table with a column every write sets (``updated_at`` stamped by the application or a trigger, a
version counter...) is read as ``WHERE <column> IS NULL OR <column> >= <mark> - <window>``, where
``<mark>`` is the highest value of the column read by the last run whose results were written. With an
index on the column, a night with 1 % changed rows reads about 1 % of the table.

**Why the window** (``change_window``, default one hour). The mark is the highest value *read*, never a
clock of the worker, so the workers' clocks do not matter. Two things can still commit a row whose value
is *below* a mark already taken:

* a late commit: a transaction stamps ``now()`` when it starts (PostgreSQL's ``now()`` is the start of
  the transaction) and commits after the run has read past that value;
* clock skew between the machines that stamp the column: a writer whose clock runs ahead pushes the mark
  ahead of the other writers' values.

Every run therefore reads again the rows of the ``window`` behind the mark. The window must be longer
than the longest write transaction plus the largest clock difference between the writers; the cost is
only reading those rows again: their fingerprints are unchanged, so none of them is sent to HERE again
(:mod:`airflow_here_batch.tables.extract`). Rows whose column is NULL are read every run (never
assumed unchanged). A row committed with a value older than ``mark - window`` is not seen until a full
refresh: choose the window for the slowest writer.

**Where the mark is kept**: the table ``here_batch_watermarks`` in the target table's schema, one row per
(target table, source): ``source`` is a digest of the query and the column, so a changed query starts
again from a full read. The mark is saved only after the run's results are written
(:class:`~airflow_here_batch.operators.sql.BatchResultsToSqlOperator`): a run that fails before that reads
the same rows again next time.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_here_batch.tables.records import TargetColumn, plain_name

if TYPE_CHECKING:
    from airflow_here_batch.tables.dialect import TableDialect

__all__ = ["STATE_TABLE", "Watermark", "load_watermark", "save_watermark", "source_digest", "state_table"]

#: Name of the table (in the target table's schema) that keeps the marks.
STATE_TABLE = "here_batch_watermarks"
_STATE_COLUMNS = (
    TargetColumn("target_table"),
    TargetColumn("source"),
    TargetColumn("change_column"),
    TargetColumn("value_type"),
    TargetColumn("value"),
    TargetColumn("saved_at", "timestamp"),
)


def state_table(target_table: str) -> str:
    """``here_batch_watermarks`` in the schema of ``target_table`` (``schema.table`` or ``table``)."""
    schema, _, _ = plain_name(target_table).rpartition(".")
    return f"{schema}.{STATE_TABLE}" if schema else STATE_TABLE


def source_digest(sql: str, change_column: str) -> str:
    """What a mark belongs to: 32 hex characters of the query (blanks collapsed) and the column."""
    text = " ".join(str(sql).split()) + "\x1f" + change_column
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _window_seconds(window: timedelta | float) -> float:
    return window.total_seconds() if isinstance(window, timedelta) else float(window)


def _text_minus(value: str, seconds: float) -> str:
    """An ISO 8601 text timestamp ``seconds`` earlier, spelt the same way (separator, fraction, zone), so
    that text comparison in the database keeps its order."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValueError(
            f"the change column holds the text {value!r}, which is not an ISO 8601 timestamp: use a "
            "timestamp, date or number column (or ISO 8601 text such as '2025-07-01 02:00:00')"
        ) from None
    earlier = parsed - timedelta(seconds=seconds)
    if len(value) == 10:  # a date
        return earlier.date().isoformat()
    sep = value[10] if len(value) > 10 else " "
    spec = "microseconds" if "." in value[10:] else "seconds"
    text = earlier.isoformat(sep=sep, timespec=spec)
    return text.replace("+00:00", "Z") if value.endswith("Z") else text


#: How a mark's type is stored (text) and read back, and how the window is taken off it. The window is a
#: ``timedelta`` or a number: seconds for timestamps and ISO text, days rounded up for dates, the number
#: itself for numeric columns.
_TYPES: dict[str, tuple[type, Any, Any]] = {
    # name: (Python type, from text, value minus window seconds)
    "datetime": (datetime, datetime.fromisoformat, lambda v, s: v - timedelta(seconds=s)),
    "date": (date, date.fromisoformat, lambda v, s: v - timedelta(days=math.ceil(s / 86400))),
    "int": (int, int, lambda v, s: v - math.ceil(s)),
    "decimal": (Decimal, Decimal, lambda v, s: v - Decimal(str(s))),
    "float": (float, float, lambda v, s: v - s),
    "text": (str, str, _text_minus),
}


def _type_name(value: Any) -> str:
    for name, (kind, _, _) in _TYPES.items():  # datetime before date: a datetime is a date
        if isinstance(value, kind) and not isinstance(value, bool):
            return name
    raise ValueError(
        f"the change column holds a {type(value).__name__} ({value!r}): use a timestamp, date, number or "
        "ISO 8601 text column"
    )


@dataclass(frozen=True)
class Watermark:
    """The highest change-column value read from one source for one target table.

    :param target_table: the table the results go to (the mark is kept beside it).
    :param source: :func:`source_digest` of the query and the column.
    :param change_column: the source's change column.
    :param value: the highest value read (as the database driver returned it), or ``None``: nothing read
        yet.
    """

    target_table: str
    source: str
    change_column: str
    value: Any = None

    def since(self, window: timedelta | float) -> Any:
        """The lowest value the next read takes: the mark minus ``window`` (see :data:`_TYPES`); ``None``
        without a mark (read everything).

        :raises ValueError: for a value that is not a timestamp, date, number or ISO 8601 text.
        """
        if self.value is None:
            return None
        return _TYPES[_type_name(self.value)][2](self.value, _window_seconds(window))

    def advanced(self, value: Any) -> Watermark:
        """This mark moved to ``value`` when it is higher (``None`` leaves it)."""
        if value is None or (self.value is not None and not value > self.value):
            return self
        return Watermark(self.target_table, self.source, self.change_column, value)

    def to_xcom(self) -> dict[str, Any]:
        """A JSON-safe dict (XCom): the table, source, column, ``value_type`` and ``value`` as text."""
        kind = text = None
        if self.value is not None:
            kind = _type_name(self.value)
            text = self.value.isoformat() if kind in ("datetime", "date") else str(self.value)
        return {
            "target_table": self.target_table,
            "source": self.source,
            "change_column": self.change_column,
            "value_type": kind,
            "value": text,
        }

    @classmethod
    def from_xcom(cls, data: dict[str, Any]) -> Watermark:
        """The mark of :meth:`to_xcom`'s dict.

        :raises ValueError: for an unknown ``value_type``.
        """
        kind, text = data.get("value_type"), data.get("value")
        value = None
        if kind is not None and text is not None:
            if kind not in _TYPES:
                raise ValueError(f"unknown watermark value_type {kind!r}")
            value = _TYPES[kind][1](text)
        return cls(str(data["target_table"]), str(data["source"]), str(data["change_column"]), value)


def load_watermark(dialect: TableDialect, conn: Any, mark: Watermark) -> Watermark:
    """``mark`` with the value kept for its target table and source (unchanged when none is kept or the
    state table does not exist)."""
    table = state_table(mark.target_table)
    if dialect.table_columns(conn, table) is None:
        return mark
    ph = dialect.placeholder
    cursor = conn.cursor()
    try:
        cursor.execute(
            f"SELECT value_type, value FROM {dialect.quote_name(table)} "
            f"WHERE target_table = {ph} AND source = {ph}",
            (mark.target_table, mark.source),
        )
        row = cursor.fetchone()
    finally:
        cursor.close()
    conn.rollback()
    if row is None:
        return mark
    return Watermark.from_xcom({**mark.to_xcom(), "value_type": row[0], "value": row[1]})


def save_watermark(dialect: TableDialect, conn: Any, mark: Watermark) -> None:
    """Keep ``mark`` (its state table created if missing), replacing the earlier one, and commit.
    A mark without a value is not saved."""
    data = mark.to_xcom()
    if data["value"] is None:
        return
    table = state_table(mark.target_table)
    quoted = dialect.quote_name(table)
    ph = dialect.placeholder
    cursor = conn.cursor()
    try:
        if dialect.table_columns(conn, table) is None:
            body = ", ".join(dialect.column_sql(c, key=False) for c in _STATE_COLUMNS)
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {quoted} ({body})")
        cursor.execute(
            f"DELETE FROM {quoted} WHERE target_table = {ph} AND source = {ph}",
            (mark.target_table, mark.source),
        )
        cursor.execute(
            f"INSERT INTO {quoted} (target_table, source, change_column, value_type, value, saved_at) "
            f"VALUES ({', '.join([ph] * 6)})",
            (
                mark.target_table,
                mark.source,
                mark.change_column,
                data["value_type"],
                data["value"],
                dialect.timestamp(datetime.now(timezone.utc)),
            ),
        )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cursor.close()


def keep_watermark(hook: Any, data: dict[str, Any]) -> Watermark:
    """Keep the extract's mark (its XCom ``watermark`` dict) beside the target table on ``hook``'s
    database (after the write: never ahead of it); returns it.

    :raises UnsupportedDialectError: when the database is not a supported target.
    """
    from airflow_here_batch.tables.dialect import table_dialect

    mark = Watermark.from_xcom(data)
    dialect = table_dialect(hook)
    conn = dialect.connect()
    try:
        save_watermark(dialect, conn, mark)
    finally:
        conn.close()
    return mark
