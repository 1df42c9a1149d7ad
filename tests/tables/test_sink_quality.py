"""The sink's quality columns and review table against real SQLite and PostgreSQL: every verdict from
HERE-shaped rows, the review table holding exactly the records not accepted, a person's choice kept
while the address is unchanged and dropped when it changed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_here_batch.api.quality import AcceptancePolicy
from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.sink import REVIEW_COLUMNS, ResultSink, open_lines
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]
HEADER = (
    "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|addressCity|resultType|houseNumberType|"
    "scoringQueryScore|scoringFieldScoreCity|scoringFieldScoreStreets|scoringFieldScoreHouseNumber\n"
)
# One record per verdict (and one more: a coarse match for an input naming no house number).
RESULTS = (
    "exact|1|1|47.1|8.1|Limmatquai 19, Zürich|Zurich|houseNumber|PA|1.0|1.0|1.0|1.0\n"
    "interp|1|1|47.2|8.2|Limmatquai 21, Zürich|Zurich|houseNumber|interpolated|1.0|1.0|1.0|1.0\n"
    "street|1|1|47.3|8.3|Limmatquai, Zürich|Zurich|street||0.9|1.0|1.0|\n"
    "town|1|1|47.4|8.4|Zürich|Zurich|locality||0.62|1.0||\n"
    "ambig|1|3|47.37|8.54|Helvetiaplatz, Zürich|Zurich|street||1.0||1.0|\n"
    "ambig|2|3|46.94|7.44|Helvetiaplatz, Bern|Bern|street||1.0||1.0|\n"
    "ambig|3|3|47.55|7.58|Helvetiaplatz, Basel|Basel|street||1.0||1.0|\n"
    "none|1|1||||||||||\n"
    "plain|1|1|47.5|8.5|Zürich|Zurich|locality||1.0|1.0||\n"
)
REQUESTS = {
    "exact": "Limmatquai 19, Zürich",
    "interp": "Limmatquai 21, Zürich",
    "street": "Limmatquai 5, Zürich",
    "town": "Nowhere 12, Zürich",
    "ambig": "Helvetiaplatz",
    "none": "xyzzy 1",
    "failed": "",
    "plain": "Zürich",
}
ERRORS = 'recId|errorCode|errorMessage\nfailed|E6001004|{"title":"Invalid request","cause":"q is empty"}\n'
EXPECTED = {
    "exact": ("exact", True, 1.0, 1),
    "interp": ("interpolated", True, 1.0, 1),
    "street": ("street", False, 0.9, 1),
    "town": ("area", False, 0.62, 1),
    "ambig": ("ambiguous", False, 1.0, 3),
    "none": ("no_match", False, None, 1),
    "failed": ("failed", False, None, 0),
    "plain": ("area", True, 1.0, 1),
}


def _fingerprint(key: str, request: str) -> str:
    """A stand-in for the extract's fingerprint: changes with the request."""
    return hashlib.blake2b(f"{key}|{request}".encode(), digest_size=16).hexdigest()


