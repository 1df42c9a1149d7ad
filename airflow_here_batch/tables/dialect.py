"""The SQL of the table pipeline per database, built on common.sql's ``Dialect`` of the connection's hook.

One object per database connection says how to write SQL for it: identifiers quoted (one quoter, the
hook's ``escape_word_format``), the hook's ``placeholder``, the column types, the target table's
``CREATE TABLE`` and its upsert (``INSERT ... SELECT ... ON CONFLICT (rec_id) DO UPDATE``), temporary
tables, streaming cursors, and bulk loading (``COPY`` on PostgreSQL, ``executemany`` elsewhere).

* :func:`table_dialect` (a target table: PostgreSQL or SQLite) raises :class:`UnsupportedDialectError` for
  any other database; :func:`source_dialect` (a query's source) falls back to :class:`SourceDialect` for
  any ``DbApiHook``.
* Another target database is one more :class:`TableDialect` subclass in :data:`TABLE_DIALECTS` (its
  types, its upsert shape and temporary tables where they differ; the hook brings quoting and
  placeholders).
"""

from __future__ import annotations

import contextlib
import csv
import io
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.sql.dialects.dialect import Dialect

from airflow_here_batch.tables.records import plain_name

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_here_batch.tables.records import TargetColumn

__all__ = [
    "TABLE_DIALECTS",
    "PostgresTableDialect",
    "SourceDialect",
    "SqliteTableDialect",
    "TableDialect",
    "UnsupportedDialectError",
    "copy_line",
    "copy_value",
    "source_dialect",
    "source_query",
    "table_dialect",
]


class UnsupportedDialectError(ValueError):
    """The target table's database is not one the pipeline writes to (PostgreSQL, SQLite)."""


def _is_code(token: Any) -> bool:
    """A token that is neither blank, a comment nor the ``;`` ending a statement."""
    import sqlparse.tokens as T

    return not (token.is_whitespace or token.ttype in T.Comment or token.match(T.Punctuation, ";"))


def source_query(sql: str) -> str:
    """A user's query as the body of a subquery: what the user can run in the database, less the
    comments, blanks and ``;`` after its last token (``... -- note``, ``...;``, ``... /* x */``), which
    would otherwise swallow or break the closing parenthesis. Strings, quoted names and comments inside
    the query are kept as they are (sqlparse's tokenizer, a dependency of common.sql).

    :raises ValueError: for an empty query, or one holding more than one statement.
    """
    import sqlparse

    statements = [s for s in sqlparse.parse(str(sql)) if any(map(_is_code, s.flatten()))]
    if not statements:
        raise ValueError("the source query is empty: give one SELECT")
    if len(statements) > 1:
        raise ValueError(
            f"the source query holds {len(statements)} statements: give one SELECT (it becomes a "
            "subquery: SELECT * FROM (<sql>) ...)"
        )
    tokens = list(statements[0].flatten())
    while tokens and not _is_code(tokens[-1]):
        tokens.pop()
    return "".join(t.value for t in tokens).strip()


