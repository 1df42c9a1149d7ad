"""The target table checked before anything is billed: its columns fit what the sink writes.

:func:`check_target_table` is the one rule for "this table can take the results", used by the sink when it
starts writing and by the extract before any HERE job is created (so a table whose columns no longer fit
fails the run before the jobs are billed, not after). It only reads the catalogue: nothing is created or
changed.

What fits a column, by the kind the sink writes (:class:`~airflow_here_batch.tables.records.TargetColumn`)
and the database (types as the catalogue names them, lower case):

==========  ==============================================  ================================================
kind        PostgreSQL (``information_schema.data_type``)   SQLite (type affinity of the declared type)
==========  ==============================================  ================================================
text        text, character varying, character, citext      TEXT or BLOB/none (NUMERIC/INTEGER/REAL would
                                                            turn a recId ``007`` into ``7``)
float       double precision, real, numeric                 any but TEXT (a coordinate stored as text
                                                            compares as text)
timestamp   timestamp with / without time zone              any (written as ISO 8601 text)
==========  ==============================================  ================================================

MySQL/MariaDB (``information_schema.columns.data_type``): text fits ``varchar``, ``char``, ``text`` (tiny,
medium, long); float ``double``, ``float``, ``decimal``; timestamp ``datetime``, ``timestamp``; bool
``tinyint`` (``BOOLEAN``); int the integer types and ``decimal``.

A missing column the sink adds itself (:func:`added_by_sink`) is not a misfit: ``request_text`` and the
quality columns (``match_quality``, ``accepted``, ``query_score``, ``candidates``: columns added after
tables existed), and the column of an output column added since the table was made (text, NULL in the
rows written before; ``on_output_columns_change="resend"`` fills it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_here_batch.tables.dialect import table_dialect

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_here_batch.tables.records import TargetColumn

__all__ = [
    "ADDED_BY_SINK",
    "TargetTableError",
    "added_by_sink",
    "check_target_table",
    "column_fits",
    "misfits",
]


class TargetTableError(ValueError):
    """An existing target table lacks columns the results need, or has one of a type that cannot hold
    them."""


#: Columns the sink adds itself to an existing table that lacks them (added after tables existed).
ADDED_BY_SINK = frozenset({"request_text", "match_quality", "accepted", "query_score", "candidates"})


def added_by_sink(columns: Sequence[TargetColumn]) -> list[TargetColumn]:
    """The columns of ``columns`` (:func:`~airflow_here_batch.tables.records.target_columns`) the sink
    adds to an existing table that lacks them (``ALTER TABLE ... ADD COLUMN``): :data:`ADDED_BY_SINK`
    and each output column's own column (text; what an output column added to the job needs)."""
    from airflow_here_batch.tables.records import target_columns

    fixed = {c.name for c in target_columns(())}  # rec_id, status, position, match level, bookkeeping
    return [c for c in columns if c.name in ADDED_BY_SINK or (c.name not in fixed and c.kind == "text")]


def _sqlite_affinity(declared: str) -> str:
    """SQLite's type affinity of a declared type (sqlite.org/datatype3.html, 3.1)."""
    t = declared.upper()
    if "INT" in t:
        return "integer"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "text"
    if "BLOB" in t or not t:
        return "blob"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "real"
    return "numeric"


_MYSQL: Mapping[str, frozenset[str]] = {
    "text": frozenset({"varchar", "char", "text", "tinytext", "mediumtext", "longtext"}),
    "float": frozenset({"double", "float", "decimal"}),
    "timestamp": frozenset({"datetime", "timestamp"}),
    "bool": frozenset({"tinyint", "boolean", "bit"}),  # BOOLEAN is TINYINT(1) in the catalogue
    "int": frozenset({"bigint", "int", "integer", "mediumint", "smallint", "tinyint", "decimal"}),
}

_POSTGRES: Mapping[str, frozenset[str]] = {
    "text": frozenset({"text", "character varying", "character", "citext"}),
    "float": frozenset({"double precision", "real", "numeric"}),
    "timestamp": frozenset({"timestamp with time zone", "timestamp without time zone"}),
    "bool": frozenset({"boolean"}),
    "int": frozenset({"bigint", "integer", "smallint", "numeric"}),
}

#: Database -> (column kind, declared type) -> fits. A database whose catalogue gives no types ("")
#: is checked for names only.
_FITS: Mapping[str, Callable[[str, str], bool]] = {
    "postgresql": lambda kind, declared: declared in _POSTGRES.get(kind, frozenset({declared})),
    "mysql": lambda kind, declared: declared in _MYSQL.get(kind, frozenset({declared})),
    "sqlite": lambda kind, declared: {
        "text": _sqlite_affinity(declared) in ("text", "blob"),
        "float": _sqlite_affinity(declared) != "text",
        "bool": _sqlite_affinity(declared) != "text",
        "int": _sqlite_affinity(declared) != "text",
    }.get(kind, True),
}

_SHOWN = {
    "text": "TEXT",
    "float": "DOUBLE PRECISION (REAL on SQLite)",
    "timestamp": "TIMESTAMP",
    "bool": "BOOLEAN (INTEGER on SQLite)",
    "int": "BIGINT (INTEGER on SQLite)",
}


def column_fits(dialect_name: str, kind: str, declared: str) -> bool:
    """Whether a column declared ``declared`` can hold the values of ``kind`` the sink writes."""
    if not declared:
        return True
    rule = _FITS.get(dialect_name)
    return True if rule is None else rule(kind, declared.lower())


def misfits(dialect_name: str, existing: Mapping[str, str], columns: Sequence[TargetColumn]) -> list[str]:
    """What keeps an existing table (``{name: declared type}``) from taking ``columns`` (the sink's,
    :func:`~airflow_here_batch.tables.records.target_columns`): one phrase per problem, empty when it
    fits."""
    problems: list[str] = []
    added = {c.name for c in added_by_sink(columns)}
    missing = [c.name for c in columns if c.name not in existing and c.name not in added]
    if missing:
        problems.append(f"lacks the columns {missing} (add them: ALTER TABLE ... ADD COLUMN, type as below)")
    for column in columns:
        declared = existing.get(column.name)
        if declared is not None and not column_fits(dialect_name, column.kind, declared):
            problems.append(
                f"has column {column.name!r} of type {declared.upper()}, which cannot hold its values "
                f"({column.kind}: use {_SHOWN[column.kind]})"
            )
    return problems


def check_target_table(
    hook: DbApiHook, table: str, columns: Sequence[TargetColumn], conn: Any = None
) -> bool:
    """Check that ``table`` can take the sink's ``columns``
    (:func:`~airflow_here_batch.tables.records.target_columns` of the jobs' output columns). Reads only.

    :param conn: an open connection of ``hook`` to use (default: one opened and closed here).
    :returns: whether the table exists (a missing table is created by the sink: it fits).
    :raises TargetTableError: naming the table, each missing column and each column of a wrong type.
    :raises UnsupportedDialectError: for a database the sink cannot write to.
    """
    dialect = table_dialect(hook)
    own = conn is None
    conn = dialect.connect() if own else conn
    try:
        existing = dialect.column_types(conn, table)
    finally:
        if own:
            conn.close()
    if existing is None:
        return False
    problems = misfits(dialect.name, existing, columns)
    if problems:
        raise TargetTableError(
            f"table {table} {'; it '.join(problems)}: fix the table or write to a new one"
        )
    return True
