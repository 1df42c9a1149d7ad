"""The nightly table pipeline end to end inside real Airflow (``dag.test()``), against the emulator and
real databases (SQLite and PostgreSQL): first run, incremental run, nothing-changed run, a failure in
the middle of the write and its rerun."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_here_batch.utils.sql_records import create_table_sql, target_columns
from tests.airflow.conftest import RunDag
from tests.sql.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

DAG_ID = "here_batch_nightly_geocode"
SAMPLE_ROWS = 322
OUTPUT_COLUMNS = ["positionLat", "positionLng", "addressLabel", "addressCountryCode", "resultType"]

pytestmark = pytest.mark.usefixtures("here_conn")


def _at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T02:00:00").replace(tzinfo=timezone.utc)


@pytest.fixture
def nightly(any_db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:  # noqa: F811
    monkeypatch.setenv("HERE_BATCH_DB_CONN_ID", any_db.conn_id)
    monkeypatch.setenv("HERE_BATCH_RETRIES", "0")
    return any_db


def _summary(result: Any) -> dict[str, Any]:
    return result.xcom("write_results")


def test_first_run_writes_every_row_then_only_changed_rows_are_sent(
    run_dag: RunDag, nightly: Database
) -> None:
    first = run_dag(DAG_ID, logical_date=_at("2025-07-01"))
    assert set(first.task_states.values()) == {"success"}, first.describe()
    summary = _summary(first)
    assert summary["records_total"] == SAMPLE_ROWS
    assert summary["records_sent"] == SAMPLE_ROWS
    assert summary["records_reused"] == 0
    assert summary["records_failed"] >= 3  # the sample's empty queries
    assert summary["records_written"] == SAMPLE_ROWS
    job_1 = first.xcom("submit_geocode_job")["job_id"]
    assert summary["job_id"] == job_1

    rows = nightly.query("SELECT rec_id, status, lat, lng, job_id, error_code FROM addresses_geocoded")
    assert len(rows) == SAMPLE_ROWS == len({r[0] for r in rows})
    ok = [r for r in rows if r[1] == "ok"]
    failed = [r for r in rows if r[1] == "failed"]
    assert len(failed) == summary["records_failed"]
    assert all(isinstance(r[2], float) and isinstance(r[3], float) for r in ok)
    assert all(r[4] == job_1 for r in rows)
    assert all(r[5] and r[2] is None for r in failed)

    changed = ["A0002", "A0100", "A0200"]
    nightly.execute(
        f"UPDATE addresses SET address = address || ' Nord' WHERE id IN ({', '.join([nightly.ph] * 3)})",
        tuple(changed),
    )
    second = run_dag(DAG_ID, logical_date=_at("2025-07-02"))
    assert set(second.task_states.values()) == {"success"}, second.describe()
    summary = _summary(second)
    assert (summary["records_total"], summary["records_sent"], summary["records_reused"]) == (
        SAMPLE_ROWS,
        3,
        SAMPLE_ROWS - 3,
    )
    job_2 = second.xcom("submit_geocode_job")["job_id"]
    assert second.xcom("wait_for_job")["records"]["total"] == 3  # HERE saw exactly 3 records
    rows = nightly.query("SELECT rec_id, job_id FROM addresses_geocoded")
    assert len(rows) == SAMPLE_ROWS
    assert sorted(r[0] for r in rows if r[1] == job_2) == changed

    third = run_dag(DAG_ID, logical_date=_at("2025-07-03"))
    assert third.task_states["anything_to_send"] == "success"
    for task_id in ("submit_geocode_job", "wait_for_job", "download_results"):
        assert third.task_states[task_id] == "skipped"
    assert third.task_states["write_results"] == "success"
    summary = _summary(third)
    assert (summary["records_sent"], summary["records_reused"], summary["records_written"]) == (
        0,
        SAMPLE_ROWS,
        0,
    )

    forced = run_dag(DAG_ID, logical_date=_at("2025-07-04"), run_conf={"full_refresh": True})
    assert _summary(forced)["records_sent"] == SAMPLE_ROWS
    assert nightly.query("SELECT COUNT(*) FROM addresses_geocoded")[0][0] == SAMPLE_ROWS


def _poison(db: Database, rec_id: str) -> None:
    """A real fault inside the database while the sink writes the batch holding ``rec_id``.

    PostgreSQL: the server terminates the writing session (the database goes away mid-transaction).
    SQLite: the statement aborts with an I/O-like error.
    """
    for statement in create_table_sql(db.dialect, "addresses_geocoded", target_columns(OUTPUT_COLUMNS)):
        db.execute(statement)
    if db.dialect == "sqlite":
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON addresses_geocoded "
            f"WHEN NEW.rec_id = '{rec_id}' BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END"
        )
    else:
        db.execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.rec_id = '{rec_id}' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
            "RETURN NEW; END $$"
        )
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON addresses_geocoded FOR EACH ROW EXECUTE FUNCTION poison()"
        )


def _cure(db: Database) -> None:
    db.execute(
        "DROP TRIGGER poison" if db.dialect == "sqlite" else "DROP TRIGGER poison ON addresses_geocoded"
    )


def test_a_run_failed_mid_write_leaves_whole_batches_and_its_rerun_completes(
    run_dag: RunDag, nightly: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = 40
    monkeypatch.setenv("HERE_BATCH_WRITE_BATCH_SIZE", str(batch))
    _poison(nightly, "A0150")
    failed = run_dag(DAG_ID, logical_date=_at("2025-08-01"), expect="failed")
    assert failed.task_states["write_results"] == "failed", failed.describe()
    assert failed.task_states["download_results"] == "success"

    written = nightly.query("SELECT rec_id FROM addresses_geocoded")
    assert 0 < len(written) < SAMPLE_ROWS
    assert len(written) % batch == 0, "a batch was written in part"
    assert "A0150" not in {r[0] for r in written}

    _cure(nightly)
    rerun = run_dag(DAG_ID, logical_date=_at("2025-08-02"))
    summary = _summary(rerun)
    assert summary["records_sent"] == SAMPLE_ROWS - len(written)  # what was written is not sent again
    assert summary["records_reused"] == len(written)
    rows = nightly.query("SELECT rec_id FROM addresses_geocoded")
    assert len(rows) == SAMPLE_ROWS == len({r[0] for r in rows})