class SourceDialect(Dialect):
    """Any ``DbApiHook``'s database as the source of a query: quoting, placeholder, plain cursors.

    :param hook: the connection's hook (its ``placeholder`` and ``escape_word_format`` are used).
    :raises TypeError: when ``hook`` is not a ``DbApiHook`` (common.sql's check).
    """

    #: ``DbApiHook.dialect_name`` values this class serves.
    names: ClassVar[tuple[str, ...]] = ()
    #: Hook class names (suffixes) this class serves when ``dialect_name`` does not say.
    hook_classes: ClassVar[tuple[str, ...]] = ()
    #: The dialect's name in messages and the tests (``postgresql``, ``sqlite``; ``default`` otherwise).
    name: ClassVar[str] = "default"

    def __init__(self, hook: DbApiHook, **kwargs: Any) -> None:
        super().__init__(hook, **kwargs)

    # --- identifiers: the one quoter ----------------------------------------------------------------

    def escape_word(self, word: str) -> str:
        """``word`` as one quoted identifier (common.sql's statements use it too): always quoted."""
        return self.quote(word)

    def quote(self, word: str) -> str:
        """One identifier of any text, quoted with the hook's ``escape_word_format`` (``"{}"`` by
        default), the closing quote character doubled inside: ``a"b`` -> ``"a""b"``."""
        fmt = self.escape_word_format
        close = fmt[-1]
        return fmt.format(word.replace(close, close * 2))

    def quote_name(self, name: str) -> str:
        """A plain ``table``, ``schema.table`` or column name, quoted per part.

        :raises ValueError: for a part that is not ``[A-Za-z_][A-Za-z0-9_]*`` (no SQL injection through a
            table or column name).
        """
        return ".".join(self.quote(part) for part in plain_name(name).split("."))

    # --- reading ----------------------------------------------------------------------------------

    def subquery(self, sql: str, alias: str, *, parameters: bool = False) -> str:
        """``sql`` (cleaned by :func:`source_query`) as a derived table: ``(\\n<sql>\\n) alias``.
        The line breaks keep a ``--`` comment inside the query from reaching the parenthesis.

        :param parameters: the statement around it passes parameters of its own (the user's query has
            none): with a ``%s``-style driver a ``%`` of the query is doubled, as the driver reads ``%``
            as the start of a placeholder whenever parameters are passed (``LIKE 'a%'``).
        """
        body = source_query(sql)
        if parameters and "%" in self.placeholder:
            body = body.replace("%", "%%")
        return f"(\n{body}\n) {alias}"

    def stream_cursor(self, conn: Any) -> Any:
        """A cursor whose ``fetchmany`` reads rows as they come (here: a plain cursor)."""
        return conn.cursor()

    def read_whole(self, conn: Any) -> None:
        """Tell the database the next query on ``conn`` is read to its end (no effect here)."""

    def ordered(self, expression: str) -> str:
        """``expression`` for an ``ORDER BY`` in byte order where the database can (here: as it is)."""
        return expression

    def timestamp(self, value: datetime) -> Any:
        """A timestamp as a query parameter or stored value (here: ISO 8601 text)."""
        return value.isoformat()

    def table_columns(self, conn: Any, table: str) -> list[str] | None:
        """The table's column names, or ``None`` when it does not exist (the failed probe is rolled back)."""
        cursor = conn.cursor()
        try:
            cursor.execute(f"SELECT * FROM {self.quote_name(table)} WHERE 1 = 0")
            return [d[0] for d in cursor.description]
        except Exception:
            conn.rollback()
            return None
        finally:
            with contextlib.suppress(Exception):
                cursor.close()


