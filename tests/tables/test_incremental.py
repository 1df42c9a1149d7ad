"""Incremental reads of the source (tables/extract.py, tables/watermark.py) against real SQLite and
PostgreSQL: the one reuse rule and its NULL cases on both paths (stored fingerprints read, and the
database-side pre-filter), a table name as the source, and the change column (watermark) reading only
the changed rows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.tables.extract import TableExtract, table_or_query
from airflow_here_batch.tables.records import RecordMapping
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]
MAPPING = RecordMapping(service="geocode", key_column="id", columns={"q": "address"}, output_columns=OUT)


def _alias(db: Database, monkeypatch: pytest.MonkeyPatch) -> str:
    """A second connection id to the same database: the target is then "elsewhere" (no pre-filter)."""
    import os

    value = os.environ[f"AIRFLOW_CONN_{db.conn_id.upper()}"]
    monkeypatch.setenv(f"AIRFLOW_CONN_{db.conn_id.upper()}_ALIAS", value)
    return f"{db.conn_id}_alias"


def _write(db: Database, extracted: dict[str, Any], tmp_path: Path) -> None:
    """The sink writes every record sent as a result (``ok``), keeping the extract's watermark."""
    from airflow_here_batch.operators.sql import BatchResultsToSqlOperator

    rows = [line.split("|")[0] for line in Path(extracted["input"][7:]).read_text().splitlines()[1:]]
    results = tmp_path / f"results-{len(list(tmp_path.glob('results-*')))}.csv"
    results.write_text(
        "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|resultType\n"
        + "".join(f"{r}|1|1|1.0|2.0|label {r}|street\n" for r in rows),
        encoding="utf-8",
    )
    BatchResultsToSqlOperator(
        task_id="write",
        conn_id=db.conn_id,
        table="geo",
        output_columns=OUT,
        job_id="JOB-1",
        results=f"file://{results}",
        extract=extracted,
    ).execute({"run_id": "r"})  # type: ignore[arg-type]


def _run(db: Database, tmp_path: Path, *, incremental: bool = True, **kwargs: Any) -> dict[str, Any]:
    from airflow.sdk import ObjectStoragePath

    folder = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    folder.mkdir()
    settings: dict[str, Any] = {
        "conn_id": db.conn_id,
        "sql": "SELECT id, address FROM addr",
        "mapping": MAPPING,
        "target_table": "geo",
        "fetch_size": 3,
    }
    settings.update(kwargs)
    return TableExtract(**settings).run(ObjectStoragePath(f"file://{folder}"), incremental=incremental)


def _sent(extracted: dict[str, Any]) -> list[str]:
    if not extracted["input"]:
        return []
    return [line.split("|")[0] for line in Path(extracted["input"][7:]).read_text().splitlines()[1:]]


def test_a_table_name_is_read_whole_and_a_query_as_it_is() -> None:
    assert table_or_query("addresses") == "SELECT * FROM addresses"
    assert table_or_query(" geo.addresses ;") == "SELECT * FROM geo.addresses"
    assert table_or_query("SELECT id FROM t;") == "SELECT id FROM t;"  # a query: as it is


