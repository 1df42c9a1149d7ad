"""SQL shapes per database dialect: identifiers, placeholders, types, create-table and upsert statements,
temporary tables, COPY (PostgreSQL)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_here_batch.tables.records import _IDENTIFIER

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_here_batch.tables.records import TargetColumn


def quote_identifier(name: str) -> str:
    """``name`` (``table`` or ``schema.table``) double-quoted per part; refuses anything but plain names.

    :raises ValueError: for a part that is not ``[A-Za-z_][A-Za-z0-9_]*`` (no SQL injection through a
        table or column name).
    """
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"{name!r} is not a plain table/column name: use letters, digits and '_'")
    return ".".join(f'"{p}"' for p in parts)


def raw_text_sql(alias: str, columns: Sequence[str]) -> str:
    """SQL for :meth:`RecordMapping.raw_text` over ``alias``'s columns (PostgreSQL and SQLite alike).

    ``CAST(... AS TEXT)`` may spell a non-text value differently from Python (``1.0`` vs ``1``): such a
    row is only read back and fingerprinted, never wrongly skipped.
    """
    parts = [f"COALESCE(CAST({alias}.{_quote_any(c)} AS TEXT), '')" for c in columns]
    return " || '\x1f' || ".join(parts) if parts else "''"


def _quote_any(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'



_TYPES = {
    "postgresql": {"text": "TEXT", "float": "DOUBLE PRECISION", "timestamp": "TIMESTAMP WITH TIME ZONE"},
    "sqlite": {"text": "TEXT", "float": "REAL", "timestamp": "TEXT"},
}



def _target_dialect(dialect: str) -> str:
    name = "postgresql" if dialect in ("postgres", "postgresql") else dialect
    if name not in _TYPES:
        raise ValueError(
            f"database dialect {dialect!r} is not supported for the geocoded table: use PostgreSQL or SQLite "
            "(both have INSERT ... ON CONFLICT DO UPDATE)"
        )
    return name


def create_table_sql(dialect: str, table: str, columns: Sequence[TargetColumn]) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for the target table (``rec_id`` primary key), its fingerprint index."""
    types = _TYPES[_target_dialect(dialect)]
    body = ", ".join(
        f"{quote_identifier(c.name)} {types[c.kind]}" + (" PRIMARY KEY" if c.name == "rec_id" else "")
        for c in columns
    )
    bare = table.split(".")[-1]
    index = quote_identifier(f"{bare}_fingerprint_idx"[:63])
    return [
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(table)} ({body})",
        f"CREATE INDEX IF NOT EXISTS {index} ON {quote_identifier(table)} (request_fingerprint)",
    ]


def upsert_sql(dialect: str, table: str, columns: Sequence[str], select: str) -> str:
    """``INSERT INTO table (columns) <select> ON CONFLICT (rec_id) DO UPDATE SET <every other column>``.

    ``select`` must end with a ``WHERE`` clause: SQLite reads ``ON`` right after ``FROM ...`` as a join
    constraint (its documented parsing ambiguity), ``WHERE true`` avoids it. A record written again
    (a rerun, a changed address) replaces its row: one row per ``rec_id``, never a duplicate.
    """
    _target_dialect(dialect)
    names = [quote_identifier(c) for c in columns]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != '"rec_id"')
    return (
        f"INSERT INTO {quote_identifier(table)} ({', '.join(names)}) {select} "
        f'ON CONFLICT ("rec_id") DO UPDATE SET {updates}'
    )


def _dialect(hook: DbApiHook) -> str:
    name = getattr(hook, "dialect_name", None) or ""
    if name in ("postgres", "postgresql") or type(hook).__name__ == "PostgresHook":
        return "postgresql"
    if name == "sqlite" or type(hook).__name__.endswith("SqliteHook"):
        return "sqlite"
    return name or "default"


def _placeholder(dialect: str) -> str:
    return "%s" if dialect == "postgresql" else "?"


def _table_columns(conn: Any, table: str) -> list[str] | None:
    """The table's column names, or ``None`` when it does not exist (the failed probe is rolled back)."""
    cursor = conn.cursor()
    try:
        cursor.execute(f"SELECT * FROM {quote_identifier(table)} WHERE 1 = 0")
        return [d[0] for d in cursor.description]
    except Exception:
        conn.rollback()
        return None
    finally:
        with contextlib.suppress(Exception):
            cursor.close()


def _temp(dialect: str, name: str) -> str:
    return f"temp.{name}" if dialect == "sqlite" else name


def _insert_many(
    conn: Any,
    dialect: str,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Any],
    chunk: int,
    *,
    text: bool = False,
) -> None:
    """Insert rows into a table on ``conn`` without committing: ``COPY`` on PostgreSQL.

    ``text=True``: the rows are PostgreSQL ``COPY`` text lines already (built by the sink).
    """
    names = ", ".join(quote_identifier(c) for c in columns)
    cursor = conn.cursor()
    if dialect == "postgresql":
        # COPY text sent in large blocks: psycopg 3's write_row sends each row on its own.
        lines = rows if text else [_copy_line(row) for row in rows]
        sql = f"COPY {table} ({names}) FROM STDIN"
        if hasattr(cursor, "copy"):  # psycopg 3
            with cursor.copy(sql) as copy:
                lines = list(lines)
                for start in range(0, len(lines), 2_000):
                    copy.write("".join(lines[start : start + 2_000]))
        else:  # psycopg2
            cursor.copy_expert(sql, io.StringIO("".join(lines)))
    else:
        ph = _placeholder(dialect)
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join([ph] * len(columns))})"
        iterator = iter(rows)
        while True:
            block = [tuple(r) for _, r in zip(range(chunk), iterator, strict=False)]
            if not block:
                break
            cursor.executemany(sql, block)
    cursor.close()


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error (psycopg 3 ``sqlstate``, psycopg2 ``pgcode``)."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def _copy_value(value: Any) -> str:
    """One value in PostgreSQL's COPY text format (``\\N`` for NULL, backslash escapes)."""
    if value is None:
        return "\\N"
    text = (
        value
        if value.__class__ is str
        else value.isoformat()
        if isinstance(value, datetime)
        else repr(value)
        if isinstance(value, float)
        else str(value)
    )
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _copy_line(row: Sequence[Any]) -> str:
    """One row in PostgreSQL's COPY text format (``\\N`` for NULL, backslash escapes), with its ``\\n``."""
    return "\t".join([_copy_value(v) for v in row]) + "\n"