class TableDialect(SourceDialect):
    """A database the target table lives in: its types and statements. Subclasses set :attr:`names`,
    :attr:`types` and what differs (upsert, temporary tables, bulk loading)."""

    #: Column kind of :class:`~airflow_here_batch.tables.records.TargetColumn` -> SQL type.
    types: ClassVar[Mapping[str, str]] = {}
    #: Whether ``COPY ... FROM STDIN`` loads rows (PostgreSQL).
    copy: ClassVar[bool] = False
    #: Whether a temporary table made ``per_transaction`` empties itself at each commit (else the caller
    #: deletes its rows).
    temporary_clears_on_commit: ClassVar[bool] = False

    def column_types(self, conn: Any, table: str) -> dict[str, str] | None:
        """The table's columns as ``{lower-case name: declared type, lower case}``, or ``None`` when it
        does not exist (here: names only, types ``""``; subclasses ask the catalogue)."""
        names = self.table_columns(conn, table)
        return None if names is None else {n.lower(): "" for n in names}

    def column_sql(self, column: TargetColumn, *, key: bool = True) -> str:
        """``"name" TYPE`` of one column (``rec_id`` the primary key, with ``key``)."""
        primary = " PRIMARY KEY" if key and column.name == "rec_id" else ""
        return f"{self.quote_name(column.name)} {self.types[column.kind]}{primary}"

    def create_table_sql(self, table: str, columns: Sequence[TargetColumn]) -> list[str]:
        """``CREATE TABLE IF NOT EXISTS`` for the target table (``rec_id`` primary key), then its
        fingerprint index."""
        body = ", ".join(self.column_sql(c) for c in columns)
        bare = table.split(".")[-1]
        index = self.quote_name(f"{bare}_fingerprint_idx"[:63])
        return [
            f"CREATE TABLE IF NOT EXISTS {self.quote_name(table)} ({body})",
            f"CREATE INDEX IF NOT EXISTS {index} ON {self.quote_name(table)} (request_fingerprint)",
        ]

    def upsert_sql(self, table: str, columns: Sequence[str], select: str) -> str:
        """``INSERT INTO table (columns) <select> ON CONFLICT (rec_id) DO UPDATE SET <every other column>``.

        ``select`` must end with a ``WHERE`` clause: SQLite reads ``ON`` right after ``FROM ...`` as a join
        constraint (its documented parsing ambiguity), ``WHERE true`` avoids it. A record written again
        (a rerun, a changed address) replaces its row: one row per ``rec_id``, never a duplicate.
        """
        names = [self.quote_name(c) for c in columns]
        key = self.quote_name("rec_id")
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != key)
        return (
            f"INSERT INTO {self.quote_name(table)} ({', '.join(names)}) {select} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )

    def keep_upsert_sql(
        self, table: str, columns: Sequence[str], select: str, *, kept: Sequence[str], unless_changed: str
    ) -> str:
        """:meth:`upsert_sql` that keeps the ``kept`` columns of an existing row while its
        ``unless_changed`` column is unchanged (else sets them NULL): the review list keeps a person's
        choice for a record whose request is the same. ``kept`` columns are not in ``columns``.
        """
        names = [self.quote_name(c) for c in columns]
        key = self.quote_name("rec_id")
        same = self.quote_name(unless_changed)
        updates = [f"{n} = excluded.{n}" for n in names if n != key]
        for column in kept:
            k = self.quote_name(column)
            updates.append(f"{k} = CASE WHEN r.{same} = excluded.{same} THEN r.{k} END")
        return (
            f"INSERT INTO {self.quote_name(table)} AS r ({', '.join(names)}) {select} "
            f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)}"
        )

    def text(self, expression: str) -> str:
        """``expression`` cast to text."""
        return f"CAST({expression} AS TEXT)"

    def raw_text_sql(self, alias: str, columns: Sequence[str]) -> str:
        """SQL for :meth:`~airflow_here_batch.tables.records.RecordMapping.raw_text` over ``alias``'s
        columns: each value as text (NULL as empty), joined by ``\\x1f``.

        ``CAST(... AS TEXT)`` may spell a non-text value differently from Python (``1.0`` vs ``1``): such a
        row is only read back and fingerprinted, never wrongly skipped.
        """
        parts = [f"COALESCE({self.text(f'{alias}.{self.quote(c)}')}, '')" for c in columns]
        return " || '\x1f' || ".join(parts) if parts else "''"

    # --- temporary tables ---------------------------------------------------------------------------

    def temporary(self, name: str) -> str:
        """How statements name the temporary table ``name`` (a plain name)."""
        return name

    def drop_temporary_sql(self, name: str) -> str:
        return f"DROP TABLE IF EXISTS {self.temporary(name)}"

    def create_temporary_sql(
        self, name: str, columns: Sequence[TargetColumn], *, key: bool = True, per_transaction: bool = False
    ) -> str:
        """``CREATE TEMPORARY TABLE`` ``name`` with ``columns`` (``rec_id`` the primary key, with ``key``).

        :param per_transaction: rows last one transaction: the table empties itself at each commit where
            the database can (:attr:`temporary_clears_on_commit`); elsewhere the caller deletes them.
        """
        body = ", ".join(self.column_sql(c, key=key) for c in columns)
        return f"CREATE TEMPORARY TABLE {name} ({body})"

    # --- loading ----------------------------------------------------------------------------------

    def insert_sql(self, table: str, columns: Sequence[str]) -> str:
        """``INSERT INTO table (columns) VALUES (placeholders)`` (common.sql's statement format)."""
        return self.generate_insert_sql(table, [None] * len(columns), list(columns))

    def insert_rows(
        self,
        conn: Any,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        chunk: int,
        *,
        text: bool = False,
    ) -> None:
        """Insert rows into ``table`` (a name as statements give it) on ``conn``, without committing:
        ``executemany`` in chunks of ``chunk`` rows.

        :param text: the rows are PostgreSQL ``COPY`` text lines already (:meth:`PostgresTableDialect.
            insert_rows` only).
        """
        if text:
            raise ValueError(f"{self.name} takes rows, not COPY text lines")
        sql = self.insert_sql(table, columns)
        cursor = conn.cursor()
        iterator = iter(rows)
        while True:
            block = [tuple(r) for _, r in zip(range(chunk), iterator, strict=False)]
            if not block:
                break
            cursor.executemany(sql, block)
        cursor.close()

    def load_csv(self, conn: Any, table: str, columns: Sequence[str], lines: Iterator[str]) -> None:
        """Load ``|``-delimited CSV lines (no header) into ``table`` on ``conn``, without committing."""
        self.insert_rows(conn, table, columns, csv.reader(lines, delimiter="|"), 10_000)

    def open_copy(self, cursor: Any, table: str, columns: Sequence[str]) -> Any:
        """A context manager streaming ``COPY`` text into ``table`` (``.write(text)``), or ``None`` when
        the database or driver cannot stream."""
        return None

    def unique_violation(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the database refusing a key that is there already."""
        return False


class PostgresTableDialect(TableDialect):
    """PostgreSQL: server-side cursors, ``COPY`` loading (psycopg 3 streaming, psycopg2 ``copy_expert``),
    temporary tables emptied at each commit, timestamps with time zone."""

    names = ("postgresql", "postgres")
    hook_classes = ("PostgresHook",)
    name = "postgresql"
    types = {
        "text": "TEXT",
        "float": "DOUBLE PRECISION",
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "bool": "BOOLEAN",
        "int": "BIGINT",
    }
    copy = True
    temporary_clears_on_commit = True

    def column_types(self, conn: Any, table: str) -> dict[str, str] | None:
        # information_schema: data_type is 'text', 'character varying', 'double precision',
        # 'timestamp with time zone' ... (a domain shows its base type).
        if self.table_columns(conn, table) is None:
            return None
        schema, _, name = table.rpartition(".")
        cursor = conn.cursor()
        ph = self.placeholder
        cursor.execute(
            f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = {ph} AND "
            f"table_schema = {ph if schema else 'current_schema()'}",
            (name, schema) if schema else (name,),
        )
        found = {str(n).lower(): str(t).lower() for n, t in cursor.fetchall()}
        cursor.close()
        conn.rollback()
        return found

    def stream_cursor(self, conn: Any) -> Any:
        """A server-side (named) cursor: rows arrive as fetched."""
        return conn.cursor(name=f"here_batch_{uuid.uuid4().hex[:12]}")

    def read_whole(self, conn: Any) -> None:
        # A cursor's plan is made for its first 10 % of rows by default: a nested loop of primary-key
        # probes into the target per source row (1.9 s for 1,000,000 rows, P8). A query read to the end
        # is better planned for the whole (a hash join, 1.0 s). For this transaction only.
        cursor = conn.cursor()
        cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        cursor.close()

    def ordered(self, expression: str) -> str:
        return f'{expression} COLLATE "C"'

    def timestamp(self, value: datetime) -> Any:
        return value

    def create_temporary_sql(
        self, name: str, columns: Sequence[TargetColumn], *, key: bool = True, per_transaction: bool = False
    ) -> str:
        sql = super().create_temporary_sql(name, columns, key=key)
        # Emptied at each commit: cheaper than a DELETE per batch.
        return sql + " ON COMMIT DELETE ROWS" if per_transaction else sql

    def copy_sql(self, table: str, columns: Sequence[str], options: str = "") -> str:
        names = ", ".join(self.quote_name(c) for c in columns)
        return f"COPY {table} ({names}) FROM STDIN{options}"

    def insert_rows(
        self,
        conn: Any,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Any],
        chunk: int,
        *,
        text: bool = False,
    ) -> None:
        """``COPY`` text sent in large blocks (psycopg 3's ``write_row`` sends each row on its own).

        :param text: the rows are ``COPY`` text lines already (built by the sink).
        """
        lines = list(rows) if text else [copy_line(row) for row in rows]
        self._copy_in(conn.cursor(), self.copy_sql(table, columns), lines)

    def load_csv(self, conn: Any, table: str, columns: Sequence[str], lines: Iterator[str]) -> None:
        cursor = conn.cursor()
        if not hasattr(cursor, "copy"):  # psycopg2
            cursor.close()
            super().load_csv(conn, table, columns, lines)
            return
        with cursor.copy(self.copy_sql(table, columns, " WITH (FORMAT csv, DELIMITER '|')")) as copy:
            _write_blocks(copy, lines, 20_000)
        cursor.execute(f"ANALYZE {table}")
        cursor.close()

    def open_copy(self, cursor: Any, table: str, columns: Sequence[str]) -> Any:
        if not hasattr(cursor, "copy"):  # psycopg2 cannot stream a COPY while it is built
            return None
        return cursor.copy(self.copy_sql(table, columns))

    def unique_violation(self, exc: BaseException) -> bool:
        # SQLSTATE 23505 (psycopg 3 ``sqlstate``, psycopg2 ``pgcode``).
        return (getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)) == "23505"

    @staticmethod
    def _copy_in(cursor: Any, sql: str, lines: list[str]) -> None:
        if hasattr(cursor, "copy"):  # psycopg 3
            with cursor.copy(sql) as copy:
                _write_blocks(copy, lines, 2_000)
        else:  # psycopg2
            cursor.copy_expert(sql, io.StringIO("".join(lines)))
        cursor.close()


class SqliteTableDialect(TableDialect):
    """SQLite: timestamps as ISO 8601 text, floats as ``REAL``, temporary tables in the ``temp`` schema."""

    names = ("sqlite",)
    hook_classes = ("SqliteHook",)
    name = "sqlite"
    types = {"text": "TEXT", "float": "REAL", "timestamp": "TEXT", "bool": "INTEGER", "int": "INTEGER"}

    def temporary(self, name: str) -> str:
        return f"temp.{name}"

    def column_types(self, conn: Any, table: str) -> dict[str, str] | None:
        if self.table_columns(conn, table) is None:
            return None
        schema, _, name = table.rpartition(".")
        cursor = conn.cursor()
        pragma = f"{self.quote(schema)}.table_info" if schema else "table_info"
        cursor.execute(f"PRAGMA {pragma}({self.quote(name)})")
        found = {str(row[1]).lower(): str(row[2] or "").lower() for row in cursor.fetchall()}
        cursor.close()
        return found


def _write_blocks(copy: Any, lines: Iterable[str], size: int) -> None:
    """``lines`` into a ``COPY`` stream, ``size`` lines per write (one wrapper call each)."""
    block: list[str] = []
    for line in lines:
        block.append(line)
        if len(block) >= size:
            copy.write("".join(block))
            block = []
    copy.write("".join(block))


#: The databases a target table can live in, in lookup order.
TABLE_DIALECTS: tuple[type[TableDialect], ...] = (PostgresTableDialect, SqliteTableDialect)


def _find(hook: DbApiHook) -> type[TableDialect] | None:
    name = getattr(hook, "dialect_name", None) or ""
    for cls in TABLE_DIALECTS:
        if name in cls.names:
            return cls
    hook_class = type(hook).__name__
    for cls in TABLE_DIALECTS:
        if hook_class.endswith(cls.hook_classes):
            return cls
    return None


def table_dialect(hook: DbApiHook) -> TableDialect:
    """The dialect of the database holding a target table.

    :raises UnsupportedDialectError: for a database other than PostgreSQL and SQLite, naming it.
    :raises TypeError: when ``hook`` is not a ``DbApiHook``.
    """
    cls = _find(hook)
    if cls is None:
        name = getattr(hook, "dialect_name", None) or type(hook).__name__
        supported = ", ".join(c.name for c in TABLE_DIALECTS)
        raise UnsupportedDialectError(
            f"database dialect {name!r} is not supported for the geocoded table: use one of {supported} "
            "(the table is upserted with INSERT ... ON CONFLICT DO UPDATE)"
        )
    return cls(hook)


def source_dialect(hook: DbApiHook) -> SourceDialect:
    """The dialect of a query's source database: a :class:`TableDialect` when the pipeline knows the
    database, else :class:`SourceDialect` (any ``DbApiHook``)."""
    cls = _find(hook)
    return cls(hook) if cls is not None else SourceDialect(hook)


def copy_value(value: Any) -> str:
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


def copy_line(row: Sequence[Any]) -> str:
    """One row in PostgreSQL's COPY text format (``\\N`` for NULL, backslash escapes), with its ``\\n``."""
    return "\t".join([copy_value(v) for v in row]) + "\n"
