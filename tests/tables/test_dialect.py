"""The SQL of the table pipeline per database (tables/dialect.py), built on real hooks: shapes for
PostgreSQL, SQLite and MariaDB/MySQL, the statements run for real, an unsupported target refused by name,
the one text form of a key."""

from __future__ import annotations

import io
import json
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.dialect import (
    MySqlTableDialect,
    PostgresTableDialect,
    SourceDialect,
    SqliteTableDialect,
    TableDialect,
    UnsupportedDialectError,
    copy_fields,
    copy_line,
    source_dialect,
    table_dialect,
)
from airflow_here_batch.tables.records import MappingError, TargetColumn, target_columns
from tests.tables.databases import Database, any_db, mysql_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]
DIALECT_CLASSES = {
    "postgresql": PostgresTableDialect,
    "sqlite": SqliteTableDialect,
    "mysql": MySqlTableDialect,
}


def test_each_database_gets_its_dialect_with_the_hooks_placeholder(any_db: Database) -> None:  # noqa: F811
    dialect = table_dialect(get_db_hook(any_db.conn_id))
    expected = DIALECT_CLASSES[any_db.dialect]
    assert type(dialect) is expected and dialect.name == any_db.dialect
    assert dialect.placeholder == any_db.ph == dialect.hook.placeholder
    assert type(source_dialect(get_db_hook(any_db.conn_id))) is expected


def test_the_placeholder_follows_the_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    value = {"conn_type": "sqlite", "host": f"{tmp_path}/x.db", "extra": {"placeholder": "%s"}}
    monkeypatch.setenv("AIRFLOW_CONN_HERE_T_SQLITE_PH", json.dumps(value))
    assert table_dialect(get_db_hook("here_t_sqlite_ph")).placeholder == "%s"


def test_one_quoter_for_names_and_any_identifier(sqlite_db: Database) -> None:  # noqa: F811
    dialect = table_dialect(get_db_hook(sqlite_db.conn_id))
    assert dialect.quote_name("geo.addresses") == '"geo"."addresses"'
    assert dialect.quote_name("rec_id") == '"rec_id"'
    for bad in ("a; DROP TABLE x", 'a"b', "a.b.c", ""):
        with pytest.raises(ValueError, match="not a plain table/column name"):
            dialect.quote_name(bad)
    # A source's result column may be named anything: quoted, the quote doubled.
    assert dialect.quote('we"ird name') == '"we""ird name"'
    # common.sql's own statements quote through it too.
    assert dialect.insert_sql("t", ["a", "select"]) == 'INSERT INTO t ("a", "select") VALUES (?,?)'


def test_postgresql_shapes(postgres_db: Database) -> None:  # noqa: F811
    dialect = table_dialect(get_db_hook(postgres_db.conn_id))
    create, index = dialect.create_table_sql("geo", target_columns(OUT))
    assert create.startswith('CREATE TABLE IF NOT EXISTS "geo" ("rec_id" TEXT PRIMARY KEY, "status" TEXT, ')
    assert '"lat" DOUBLE PRECISION' in create and '"geocoded_at" TIMESTAMP WITH TIME ZONE' in create
    assert '"accepted" BOOLEAN' in create and '"candidates" BIGINT' in create
    assert index == 'CREATE INDEX IF NOT EXISTS "geo_fingerprint_idx" ON "geo" (request_fingerprint)'
    columns = [TargetColumn("rec_id"), TargetColumn("lat", "float")]
    assert dialect.create_temporary_sql("stage", columns, key=False, per_transaction=True) == (
        'CREATE TEMPORARY TABLE stage ("rec_id" TEXT, "lat" DOUBLE PRECISION) ON COMMIT DELETE ROWS'
    )
    assert dialect.create_temporary_sql("fp", columns) == (
        'CREATE TEMPORARY TABLE fp ("rec_id" TEXT PRIMARY KEY, "lat" DOUBLE PRECISION)'
    )
    assert dialect.drop_temporary_sql("stage") == "DROP TABLE IF EXISTS stage"
    assert dialect.copy and dialect.temporary_clears_on_commit
    assert dialect.ordered("x") == 'x COLLATE "C"'
    now = datetime.now(timezone.utc)
    assert dialect.timestamp(now) is now