def _files(folder: Path, requests: dict[str, str], results: str = RESULTS) -> tuple[str, str, str]:
    """The results, errors and fingerprints files of one run (the extract lists every record sent)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "r.csv").write_text(HEADER + results, encoding="utf-8")
    (folder / "e.txt").write_text(ERRORS, encoding="utf-8")
    lines = "".join(f"{k}|{_fingerprint(k, v)}|{v}\n" for k, v in requests.items())
    (folder / "f.csv").write_text("rec_id|fingerprint|request_text\n" + lines, encoding="utf-8")
    return str(folder / "r.csv"), str(folder / "e.txt"), str(folder / "f.csv")


def _write(
    db: Database, folder: Path, requests: dict[str, str], results: str = RESULTS, job: str = "JOB-1"
) -> ResultSink:
    results, errors, fingerprints = _files(folder, requests, results)
    sink = ResultSink(get_db_hook(db.conn_id), "geo", OUT, batch_size=3, review_table="geo_review")
    sink.write([(job, open_lines(results), open_lines(errors))], open_lines(fingerprints))
    return sink


def _quality(db: Database) -> dict[str, tuple]:
    rows = db.query("SELECT rec_id, match_quality, accepted, query_score, candidates FROM geo")
    return {r[0]: (r[1], bool(r[2]), r[3], r[4]) for r in rows}


def test_every_verdict_is_written_and_the_review_table_holds_the_rest(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    sink = _write(any_db, tmp_path, REQUESTS)
    assert _quality(any_db) == EXPECTED
    review = any_db.query(
        "SELECT rec_id, address, match_quality, candidates, chosen_candidate FROM geo_review"
    )
    not_accepted = sorted(k for k, v in EXPECTED.items() if not v[1])
    assert sorted(r[0] for r in review) == not_accepted
    assert sink.review_rows == len(not_accepted) == len(review)
    assert sink.quality.accepted == 3 and sink.quality.by_verdict["ambiguous"] == 1
    by_key = {r[0]: r for r in review}
    assert by_key["ambig"][1] == "Helvetiaplatz" and by_key["ambig"][2] == "ambiguous"
    assert [c["addressCity"] for c in json.loads(by_key["ambig"][3])] == ["Zurich", "Bern", "Basel"]
    assert json.loads(by_key["failed"][3]) == [] and by_key["ambig"][4] is None
    columns = [c.name for c in REVIEW_COLUMNS]
    assert columns[:4] == ["rec_id", "address", "match_quality", "candidates"]
    assert columns[4:6] == ["chosen_candidate", "reviewed_at"]


def test_a_persons_choice_is_kept_while_the_address_is_unchanged(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    _write(any_db, tmp_path / "1", REQUESTS)
    ph = any_db.ph
    from airflow_here_batch.tables.dialect import table_dialect

    # a person's timestamp, as this database takes it (MySQL's DATETIME: no zone)
    when = table_dialect(get_db_hook(any_db.conn_id)).timestamp(datetime(2025, 7, 1, 10, tzinfo=timezone.utc))
    for key in ("ambig", "town"):
        any_db.execute(
            f"UPDATE geo_review SET chosen_candidate = {ph}, reviewed_at = {ph} WHERE rec_id = {ph}",
            ("2", when, key),
        )
    # The next run sends both again (a full refresh): "ambig" unchanged, "town" with a fixed address
    # (another fingerprint) that HERE now matches exactly.
    fixed = RESULTS.replace(
        "town|1|1|47.4|8.4|Zürich|Zurich|locality||0.62|1.0||",
        "town|1|1|47.4|8.4|Limmatquai 30|Zurich|houseNumber|PA|1.0|1.0|1.0|1.0",
    )
    sink = _write(any_db, tmp_path / "2", {**REQUESTS, "town": "Limmatquai 30, Zürich"}, fixed, "JOB-2")
    review = {r[0]: r[1:] for r in any_db.query("SELECT rec_id, chosen_candidate, job_id FROM geo_review")}
    assert review["ambig"] == ("2", "JOB-2")  # the choice is kept: the same request
    assert "town" not in review  # accepted now: gone from the review table
    assert _quality(any_db)["town"] == ("exact", True, 1.0, 1)
    assert sink.review_rows == len(review) == 4


def test_a_changed_address_drops_the_choice(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    _write(any_db, tmp_path / "1", REQUESTS)
    any_db.execute(f"UPDATE geo_review SET chosen_candidate = {any_db.ph}", ("1",))
    changed = {k: f"{v} Nord" for k, v in REQUESTS.items()}
    _write(any_db, tmp_path / "2", changed)  # every request changed, the answers the same
    assert {r[0] for r in any_db.query("SELECT chosen_candidate FROM geo_review")} == {None}


def test_a_policy_and_no_review_table(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    results, errors, fingerprints = _files(tmp_path, REQUESTS)
    policy = AcceptancePolicy(allow_ambiguous=True, match_input_precision=False, min_scores={})
    sink = ResultSink(get_db_hook(any_db.conn_id), "geo", OUT, policy=policy)
    sink.write([("JOB-1", open_lines(results), open_lines(errors))], open_lines(fingerprints))
    accepted = {k for k, v in _quality(any_db).items() if v[1]}
    assert accepted == {"exact", "interp", "street", "town", "ambig", "plain"}
    assert sink.review_rows is None


def test_an_older_table_gets_the_quality_columns(sqlite_db: Database, tmp_path: Path) -> None:  # noqa: F811
    columns = (
        "rec_id TEXT PRIMARY KEY, status TEXT, lat REAL, lng REAL, match_level TEXT, address_label TEXT, "
        "error_code TEXT, error_message TEXT, request_fingerprint TEXT, job_id TEXT, geocoded_at TEXT"
    )
    sqlite_db.execute(f"CREATE TABLE geo ({columns})")
    sqlite_db.execute("INSERT INTO geo (rec_id, status) VALUES ('old', 'ok')")
    _write(sqlite_db, tmp_path, REQUESTS)
    quality = _quality(sqlite_db)
    assert quality["exact"] == EXPECTED["exact"]
    assert quality["old"][0] is None  # never judged: NULL, and not in the review table
    assert ("old",) not in sqlite_db.query("SELECT rec_id FROM geo_review")


@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_candidates_of_a_record_across_batches(
    postgres_db: Database,  # noqa: F811
    tmp_path: Path,
    batch_size: int,
) -> None:
    """PostgreSQL's COPY fast path groups a record's lines whatever the batch size."""
    results, errors, fingerprints = _files(tmp_path, REQUESTS)
    sink = ResultSink(get_db_hook(postgres_db.conn_id), "geo", OUT, batch_size=batch_size, review_table="rv")
    written = sink.write([("JOB-1", open_lines(results), open_lines(errors))], open_lines(fingerprints))
    assert written == {"results": 7, "errors": 1, "skipped": 0}
    assert _quality(postgres_db) == EXPECTED
    assert postgres_db.query("SELECT COUNT(*) FROM rv")[0][0] == sink.review_rows == 5
