"""Quality verdicts through the operators inside real Airflow (``dag.test()``), against the emulator and
real databases (SQLite and PostgreSQL): the gate failing with the counts by verdict and the rows still
written, the review table holding exactly the records not accepted, the downloads' verdicts and review
file; and the nightly example's table and review table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.api.records import split_record
from tests.airflow.support import RunDag
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("here_conn")

#: What the emulator answers for quality_dags.ADDRESSES, judged knowing each request (the sink).
EXPECTED = {
    "Q1": ("exact", True, 3),
    "Q2": ("exact", True, 3),
    "Q3": ("area", True, 3),  # "Zürich": a town, as asked
    "Q4": ("street", True, 3),  # "Helvetiaplatz, Bern": a street, as asked
    "Q5": ("ambiguous", False, 3),  # "Helvetiaplatz": three towns, equally scored
    "Q6": ("ambiguous", False, 3),  # "Hauptstraße 12": six towns
    "Q7": ("area", False, 3),  # a house asked for, the town found
    "Q8": (None, False, 0),  # an empty query: skipped, never sent nor judged (issue 21)
}


@pytest.fixture
def quality_db(
    any_db: Database,  # noqa: F811
    emu: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Database:
    monkeypatch.setenv("HERE_TEST_QUALITY_CONN", any_db.conn_id)
    monkeypatch.setenv("HERE_BATCH_OUTPUT_DIR", str(tmp_path / "out"))
    return any_db


def _table(db: Database) -> dict[str, tuple[Any, ...]]:
    rows = db.query("SELECT rec_id, match_quality, accepted, candidates FROM places_geocoded")
    return {r[0]: (r[1], bool(r[2]), r[3]) for r in rows}


def test_the_gate_fails_with_counts_and_the_rows_are_written(
    run_dag: RunDag, quality_db: Database, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERE_TEST_QUALITY_SHARE", "0.9")
    monkeypatch.setenv("HERE_TEST_QUALITY_ON_LOW", "fail")
    result = run_dag("test_quality_gate", expect="failed")
    assert result.task_states["write"] == "failed", result.describe()
    assert _table(quality_db) == EXPECTED  # written and flagged, never dropped
    review = quality_db.query("SELECT rec_id FROM places_geocoded_review")
    assert sorted(r[0] for r in review) == ["Q5", "Q6", "Q7"]  # Q8 was skipped: never judged
    output = capfd.readouterr().out + result.tasks["write"].log_text
    assert (
        "match rate too low: 4 of 7 accepted (57.1 %); exact=2 street=1 area=2 ambiguous=2, "
        "below the bound of 90.0 %"  # Q8 (an empty query) skipped: outside the gate
    ) in output


def test_the_gate_warns_and_the_review_table_is_the_records_not_accepted(
    run_dag: RunDag, quality_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERE_TEST_QUALITY_SHARE", "0.9")
    monkeypatch.setenv("HERE_TEST_QUALITY_ON_LOW", "warn")
    result = run_dag("test_quality_gate")
    summary = result.xcom("write")
    assert summary["records_accepted"] == 4 and summary["review_table"] == "places_geocoded_review"
    assert summary["verdicts"] == {
        "exact": 2,
        "interpolated": 0,
        "street": 1,
        "area": 2,
        "ambiguous": 2,
        "no_match": 0,
        "failed": 0,
    }
    table = _table(quality_db)
    assert table == EXPECTED
    review = quality_db.query(
        "SELECT rec_id, address, match_quality, candidates FROM places_geocoded_review"
    )
    # every judged record not accepted (Q8, an empty query, was skipped, never judged: issue 21)
    assert sorted(r[0] for r in review) == sorted(k for k, v in table.items() if v[0] and not v[1])
    assert summary["records_review"] == len(review) == 3
    q5 = next(r for r in review if r[0] == "Q5")
    assert q5[1] == "countryCode:CHE | Helvetiaplatz" and q5[2] == "ambiguous"
    assert [c["seqNumber"] for c in json.loads(q5[3])] == ["1", "2", "3"]

    # The downloads carry the verdict too; without the request, a coarse match is not enough.
    records = result.xcom("records")
    verdicts = {r["recId"]: (r["matchQuality"], r["accepted"]) for r in records["rows"]}
    assert verdicts["Q1"] == ("exact", True) and verdicts["Q5"] == ("ambiguous", False)
    assert verdicts["Q3"] == ("area", False)
    assert records["quality"]["records_accepted"] == 2 and records["records_review"] == 5
    lines = Path(records["review"]).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "recId|matchQuality|candidates|chosenCandidate|reviewedAt"
    assert sorted(split_record(line, "|")[0] for line in lines[1:]) == ["Q3", "Q4", "Q5", "Q6", "Q7"]


@pytest.fixture
def nightly(any_db: Database, emu: Any, monkeypatch: pytest.MonkeyPatch) -> Database:  # noqa: F811
    monkeypatch.setenv("HERE_BATCH_DB_CONN_ID", any_db.conn_id)
    monkeypatch.setenv("HERE_BATCH_RETRIES", "0")
    return any_db


def test_the_nightly_example_flags_every_row_and_lists_the_rest_for_review(
    run_dag: RunDag, nightly: Database
) -> None:
    result = run_dag("here_batch_nightly_geocode")
    summary = result.xcom("geocode.write")
    verdicts = dict(
        nightly.query("SELECT match_quality, COUNT(*) FROM addresses_geocoded GROUP BY match_quality")
    )
    # the sample's 4 empty addresses are skipped (issue 21): written with no verdict, never sent
    assert verdicts.pop(None) == 4
    assert len(verdicts) >= 4 and {"exact", "ambiguous", "area"} <= set(verdicts)
    assert verdicts == {k: v for k, v in summary["verdicts"].items() if v}
    not_accepted = nightly.query(
        "SELECT rec_id FROM addresses_geocoded WHERE accepted = false AND match_quality IS NOT NULL "
        "ORDER BY rec_id"
    )
    review = nightly.query("SELECT rec_id FROM addresses_geocoded_review ORDER BY rec_id")
    assert review == not_accepted and summary["records_review"] == len(review)
    assert summary["records_accepted"] + len(review) + 4 == summary["records_written"]  # 4 skipped
    run_summary = result.xcom("geocode.summary")  # the task group's summary says the same
    assert run_summary["records_review"] == len(review) and run_summary["verdicts"] == summary["verdicts"]
