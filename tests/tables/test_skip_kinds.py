"""The two kinds of record not sent, kept apart (issues 19 and 21), against real SQLite and PostgreSQL: a
record whose query is empty, NULL or blank is *skipped* (``skipped.csv``, then a ``skipped`` row), never
a bad record, whatever else it holds and whatever ``on_bad_record`` says; a record HERE would refuse is
*rejected* (``rejects.jsonl``) or fails the run. Both paths of the extract: the comparison in Python and
the database-side pre-filter. And the target table check before any job lets through the column of a
new output column, which the sink adds."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.extract import TableExtract
from airflow_here_batch.tables.records import MappingError, RecordMapping, target_columns
from airflow_here_batch.tables.sink import ResultSink, open_lines
from airflow_here_batch.tables.targets import TargetTableError, added_by_sink, check_target_table
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel"]

ROWS: list[tuple[Any, Any]] = [
    (1, "Invalidenstr. 116, Berlin"),
    (2, "  \n  "),  # blank with a line break: an empty query, not a line-break refusal
    (3, None),
    (4, ""),
    (5, "Alexanderplatz 1\nBerlin"),  # a line break in a real address: a bad record
    (6, "Rome"),
]


def _seed(db: Database, rows: list[tuple[Any, Any]]) -> None:
    db.execute("CREATE TABLE addr (id INTEGER, address TEXT)")
    conn = db.connect()
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO addr VALUES ({db.ph}, {db.ph})", rows)
    conn.commit()
    conn.close()


def _extract(db: Database, **kwargs: Any) -> TableExtract:
    mapping = RecordMapping(service="geocode", key_column="id", columns={"q": "address"}, output_columns=OUT)
    settings: dict[str, Any] = {"target_table": "geo", "fetch_size": 2}
    settings.update(kwargs)
    return TableExtract(conn_id=db.conn_id, sql="SELECT id, address FROM addr", mapping=mapping, **settings)


def _folder(path: Path) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"file://{path}")


def _keys(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [row[0] for row in list(csv.reader(fh, delimiter="|"))[1:]]


@pytest.mark.parametrize("prefilter", [False, True], ids=["python", "prefilter"])
def test_empty_queries_are_skipped_and_bad_records_rejected_apart(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
    prefilter: bool,
) -> None:
    _seed(any_db, ROWS)
    if prefilter:  # the target table on the source's connection, with request_text
        ResultSink(get_db_hook(any_db.conn_id), "geo", OUT).write([], open_lines(None))
    extract = _extract(any_db, on_bad_record="skip")
    assert extract.can_prefilter() is prefilter
    rejects = tmp_path / "rejects.jsonl"
    result = extract.run(_folder(tmp_path / "out"), incremental=prefilter, rejects=_folder(rejects))

    assert result["records_total"] == 6
    assert (result["records_sent"], result["records_skipped"], result["records_rejected"]) == (2, 3, 1)
    assert result["records_skipped_by_reason"] == {"empty_query": 3}
    assert _keys(tmp_path / "out" / "input.csv") == ["1", "6"]
    assert _keys(tmp_path / "out" / "skipped.csv") == ["2", "3", "4"]
    written = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(e["where"], e["problems"][0]["kind"]) for e in written] == [
        ("row 5 of the query (ordered by id), key 5", "line-break")
    ]

    # The skipped rows are stored (with their fingerprints: not looked at again while unchanged); the
    # rejected one is stored nowhere, so the next run finds it again.
    sink = ResultSink(get_db_hook(any_db.conn_id), "geo", OUT)
    skipped = open_lines(result["skipped"])
    assert sink.write([], open_lines(result["fingerprints"]), skipped)["skipped"] == 3
    stored = any_db.query("SELECT rec_id, status, error_code FROM geo ORDER BY rec_id")
    assert stored == [(k, "skipped", "empty_query") for k in ("2", "3", "4")]
    again = _extract(any_db, on_bad_record="skip").run(
        _folder(tmp_path / "again"), incremental=True, rejects=_folder(tmp_path / "again.jsonl")
    )
    assert (again["records_sent"], again["records_skipped"], again["records_rejected"]) == (2, 0, 1)
    assert again["records_reused"] == 3


def test_an_empty_query_never_fails_a_run_as_a_bad_record(sqlite_db: Database, tmp_path: Path) -> None:  # noqa: F811
    """on_bad_record='fail' (the default) fails on the line break of row 5 only: rows 2-4 before it were
    skipped, not refused."""
    _seed(sqlite_db, ROWS)
    with pytest.raises(MappingError, match=r"^row 5 of the query \(ordered by id\), key 5: field 'q' holds"):
        _extract(sqlite_db).run(_folder(tmp_path / "out"), incremental=False)
    sqlite_db.execute("DROP TABLE addr")
    _seed(sqlite_db, [r for r in ROWS if r[0] != 5])
    result = _extract(sqlite_db).run(_folder(tmp_path / "out"), incremental=False)
    assert (result["records_sent"], result["records_skipped"], result["records_rejected"]) == (2, 3, 0)


def test_on_empty_query_fail_fails_even_when_bad_records_are_skipped(
    sqlite_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An empty query is not a bad record: on_bad_record='skip' does not put it in the rejects file."""
    _seed(sqlite_db, ROWS)
    extract = _extract(sqlite_db, on_bad_record="skip", on_empty_query="fail")
    with pytest.raises(MappingError, match=r"^row 2 of the query \(ordered by id\), key 2: its query"):
        extract.run(_folder(tmp_path / "out"), incremental=False, rejects=_folder(tmp_path / "rejects.jsonl"))
    assert not (tmp_path / "rejects.jsonl").exists()


