"""The SQL source and sink operators against real SQLite, PostgreSQL and MariaDB/MySQL databases: bad rows
refused before anything is written, streaming, the sink's upsert and its table checks."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from tests.tables.databases import Database, any_db, mysql_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]


def _seed(db: Database, rows: list[tuple[Any, str, str]]) -> None:
    db.execute("CREATE TABLE addr (id INTEGER, address TEXT, country TEXT)")
    conn = db.connect()
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO addr VALUES ({db.ph}, {db.ph}, {db.ph})", rows)
    conn.commit()
    conn.close()


def _extract(db: Database, folder: Path, **kwargs: Any) -> Any:
    from airflow_here_batch.operators.sql import SqlToBatchInputOperator

    settings: dict[str, Any] = {
        "task_id": "extract",
        "conn_id": db.conn_id,
        "sql": "SELECT id, address, country FROM addr",
        "key_column": "id",
        "columns": {"q": "address", "in": "country"},
        "output_columns": OUT,
        "destination": f"file://{folder}",
        "fetch_size": 7,
    }
    settings.update(kwargs)
    return SqlToBatchInputOperator(**settings)


def test_rows_are_streamed_in_key_order_into_here_lines(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    _seed(any_db, [(i, f"Street {i}|A", "countryCode:DEU") for i in range(100, 0, -1)])
    result = _extract(any_db, tmp_path).execute({"run_id": "r1"})
    assert (result["records_total"], result["records_sent"], result["records_reused"]) == (100, 100, 0)
    assert result["input"] == f"file://{tmp_path}/input.csv"
    lines = (tmp_path / "input.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "recId|q|in"
    assert lines[1] == '1|"Street 1|A"|countryCode:DEU'  # quoted by rows_to_lines
    assert [line.split("|")[0] for line in lines[1:]] == [str(i) for i in range(1, 101)]
    fingerprints = (tmp_path / "fingerprints.csv").read_text(encoding="utf-8").splitlines()
    assert fingerprints[0] == "rec_id|fingerprint|request_text" and len(fingerprints) == 101
    raw = next(csv.reader([fingerprints[1]], delimiter="|"))[2]
    assert raw == "countryCode:DEU\x1fStreet 1|A"  # the raw values, 'in' before 'q'

    assert not list(tmp_path.glob(".*.part"))


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([(1, "a", "x"), (None, "b", "x")], {}, r"row \d of the query \(ordered by id\), key NULL: the key"),
        (
            [(1, "a", "x"), (2, "b", "x"), (2, "c", "x")],
            {},
            "rows 2 and 3 of the query \\(ordered by id\\) have the key values 2 and 2, which both become "
            "recId '2'",
        ),
        ([(1, "a", "x")], {"columns": {"q": "address", "in": "county"}}, "no column 'county'"),
    ],
)
def test_bad_rows_are_refused_before_anything_is_written(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
    rows: list,
    kwargs: dict,
    message: str,
) -> None:
    from airflow_here_batch.version_compat import AirflowException

    _seed(any_db, rows)
    out = tmp_path / "out"
    with pytest.raises(AirflowException, match=f"nothing was uploaded: .*{message}"):
        _extract(any_db, out, **kwargs).execute({"run_id": "r1"})
    assert not out.exists() or not list(out.iterdir()), "a partial input file was left behind"


def test_the_sink_upserts_results_and_errors_and_a_rerun_leaves_one_row_per_key(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator

    results = tmp_path / "results.csv"
    results.write_text(
        "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|resultType\n"
        "1|1|2|52.5|13.4|Berlin|houseNumber\n"
        "1|2|2|52.6|13.5|Berlin 2|street\n"
        '2|1|1|48.1|11.5|"München|Bayern"|street\n'
        "3|1|0||||\n",
        encoding="utf-8",
    )
    errors = tmp_path / "errors.txt"
    errors.write_text(
        "recId|errorCode|errorMessage\n"
        '4|E6001004|{"status":400,"title":"Invalid request","cause":"q is empty","jobRecord":"4||x"}\n',
        encoding="utf-8",
    )
    fingerprints = tmp_path / "fingerprints.csv"
    fingerprints.write_text("rec_id|fingerprint\n1|aa\n2|bb\n3|cc\n4|dd\n", encoding="utf-8")
    sink = BatchResultsToSqlOperator(
        task_id="write",
        conn_id=any_db.conn_id,
        table="geo",
        output_columns=OUT,
        job_id="JOB-1",
        results=f"file://{results}",
        errors=f"file://{errors}",
        extract={
            "fingerprints": f"file://{fingerprints}",
            "records_total": 5,
            "records_sent": 4,
            "records_reused": 1,
        },
        batch_size=2,
    )
    assert [a.uri for a in sink.outlets] == [f"here-batch-table://{any_db.conn_id}/geo"]
    for _ in range(2):  # the rerun overwrites, never duplicates
        summary = sink.execute({"run_id": "r1"})
        assert summary == {
            "table": "geo",
            "job_id": "JOB-1",
            "records_total": 5,
            "records_sent": 4,
            "records_reused": 1,
            "records_failed": 1,
            "records_written": 4,
            "records_missing": 0,
            "records_sent_by_reason": {},
            "records_skipped": 0,
            "records_skipped_by_reason": {},
            "records_would_resend": {},
            "estimated_cost": None,
            "dry_run": False,
            # The verdicts (the file has no scores: nothing is accepted without a queryScore; record 1's
            # two candidates, 13 km apart, unscored, are ambiguous).
            "records_accepted": 0,
            "records_review": 4,
            "verdicts": {
                "exact": 0,
                "interpolated": 0,
                "street": 1,
                "area": 0,
                "ambiguous": 1,
                "no_match": 1,
                "failed": 1,
            },
            "review_table": "geo_review",
        }
    rows = any_db.query(
        "SELECT rec_id, status, lat, lng, match_level, address_label, error_code, error_message, "
        "request_fingerprint, job_id FROM geo ORDER BY rec_id"
    )
    assert rows == [
        ("1", "ok", 52.5, 13.4, "houseNumber", "Berlin", None, None, "aa", "JOB-1"),
        ("2", "ok", 48.1, 11.5, "street", "München|Bayern", None, None, "bb", "JOB-1"),
        ("3", "no_match", None, None, None, None, None, None, "cc", "JOB-1"),
        ("4", "failed", None, None, None, None, "E6001004", "Invalid request: q is empty", "dd", "JOB-1"),
    ]
    assert all(r[0] is not None for r in any_db.query("SELECT geocoded_at FROM geo"))


def test_an_existing_table_without_the_columns_is_refused(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator
    from airflow_here_batch.version_compat import AirflowException

    any_db.execute("CREATE TABLE geo (rec_id VARCHAR(64) PRIMARY KEY, status TEXT)")
    sink = BatchResultsToSqlOperator(task_id="write", conn_id=any_db.conn_id, table="geo", output_columns=OUT)
    with pytest.raises(AirflowException, match=r"lacks the columns \['lat', 'lng'"):
        sink.execute({"run_id": "r1"})


@pytest.mark.parametrize(
    ("column", "declared", "kind"),
    [("lat", "TEXT", "float"), ("rec_id", "INTEGER", "text"), ("address_label", "NUMERIC", "text")],
)
def test_a_table_whose_columns_no_longer_fit_is_refused_before_the_extract_writes(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
    column: str,
    declared: str,
    kind: str,
) -> None:
    """Issue 19 §3: a target table whose column cannot hold what the sink writes (a coordinate as text,
    a recId '007' as the number 7) fails the extract, before any HERE job exists; the sink refuses it
    by the same rule."""
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator
    from airflow_here_batch.tables.records import target_columns
    from airflow_here_batch.version_compat import AirflowException

    types = {
        "float": "DOUBLE PRECISION",
        "text": "TEXT",
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "bool": "BOOLEAN",
        "int": "BIGINT",
    }
    shown = declared
    if any_db.dialect == "sqlite":
        types = {"float": "REAL", "text": "TEXT", "timestamp": "TEXT", "bool": "INTEGER", "int": "INTEGER"}
    elif any_db.dialect == "mysql":  # its catalogue names INTEGER int, NUMERIC decimal
        types = {
            "float": "DOUBLE", "text": "TEXT", "timestamp": "DATETIME(6)", "bool": "BOOLEAN", "int": "BIGINT"
        }
        shown = {"INTEGER": "INT", "NUMERIC": "DECIMAL"}.get(declared, declared)
    body = ", ".join(
        f"{c.name} {declared if c.name == column else types[c.kind]}" for c in target_columns(OUT)
    )
    any_db.execute(f"CREATE TABLE geo ({body})")
    _seed(any_db, [(1, "a", "x")])
    out = tmp_path / "out"
    with pytest.raises(AirflowException, match=f"has column '{column}' of type {shown}"):
        _extract(any_db, out, target_table="geo").execute({"run_id": "r1"})
    assert not out.exists() or list(out.iterdir()) == []
    sink = BatchResultsToSqlOperator(task_id="w", conn_id=any_db.conn_id, table="geo", output_columns=OUT)
    with pytest.raises(AirflowException, match=f"which cannot hold its values \\({kind}"):
        sink.execute({"run_id": "r1"})


def test_records_written_is_what_the_table_holds_and_a_key_written_twice_fails_the_run(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Issue 19 §2: the sink reports the rows the database confirmed, checked against the rows of the
    run the table holds after the last commit; a key written twice (two results files) is 7 writes
    for 6 rows: the run fails instead of reporting 7."""
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator
    from airflow_here_batch.version_compat import AirflowException

    header = "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|resultType\n"
    first, second = tmp_path / "r1.csv", tmp_path / "r2.csv"
    first.write_text(header + "".join(f"{i}|1|1|{i}.0|2.0|a|street\n" for i in range(1, 6)), encoding="utf-8")
    second.write_text(header + "6|1|1|6.0|6.0|b|street\n", encoding="utf-8")

    def sink(results: list[str]) -> Any:
        return BatchResultsToSqlOperator(
            task_id="write",
            conn_id=any_db.conn_id,
            table="geo",
            output_columns=OUT,
            job_id=[f"JOB-{n}" for n in range(1, len(results) + 1)],
            results=results,
            extract={"records_sent": 6},
            batch_size=2,
        )

    summary = sink([f"file://{first}", f"file://{second}"]).execute({"run_id": "r1"})
    assert summary["records_written"] == 6 == any_db.query("SELECT COUNT(*) FROM geo")[0][0]
    again = tmp_path / "again.csv"
    again.write_text(header + "2|1|1|9.0|9.0|again|street\n", encoding="utf-8")
    with pytest.raises(AirflowException, match="confirmed 7 row writes but holds 6 rows of this run"):
        sink([f"file://{first}", f"file://{second}", f"file://{again}"]).execute({"run_id": "r2"})


