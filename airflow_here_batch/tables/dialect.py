"""The SQL of the table pipeline per database, built on common.sql's ``Dialect`` of the connection's hook.

One object per database connection says how to write SQL for it: identifiers quoted (one quoter, the
hook's ``escape_word_format``), the hook's ``placeholder``, the column types, the target table's
``CREATE TABLE`` and its upsert (``INSERT ... SELECT ... ON CONFLICT (rec_id) DO UPDATE``; MySQL/MariaDB
``ON DUPLICATE KEY UPDATE``), temporary tables, streaming cursors, bulk loading (``COPY`` on PostgreSQL,
``LOAD DATA LOCAL INFILE`` on MySQL/MariaDB, ``executemany`` elsewhere), and the one text form of a key
(:meth:`SourceDialect.key_text`, :meth:`SourceDialect.key_text_sql`).

* :func:`table_dialect` (a target table: PostgreSQL, SQLite, MySQL/MariaDB) raises
  :class:`UnsupportedDialectError` for any other database; :func:`source_dialect` (a query's source)
  falls back to :class:`SourceDialect` for any ``DbApiHook``.

The key text rule (issue 19 §1), in one place: a key column's value becomes its ``recId`` as the
database spells it as text, blanks trimmed (``TRIM(CAST(key AS TEXT))``; MySQL/MariaDB ``CONVERT(key USING
utf8mb4)``), computed in the query itself on the databases the pipeline writes to, so the pre-filter's
join, the ``recId`` sent to HERE, the sink's ``rec_id`` and the fingerprint lookup are the same text for
every type (a ``CHAR(8)`` key is sent and stored unpadded). Elsewhere (a source-only database) the value
is read in Python (:meth:`SourceDialect.key_text`). Keys that have no stable text are refused before
anything is written: approximate numbers (``REAL``, ``FLOAT``, ``DOUBLE``) and binary values (``BYTEA``,
``BLOB``, ``BINARY``). A ``TIMESTAMP WITH TIME ZONE`` key is spelt in the connection's time zone: keep
it fixed, or cast the key in the query.
* Another target database is one more :class:`TableDialect` subclass in :data:`TABLE_DIALECTS` (its
  types, its upsert shape and temporary tables where they differ; the hook brings quoting and
  placeholders).
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import errno
import io
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.sql.dialects.dialect import Dialect

from airflow_here_batch.tables.records import MappingError, plain_name

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_here_batch.tables.records import TargetColumn

__all__ = [
    "TABLE_DIALECTS",
    "MySqlTableDialect",
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
    """The target table's database is not one the pipeline writes to (PostgreSQL, SQLite, MySQL/MariaDB)."""


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

    def concat(self, parts: Sequence[str]) -> str:
        """SQL joining the text ``parts`` (``a || b``; MySQL/MariaDB ``CONCAT(a, b)``)."""
        return " || ".join(parts)

    # --- the key's text: one rule (module docstring) ----------------------------------------------

    def key_text_sql(self, expression: str) -> str | None:
        """SQL of the text of a key ``expression`` (a quoted column), or ``None`` when the database's SQL
        is not known (then :meth:`key_text` spells the value in Python; no pre-filter joins on it)."""
        return None

    def key_text(self, value: Any, text: Any = None, *, column: str = "key") -> str:
        """The ``recId`` of one row: ``text`` (the :meth:`key_text_sql` column) or, without it, the raw
        ``value`` spelt as the database would (``Decimal`` with its scale, ``date``/``datetime`` in ISO
        form with a space, ``bool`` as ``true``/``false``), blanks trimmed.

        :param value: the key column's raw value as the driver returns it (never ``None``: the caller
            refuses NULL keys).
        :raises MappingError: for a value of a type that cannot be a key (approximate numbers, binary),
            naming ``column`` and the fix.
        """
        if isinstance(value, float):
            raise MappingError(
                f"key column {column!r} holds approximate numbers ({value!r}): a REAL/FLOAT/DOUBLE value has "
                "no stable text for recId; cast the key in the query (CAST(... AS DECIMAL(p, s)) or AS "
                "a text type) or choose another key column",
                column=column,
            )
        if isinstance(value, (bytes, bytearray, memoryview)):
            raise MappingError(
                f"key column {column!r} holds binary values: a BYTEA/BLOB/BINARY value cannot be a recId; "
                "give the query a text key (e.g. encode(key, 'hex') on PostgreSQL, HEX(key) on MySQL) or "
                "choose another key column",
                column=column,
            )
        if text is None:
            text = _python_key_text(value)
        elif text.__class__ is not str:
            text = text.decode() if isinstance(text, (bytes, bytearray)) else str(text)
        return text.strip(" ")

    # --- reading ----------------------------------------------------------------------------------

    def connect(self) -> Any:
        """A new DB-API connection of the hook (``hook.get_conn()``; MySQL/MariaDB adds what the
        pipeline needs, :meth:`MySqlTableDialect.connect`)."""
        return self.hook.get_conn()

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
        return self._upsert(table, columns, select, (), "")

    def keep_upsert_sql(
        self, table: str, columns: Sequence[str], select: str, *, kept: Sequence[str], unless_changed: str
    ) -> str:
        """:meth:`upsert_sql` that keeps the ``kept`` columns of an existing row while its
        ``unless_changed`` column is unchanged (else sets them NULL): the review list keeps a person's
        choice for a record whose request is the same. ``kept`` columns are not in ``columns``.
        """
        return self._upsert(table, columns, select, kept, unless_changed)

    def _upsert(
        self, table: str, columns: Sequence[str], select: str, kept: Sequence[str], unless_changed: str
    ) -> str:
        """The one upsert statement of both methods above (``ON CONFLICT``)."""
        names = [self.quote_name(c) for c in columns]
        key = self.quote_name("rec_id")
        updates = [f"{n} = excluded.{n}" for n in names if n != key]
        same = self.quote_name(unless_changed) if kept else ""
        for column in kept:
            k = self.quote_name(column)
            updates.append(f"{k} = CASE WHEN r.{same} = excluded.{same} THEN r.{k} END")
        alias = " AS r" if kept else ""
        return (
            f"INSERT INTO {self.quote_name(table)}{alias} ({', '.join(names)}) {select} "
            f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)}"
        )

    def text(self, expression: str) -> str:
        """``expression`` cast to text."""
        return f"CAST({expression} AS TEXT)"

    def key_text_sql(self, expression: str) -> str | None:
        return f"TRIM({self.text(expression)})"

    def raw_text_sql(self, alias: str, columns: Sequence[str]) -> str:
        """SQL for :meth:`~airflow_here_batch.tables.records.RecordMapping.raw_text` over ``alias``'s
        columns: each value as text (NULL as empty), joined by ``\\x1f``.

        ``CAST(... AS TEXT)`` may spell a non-text value differently from Python (``1.0`` vs ``1``): such a
        row is only read back and fingerprinted, never wrongly skipped.
        """
        parts = [f"COALESCE({self.text(f'{alias}.{self.quote(c)}')}, '')" for c in columns]
        if not parts:
            return "''"
        joined: list[str] = []
        for part in parts:
            joined += [part, "'\x1f'"]
        return self.concat(joined[:-1])

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

    def rows_loaded(self, cursor: Any) -> int | None:
        """Rows the last :meth:`open_copy` load on ``cursor`` wrote, as the database confirms them
        (``None``: unknown)."""
        return cursor.rowcount

    def rows_upserted(self, cursor: Any, staged: int) -> int | None:
        """Rows the upsert just run on ``cursor`` wrote (``staged``: the rows it read), as the database
        confirms them (``None``: unknown)."""
        return cursor.rowcount

    def _schema_column_types(self, conn: Any, table: str, current_schema: str) -> dict[str, str] | None:
        """:meth:`column_types` from ``information_schema.columns`` (``current_schema``: the SQL naming the
        connection's schema when ``table`` names none)."""
        if self.table_columns(conn, table) is None:
            return None
        schema, _, name = table.rpartition(".")
        ph = self.placeholder
        cursor = conn.cursor()
        cursor.execute(
            f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = {ph} AND "
            f"table_schema = {ph if schema else current_schema}",
            (name, schema) if schema else (name,),
        )
        found = {str(n).lower(): str(t).lower() for n, t in cursor.fetchall()}
        cursor.close()
        conn.rollback()
        return found


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
        return self._schema_column_types(conn, table, "current_schema()")

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


