"""The nightly table pipeline end to end inside real Airflow (``dag.test()``), against the emulator and
real databases (SQLite, PostgreSQL and MariaDB/MySQL): first run, incremental run, nothing-changed run, a
failure in the middle of the write and its rerun."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_here_batch.tables.connections import get_db_hook
from airflow_here_batch.tables.dialect import table_dialect
from airflow_here_batch.tables.records import target_columns
from tests.airflow.support import RunDag
from tests.tables.databases import Database, any_db, mysql_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

DAG_ID = "here_batch_nightly_geocode"
SAMPLE_ROWS = 322
EMPTY_ROWS = 4  # the sample's empty or blank addresses: never sent, written as 'skipped'
SENT_ROWS = SAMPLE_ROWS - EMPTY_ROWS
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
    """The run's summary: the XCom of geocode_table's last task."""
    return result.xcom("geocode.summary")


def _parts(result: Any) -> list[dict[str, Any]]:
    """The XComs of the mapped ``geocode.run`` (one HERE job per part), in part order."""
    found = {
        i: v for (task, i, key), v in result.xcoms.items() if task == "geocode.run" and key == "return_value"
    }
    return [found[i] for i in sorted(found)]


def test_first_run_writes_every_row_then_only_changed_rows_are_sent(
    run_dag: RunDag, nightly: Database
) -> None:
    first = run_dag(DAG_ID, logical_date=_at("2025-07-01"))
    assert set(first.task_states.values()) == {"success"}, first.describe()
    summary = _summary(first)
    assert summary["records_total"] == SAMPLE_ROWS
    assert summary["records_sent"] == SENT_ROWS
    assert summary["records_reused"] == 0
    assert summary["records_skipped"] == EMPTY_ROWS
    assert summary["records_written"] == SAMPLE_ROWS
    (part,) = _parts(first)  # under HERE's per-job limit: one part, one job
    job_1 = part["job_id"]
    assert summary["job_ids"] == [job_1]

    rows = nightly.query("SELECT rec_id, status, lat, lng, job_id, error_code FROM addresses_geocoded")
    assert len(rows) == SAMPLE_ROWS == len({r[0] for r in rows})
    ok = [r for r in rows if r[1] == "ok"]
    failed = [r for r in rows if r[1] == "failed"]
    assert len(failed) == summary["records_failed"]
    assert all(isinstance(r[2], float) and isinstance(r[3], float) for r in ok)
    assert all(r[4] == job_1 for r in rows if r[1] != "skipped")
    assert sum(r[1] == "skipped" and r[4] is None for r in rows) == EMPTY_ROWS
    assert all(r[5] and r[2] is None for r in failed)

    changed = ["A0002", "A0100", "A0200"]
    nord = nightly.concat("address", "' Nord'")
    nightly.execute(
        f"UPDATE addresses SET address = {nord} WHERE id IN ({', '.join([nightly.ph] * 3)})",
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
    (part,) = _parts(second)
    job_2 = part["job_id"]
    assert part["records"]["total"] == 3  # HERE saw exactly 3 records
    rows = nightly.query("SELECT rec_id, job_id FROM addresses_geocoded")
    assert len(rows) == SAMPLE_ROWS
    assert sorted(r[0] for r in rows if r[1] == job_2) == changed

    third = run_dag(DAG_ID, logical_date=_at("2025-07-03"))  # nothing changed: a clean success
    assert third.task_states["geocode.extract"] == "success"
    for task_id in ("geocode.plan", "geocode.run", "geocode.merge"):
        assert third.task_states[task_id] == "skipped", third.describe()
    assert third.task_states["geocode.write"] == "success"
    assert third.task_states["geocode.summary"] == "success"
    summary = _summary(third)
    assert (summary["records_sent"], summary["records_reused"], summary["records_written"]) == (
        0,
        SAMPLE_ROWS,
        0,
    )
    assert (summary["job_ids"], summary["results"]) == ([], None)

    forced = run_dag(DAG_ID, logical_date=_at("2025-07-04"), run_conf={"full_refresh": True})
    assert _summary(forced)["records_sent"] == SENT_ROWS
    assert nightly.query("SELECT COUNT(*) FROM addresses_geocoded")[0][0] == SAMPLE_ROWS


@pytest.fixture
def small_jobs(emu: Any) -> Any:
    """The session emulator refusing more than 100 records per job (HERE's 413) and more than 2 running
    jobs (429 ``E6004291``), with fresh statistics; restored afterwards."""
    emu.admin.settings(max_records=100, max_running_jobs=2)
    emu.admin.reset_stats()
    yield emu
    emu.admin.settings(max_records=1_000_000, max_running_jobs=5)


def test_a_large_first_load_is_split_into_several_jobs_and_every_row_lands_once(
    run_dag: RunDag,
    sqlite_db: Database,  # noqa: F811
    small_jobs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``max_records_per_job=100``, the first load of 322 rows goes as 4 jobs (at most 2 running);
    each row is written once, with the id of the job that carried it; the next night, 3 changed
    addresses make one job of exactly 3 records."""
    monkeypatch.setenv("HERE_BATCH_DB_CONN_ID", sqlite_db.conn_id)
    monkeypatch.setenv("HERE_BATCH_RETRIES", "0")
    monkeypatch.setenv("HERE_BATCH_MAX_RECORDS_PER_JOB", "100")
    monkeypatch.setenv("HERE_BATCH_MAX_ACTIVE_JOBS", "2")

    first = run_dag(DAG_ID, logical_date=_at("2025-09-01"))
    assert set(first.task_states.values()) == {"success"}, first.describe()
    parts = _parts(first)
    assert [p["records"]["total"] for p in parts] == [100, 100, 100, SENT_ROWS - 300]
    job_ids = [p["job_id"] for p in parts]
    assert len(set(job_ids)) == 4
    summary = _summary(first)
    assert summary["job_ids"] == job_ids
    assert (summary["records_sent"], summary["records_written"]) == (SENT_ROWS, SAMPLE_ROWS)
    tags = [str(j.get("tag") or "") for j in small_jobs.admin.jobs()]
    assert sum(t.startswith("nightly-geocode-2025-09-01") for t in tags) == 4, "one HERE job per part"
    assert small_jobs.admin.stats()["peak_running"] <= 2

    rows = sqlite_db.query("SELECT rec_id, job_id FROM addresses_geocoded ORDER BY rec_id")
    assert len(rows) == SAMPLE_ROWS == len({r[0] for r in rows}), "every row exactly once"
    rows = [r for r in rows if r[1] is not None]  # the skipped rows were carried by no job
    by_job = {job: [r[0] for r in rows if r[1] == job] for job in job_ids}
    assert [len(by_job[job]) for job in job_ids] == [100, 100, 100, SENT_ROWS - 300]
    assert [r[0] for r in rows] == [key for job in job_ids for key in by_job[job]]  # parts in key order

    merged = first.xcom("geocode.merge")  # the night's files, written after the table
    assert merged["parts"] == 4 and merged["records"]["total"] == SENT_ROWS
    assert merged["results"].startswith("file://")

    changed = ["A0001", "A0150", "A0322"]
    sqlite_db.execute(f"UPDATE addresses SET address = address || ' Süd' WHERE id IN {tuple(changed)}")
    second = run_dag(DAG_ID, logical_date=_at("2025-09-02"))
    assert set(second.task_states.values()) == {"success"}, second.describe()
    (part,) = _parts(second)
    assert part["records"]["total"] == 3 and _summary(second)["records_sent"] == 3
    rows = sqlite_db.query("SELECT rec_id FROM addresses_geocoded WHERE job_id = ?", (part["job_id"],))
    assert sorted(r[0] for r in rows) == changed
    assert sqlite_db.query("SELECT COUNT(*), COUNT(DISTINCT rec_id) FROM addresses_geocoded") == [
        (SAMPLE_ROWS, SAMPLE_ROWS)
    ]


def _poison(db: Database, rec_id: str) -> None:
    """A real fault inside the database while the sink writes the batch holding ``rec_id``.

    PostgreSQL: the server terminates the writing session (the database goes away mid-transaction).
    SQLite: the statement aborts with an I/O-like error. MariaDB/MySQL: the trigger raises an error
    (SIGNAL), which aborts the statement.
    """
    dialect = table_dialect(get_db_hook(db.conn_id))
    for statement in dialect.create_table_sql("addresses_geocoded", target_columns(OUTPUT_COLUMNS)):
        db.execute(statement)
    if db.dialect == "sqlite":
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON addresses_geocoded "
            f"WHEN NEW.rec_id = '{rec_id}' BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END"
        )
    elif db.dialect == "mysql":
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON addresses_geocoded FOR EACH ROW "
            f"BEGIN IF NEW.rec_id = '{rec_id}' THEN "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'disk I/O error (injected)'; END IF; END"
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
        "DROP TRIGGER poison ON addresses_geocoded" if db.dialect == "postgresql" else "DROP TRIGGER poison"
    )