def test_the_embedded_default_is_a_sqlite_file_under_airflow_home() -> None:
    from airflow.configuration import AIRFLOW_HOME

    from airflow_here_batch.operators.sql import EMBEDDED_CONN_ID, embedded_database_path, get_db_hook

    hook = get_db_hook(EMBEDDED_CONN_ID)
    assert hook.dialect_name == "sqlite"
    assert embedded_database_path() == f"{AIRFLOW_HOME}/here_batch/here_batch.db"
    assert hook.get_first("SELECT 1") == (1,)


def test_a_connection_that_is_not_a_database_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_here_batch.operators.sql import get_db_hook

    monkeypatch.setenv("AIRFLOW_CONN_NOT_A_DB", '{"conn_type": "here_batch", "password": "k"}')
    with pytest.raises(TypeError, match="not a SQL database"):
        get_db_hook("not_a_db")


def test_the_sink_takes_one_results_file_per_job_of_a_split_run(sqlite_db: Database, tmp_path: Path) -> None:  # noqa: F811
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator

    header = "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|resultType\n"
    first, second = tmp_path / "r1.csv", tmp_path / "r2.csv"
    first.write_text(header + "1|1|1|1.0|2.0|a|street\n", encoding="utf-8")
    second.write_text(header + "2|1|1|3.0|4.0|b|street\n", encoding="utf-8")
    sink = BatchResultsToSqlOperator(
        task_id="write",
        conn_id=sqlite_db.conn_id,
        table="geo",
        output_columns=OUT,
        job_id=["JOB-1", "JOB-2"],
        results=[f"file://{first}", f"file://{second}"],
        extract={"records_sent": 2},
    )
    summary = sink.execute({"run_id": "r1"})
    assert summary["records_written"] == 2 and summary["job_id"] == ["JOB-1", "JOB-2"]
    assert sqlite_db.query("SELECT rec_id, job_id, lat FROM geo ORDER BY rec_id") == [
        ("1", "JOB-1", 1.0),
        ("2", "JOB-2", 3.0),
    ]