class MySqlTableDialect(TableDialect):
    """MySQL and MariaDB (``MySqlHook`` of ``apache-airflow-providers-mysql``): ``ON DUPLICATE KEY UPDATE``,
    backquoted names (the hook's ``escape_word_format``), ``CONCAT``, ``LOAD DATA LOCAL INFILE`` loading.

    Types: ``rec_id`` is ``VARCHAR(512)`` (an InnoDB key cannot be a whole ``TEXT``; 512 characters is
    HERE's recId limit and 2,048 bytes in utf8mb4, under InnoDB's 3,072-byte key limit), text columns
    ``TEXT``, floats ``DOUBLE``, ``geocoded_at`` ``DATETIME(6)`` in UTC (not ``TIMESTAMP``: no session
    time zone, no 2038 limit). Tables are utf8mb4 with the binary collation ``utf8mb4_bin``: keys that
    differ only in case or accents are two keys, and a changed letter case is a change (the server's
    default collation is case-insensitive).

    Loading (the sink's batches, a first load straight into the table): ``LOAD DATA LOCAL INFILE`` of
    tab-separated text (the same escapes as PostgreSQL's ``COPY``) written to a private folder, the only
    one the connection may send (``allow_local_infile_in_path`` of mysql-connector-python, chosen with the
    connection extra ``{"client": "mysql-connector-python"}``). With ``mysqlclient`` (no such
    restriction: a server could ask for any local file), or a server with ``local_infile`` off, rows go
    as multi-row ``INSERT`` statements (``executemany``).
    """

    names = ("mysql", "mariadb")
    hook_classes = ("MySqlHook",)
    name = "mysql"
    types = {
        "text": "TEXT", "float": "DOUBLE", "timestamp": "DATETIME(6)", "bool": "BOOLEAN", "int": "BIGINT"
    }
    copy = True
    #: ``rec_id`` (and ``request_fingerprint``, indexed) as bounded text; see the class docstring.
    key_type: ClassVar[str] = "VARCHAR(512)"
    fingerprint_type: ClassVar[str] = "VARCHAR(64)"
    table_options: ClassVar[str] = " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    #: MySQL error numbers that mean ``LOAD DATA LOCAL`` is not allowed (client or server side).
    no_local_infile: ClassVar[frozenset[int]] = frozenset({1148, 2068, 3948, 3950, 4166})

    def __init__(self, hook: DbApiHook, **kwargs: Any) -> None:
        super().__init__(hook, **kwargs)
        #: Whether the connections of :meth:`connect` may ``LOAD DATA LOCAL INFILE`` (found out on first use).
        self.local_infile = False
        #: Rows the last :meth:`open_copy` load wrote (:meth:`rows_loaded`).
        self.last_loaded: int | None = None

    # --- connections ------------------------------------------------------------------------------

    def connect(self) -> Any:
        """A connection whose cursors are buffered (the pipeline runs a statement while an earlier
        result is unread) and, with mysql-connector-python, allowed to send files from the private load
        folder only. Other clients: ``hook.get_conn()``, rows inserted."""
        hook: Any = self.hook
        airflow_conn = hook.connection or hook.get_connection(hook.get_conn_id())
        client = airflow_conn.extra_dejson.get("client", "mysqlclient")
        builder = getattr(hook, "_get_conn_config_mysql_connector_python", None)
        if client != "mysql-connector-python" or builder is None:
            self.local_infile = False
            return hook.get_conn()
        import mysql.connector

        config = dict(builder(airflow_conn))
        config.pop("allow_local_infile", None)
        config.update(buffered=True, allow_local_infile_in_path=_load_folder(), charset="utf8mb4")
        self.local_infile = True
        return mysql.connector.connect(**config)

    def column_types(self, conn: Any, table: str) -> dict[str, str] | None:
        # information_schema.columns.data_type: 'varchar', 'text', 'double', 'datetime', ...
        return self._schema_column_types(conn, table, "DATABASE()")

    def stream_cursor(self, conn: Any) -> Any:
        """An unbuffered cursor (rows read as fetched): mysql-connector-python's ``buffered=False``,
        mysqlclient's ``SSCursor``."""
        module = type(conn).__module__
        if module.startswith("mysql.connector"):
            return conn.cursor(buffered=False)
        if module.startswith("MySQLdb"):
            import MySQLdb.cursors

            return conn.cursor(MySQLdb.cursors.SSCursor)
        return conn.cursor()

    # --- SQL ----------------------------------------------------------------------------------------

    def concat(self, parts: Sequence[str]) -> str:
        # ``||`` is OR in MySQL's default SQL mode.
        return f"CONCAT({', '.join(parts)})"

    def text(self, expression: str) -> str:
        # utf8mb4 with the binary collation: compared byte for byte with the table's columns, whatever
        # the source column's character set and collation.
        return f"CONVERT({expression} USING utf8mb4) COLLATE utf8mb4_bin"

    def timestamp(self, value: datetime) -> Any:
        """UTC, without a zone (``DATETIME``)."""
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def column_sql(self, column: TargetColumn, *, key: bool = True) -> str:
        if column.name == "rec_id":
            sql = f"{self.quote_name(column.name)} {self.key_type}"
            return sql + (" PRIMARY KEY" if key else "")
        if column.name in ("request_fingerprint", "fingerprint"):
            return f"{self.quote_name(column.name)} {self.fingerprint_type}"
        return super().column_sql(column, key=key)

    def create_table_sql(self, table: str, columns: Sequence[TargetColumn]) -> list[str]:
        """One ``CREATE TABLE IF NOT EXISTS`` with the fingerprint index inside it (MySQL has no ``CREATE
        INDEX IF NOT EXISTS``)."""
        body = ", ".join(self.column_sql(c) for c in columns)
        bare = table.split(".")[-1]
        index = self.quote_name(f"{bare}_fingerprint_idx"[:63])
        return [
            f"CREATE TABLE IF NOT EXISTS {self.quote_name(table)} ({body}, "
            f"INDEX {index} ({self.quote_name('request_fingerprint')})){self.table_options}"
        ]

    def upsert_sql(self, table: str, columns: Sequence[str], select: str) -> str:
        """``INSERT INTO table (columns) <select> ON DUPLICATE KEY UPDATE c = VALUES(c), ...`` (``VALUES()``
        works on MariaDB and MySQL; MySQL 8's row alias does not exist on MariaDB)."""
        return self._upsert(table, columns, select, (), "")

    def _upsert(
        self, table: str, columns: Sequence[str], select: str, kept: Sequence[str], unless_changed: str
    ) -> str:
        """:meth:`TableDialect._upsert` with ``ON DUPLICATE KEY UPDATE``: the ``kept`` columns are set
        first, as MySQL applies the assignments left to right (a later one sees the earlier ones)."""
        names = [self.quote_name(c) for c in columns]
        key = self.quote_name("rec_id")
        target = self.quote_name(table)  # the row's own columns, named with the table (the SELECT has them)
        same = self.quote_name(unless_changed) if kept else ""
        updates = [
            f"{self.quote_name(c)} = CASE WHEN {target}.{same} = VALUES({same}) "
            f"THEN {target}.{self.quote_name(c)} END"
            for c in kept
        ]
        updates += [f"{n} = VALUES({n})" for n in names if n != key]
        return (
            f"INSERT INTO {self.quote_name(table)} ({', '.join(names)}) {select} "
            f"ON DUPLICATE KEY UPDATE {', '.join(updates)}"
        )

    def drop_temporary_sql(self, name: str) -> str:
        # TEMPORARY: never a real table of the same name.
        return f"DROP TEMPORARY TABLE IF EXISTS {self.temporary(name)}"

    def create_temporary_sql(
        self, name: str, columns: Sequence[TargetColumn], *, key: bool = True, per_transaction: bool = False
    ) -> str:
        return super().create_temporary_sql(name, columns, key=key) + self.table_options

    # --- loading ----------------------------------------------------------------------------------

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
        """``LOAD DATA LOCAL INFILE`` of the rows (a key already in ``table`` is replaced: the row carries
        every column, as the upsert would write it), else multi-row ``INSERT``.

        :param text: the rows are ``COPY`` text lines already (built by the sink).
        """
        lines = rows if text else (copy_line(row) for row in rows)
        cursor = conn.cursor()
        try:
            with self.open_copy(cursor, table, columns) as load:
                _write_blocks(load, lines, 2_000)
        finally:
            with contextlib.suppress(Exception):
                cursor.close()

    def load_csv(self, conn: Any, table: str, columns: Sequence[str], lines: Iterator[str]) -> None:
        rows = csv.reader(lines, delimiter="|")
        self.insert_rows(conn, table, columns, (copy_line(r) for r in rows), 10_000, text=True)

    @contextlib.contextmanager
    def open_copy(self, cursor: Any, table: str, columns: Sequence[str]) -> Iterator[Any]:
        """A stream to ``.write()`` ``COPY`` text into, loaded into ``table`` on ``cursor`` (no commit):
        ``LOAD DATA LOCAL INFILE ... REPLACE`` reading a named pipe in the private folder while the rows
        are written (the server loads one block while the caller builds the next, as PostgreSQL's
        ``COPY``); the statement's error, if any, is raised when the block ends. Without ``LOAD DATA
        LOCAL`` (refused by the server, another client): multi-row ``INSERT`` statements of the rows
        (then a key already there fails: :meth:`unique_violation`)."""
        self.last_loaded = None
        if self.local_infile and hasattr(os, "mkfifo"):
            started = self._start_load(cursor, table, columns)
            if started is not None:
                stream, finish = started
                counted = _LineCounter(stream)
                try:
                    yield counted
                except BaseException:
                    finish(failed=True)
                    raise
                finish(failed=False)
                self.last_loaded = counted.lines
                return
        fd, path = tempfile.mkstemp(suffix=".tsv", dir=_load_folder())
        try:
            with open(fd, "w", encoding="utf-8", newline="") as stream:
                counted = _LineCounter(stream)
                yield counted
            insert = self.insert_sql(table, columns)
            with open(path, encoding="utf-8", newline="") as stream:
                lines = text_lines(stream)
                while block := [copy_fields(line) for _, line in zip(range(10_000), lines, strict=False)]:
                    cursor.executemany(insert, block)
            self.last_loaded = counted.lines
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def load_data_sql(self, table: str, columns: Sequence[str]) -> str:
        """``LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE table ... (columns)`` of ``COPY`` text (tab,
        backslash escapes, ``\\N``: MySQL's defaults, spelt out)."""
        names = ", ".join(self.quote_name(c) for c in columns)
        return (
            f"LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE {table} CHARACTER SET utf8mb4 "
            f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({names})"
        )

    def _start_load(self, cursor: Any, table: str, columns: Sequence[str]) -> tuple[Any, Any] | None:
        """``LOAD DATA`` of a new named pipe, run by a thread on ``cursor``: the pipe's writing end and
        ``finish(failed=...)`` (closes it, waits for the statement, raises its error), or ``None`` when the
        server refuses ``LOAD DATA LOCAL`` (then :attr:`local_infile` is off)."""
        path = os.path.join(_load_folder(), f"{uuid.uuid4().hex}.pipe")
        os.mkfifo(path, 0o600)
        outcome: list[BaseException] = []

        def load() -> None:
            try:
                cursor.execute(self.load_data_sql(table, columns), (path,))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=load, name="here-batch-load-data", daemon=True)
        thread.start()
        try:
            fd = None
            while fd is None:  # until the driver opens the pipe, or the statement fails first
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                        raise
                    thread.join(0.001)
                    if not thread.is_alive():
                        break
        finally:
            os.unlink(path)
        if fd is None:
            thread.join()
            error = outcome[0] if outcome else RuntimeError("LOAD DATA ended without reading its data")
            if getattr(error, "errno", None) in self.no_local_infile:
                self.local_infile = False
                return None
            raise error
        os.set_blocking(fd, True)
        stream = open(fd, "w", encoding="utf-8", newline="", buffering=1 << 20)  # noqa: SIM115 - finish closes

        def finish(*, failed: bool) -> None:
            try:
                stream.close()  # end of data: the server finishes the statement
            except OSError:
                if not failed and not outcome:
                    thread.join()
                    if not outcome:
                        raise
            thread.join()
            if outcome and not failed:
                raise outcome[0]

        return stream, finish

    def unique_violation(self, exc: BaseException) -> bool:
        return getattr(exc, "errno", None) == 1062  # ER_DUP_ENTRY

    def rows_loaded(self, cursor: Any) -> int | None:
        # MySQL's affected rows count a replaced row twice (deleted, inserted): the lines the statement
        # took without an error instead.
        return self.last_loaded

    def rows_upserted(self, cursor: Any, staged: int) -> int | None:
        # ON DUPLICATE KEY UPDATE's affected rows count an updated row twice and an unchanged one not at
        # all: the statement succeeded, so every staged row was inserted or updated.
        return staged


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
TABLE_DIALECTS: tuple[type[TableDialect], ...] = (PostgresTableDialect, SqliteTableDialect, MySqlTableDialect)


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

    :raises UnsupportedDialectError: for a database other than PostgreSQL, SQLite and MySQL/MariaDB,
        naming it (a source query still works on any ``DbApiHook``: :func:`source_dialect`).
    :raises TypeError: when ``hook`` is not a ``DbApiHook``.
    """
    cls = _find(hook)
    if cls is None:
        name = getattr(hook, "dialect_name", None) or type(hook).__name__
        supported = ", ".join(c.name for c in TABLE_DIALECTS)
        raise UnsupportedDialectError(
            f"database dialect {name!r} is not supported for the geocoded table: use one of {supported} "
            "(the geocoded table is written with each one's upsert; any common.sql database works as the "
            "source of the query)"
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
    if value is True or value is False:  # what every target reads as a boolean (MySQL: no 't'/'f')
        return "1" if value else "0"
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


def copy_fields(line: str) -> tuple[str | None, ...]:
    """One ``COPY`` text line back into its values (``\\N`` -> ``None``, escapes undone): the inverse of
    :func:`copy_line`, for databases that insert rows."""
    fields: list[str | None] = []
    for cell in line.rstrip("\n").split("\t"):
        if cell == "\\N":
            fields.append(None)
        elif "\\" in cell:
            fields.append(_UNESCAPE_RE.sub(lambda m: _UNESCAPE[m.group(1)], cell))
        else:
            fields.append(cell)
    return tuple(fields)


_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_UNESCAPE_RE = re.compile(r"\\(\\|t|n|r)")


class _LineCounter:
    """A text stream's ``write``, counting the ``\\n`` written (one per ``COPY`` text line)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return self.stream.write(text)


def text_lines(stream: Any, size: int = 1 << 20) -> Iterator[str]:
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


def _python_key_text(value: Any) -> str:
    """A key value as text in Python, spelt as PostgreSQL's ``CAST(... AS TEXT)`` would (the rule of the
    databases whose SQL is not known)."""
    if value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


_LOAD_FOLDER: list[str] = []


def _load_folder() -> str:
    """This process's private folder (mode 0700) of files for ``LOAD DATA LOCAL INFILE``, removed at exit:
    the only folder a MySQL connection of the pipeline may send files from."""
    if not _LOAD_FOLDER:
        folder = tempfile.mkdtemp(prefix="here_batch_load_")
        atexit.register(shutil.rmtree, folder, True)
        _LOAD_FOLDER.append(folder)
    return _LOAD_FOLDER[0]
