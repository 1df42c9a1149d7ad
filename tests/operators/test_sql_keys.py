"""One text form of a key (issue 19 §1), for every column type each database can use as a key: a table
of that type geocoded incrementally against the emulator, then run again with nothing changed, sends 0
records and creates no HERE job; the recIds sent to HERE and stored are the canonical text (the
database's text of the value, blanks trimmed: a ``CHAR(8)`` key unpadded, a ``NUMERIC(10,2)`` with its
scale). Types without a stable text (approximate numbers, binary) are refused before anything is written.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.tables.databases import Database, mysql_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]
FIXTURES = {"sqlite": "sqlite_db", "postgresql": "postgres_db", "mysql": "mysql_db"}
U1, U2 = "6f1c6a6e-8d0a-4a8e-9d3e-0b1f5b2f2a11", "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"

#: database -> (column type, sample values, the recIds they must become).
KEY_TYPES: dict[str, list[tuple[str, list[Any], list[str]]]] = {
    "postgresql": [
        ("CHAR(8)", ["A1", "B22", "C333"], ["A1", "B22", "C333"]),
        ("VARCHAR(20)", ["x1", "Ab-2", "ü3"], ["x1", "Ab-2", "ü3"]),
        ("TEXT", [" lead", "t2 ", "Ä3"], ["lead", "t2", "Ä3"]),
        ("SMALLINT", [1, -2, 300], ["1", "-2", "300"]),
        ("INTEGER", [7, 20, -300], ["7", "20", "-300"]),
        ("BIGINT", [9007199254740993, -5, 0], ["9007199254740993", "-5", "0"]),
        ("NUMERIC(10,2)", [Decimal("1.5"), Decimal("2"), Decimal("-3.25")], ["1.50", "2.00", "-3.25"]),
        ("NUMERIC", [Decimal("1.50"), Decimal("10")], ["1.50", "10"]),
        ("UUID", [U1, U2], [U1, U2.lower()]),
        ("DATE", [date(2025, 1, 2), date(1999, 12, 31)], ["2025-01-02", "1999-12-31"]),
        (
            "TIMESTAMP",
            [datetime(2025, 1, 2, 3, 4, 5), datetime(2025, 1, 2, 3, 4, 5, 500000)],
            ["2025-01-02 03:04:05", "2025-01-02 03:04:05.5"],
        ),
        ("BOOLEAN", [True, False], ["true", "false"]),
    ],
    "mysql": [
        ("CHAR(8)", ["A1", "B22", "C333"], ["A1", "B22", "C333"]),
        ("VARCHAR(20)", ["x1", "Ab-2", "ü3"], ["x1", "Ab-2", "ü3"]),
        ("TEXT", [" lead", "t2 ", "Ä3"], ["lead", "t2", "Ä3"]),
        ("TINYINT", [1, -2, 100], ["1", "-2", "100"]),
        ("SMALLINT", [1, -2, 300], ["1", "-2", "300"]),
        ("INT", [7, 20, -300], ["7", "20", "-300"]),
        ("BIGINT", [9007199254740993, -5, 0], ["9007199254740993", "-5", "0"]),
        ("DECIMAL(10,2)", [Decimal("1.5"), Decimal("2"), Decimal("-3.25")], ["1.50", "2.00", "-3.25"]),
        ("DATE", [date(2025, 1, 2), date(1999, 12, 31)], ["2025-01-02", "1999-12-31"]),
        ("DATETIME", [datetime(2025, 1, 2, 3, 4, 5)], ["2025-01-02 03:04:05"]),
        ("DATETIME(3)", [datetime(2025, 1, 2, 3, 4, 5, 500000)], ["2025-01-02 03:04:05.500"]),
        ("BOOLEAN", [True, False], ["1", "0"]),  # TINYINT(1)
    ],
    "sqlite": [
        ("INTEGER", [7, 20, -300], ["7", "20", "-300"]),
        ("TEXT", [" lead", "t2 ", "Ä3"], ["lead", "t2", "Ä3"]),
        ("CHAR(8)", ["A1", "B22 "], ["A1", "B22"]),
        ("VARCHAR(20)", ["x1", "Ab-2"], ["x1", "Ab-2"]),
        ("NUMERIC", [1, 300], ["1", "300"]),
        ("DATE", ["2025-01-02", "1999-12-31"], ["2025-01-02", "1999-12-31"]),
        ("BOOLEAN", [1, 0], ["1", "0"]),
    ],
}

#: database -> (column type, a sample value, what the refusal names).
REFUSED: dict[str, list[tuple[str, Any, str]]] = {
    "postgresql": [
        ("REAL", 1.5, "approximate numbers"),
        ("DOUBLE PRECISION", 2.25, "approximate numbers"),
        ("BYTEA", b"\x01\x02", "binary values"),
    ],
    "mysql": [
        ("FLOAT", 1.5, "approximate numbers"),
        ("DOUBLE", 2.25, "approximate numbers"),
        ("VARBINARY(8)", b"\x01\x02", "binary values"),
        ("BLOB", b"\x01\x02", "binary values"),
    ],
    "sqlite": [("REAL", 1.5, "approximate numbers"), ("BLOB", b"\x01\x02", "binary values")],
}


def _cases(table: dict[str, list[Any]]) -> list[Any]:
    return [pytest.param(db, *case, id=f"{db}-{case[0]}") for db, cases in table.items() for case in cases]


def _db(request: pytest.FixtureRequest, dialect: str) -> Database:
    return request.getfixturevalue(FIXTURES[dialect])


def _seed(db: Database, column_type: str, values: list[Any]) -> None:
    db.execute(f"CREATE TABLE src (k {column_type}, address TEXT)")
    conn = db.connect()
    cursor = conn.cursor()
    cursor.executemany(
        f"INSERT INTO src VALUES ({db.ph}, {db.ph})",
        [(v, f"Invalidenstraße {i + 1}, Berlin") for i, v in enumerate(values)],
    )
    conn.commit()
    conn.close()


def _extract(db: Database, folder: Path, **kwargs: Any) -> dict[str, Any]:
    from airflow_here_batch.operators.sql import SqlToBatchInputOperator

    return SqlToBatchInputOperator(
        task_id="extract",
        conn_id=db.conn_id,
        sql="SELECT k, address FROM src",
        key_column="k",
        columns={"q": "address"},
        output_columns=OUT,
        destination=f"file://{folder}",
        incremental=True,
        target_table="geo",
        **kwargs,
    ).execute({"run_id": folder.name})


def _geocode(input_uri: str, folder: Path, tag: str) -> tuple[str, str, str | None]:
    """One HERE job of the extract's input against the session emulator: its id, results and errors
    (``None``: no errors report) as URIs."""
    from airflow_here_batch.api import JobOptions
    from airflow_here_batch.api.polling import PollSchedule
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    hook = HereBatchHook()
    job = hook.create_job(
        Path(input_uri.removeprefix("file://")),
        options=JobOptions(service="geocode", output_columns=OUT, tag=tag),
    )
    done = hook.wait_for_job(job.id, schedule=PollSchedule(0.05, 0.2), timeout=60)
    assert done.status.value == "completed", done
    results, errors = folder / "results.csv", folder / "errors.txt"
    hook.download_results(job.id, results)
    has_errors = hook.download_errors(job.id, errors) is not None
    return job.id, f"file://{results}", f"file://{errors}" if has_errors else None


@pytest.mark.parametrize(("dialect", "column_type", "values", "rec_ids"), _cases(KEY_TYPES))
def test_an_unchanged_table_is_not_sent_again_whatever_the_key_type(
    request: pytest.FixtureRequest,
    emu: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    dialect: str,
    column_type: str,
    values: list[Any],
    rec_ids: list[str],
) -> None:
    import json
    import os

    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator

    db = _db(request, dialect)
    _seed(db, column_type, values)
    tag = f"keys-{uuid.uuid4().hex[:12]}"

    first = _extract(db, tmp_path / "first")
    assert first["records_sent"] == len(values)
    lines = Path(first["input"].removeprefix("file://")).read_text(encoding="utf-8").splitlines()
    assert sorted(line.split("|")[0] for line in lines[1:]) == sorted(rec_ids), "recIds sent to HERE"
    job_id, results, errors = _geocode(first["input"], tmp_path / "first", tag)
    summary = BatchResultsToSqlOperator(
        task_id="write",
        conn_id=db.conn_id,
        table="geo",
        output_columns=OUT,
        job_id=job_id,
        results=results,
        errors=errors,
        extract=first,
    ).execute({"run_id": "first"})
    assert summary["records_written"] == len(values)
    assert sorted(r[0] for r in db.query("SELECT rec_id FROM geo")) == sorted(rec_ids), "rec_id stored"

    # Nothing changed: the database-side pre-filter (target on the source's connection) sends nothing...
    again = _extract(db, tmp_path / "again")
    assert (again["records_sent"], again["records_reused"], again["input"]) == (0, len(values), None)
    # ... nor does the fingerprint lookup (the target through another connection to the same database).
    alias = f"{db.conn_id}_target"
    monkeypatch.setenv(f"AIRFLOW_CONN_{alias.upper()}", os.environ[f"AIRFLOW_CONN_{db.conn_id.upper()}"])
    looked_up = _extract(db, tmp_path / "looked_up", target_conn_id=alias)
    assert (looked_up["records_sent"], looked_up["records_reused"]) == (0, len(values))
    tagged = [j for j in emu.admin.jobs() if j.get("tag") == tag]
    assert len(tagged) == 1, f"one HERE job in all: {json.dumps(tagged)}"


@pytest.mark.parametrize(("dialect", "column_type", "value", "kind"), _cases(REFUSED))
def test_a_key_type_without_a_stable_text_is_refused_before_anything_is_written(
    request: pytest.FixtureRequest, tmp_path: Path, dialect: str, column_type: str, value: Any, kind: str
) -> None:
    from airflow_here_batch.version_compat import AirflowException

    db = _db(request, dialect)
    _seed(db, column_type, [value])
    out = tmp_path / "out"
    with pytest.raises(AirflowException, match=f"nothing was uploaded: .*key column 'k' holds {kind}"):
        _extract(db, out)
    assert not out.exists() or not list(out.iterdir())
