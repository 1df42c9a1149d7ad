"""The example DAGs: they import cleanly and each one runs end to end under ``dag.test()`` against the
session emulator (real Airflow task runner, real HTTP, deferrable waits run inline by ``dag.test()``).

The runs use fixed logical dates so that every test writes to its own dated folder under the session's
``HERE_BATCH_OUTPUT_DIR`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import RunDag
from tests.conftest import EXAMPLE_DAGS_DIR, TEST_OUTPUT_DIR

EXAMPLE_DAG_IDS = {
    "here_batch_nightly_geocode",
    "here_batch_reverse_geocode",
    "here_batch_lookup",
    "here_batch_taskflow_records",
    "here_batch_cleanup",
    "here_batch_initial_load",
    "here_batch_geocoded_consumer",
}
SAMPLE = EXAMPLE_DAGS_DIR / "data" / "addresses_default.csv"

pytestmark = pytest.mark.usefixtures("here_conn")

# The operators/sensor/trigger are built in parallel with these DAGs. Until their modules exist, the
# DAG tests are expected to fail (xfail, reported by -ra, never skipped); once they exist the tests
# must pass.
OPERATORS_LANDED = all(
    importlib.util.find_spec(f"airflow_here_batch.{kind}.batch_job") is not None
    for kind in ("operators", "sensors", "triggers")
)
needs_operators = pytest.mark.xfail(not OPERATORS_LANDED, reason="operators not landed yet", strict=False)


def _at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T02:00:00").replace(tzinfo=timezone.utc)


def _data_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="|"))


@pytest.fixture(scope="module")
def dagbag(airflow_db: Path) -> Any:
    from tests.version_compat import DagBag

    start = time.monotonic()
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS_DIR))
    bag.parse_seconds = time.monotonic() - start  # type: ignore[attr-defined]
    return bag


@needs_operators
def test_example_dags_import_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXAMPLE_DAG_IDS
    # No network, no heavy work at top level: the whole folder parses quickly.
    assert dagbag.parse_seconds < 10, f"example_dags took {dagbag.parse_seconds:.1f} s to parse"


@needs_operators
def test_every_deferrable_task_has_retries(dagbag: Any) -> None:
    deferrable = [
        (dag_id, task.task_id, task.retries)
        for dag_id in sorted(dagbag.dag_ids)
        for task in dagbag.get_dag(dag_id).tasks
        if getattr(task, "deferrable", False)
    ]
    assert deferrable, "no deferrable task found in the example DAGs"
    assert all(retries >= 1 for _, _, retries in deferrable), deferrable


@needs_operators
def test_nightly_dag_schedule(dagbag: Any) -> None:
    dag = dagbag.get_dag("here_batch_nightly_geocode")
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert dag.timetable.expression == "0 2 * * *"
    assert dag.catchup is False
    assert dag.start_date < datetime.now(timezone.utc)
    sensor = dag.get_task("wait_for_job")
    assert type(sensor).__name__ == "BatchJobSensor" and sensor.deferrable is True
    extract = dag.get_task("extract_changed")
    assert type(extract).__name__ == "SqlToBatchInputOperator" and extract.incremental is True
    write = dag.get_task("write_results")
    assert type(write).__name__ == "BatchResultsToSqlOperator"
    assert [asset.uri for asset in write.outlets] == [
        "here-batch-table://here_batch_sqlite_default/addresses_geocoded"
    ]


def test_sample_addresses_file() -> None:
    rows = _data_rows(SAMPLE)
    assert list(rows[0]) == ["recId", "q", "in"]
    assert 300 <= len(rows) <= 1000
    assert len({r["recId"] for r in rows}) == len(rows)
    assert sum(1 for r in rows if not r["q"].strip()) >= 3, "expected some deliberately empty queries"
    countries = {r["in"].removeprefix("countryCode:") for r in rows if r["in"]}
    assert len(countries) >= 20
    assert any(ord(ch) > 0x3000 for r in rows for ch in r["q"]), "expected some CJK addresses"


@needs_operators
def test_nightly_geocode_end_to_end(run_dag: RunDag) -> None:
    """The embedded default: SQLite under AIRFLOW_HOME, seeded from the sample, every row geocoded."""
    import sqlite3

    from airflow_here_batch.operators.sql import embedded_database_path

    database = Path(embedded_database_path())
    database.unlink(missing_ok=True)  # this test owns the session's embedded database
    result = run_dag("here_batch_nightly_geocode", logical_date=_at("2025-06-01"))
    assert result.task_states == {
        "seed_addresses": "success",
        "extract_changed": "success",
        "anything_to_send": "success",
        "submit_geocode_job": "success",
        "wait_for_job": "success",
        "download_results": "success",
        "write_results": "success",
    }
    total = len(_data_rows(SAMPLE))
    assert result.xcom("seed_addresses") == total
    extracted = result.xcom("extract_changed")
    assert extracted["input"].startswith("file://")  # a location, never a worker-local path
    assert extracted["records_sent"] == total

    summary = result.xcom("write_results")
    submitted = result.xcom("submit_geocode_job")
    assert summary["job_id"] == submitted["job_id"]
    assert (summary["records_total"], summary["records_sent"], summary["records_reused"]) == (total, total, 0)
    assert summary["records_failed"] >= 3  # the empty queries
    assert summary["records_written"] == total

    files = result.xcom("download_results")
    assert files["results"]["path"] == f"file://{TEST_OUTPUT_DIR}/2025-06-01/results.csv"
    rows = _data_rows(TEST_OUTPUT_DIR / "2025-06-01" / "results.csv")
    assert {"recId", "positionLat", "positionLng", "addressLabel"} <= set(rows[0])

    conn = sqlite3.connect(database)
    try:
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM addresses_geocoded GROUP BY status"))
        labels = conn.execute("SELECT COUNT(*) FROM addresses_geocoded WHERE address_label IS NOT NULL")
        assert labels.fetchone()[0] == statuses["ok"]
    finally:
        conn.close()
    assert sum(statuses.values()) == total and statuses["failed"] == summary["records_failed"]


@needs_operators
def test_reverse_geocode_end_to_end(run_dag: RunDag) -> None:
    result = run_dag("here_batch_reverse_geocode", logical_date=_at("2025-06-02"))
    assert result.task_states == {"reverse_geocode": "success", "download_geojson": "success"}
    job = result.xcom("reverse_geocode")
    assert job["status"] == "completed"
    out = result.xcom("download_geojson")
    assert out["path"] == f"file://{TEST_OUTPUT_DIR}/revgeocode/2025-06-02.geojson"
    path = Path(out["path"].removeprefix("file://"))
    collection = json.loads(path.read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == out["rows"] >= 50


@needs_operators
def test_lookup_end_to_end(run_dag: RunDag) -> None:
    result = run_dag("here_batch_lookup", logical_date=_at("2025-06-03"))
    assert set(result.task_states.values()) == {"success"}, result.describe()
    files = result.xcom("download_results")
    assert files["results"]["path"] == f"file://{TEST_OUTPUT_DIR}/lookup/2025-06-03/results.jsonl"
    results = Path(files["results"]["path"].removeprefix("file://"))
    lines = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) >= 8
    assert files["errors"]["rows"] >= 1  # the ids that are not HERE ids


@needs_operators
def test_taskflow_records_end_to_end(run_dag: RunDag) -> None:
    result = run_dag("here_batch_taskflow_records", logical_date=_at("2025-06-04"))
    assert set(result.task_states.values()) == {"success"}, result.describe()
    customers = result.xcom("extract_customers")
    assert result.xcom("wait_for_job")["records"]["total"] == len(customers)
    enriched = result.xcom("enrich")
    assert enriched == {"customers": len(customers), "geocoded": len(customers) - 1, "missing": 1}
    copy = result.xcom("fetch_rows")["path"]
    assert copy.startswith(f"file://{TEST_OUTPUT_DIR}/taskflow/") and copy.endswith(".csv")
    assert Path(copy.removeprefix("file://")).is_file()


def _backdate(emulator: Any, job_id: str, days: float) -> None:
    """Make the emulator's job look ``days`` old (HERE's ``created``), as if created back then."""
    from datetime import timedelta

    job = emulator.emulator.store.jobs[job_id]
    created = datetime.now(timezone.utc) - timedelta(days=days)
    job.created = created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    emulator.emulator.store.save(job)


@needs_operators
def test_cleanup_deletes_old_ended_jobs_of_this_project_only(
    run_dag: RunDag, here_emulator_session: Any
) -> None:
    """Old ended jobs of this project go, whatever runs were missed; everything a task instance may
    still resume or use stays: stopped jobs, recent jobs; other projects' jobs are not touched."""
    from airflow_here_batch.api import JobOptions, JobStatus
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    # full_refresh: each run sends every record (incremental runs would send nothing the second time).
    refresh = {"full_refresh": True}
    old = run_dag("here_batch_nightly_geocode", logical_date=_at("2025-05-01"), run_conf=refresh)
    old_job = old.xcom("submit_geocode_job")["job_id"]
    recent = run_dag("here_batch_nightly_geocode", logical_date=_at("2025-05-07"), run_conf=refresh)
    recent_job = recent.xcom("submit_geocode_job")["job_id"]

    hook = HereBatchHook()
    body = b"recId|q\n1|Berlin\n2|Paris\n"
    foreign = hook.create_job(body, options=JobOptions(tag="someone-else-2025-05-01"))
    failed = hook.create_job(b"recId|q|x\n1|a\n", options=JobOptions(tag="lookup-2025-04-01_af" + "d" * 16))
    for job_id in (foreign.id, failed.id):
        hook.wait_for_job(job_id, timeout=30)
    admin = here_emulator_session.admin
    admin.settings(records_per_second=0)  # hold the next job in inProgress, so that it can be stopped
    try:
        stopped = hook.create_job(body, options=JobOptions(tag="nightly-geocode-2025-04-30"))
        deadline = time.monotonic() + 30
        while hook.get_job(stopped.id).status is not JobStatus.IN_PROGRESS:
            assert time.monotonic() < deadline, "the held job never started"
            time.sleep(0.05)
        hook.stop_job(stopped.id)
        assert hook.wait_for_job(stopped.id, timeout=30).status is JobStatus.STOPPED
    finally:
        admin.settings(records_per_second=2000.0)
    assert hook.get_job(failed.id).status is JobStatus.FAILURE
    for job_id in (old_job, foreign.id, failed.id, stopped.id):
        _backdate(here_emulator_session, job_id, days=30)

    result = run_dag("here_batch_cleanup", logical_date=_at("2025-05-08"))
    assert set(result.task_states.values()) == {"success"}, result.describe()

    assert sorted(result.xcom("delete_old_jobs")["job_ids"]) == sorted([old_job, failed.id])
    assert hook.get_job(old_job).status is JobStatus.DELETED
    assert hook.get_job(failed.id).status is JobStatus.DELETED
    assert hook.get_job(recent_job).status is JobStatus.COMPLETED  # younger than KEEP_DAYS
    assert hook.get_job(stopped.id).status is JobStatus.STOPPED  # resumable: kept whatever its age
    assert hook.get_job(foreign.id).status is JobStatus.COMPLETED  # not this project's tag
    listed = {job["job_id"] for job in result.xcom("list_jobs")}
    assert {recent_job, stopped.id} <= listed and foreign.id not in listed
