"""The result sink (tables/sink.py) against real SQLite, PostgreSQL and MariaDB/MySQL databases: its run
state is made when it is made and follows what the run met (a new table, an existing one, a conflicting
key, rows the merge missed)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.sink import ResultSink, TargetTableError, WriteCountError, open_lines
from tests.tables.databases import Database, any_db, mysql_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]
HEADER = "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|resultType\n"


def _results(path: Path, keys: list[int]) -> str:
    path.write_text(HEADER + "".join(f"{i}|1|1|{i}.5|2.0|a{i}|street\n" for i in keys), encoding="utf-8")
    return str(path)


def _fingerprints(path: Path, keys: list[int]) -> str:
    path.write_text(
        "rec_id|fingerprint|request_text\n" + "".join(f"{i}|{i:032x}|t{i}\n" for i in keys), encoding="utf-8"
    )
    return str(path)


def test_the_run_state_is_made_with_the_sink(any_db: Database) -> None:  # noqa: F811
    at = datetime(2025, 7, 1, 2, tzinfo=timezone.utc)
    sink = ResultSink(get_db_hook(any_db.conn_id), "geo", OUT, batch_size=3, geocoded_at=at, merge_window=5)
    assert (sink.direct, sink.fingerprints, sink.fingerprints_loaded) == (False, None, False)
    assert (sink.batch_size, sink.merge_window) == (3, 5)
    stamps = {"postgresql": at, "sqlite": at.isoformat(), "mysql": at.replace(tzinfo=None)}
    assert sink.stamp == stamps[any_db.dialect]
    q = sink.dialect.quote
    names = ", ".join(q(c) for c in ("rec_id", "status", "lat", "lng", "match_level"))
    assert sink.upsert.startswith(f"INSERT INTO {q('geo')} ({names}")
    assert sink.names[-6:] == [
        "error_code",
        "error_message",
        "request_text",
        "request_fingerprint",
        "job_id",
        "geocoded_at",
    ]
    with pytest.raises(ValueError, match="not a plain table/column name"):
        ResultSink(get_db_hook(any_db.conn_id), "geo; DROP TABLE x", OUT)


def test_a_new_table_is_copied_into_and_a_filled_one_upserted(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    hook = get_db_hook(any_db.conn_id)
    results = open_lines(_results(tmp_path / "r.csv", [1, 2, 3]))
    fingerprints = open_lines(_fingerprints(tmp_path / "f.csv", [1, 2, 3]))
    first = ResultSink(hook, "geo", OUT, batch_size=2)
    written = first.write([("JOB-1", results, open_lines(None))], fingerprints)
    assert written == {"results": 3, "errors": 0, "skipped": 0}
    # Bulk loaded straight into the new table: COPY (PostgreSQL), LOAD DATA (MariaDB/MySQL).
    assert first.direct is (any_db.dialect in ("postgresql", "mysql"))
    assert not first.fingerprints_loaded  # the merge found every row

    again = ResultSink(hook, "geo", OUT, batch_size=2)
    written = again.write([("JOB-2", results, open_lines(None))], fingerprints)
    assert written == {"results": 3, "errors": 0, "skipped": 0}
    assert again.direct is False  # the table holds rows: upserted
    rows = any_db.query(
        "SELECT rec_id, lat, job_id, request_fingerprint, request_text FROM geo ORDER BY rec_id"
    )
    assert rows == [(str(i), i + 0.5, "JOB-2", f"{i:032x}", f"t{i}") for i in (1, 2, 3)]


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_a_conflicting_key_in_a_bulk_load_is_written_once(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A key twice in a first load: PostgreSQL's COPY fails and the batch is upserted instead; MariaDB's
    LOAD DATA ... REPLACE writes the later row. Either way one row per key, the later job's."""
    db: Database = request.getfixturevalue("postgres_db" if server == "postgresql" else "mysql_db")
    sink = ResultSink(get_db_hook(db.conn_id), "geo", OUT, batch_size=10)
    jobs = [
        ("JOB-1", open_lines(_results(tmp_path / "r1.csv", [1, 2])), open_lines(None)),
        ("JOB-2", open_lines(_results(tmp_path / "r2.csv", [2, 3])), open_lines(None)),
    ]
    with pytest.raises(WriteCountError) as info:  # issue 19: 4 writes left 3 rows: not reported as 4
        sink.write(jobs, open_lines(None))
    assert (info.value.confirmed, info.value.held) == (4, 3)
    assert sink.direct is (server == "mysql")
    assert db.query("SELECT rec_id, job_id FROM geo ORDER BY rec_id") == [
        ("1", "JOB-1"),
        ("2", "JOB-2"),
        ("3", "JOB-2"),
    ]


def test_rows_the_merge_misses_load_the_fingerprints_once(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    fingerprints = open_lines(_fingerprints(tmp_path / "f.csv", [1, 2, 3, 4]))
    sink = ResultSink(get_db_hook(any_db.conn_id), "geo", OUT, batch_size=2, merge_window=1)
    results = open_lines(_results(tmp_path / "r.csv", [4, 3, 2, 1]))
    assert sink.write([("JOB-1", results, open_lines(None))], fingerprints)["results"] == 4
    assert sink.fingerprints is fingerprints and sink.fingerprints_loaded
    rows = any_db.query("SELECT rec_id, request_fingerprint, request_text FROM geo ORDER BY rec_id")
    assert rows == [(str(i), f"{i:032x}", f"t{i}") for i in (1, 2, 3, 4)]


def test_an_existing_table_lacking_columns_is_refused(any_db: Database) -> None:  # noqa: F811
    any_db.execute("CREATE TABLE geo (rec_id VARCHAR(64) PRIMARY KEY, status TEXT)")
    sink = ResultSink(get_db_hook(any_db.conn_id), "geo", OUT)
    with pytest.raises(TargetTableError, match=r"lacks the columns \['lat', 'lng'"):
        sink.write([], open_lines(None))


def test_skipped_records_are_written_and_an_added_output_column_is_added(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The extract's ``skipped.csv`` becomes ``skipped`` rows (reason, fingerprint, no job); a table made
    for fewer output columns gets the new one instead of being refused."""
    hook = get_db_hook(any_db.conn_id)
    ResultSink(hook, "geo", OUT).write([("JOB-1", open_lines(None), open_lines(None))], open_lines(None))
    skipped = tmp_path / "skipped.csv"
    skipped.write_text("rec_id|fingerprint|request_text\n9|" + "a" * 32 + "|\n", encoding="utf-8")
    sink = ResultSink(hook, "geo", [*OUT, "scoringQueryScore"])
    written = sink.write(
        [("JOB-2", open_lines(None), open_lines(None))], open_lines(None), open_lines(str(skipped))
    )
    assert written == {"results": 0, "errors": 0, "skipped": 1}
    rows = any_db.query(
        "SELECT rec_id, status, error_code, job_id, request_fingerprint, scoring_query_score FROM geo"
    )
    assert rows == [("9", "skipped", "empty_query", None, "a" * 32, None)]