def test_reverse_geocoding_without_a_position_is_an_empty_query(sqlite_db: Database, tmp_path: Path) -> None:  # noqa: F811
    sqlite_db.execute("CREATE TABLE pts (id INTEGER, lat REAL, lng REAL)")
    for row in [(1, 52.53, 13.38), (2, None, None), (3, None, 13.0)]:
        sqlite_db.execute(f"INSERT INTO pts VALUES ({sqlite_db.ph}, {sqlite_db.ph}, {sqlite_db.ph})", row)
    mapping = RecordMapping(
        service="revgeocode", key_column="id", at_columns=("lat", "lng"), output_columns=OUT
    )
    extract = TableExtract(
        conn_id=sqlite_db.conn_id, sql="SELECT id, lat, lng FROM pts", mapping=mapping, on_bad_record="skip"
    )
    result = extract.run(
        _folder(tmp_path / "out"), incremental=False, rejects=_folder(tmp_path / "rejects.jsonl")
    )
    assert (result["records_sent"], result["records_skipped"], result["records_rejected"]) == (1, 1, 1)
    assert _keys(tmp_path / "out" / "skipped.csv") == ["2"]  # both NULL: no query
    (rejected,) = (tmp_path / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(rejected)["where"].endswith("key 3")  # one NULL: not a position


def test_the_check_before_any_job_lets_a_new_output_column_through(any_db: Database) -> None:  # noqa: F811
    """The sink adds a new output column's column (text); the check made before any HERE job must not
    refuse the table for lacking it. Any other missing column is still refused."""
    hook = get_db_hook(any_db.conn_id)
    ResultSink(hook, "geo", OUT).write([], open_lines(None))
    wider = target_columns([*OUT, "scoringQueryScore"])
    added = [c.name for c in added_by_sink(wider)]
    assert added[:2] == ["address_label", "scoring_query_score"] and "request_text" in added
    assert check_target_table(hook, "geo", wider) is True
    ResultSink(hook, "geo", [*OUT, "scoringQueryScore"]).write([], open_lines(None))
    assert check_target_table(hook, "geo", wider) is True
    assert any_db.query("SELECT COUNT(scoring_query_score) FROM geo") == [(0,)]  # the sink added it

    any_db.execute("CREATE TABLE thin (rec_id VARCHAR(64) PRIMARY KEY, status TEXT)")
    with pytest.raises(TargetTableError, match=r"lacks the columns \['lat', 'lng', 'match_level', 'error_"):
        check_target_table(hook, "thin", wider)