def test_max_age_and_resend_failed_choose_what_is_sent_again(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    from datetime import timedelta

    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator

    _seed(any_db, [(1, "Street 1", "x"), (2, "Nowhere 0", "x"), (3, "Street 3", "x")])
    first = _extract(any_db, tmp_path / "a", incremental=True, target_table="geo").execute({"run_id": "r1"})
    assert first["records_sent"] == 3
    results, errors = tmp_path / "results.csv", tmp_path / "errors.txt"
    results.write_text(
        "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|resultType\n"
        "1|1|1|1.0|2.0|a|street\n3|1|1|1.0|2.0|c|street\n",
        encoding="utf-8",
    )
    errors.write_text("recId|errorCode|errorMessage\n2|E6001004|no match\n", encoding="utf-8")
    BatchResultsToSqlOperator(
        task_id="write",
        conn_id=any_db.conn_id,
        table="geo",
        output_columns=OUT,
        job_id="JOB-1",
        results=f"file://{results}",
        errors=f"file://{errors}",
        extract=first,
    ).execute({"run_id": "r1"})

    def sent(**kwargs: Any) -> int:
        op = _extract(any_db, tmp_path / "b", incremental=True, target_table="geo", **kwargs)
        return op.execute({"run_id": "r2"})["records_sent"]

    assert sent() == 0  # unchanged, and the failed record would fail again
    assert sent(resend_failed=True) == 1
    assert sent(full_refresh="true") == 3
    old: Any = "2000-01-01T00:00:00+00:00"
    if any_db.dialect == "mysql":  # DATETIME in UTC, no zone
        from datetime import datetime

        old = datetime(2000, 1, 1)
    any_db.execute(f"UPDATE geo SET geocoded_at = {any_db.ph} WHERE rec_id = '3'", (old,))
    assert sent(max_age=timedelta(days=30)) == 1
    assert sent() == 0

    # The target is on the source's connection: the database itself leaves out unchanged rows.
    op = _extract(any_db, tmp_path / "c", incremental=True, target_table="geo")
    assert op._extraction().can_prefilter()
    any_db.execute("UPDATE addr SET address = '  Street   1 ' WHERE id = 1")
    assert sent() == 0  # read back (raw value differs) but the same normalised request: reused
    any_db.execute("UPDATE addr SET address = 'Street 11' WHERE id = 1")
    assert sent() == 1
    any_db.execute("INSERT INTO addr VALUES (3, 'again', 'x')")
    from airflow_here_batch.version_compat import AirflowException

    with pytest.raises(
        AirflowException, match=r"rows 3 and 4 of the query \(ordered by id\) have the key values 3 and 3"
    ):
        sent()
    any_db.execute("INSERT INTO addr VALUES (NULL, 'nobody', 'x')")
    with pytest.raises(AirflowException, match=r"row \d of the query \(ordered by id\), key NULL: the key"):
        sent()


def test_results_out_of_order_get_their_fingerprints_by_lookup(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ordered merge misses rows that come back out of order (a window of 1 here): they get their
    fingerprint and request text by the SQL lookup. Values with tabs and backslashes survive COPY."""
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator
    from airflow_here_batch.tables import sink as sink_module

    monkeypatch.setattr(sink_module, "MERGE_WINDOW", 1)
    results = tmp_path / "r1.csv"
    results.write_text(
        "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|resultType\n"
        + "".join(f"{i}|1|1|{i}.5|2.25|a\\b\t{i}|street\n" for i in (5, 4, 1, 2, 3)),
        encoding="utf-8",
    )
    fingerprints = tmp_path / "fingerprints.csv"
    fingerprints.write_text(
        "rec_id|fingerprint|request_text\n" + "".join(f"{i}|{i:032x}|t\\{i}\x1fx\n" for i in range(1, 6)),
        encoding="utf-8",
    )
    sink = BatchResultsToSqlOperator(
        task_id="write",
        conn_id=any_db.conn_id,
        table="geo",
        output_columns=OUT,
        job_id="JOB-1",
        results=f"file://{results}",
        extract={"fingerprints": f"file://{fingerprints}", "records_sent": 5},
        batch_size=2,
    )
    assert sink.execute({"run_id": "r1"})["records_written"] == 5
    rows = any_db.query(
        "SELECT rec_id, lat, address_label, request_fingerprint, request_text FROM geo ORDER BY rec_id"
    )
    assert rows == [(str(i), i + 0.5, f"a\\b\t{i}", f"{i:032x}", f"t\\{i}\x1fx") for i in range(1, 6)]


def test_a_key_in_two_results_files_is_upserted_once(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    """Into a new table the sink COPYs straight into the table; a key already there (here: in two
    results files) makes that COPY fail: the batch is rolled back and upserted, one row per key; the run
    then fails, as 7 writes left 6 rows."""
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator

    header = "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|resultType\n"
    first, second = tmp_path / "r1.csv", tmp_path / "r2.csv"
    first.write_text(header + "".join(f"{i}|1|1|{i}.0|2.0|a|street\n" for i in range(1, 6)), encoding="utf-8")
    second.write_text(header + "6|1|1|6.0|6.0|b|street\n2|1|1|9.0|9.0|again|street\n", encoding="utf-8")
    sink = BatchResultsToSqlOperator(
        task_id="write",
        conn_id=any_db.conn_id,
        table="geo",
        output_columns=OUT,
        job_id=["JOB-1", "JOB-2"],
        results=[f"file://{first}", f"file://{second}"],
        extract={"records_sent": 6},
        batch_size=2,
    )
    from airflow_here_batch.version_compat import AirflowException

    with pytest.raises(AirflowException, match="confirmed 7 row writes but holds 6 rows of this run"):
        sink.execute({"run_id": "r1"})  # issue 19: never more rows reported than the table holds
    rows = any_db.query("SELECT rec_id, lat, job_id FROM geo ORDER BY rec_id")
    assert rows == [
        ("1", 1.0, "JOB-1"),
        ("2", 9.0, "JOB-2"),
        ("3", 3.0, "JOB-1"),
        ("4", 4.0, "JOB-1"),
        ("5", 5.0, "JOB-1"),
        ("6", 6.0, "JOB-2"),
    ]


def test_an_unsupported_target_is_refused_before_anything_is_uploaded(
    sqlite_db: Database,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The source may be any DbApiHook; a target table on a database the sink cannot write (here SQL
    Server) fails the extract, before the query is read and any HERE job exists (incremental or not)."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_here_batch.tables import extract as extract_module
    from airflow_here_batch.tables.dialect import UnsupportedDialectError

    class SqlServerHook(DbApiHook):
        conn_name_attr = "mssql_conn_id"
        default_conn_name = "here_t_mssql_target"

    monkeypatch.setenv("AIRFLOW_CONN_HERE_T_MSSQL_TARGET", "mssql://user:pw@db.example:1433/geo")
    real = extract_module.get_db_hook
    monkeypatch.setattr(
        extract_module,
        "get_db_hook",
        lambda conn_id: SqlServerHook() if conn_id == "here_t_mssql_target" else real(conn_id),
    )
    _seed(sqlite_db, [(1, "a", "x")])
    out = tmp_path / "out"
    for incremental in (False, True):
        op = _extract(
            sqlite_db, out, incremental=incremental, target_table="geo", target_conn_id="here_t_mssql_target"
        )
        with pytest.raises(UnsupportedDialectError, match="'mssql' is not supported for the geocoded table"):
            op.execute({"run_id": "r1"})
    assert not out.exists()


def test_skipped_rows_go_where_every_tasks_rejects_go(sqlite_db: Database, tmp_path: Path) -> None:  # noqa: F811
    """Issue 19 §4: a line break in one address does not block the night; the row is written to
    ``<base location>/<dag_id>/<run_id>/<task_id>/rejects.jsonl``, as the submit operator's rejects."""
    import json
    from types import SimpleNamespace

    from airflow_here_batch.files.locations import base_location

    _seed(sqlite_db, [(1, "Berlin", "x"), (2, "Invalidenstr. 116\nBerlin", "x"), (3, "Rome", "x")])
    ti = SimpleNamespace(dag_id="nightly", run_id="scheduled__2026-12-06", task_id="extract", map_index=-1)
    result = _extract(sqlite_db, tmp_path / "out", on_bad_record="skip").execute({"run_id": "r1", "ti": ti})
    expected = base_location("nightly", "scheduled__2026-12-06", "extract", "rejects.jsonl")
    assert result["rejects"] == str(expected)
    assert (result["records_sent"], result["records_rejected"]) == (2, 1)
    (entry,) = [json.loads(line) for line in expected.read_text().splitlines()]
    assert entry["where"] == "row 2 of the query (ordered by id), key 2"
    assert entry["problems"][0]["field"] == "q"
    expected.unlink()