def test_sqlite_shapes(sqlite_db: Database) -> None:  # noqa: F811
    dialect = table_dialect(get_db_hook(sqlite_db.conn_id))
    create, _ = dialect.create_table_sql("geo", target_columns(OUT))
    assert '"lat" REAL' in create and '"geocoded_at" TEXT' in create
    assert '"accepted" INTEGER' in create and '"candidates" INTEGER' in create
    columns = [TargetColumn("rec_id"), TargetColumn("lat", "float")]
    assert dialect.create_temporary_sql("stage", columns, key=False, per_transaction=True) == (
        'CREATE TEMPORARY TABLE stage ("rec_id" TEXT, "lat" REAL)'
    )
    assert dialect.drop_temporary_sql("stage") == "DROP TABLE IF EXISTS temp.stage"
    assert not dialect.copy and not dialect.temporary_clears_on_commit
    assert dialect.ordered("x") == "x"
    now = datetime(2025, 7, 1, 2, tzinfo=timezone.utc)
    assert dialect.timestamp(now) == "2025-07-01T02:00:00+00:00"
    assert dialect.upsert_sql("geo", ["rec_id", "lat"], "SELECT rec_id, lat FROM s WHERE true") == (
        'INSERT INTO "geo" ("rec_id", "lat") SELECT rec_id, lat FROM s WHERE true '
        'ON CONFLICT ("rec_id") DO UPDATE SET "lat" = excluded."lat"'
    )
    kept = dialect.keep_upsert_sql(
        "r", ["rec_id", "fp"], "SELECT rec_id, fp FROM s WHERE true", kept=["choice"], unless_changed="fp"
    )
    assert kept == (
        'INSERT INTO "r" AS r ("rec_id", "fp") SELECT rec_id, fp FROM s WHERE true ON CONFLICT ("rec_id") '
        'DO UPDATE SET "fp" = excluded."fp", "choice" = CASE WHEN r."fp" = excluded."fp" THEN r."choice" END'
    )