def test_a_run_failed_mid_write_leaves_whole_batches_and_its_rerun_completes(
    run_dag: RunDag, nightly: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = 40
    monkeypatch.setenv("HERE_BATCH_WRITE_BATCH_SIZE", str(batch))
    _poison(nightly, "A0150")
    failed = run_dag(DAG_ID, logical_date=_at("2025-08-01"), expect="failed")
    assert failed.task_states["geocode.write"] == "failed", failed.describe()
    assert failed.task_states["geocode.run[0]"] == "success"
    assert failed.task_states["geocode.merge"] == "upstream_failed"  # the parts' files are kept

    written = nightly.query("SELECT rec_id FROM addresses_geocoded")
    assert 0 < len(written) < SAMPLE_ROWS
    assert len(written) % batch == 0, "a batch was written in part"
    assert "A0150" not in {r[0] for r in written}

    _cure(nightly)
    rerun = run_dag(DAG_ID, logical_date=_at("2025-08-02"))
    summary = _summary(rerun)
    # what was written is not sent again (the empty addresses are skipped, not sent)
    assert summary["records_sent"] + summary["records_skipped"] == SAMPLE_ROWS - len(written)
    assert summary["records_reused"] == len(written)
    rows = nightly.query("SELECT rec_id FROM addresses_geocoded")
    assert len(rows) == SAMPLE_ROWS == len({r[0] for r in rows})


def test_an_unchanged_char_keyed_table_is_not_sent_again(
    run_dag: RunDag, nightly: Database, emu: Any
) -> None:
    """Issue 19 §1: a ``CHAR(8)`` key, 30 rows, run twice with nothing changed: the second run sent 30 of
    30 and created a new HERE job (the pre-filter compared the database's unpadded text with the padded
    text Python had stored). Now 0, no job; the recIds sent and stored are unpadded."""
    import csv

    from airflow_here_batch.example_dags.here_batch_nightly_geocode import SAMPLE

    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        rows = [(r["recId"], r["q"], r["in"]) for r in csv.DictReader(fh, delimiter="|")][:30]
    nightly.execute("CREATE TABLE addresses (id CHAR(8) PRIMARY KEY, address TEXT, country_filter TEXT)")
    conn = nightly.connect()
    cursor = conn.cursor()
    cursor.executemany(f"INSERT INTO addresses VALUES ({nightly.ph}, {nightly.ph}, {nightly.ph})", rows)
    conn.commit()
    conn.close()
    keys = sorted(r[0] for r in rows)
    assert all(len(k) < 8 for k in keys)  # so PostgreSQL pads them

    first = run_dag(DAG_ID, logical_date=_at("2025-10-01"))
    assert set(first.task_states.values()) == {"success"}, first.describe()
    # (A0024, the sample's first empty address, is among them: skipped, not sent, stored all the same)
    assert (_summary(first)["records_sent"], _summary(first)["records_skipped"]) == (29, 1)
    stored = sorted(r[0] for r in nightly.query("SELECT rec_id FROM addresses_geocoded"))
    assert stored == keys
    merged = first.xcom("geocode.merge")["results"].removeprefix("file://")
    with open(merged, encoding="utf-8") as fh:
        sent = {line.split("|")[0] for line in list(fh)[1:]}
    assert sent <= set(keys) and sent, "recIds sent to HERE are unpadded"

    second = run_dag(DAG_ID, logical_date=_at("2025-10-02"))
    summary = _summary(second)
    assert (summary["records_total"], summary["records_sent"], summary["records_reused"]) == (30, 0, 30)
    assert second.task_states["geocode.run"] == "skipped", second.describe()
    tags = [str(j.get("tag") or "") for j in emu.admin.jobs()]
    assert not [t for t in tags if t.startswith("nightly-geocode-2025-10-02")], "no new HERE job"
