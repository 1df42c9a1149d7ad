"""The SQL source (tables/extract.py) against real SQLite and PostgreSQL databases, issue 19: any query the
database runs works as the source; keys that become one recId are refused naming both rows and their
keys, whatever the rows' order; a record HERE would refuse names its row and key, and with
``on_bad_record="skip"`` is left out and written to the rejects file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.extract import TableExtract
from airflow_here_batch.tables.records import MappingError, RecordMapping
from airflow_here_batch.tables.sink import ResultSink, open_lines
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]


def _seed(db: Database, rows: list[tuple[Any, Any]], key_type: str = "INTEGER") -> None:
    db.execute(f"CREATE TABLE addr (id {key_type}, address TEXT)")
    conn = db.connect()
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO addr VALUES ({db.ph}, {db.ph})", rows)
    conn.commit()
    conn.close()


def _extract(db: Database, sql: str = "SELECT id, address FROM addr", **kwargs: Any) -> TableExtract:
    mapping = RecordMapping(service="geocode", key_column="id", columns={"q": "address"}, output_columns=OUT)
    return TableExtract(conn_id=db.conn_id, sql=sql, mapping=mapping, fetch_size=2, **kwargs)


def _folder(tmp_path: Path) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"file://{tmp_path}/out")


def _target(db: Database) -> None:
    """The target table on the source's connection, with request_text: the database-side pre-filter."""
    ResultSink(get_db_hook(db.conn_id), "geo", OUT).write([], open_lines(None))


SQL_FORMS = [
    "SELECT id, address FROM addr -- the customers\n",
    "SELECT id, address FROM addr;",
    "SELECT id, address FROM addr ; \n\n",
    "SELECT id, address FROM addr /* all of them */",
    "SELECT id, address FROM addr; -- done\n-- really\n",
    "-- customers.sql\nSELECT id, address -- the key and the address\nFROM addr WHERE address <> ';) --'",
    "/* header */ SELECT id, address FROM addr WHERE address NOT LIKE '%/*%' ;",
]


@pytest.mark.parametrize("sql", SQL_FORMS)
@pytest.mark.parametrize("prefilter", [False, True])
def test_any_query_the_database_runs_works_as_the_source(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
    sql: str,
    prefilter: bool,
) -> None:
    _seed(any_db, [(1, "Berlin"), (2, "Paris"), (3, "Rome")])
    kwargs: dict[str, Any] = {}
    if prefilter:
        _target(any_db)
        kwargs = {"target_table": "geo"}
    extract = _extract(any_db, sql, **kwargs)
    assert extract.can_prefilter() is prefilter
    result = extract.run(_folder(tmp_path), incremental=prefilter)
    assert (result["records_total"], result["records_sent"]) == (3, 3)
    lines = (tmp_path / "out" / "input.csv").read_text(encoding="utf-8").splitlines()
    assert lines == ["recId|q", "1|Berlin", "2|Paris", "3|Rome"]


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELECT 1 AS id; SELECT 2 AS id", "the source query holds 2 statements: give one SELECT"),
        ("-- nothing\n ; ", "the source query is empty"),
    ],
)
def test_a_query_that_is_not_one_statement_is_refused(sql: str, problem: str) -> None:
    mapping = RecordMapping(service="geocode", key_column="id", columns={"q": "address"})
    with pytest.raises(MappingError, match=problem):
        TableExtract(conn_id="unused", sql=sql, mapping=mapping)


@pytest.mark.parametrize("prefilter", [False, True])
def test_keys_that_become_one_recid_are_refused_naming_both_rows_whatever_their_order(
    sqlite_db: Database,  # noqa: F811
    tmp_path: Path,
    prefilter: bool,
) -> None:
    """SQLite keeps 1 and '1' apart (an integer and a text sort apart: rows 1 and 3 in key order), but
    both become recId '1': HERE would return two results nobody can tell apart, the table keep one."""
    _seed(sqlite_db, [("1", "Rome"), (2, "Paris"), (1, "Berlin")], key_type="")
    kwargs: dict[str, Any] = {}
    if prefilter:
        _target(sqlite_db)
        kwargs = {"target_table": "geo"}
    with pytest.raises(MappingError) as info:
        _extract(sqlite_db, **kwargs).run(_folder(tmp_path), incremental=prefilter)
    assert str(info.value).startswith(
        "rows 1 and 3 of the query (ordered by id) have the key values 1 and '1', which both become "
        "recId '1'; recIds must be unique within a job (HERE returns results by recId)"
    )
    assert info.value.key == "1" and info.value.column == "id"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_record_here_would_refuse_names_its_row_and_key(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    _seed(any_db, [(1, "Berlin"), (2, "Invalidenstr. 116\nBerlin"), (3, "Rome")])
    with pytest.raises(MappingError) as info:
        _extract(any_db).run(_folder(tmp_path), incremental=False)
    message = str(info.value)
    assert message.startswith("row 2 of the query (ordered by id), key 2: field 'q' holds a line break")
    assert "on_bad_record='skip'" in message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_skip_leaves_bad_records_out_and_writes_them_with_their_row_and_key(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Issue 19 §4: a record with a line break in its address must not block the night."""
    _seed(
        any_db,
        [(1, "Berlin"), (2, "Invalidenstr. 116\nBerlin"), (3, "Rome"), (None, "Oslo"), (5, "x" * 5000)],
    )
    rejects = tmp_path / "rejects" / "rejects.jsonl"
    from airflow.sdk import ObjectStoragePath

    result = _extract(any_db, on_bad_record="skip").run(
        _folder(tmp_path), incremental=False, rejects=ObjectStoragePath(f"file://{rejects}")
    )
    assert (result["records_total"], result["records_sent"], result["records_rejected"]) == (5, 2, 3)
    assert result["rejects"] == f"file://{rejects}"
    lines = (tmp_path / "out" / "input.csv").read_text(encoding="utf-8").splitlines()
    assert lines == ["recId|q", "1|Berlin", "3|Rome"]
    fingerprints = (tmp_path / "out" / "fingerprints.csv").read_text(encoding="utf-8").splitlines()
    assert [f.split("|")[0] for f in fingerprints[1:]] == ["1", "3"]  # the left-out ones are tried again
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    entries = {e["where"].rsplit(", key ", 1)[1]: e for e in written}
    assert set(entries) == {"2", "5", "NULL"}
    row = 3 if any_db.dialect in ("sqlite", "mysql") else 2  # SQLite, MySQL sort NULL first; PostgreSQL last
    assert entries["2"]["where"] == f"row {row} of the query (ordered by id), key 2"
    assert entries["2"]["line"] == row
    assert entries["2"]["problems"][0]["kind"] == "line-break"
    assert "Invalidenstr. 116\\nBerlin" in entries["2"]["record"]
    assert entries["5"]["problems"][0]["kind"] == "line-length" and entries["5"]["record"].startswith("5|x")
    assert entries["NULL"]["problems"][0]["field"] == "id"


def test_nothing_is_rejected_means_no_rejects_file(sqlite_db: Database, tmp_path: Path) -> None:  # noqa: F811
    _seed(sqlite_db, [(1, "Berlin")])
    result = _extract(sqlite_db, on_bad_record="skip").run(_folder(tmp_path), incremental=False)
    assert result["records_rejected"] == 0 and result["rejects"] is None
    assert not (tmp_path / "out" / "rejects.jsonl").exists()
