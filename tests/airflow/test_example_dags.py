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
    from airflow.dag_processing.dagbag import DagBag

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
    path = Path(out["path"])
    assert path == TEST_OUTPUT_DIR / "revgeocode" / "2025-06-02.geojson"
    collection = json.loads(path.read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == out["rows"] >= 50


@needs_operators
def test_lookup_end_to_end(run_dag: RunDag) -> None:
    result = run_dag("here_batch_lookup", logical_date=_at("2025-06-03"))
    assert set(result.task_states.values()) == {"success"}, result.describe()
    files = result.xcom("download_results")
    results = Path(files["results"]["path"])
    assert results == TEST_OUTPUT_DIR / "lookup" / "2025-06-03" / "results.jsonl"
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


@needs_operators
def test_cleanup_deletes_the_old_nightly_job(run_dag: RunDag) -> None:
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    # full_refresh: each run sends every record (incremental runs would send nothing the second time).
    refresh = {"full_refresh": True}
    old = run_dag("here_batch_nightly_geocode", logical_date=_at("2025-05-01"), run_conf=refresh)
    old_job = old.xcom("submit_geocode_job")["job_id"]
    recent = run_dag("here_batch_nightly_geocode", logical_date=_at("2025-05-07"), run_conf=refresh)
    recent_job = recent.xcom("submit_geocode_job")["job_id"]

    result = run_dag("here_batch_cleanup", logical_date=_at("2025-05-08"))  # keeps 7 days: 05-01 goes
    assert set(result.task_states.values()) == {"success"}, result.describe()

    hook = HereBatchHook()
    assert hook.get_job(old_job).status.value == "deleted"
    assert hook.get_job(recent_job).status.value == "completed"
    listed = result.xcom("list_jobs")
    assert any(job.get("job_id") == recent_job for job in listed)