@pytest.mark.parametrize("where", ["pre-filter", "fingerprints"])
def test_one_reuse_rule_a_null_proves_nothing(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Stored rows with NULL status / geocoded_at / fingerprint: reused only when the setting that reads
    that column is off; the same answer whether the database pre-filters or the stored fingerprints are
    read."""
    any_db.execute("CREATE TABLE addr (id INTEGER, address TEXT)")
    for i in range(1, 6):
        any_db.execute(f"INSERT INTO addr VALUES ({any_db.ph}, {any_db.ph})", (i, f"Street {i}"))
    _write(any_db, _run(any_db, tmp_path, incremental=False), tmp_path)
    ph = any_db.ph
    from airflow_here_batch.tables.connections import get_db_hook
    from airflow_here_batch.tables.dialect import table_dialect

    # the sink's own spelling of a timestamp for this database (MySQL's DATETIME takes no zone)
    recent = table_dialect(get_db_hook(any_db.conn_id)).timestamp(datetime.now(timezone.utc))
    any_db.execute(f"UPDATE geo SET geocoded_at = {ph}", (recent,))
    any_db.execute("UPDATE geo SET status = NULL WHERE rec_id = '2'")
    any_db.execute("UPDATE geo SET geocoded_at = NULL WHERE rec_id = '3'")
    any_db.execute("UPDATE geo SET request_fingerprint = NULL WHERE rec_id = '4'")
    any_db.execute("UPDATE geo SET status = 'failed' WHERE rec_id = '5'")
    target = {} if where == "pre-filter" else {"target_conn_id": _alias(any_db, monkeypatch)}

    def sent(**kwargs: Any) -> list[str]:
        return _sent(_run(any_db, tmp_path, **target, **kwargs))

    assert sent() == ["4"]  # only the missing fingerprint; a NULL status or age is not looked at
    assert sent(resend_failed=True) == ["2", "4", "5"]  # NULL status: not proven "not failed"
    assert sent(max_age=timedelta(days=1)) == ["3", "4"]  # NULL geocoded_at: not proven recent
    assert sent(resend_failed=True, max_age=timedelta(days=1)) == ["2", "3", "4", "5"]


def _stamp(db: Database) -> str:
    return "TIMESTAMP WITH TIME ZONE" if db.dialect == "postgresql" else "TEXT"


def _at(db: Database, moment: datetime) -> Any:
    """A change-column value as this database's column holds it (SQLite: ISO text)."""
    return moment if db.dialect == "postgresql" else moment.strftime("%Y-%m-%d %H:%M:%S")


def test_a_change_column_reads_only_the_changed_rows_and_the_window(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    any_db.execute(f"CREATE TABLE addr (id INTEGER, address TEXT, updated_at {_stamp(any_db)})")
    old = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for i in range(1, 101):
        any_db.execute(
            f"INSERT INTO addr VALUES ({any_db.ph}, {any_db.ph}, {any_db.ph})",
            (i, f"Street {i}", _at(any_db, old - timedelta(days=i))),
        )
    any_db.execute("INSERT INTO addr VALUES (101, 'no stamp', NULL)")
    change = {
        "change_column": "updated_at",
        "change_window": timedelta(hours=1),
        "sql": "SELECT id, address, updated_at FROM addr",
    }
    first = _run(any_db, tmp_path, **change)
    assert (first["records_total"], first["records_sent"]) == (101, 101)  # no mark yet: every row
    assert first["watermark"]["value_type"] == ("datetime" if any_db.dialect == "postgresql" else "text")
    _write(any_db, first, tmp_path)
    kept = any_db.query("SELECT target_table, change_column, value FROM here_batch_watermarks")
    assert [(t, c) for t, c, _ in kept] == [("geo", "updated_at")]

    ph = any_db.ph
    mark = old - timedelta(days=1)  # the highest value read
    any_db.execute(
        f"UPDATE addr SET address = 'New 5', updated_at = {ph} WHERE id = 5",
        (_at(any_db, mark + timedelta(hours=3)),),
    )
    # A late commit: stamped before the mark (its transaction began earlier), within the window.
    any_db.execute(
        f"UPDATE addr SET address = 'New 7', updated_at = {ph} WHERE id = 7",
        (_at(any_db, mark - timedelta(minutes=30)),),
    )
    # Stamped before mark - window: not read (the window must cover the slowest writer).
    any_db.execute(
        f"UPDATE addr SET address = 'New 9', updated_at = {ph} WHERE id = 9",
        (_at(any_db, mark - timedelta(hours=2)),),
    )
    second = _run(any_db, tmp_path, **change)
    # read: row 1 (the mark itself), 5, 7 (window), 101 (NULL stamp); sent: the two changed ones
    assert second["records_total"] == 4, second
    assert _sent(second) == ["5", "7"]
    assert (second["records_reused"], second["records_sent"]) == (2, 2)
    _write(any_db, second, tmp_path)
    assert second["watermark"]["value"] > first["watermark"]["value"]

    third = _run(any_db, tmp_path, **change)  # nothing changed since: the window's rows, reused
    assert (third["records_total"], third["records_sent"]) == (2, 0)  # row 5 (the mark), row 101
    # The pre-filter's force flags, the change filter and the reuse rule in one statement: each
    # parameter in its place (the flags' come first in the SELECT list).
    forced = _run(any_db, tmp_path, resend_failed=True, max_age=timedelta(days=3650), **change)
    assert (forced["records_total"], forced["records_sent"]) == (2, 0)
    full = _run(any_db, tmp_path, incremental=False, **change)  # a full refresh reads every row
    assert (full["records_total"], full["records_sent"]) == (101, 101)
    assert "9" in _sent(full)

    other_query = _run(any_db, tmp_path, **{**change, "sql": "SELECT * FROM addr"})
    assert other_query["records_total"] == 101  # another source: its own mark (none yet)


def test_the_mark_is_kept_as_text_and_read_back_with_its_type() -> None:
    from decimal import Decimal

    from airflow_here_batch.tables.watermark import Watermark

    moment = datetime(2025, 7, 1, 2, 0, 30, tzinfo=timezone.utc)
    cases = [
        (moment, timedelta(hours=1), moment - timedelta(hours=1)),
        (moment.date(), timedelta(hours=1), moment.date() - timedelta(days=1)),
        (1000, 10, 990),
        (Decimal("10.5"), 0.5, Decimal("10.0")),
        ("2025-07-01 02:00:30", timedelta(hours=1), "2025-07-01 01:00:30"),
        ("2025-07-01T02:00:30.250000Z", 60, "2025-07-01T01:59:30.250000Z"),
        ("2025-07-01", timedelta(days=2), "2025-06-29"),
    ]
    for value, window, since in cases:
        mark = Watermark("geo", "s", "updated_at", value)
        back = Watermark.from_xcom(json.loads(json.dumps(mark.to_xcom())))
        assert back == mark and back.since(window) == since, value
    assert Watermark("geo", "s", "c").since(60) is None
    assert Watermark("geo", "s", "c", 5).advanced(3).value == 5
    assert Watermark("geo", "s", "c", 5).advanced(None).value == 5
    assert Watermark("geo", "s", "c").advanced(7).value == 7
    with pytest.raises(ValueError, match="not an ISO 8601 timestamp"):
        Watermark("geo", "s", "c", "yesterday").since(60)
    with pytest.raises(ValueError, match="change_column needs target_table"):
        TableExtract(conn_id="x", sql="t", mapping=MAPPING, change_column="updated_at")
