"""Why each record is sent: the extract's comparison with the target table, record by record, against real
SQLite and PostgreSQL databases, in both of its paths (the comparison in Python, and the database-side
pre-filter); empty queries skipped or refused; the bound checked before the files are kept."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.api.spend import SpendBound, SpendLimitExceeded
from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.dialect import table_dialect
from airflow_here_batch.tables.extract import TableExtract
from airflow_here_batch.tables.records import MappingError, RecordMapping, target_columns
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

OUT = ["positionLat", "positionLng", "addressLabel", "resultType"]
SOURCE = {
    "1": "Invalidenstr. 116, Berlin",
    "2": "Alexanderplatz 1, Berlin",
    "3": "Unter den Linden 5, Berlin",
    "4": "Karl-Marx-Allee 90, Berlin",
    "5": "Torstr. 1, Berlin",
    "6": "Friedrichstr. 43, Berlin",
    "7": "Potsdamer Platz 1, Berlin",
    "8": "Kurfürstendamm 21, Berlin",
    "9": "   ",
    "10": "Oranienstr. 25, Berlin",
}


def _mapping(outputs: list[str] = OUT) -> RecordMapping:
    return RecordMapping(
        service="geocode", key_column="id", columns={"q": "address", "in": "country"}, output_columns=outputs
    )


def _request(rec_id: str, address: str) -> tuple[dict[str, str], dict[str, Any]]:
    row = {"id": rec_id, "address": address, "country": "countryCode:DEU"}
    return _mapping().request(row, rec_id), row


def _seed_source(db: Database) -> None:
    db.execute("CREATE TABLE addr (id TEXT, address TEXT, country TEXT)")
    for rec_id, address in SOURCE.items():
        values = (rec_id, address, "countryCode:DEU")
        db.execute(f"INSERT INTO addr VALUES ({db.ph}, {db.ph}, {db.ph})", values)


def _store(db: Database, rows: list[tuple[Any, ...]]) -> None:
    """Target rows ``(rec_id, status, fingerprint, geocoded_at[, stored address])``, with the raw text
    of the address they were geocoded from (default: the source's)."""
    dialect = table_dialect(get_db_hook(db.conn_id))
    for statement in dialect.create_table_sql("addr_geo", target_columns(OUT)):
        db.execute(statement)
    for rec_id, status, fingerprint, at, *address in rows:
        _, row = _request(rec_id, address[0] if address else SOURCE[rec_id])
        db.execute(
            "INSERT INTO addr_geo (rec_id, status, request_text, request_fingerprint, geocoded_at) "
            f"VALUES ({db.ph}, {db.ph}, {db.ph}, {db.ph}, {db.ph})",
            (rec_id, status, _mapping().raw_text(row), fingerprint, dialect.timestamp(at)),
        )


def _extract(db: Database, **kwargs: Any) -> TableExtract:
    settings: dict[str, Any] = {
        "conn_id": db.conn_id,
        "sql": "SELECT id, address, country FROM addr",
        "mapping": _mapping(),
        "target_table": "addr_geo",
        "max_age": timedelta(days=30),
        "resend_failed": True,
        "fetch_size": 3,
    }
    settings.update(kwargs)
    return TableExtract(**settings)


def _folder(path: Path) -> Any:
    from airflow_here_batch.files.locations import storage_path

    return storage_path(f"file://{path}")


def _sent(folder: Path) -> dict[str, str]:
    with (folder / "fingerprints.csv").open(encoding="utf-8") as fh:
        return {row["rec_id"]: row["fingerprint"] for row in csv.DictReader(fh, delimiter="|")}


NOW = datetime.now(timezone.utc)
OLD = NOW - timedelta(days=90)


def _fp(rec_id: str, address: str | None = None, outputs: list[str] = OUT) -> str:
    request, _ = _request(rec_id, SOURCE[rec_id] if address is None else address)
    return _mapping(outputs).fingerprint(request)


def _legacy(rec_id: str, address: str | None = None) -> str:
    request, _ = _request(rec_id, SOURCE[rec_id] if address is None else address)
    return _mapping().legacy_fingerprint(request)


@pytest.mark.parametrize("path", ["python", "database"])
@pytest.mark.parametrize("choice", ["keep", "resend"])
def test_every_record_sent_has_its_reason(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
    choice: str,
    path: str,
) -> None:
    """The same reasons whether the comparison runs in Python or the database leaves out unchanged
    rows (``parameters=()`` rules the pre-filter out)."""
    _seed_source(any_db)
    moved = "Alexanderplatz 2, Berlin"
    _store(
        any_db,
        [
            ("1", "ok", _fp("1"), NOW),  # unchanged
            ("2", "ok", _fp("2", moved), NOW, moved),  # changed
            ("4", "ok", _fp("4"), OLD),  # expired
            ("5", "failed", _fp("5"), NOW),  # failed before
            ("6", "ok", _fp("6", outputs=["positionLat"]), NOW),  # other output columns
            ("7", "ok", _fp("7")[:16] + "v9.0123456789abc", NOW),  # another fingerprint version
            ("8", "ok", _legacy("8"), NOW),  # version 1, unchanged
            ("10", "ok", _legacy("10", "Oranienstr. 26"), NOW, "Oranienstr. 26"),  # version 1, changed
        ],
    )
    python = {"parameters": ()} if path == "python" else {}
    choices = {"on_output_columns_change": choice, "on_fingerprint_version_change": choice}
    extract = _extract(any_db, **choices, **python)
    assert extract.can_prefilter() is (path == "database")
    result = extract.run(_folder(tmp_path), incremental=True)
    expected = {"new": 1, "changed": 2, "expired": 1, "failed_before": 1}
    kept = {"output_columns_changed": 1, "fingerprint_version_changed": 1}
    if choice == "resend":
        expected.update(kept)
        kept = {}
    assert result["records_sent_by_reason"] == expected
    assert result["records_would_resend"] == kept
    assert result["records_skipped_by_reason"] == {"empty_query": 1}
    assert result["records_total"] == len(SOURCE)
    assert result["records_sent"] == sum(expected.values())
    assert result["records_reused"] == len(SOURCE) - result["records_sent"] - 1
    sent = _sent(tmp_path)
    assert set(sent) == {"2", "3", "4", "5", "10"} | ({"6", "7"} if choice == "resend" else set())
    assert sent["4"] == _fp("4")  # written with the version-2 fingerprint
    with (tmp_path / "skipped.csv").open(encoding="utf-8") as fh:
        assert [r["rec_id"] for r in csv.DictReader(fh, delimiter="|")] == ["9"]


def test_the_pre_filter_gives_the_same_reasons(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    _seed_source(any_db)
    _store(
        any_db,
        [
            ("1", "ok", _fp("1"), NOW),
            ("2", "ok", _fp("2", "Alexanderplatz 2, Berlin"), NOW),
            ("4", "ok", _fp("4"), OLD),
            ("5", "failed", _fp("5"), NOW),
            ("6", "ok", _fp("6"), NOW),
            ("7", "ok", _fp("7"), NOW),
            ("8", "ok", _fp("8"), NOW),
            ("10", "ok", _fp("10"), NOW),
        ],
    )
    any_db.execute("UPDATE addr_geo SET request_text = 'stale' WHERE rec_id = '2'")
    extract = _extract(any_db)
    assert extract.can_prefilter()
    result = extract.run(_folder(tmp_path), incremental=True)
    assert result["records_sent_by_reason"] == {"new": 1, "changed": 1, "expired": 1, "failed_before": 1}
    assert result["records_skipped_by_reason"] == {"empty_query": 1}
    assert (result["records_total"], result["records_reused"]) == (len(SOURCE), 5)


def test_without_comparison_every_record_has_the_runs_reason(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    _seed_source(any_db)
    assert _extract(any_db).run(_folder(tmp_path / "a"), incremental=False)["records_sent_by_reason"] == {
        "not_incremental": 9
    }
    forced = _extract(any_db).run(_folder(tmp_path / "b"), incremental=True, full_refresh=True)
    assert forced["records_sent_by_reason"] == {"full_refresh": 9}
    assert forced["records_skipped"] == 1


def test_an_empty_query_can_fail_the_run_naming_the_key(any_db: Database, tmp_path: Path) -> None:  # noqa: F811
    _seed_source(any_db)
    message = r"row 10 of the query \(ordered by id\), key '9': its query \(q from 'address'\) is empty"
    with pytest.raises(MappingError, match=message) as caught:
        _extract(any_db, on_empty_query="fail").run(_folder(tmp_path), incremental=False)
    assert caught.value.key == "9" and caught.value.column == "address"
    assert not list(tmp_path.glob("*.csv"))


def test_above_the_bound_nothing_is_kept_and_a_dry_run_reports_it(
    any_db: Database,  # noqa: F811
    tmp_path: Path,
) -> None:
    _seed_source(any_db)
    message = "would send 9 records to HERE, above the bound of 5"
    with pytest.raises(SpendLimitExceeded, match=message) as caught:
        _extract(any_db, bound=SpendBound(5, "test")).run(_folder(tmp_path), incremental=True)
    assert caught.value.by_reason == {"new": 9}
    assert not list(tmp_path.glob("*.csv")), "nothing left to upload"

    dry = _extract(any_db, bound=SpendBound(5, "test", price_per_1000=2.0)).run(
        _folder(tmp_path), incremental=True, dry_run=True
    )
    assert (dry["dry_run"], dry["bound_exceeded"], dry["records_sent"], dry["estimated_cost"]) == (
        True,
        True,
        9,
        0.018,
    )
    assert dry["max_records_to_send"] == 5
    assert len(_sent(tmp_path)) == 9  # the file a real run would upload, to read