def test_mysql_shapes(mysql_db: Database) -> None:  # noqa: F811
    """MariaDB/MySQL: backquotes, a bounded key (an InnoDB key cannot be a whole TEXT), the binary
    collation, the index inside CREATE TABLE, ON DUPLICATE KEY UPDATE, CONCAT, TEMPORARY drops."""
    dialect = table_dialect(get_db_hook(mysql_db.conn_id))
    (create,) = dialect.create_table_sql("geo", target_columns(OUT))
    assert create.startswith(
        "CREATE TABLE IF NOT EXISTS `geo` (`rec_id` VARCHAR(512) PRIMARY KEY, `status` TEXT"
    )
    assert "`lat` DOUBLE" in create and "`geocoded_at` DATETIME(6)" in create
    assert "`request_fingerprint` VARCHAR(64)" in create
    assert create.endswith(
        ", INDEX `geo_fingerprint_idx` (`request_fingerprint`)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
    columns = [TargetColumn("rec_id"), TargetColumn("lat", "float")]
    assert dialect.create_temporary_sql("stage", columns, key=False, per_transaction=True) == (
        "CREATE TEMPORARY TABLE stage (`rec_id` VARCHAR(512), `lat` DOUBLE) "
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
    assert dialect.drop_temporary_sql("stage") == "DROP TEMPORARY TABLE IF EXISTS stage"
    assert dialect.copy and not dialect.temporary_clears_on_commit
    assert dialect.upsert_sql("geo", ["rec_id", "lat"], "SELECT rec_id, lat FROM s WHERE true") == (
        "INSERT INTO `geo` (`rec_id`, `lat`) SELECT rec_id, lat FROM s WHERE true "
        "ON DUPLICATE KEY UPDATE `lat` = VALUES(`lat`)"
    )
    assert dialect.concat(["a", "b"]) == "CONCAT(a, b)"
    assert dialect.quote("we`ird") == "`we``ird`"
    at = datetime(2025, 7, 1, 4, tzinfo=timezone.utc).astimezone()
    assert dialect.timestamp(at) == datetime(2025, 7, 1, 4)  # UTC, no zone (DATETIME)


def test_create_stage_load_and_upsert_run_for_real(any_db: Database) -> None:  # noqa: F811
    """The statements of each dialect against its database: a rerun replaces rows, never duplicates."""
    dialect = table_dialect(get_db_hook(any_db.conn_id))
    columns = target_columns(OUT)
    conn = dialect.connect()
    try:
        cursor = conn.cursor()
        for statement in dialect.create_table_sql("geo", columns):
            cursor.execute(statement)
        stage = [TargetColumn("rec_id"), TargetColumn("status"), TargetColumn("lat", "float")]
        cursor.execute(dialect.create_temporary_sql("stage", stage, key=False, per_transaction=True))
        upsert = dialect.upsert_sql(
            "geo", ["rec_id", "status", "lat"], "SELECT rec_id, status, lat FROM stage WHERE true"
        )
        for rows in ([("1", "ok", 1.0), ("2", "ok", 2.0)], [("2", "failed", None), ("3", "ok", 3.0)]):
            dialect.insert_rows(conn, "stage", ["rec_id", "status", "lat"], rows, 1)
            cursor.execute(upsert)
            if not dialect.temporary_clears_on_commit:
                cursor.execute("DELETE FROM stage")
            conn.commit()
        assert dialect.table_columns(conn, "geo") == [c.name for c in columns]
        assert dialect.table_columns(conn, "nowhere") is None
        cursor.close()
    finally:
        conn.close()
    assert any_db.query("SELECT rec_id, status, lat FROM geo ORDER BY rec_id") == [
        ("1", "ok", 1.0),
        ("2", "failed", None),
        ("3", "ok", 3.0),
    ]


def test_raw_text_sql_is_the_mappings_raw_text(any_db: Database) -> None:  # noqa: F811
    dialect = table_dialect(get_db_hook(any_db.conn_id))
    assert isinstance(dialect, TableDialect)
    sql = dialect.raw_text_sql("s", ["a", 'b"c'])
    odd = dialect.quote('b"c')
    query = f"SELECT {sql} FROM (SELECT 'x' AS a, NULL AS {odd}) s"
    assert any_db.query(query) == [("x\x1f",)]


def test_an_unsupported_target_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A database the pipeline cannot write the table to (here SQL Server, by its connection URI) is
    refused naming it; as a query's source it still gets the generic dialect."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    class SqlServerHook(DbApiHook):
        conn_name_attr = "mssql_conn_id"
        default_conn_name = "here_t_mssql"

    monkeypatch.setenv("AIRFLOW_CONN_HERE_T_MSSQL", "mssql://user:pw@db.example:1433/geo")
    hook = SqlServerHook()
    assert hook.dialect_name == "mssql"
    supported = r"'mssql' is not supported .*postgresql, sqlite, mysql"
    with pytest.raises(UnsupportedDialectError, match=supported):
        table_dialect(hook)
    source = source_dialect(hook)
    assert type(source) is SourceDialect and source.quote("id") == '"id"'


def test_copy_text_lines() -> None:
    from airflow_here_batch.tables.dialect import text_lines as _lines

    assert copy_line(["a", None, 1.5, "tab\there", "back\\slash", "new\nline"]) == (
        "a\t\\N\t1.5\ttab\\there\tback\\\\slash\tnew\\nline\n"
    )
    text = "a|1\nb|\x0bx\u2028y\r\nc|3"  # only \n ends a line (str.splitlines would split at \x0b, \u2028)
    assert list(_lines(io.StringIO(text), size=4)) == ["a|1\n", "b|\x0bx\u2028y\r\n", "c|3"]


def test_copy_fields_undo_copy_line() -> None:
    row = ("a", None, "1.5", "tab\there", "back\\slash", "new\nline", "cr\rx", "\\N")
    assert copy_fields(copy_line(row)) == row


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("A1      ", "A1"),  # CHAR(n) padding
        ("  both ", "both"),
        (7, "7"),
        (-9007199254740993, "-9007199254740993"),
        (Decimal("1.50"), "1.50"),  # the scale is kept, as the databases spell it
        (Decimal("1E+2"), "100"),
        (True, "true"),
        (uuid.UUID("6f1c6a6e-8d0a-4a8e-9d3e-0b1f5b2f2a11"), "6f1c6a6e-8d0a-4a8e-9d3e-0b1f5b2f2a11"),
        (date(2025, 1, 2), "2025-01-02"),
        (datetime(2025, 1, 2, 3, 4, 5, 500000), "2025-01-02 03:04:05.500000"),
    ],
)
def test_a_key_without_known_sql_is_spelt_in_python(value: object, text: str) -> None:
    """A source-only database (no key_text_sql): the value spelt as PostgreSQL's text would be."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    class OtherHook(DbApiHook):
        conn_name_attr = "other_conn_id"

    dialect = SourceDialect(OtherHook())
    assert dialect.key_text_sql('"id"') is None
    assert dialect.key_text(value, column="id") == text


def test_the_key_text_sql_is_the_text_of_a_table_dialect(any_db: Database) -> None:  # noqa: F811
    dialect = table_dialect(get_db_hook(any_db.conn_id))
    sql = dialect.key_text_sql("k")
    assert sql is not None and sql.startswith("TRIM(")
    # The text read from the database wins over the raw value (already the one text).
    assert dialect.key_text(12, "12 ", column="id") == "12"


@pytest.mark.parametrize(("value", "kind"), [(1.5, "approximate numbers"), (b"\x00", "binary values")])
def test_a_key_type_without_a_stable_text_is_refused(value: object, kind: str) -> None:
    dialect = SourceDialect(get_db_hook("here_batch_sqlite_default"))
    with pytest.raises(MappingError, match=f"key column 'id' holds {kind}") as caught:
        dialect.key_text(value, "1.5", column="id")
    assert caught.value.column == "id"


def test_mysql_loads_through_a_pipe_or_inserts_when_load_data_is_refused(mysql_db: Database) -> None:  # noqa: F811
    """The pipeline's connection loads with LOAD DATA LOCAL INFILE (a named pipe in the private folder);
    a connection that may not (the hook's own, as with mysqlclient, or a server with local_infile off)
    is refused by the server, and the rows are inserted instead: the same rows either way."""
    dialect = table_dialect(get_db_hook(mysql_db.conn_id))
    assert isinstance(dialect, MySqlTableDialect)
    rows = [("1", "tab\there", 1.5), ("2", None, None), ("3", "back\\slash", -0.25)]
    for name, conn in (("piped", dialect.connect()), ("inserted", dialect.hook.get_conn())):
        loads = name == "piped"
        dialect.local_infile = True  # the hook's connection: tried, refused by the server
        cursor = conn.cursor()
        cursor.execute(f"CREATE TABLE {name} (rec_id VARCHAR(8) PRIMARY KEY, label TEXT, lat DOUBLE)")
        dialect.insert_rows(conn, name, ["rec_id", "label", "lat"], rows, 2)
        assert dialect.local_infile is loads
        conn.commit()
        conn.close()
        assert mysql_db.query(f"SELECT rec_id, label, lat FROM {name} ORDER BY rec_id") == rows
