"""Cost under control, as a new user meets it: the nightly example DAG (one ``geocode_table`` call)
inside real Airflow (``dag.test()``), against the emulator and real databases (SQLite and PostgreSQL).

A dry run of the first night counts what would be sent and creates no HERE job; a bound below that count
fails the run before any upload, with the breakdown; an added output column re-sends nothing unless
asked; empty, NULL and blank addresses are never sent, yet are in the table and the summary.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from tests.airflow.support import RunDag
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

DAG_ID = "here_batch_nightly_geocode"
SAMPLE_ROWS = 322
EMPTY = {"A0024", "A0059", "A0098", "A0205"}  # the sample's addresses that are empty or blank
SENT = SAMPLE_ROWS - len(EMPTY)


def _at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T02:00:00").replace(tzinfo=timezone.utc)


@pytest.fixture
def nightly(any_db: Database, emu: Any, monkeypatch: pytest.MonkeyPatch) -> Database:  # noqa: F811
    monkeypatch.setenv("HERE_BATCH_DB_CONN_ID", any_db.conn_id)
    monkeypatch.setenv("HERE_BATCH_RETRIES", "0")
    emu.admin.clear_requests()
    return any_db


def _job_creations(emu: Any) -> list[dict[str, Any]]:
    """``POST /batch/jobs`` requests the emulator received (its request log)."""
    return [r for r in emu.admin.requests() if r["method"] == "POST" and r["path"].endswith("/batch/jobs")]


def _table_exists(db: Database, table: str = "addresses_geocoded") -> bool:
    sql = (
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
        if db.dialect == "sqlite"
        else "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = %s"
    )
    return bool(db.query(sql, (table,))[0][0])


def test_a_dry_run_of_the_first_night_counts_every_record_and_creates_no_job(
    run_dag: RunDag, nightly: Database, emu: Any
) -> None:
    result = run_dag(DAG_ID, logical_date=_at("2025-11-01"), run_conf={"dry_run": True})
    states = result.task_states
    assert states["geocode.extract"] == states["geocode.plan"] == "success", result.describe()
    assert states["geocode.write"] == "skipped"  # no asset event for a table that did not change
    assert states["geocode.merge"] == "skipped"
    assert all(s == "skipped" for k, s in states.items() if k.startswith("geocode.run")), result.describe()

    extracted = result.xcom("geocode.extract")
    assert extracted["dry_run"] is True
    assert extracted["records_total"] == SAMPLE_ROWS
    assert extracted["records_sent"] == SENT
    assert extracted["records_sent_by_reason"] == {"new": SENT}
    assert (extracted["records_skipped"], extracted["records_skipped_by_reason"]) == (
        len(EMPTY),
        {"empty_query": len(EMPTY)},
    )
    plan = result.xcom("geocode.plan", key="plan")
    assert plan["dry_run"] is True and plan["records"] == SENT
    assert [p["records"] for p in plan["parts"]] == [SENT]  # one HERE job would carry them
    summary = result.xcom("geocode.write")
    assert (summary["dry_run"], summary["records_sent"], summary["records_written"]) == (True, SENT, 0)
    night = result.xcom("geocode.summary")  # geocode_table's summary says what a real run would send
    assert states["geocode.summary"] == "success"
    assert (night["dry_run"], night["records_sent"], night["records_written"]) == (True, SENT, 0)
    assert night["records_sent_by_reason"] == {"new": SENT} and night["job_ids"] == []

    assert _job_creations(emu) == []
    assert not _table_exists(nightly), "a dry run writes nothing to the target table"

    real = run_dag(DAG_ID, logical_date=_at("2025-11-02"))
    assert set(real.task_states.values()) == {"success"}, real.describe()
    assert real.xcom("geocode.extract")["records_sent"] == SENT  # exactly what the dry run said
    assert len(_job_creations(emu)) == 1


def test_a_bound_below_the_count_fails_before_any_upload_with_the_breakdown(
    run_dag: RunDag, nightly: Database, emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_dag(
        DAG_ID, logical_date=_at("2025-11-05"), run_conf={"max_records_to_send": 100}, expect="failed"
    )
    assert result.task_states["geocode.extract"] == "failed", result.describe()
    assert result.task_states["geocode.plan"] in ("upstream_failed", "skipped")
    assert _job_creations(emu) == []
    text = result.tasks["geocode.extract"].log_text + capfd.readouterr().out
    assert f"this run would send {SENT:,} records to HERE, above the bound of 100" in text
    assert f"by reason: {SENT:,} new" in text
    assert '"max_records_to_send": 318' in text  # how to go on: the param, with the count
    assert "fix the source" in text

    allowed = run_dag(DAG_ID, logical_date=_at("2025-11-06"), run_conf={"max_records_to_send": SENT})
    assert set(allowed.task_states.values()) == {"success"}, allowed.describe()


def test_the_deployment_bound_applies_and_a_param_raises_it_for_one_run(
    run_dag: RunDag, nightly: Database, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[here_batch] max_records_to_send`` (env) bounds every task; the DAG param raises it for a run."""
    monkeypatch.setenv("AIRFLOW__HERE_BATCH__MAX_RECORDS_TO_SEND", "50")
    refused = run_dag(DAG_ID, logical_date=_at("2025-11-07"), expect="failed")
    assert refused.task_states["geocode.extract"] == "failed", refused.describe()
    assert _job_creations(emu) == []
    passed = run_dag(DAG_ID, logical_date=_at("2025-11-08"), run_conf={"max_records_to_send": 1000})
    assert set(passed.task_states.values()) == {"success"}, passed.describe()


def test_empty_addresses_cost_nothing_and_are_in_the_table_and_the_summary(
    run_dag: RunDag, nightly: Database, emu: Any
) -> None:
    first = run_dag(DAG_ID, logical_date=_at("2025-11-10"))
    assert set(first.task_states.values()) == {"success"}, first.describe()
    (part,) = [v for (t, _, k), v in first.xcoms.items() if t == "geocode.run" and k == "return_value"]
    assert part["records"]["total"] == SENT  # HERE never saw the empty ones
    summary = first.xcom("geocode.summary")
    assert summary["records_skipped"] == len(EMPTY)
    assert summary["records_skipped_by_reason"] == {"empty_query": len(EMPTY)}
    assert summary["records_written"] == SAMPLE_ROWS
    rows = nightly.query(
        "SELECT rec_id, status, error_code, job_id, request_fingerprint FROM addresses_geocoded"
    )
    skipped = {r[0]: r for r in rows if r[1] == "skipped"}
    assert set(skipped) == EMPTY
    assert all(r[2] == "empty_query" and r[3] is None and r[4] for r in skipped.values())

    # A NULL address is empty too; a filled one is sent the next night.
    nightly.execute(f"UPDATE addresses SET address = NULL WHERE id = {nightly.ph}", ("A0001",))
    nightly.execute(
        f"UPDATE addresses SET address = {nightly.ph} WHERE id = {nightly.ph}",
        ("Invalidenstr. 116, Berlin", "A0024"),
    )
    second = run_dag(DAG_ID, logical_date=_at("2025-11-11"))
    summary = second.xcom("geocode.summary")
    assert summary["records_sent_by_reason"] == {"changed": 1}
    assert summary["records_skipped_by_reason"] == {"empty_query": 1}
    statuses = dict(
        nightly.query("SELECT rec_id, status FROM addresses_geocoded WHERE rec_id IN ('A0001', 'A0024')")
    )
    assert statuses == {"A0001": "skipped", "A0024": "ok"}


def test_an_added_output_column_resends_nothing_unless_asked(
    run_dag: RunDag,
    nightly: Database,
    emu: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    first = run_dag(DAG_ID, logical_date=_at("2025-11-20"))
    assert set(first.task_states.values()) == {"success"}, first.describe()
    outputs = "positionLat,positionLng,addressLabel,addressCountryCode,resultType,scoringQueryScore"
    monkeypatch.setenv("HERE_BATCH_OUTPUT_COLUMNS", outputs)  # the DAG file is parsed again per run
    capfd.readouterr()

    kept = run_dag(DAG_ID, logical_date=_at("2025-11-21"))
    assert set(kept.task_states.values()) <= {"success", "skipped"}, kept.describe()
    extracted = kept.xcom("geocode.extract")
    assert extracted["records_sent"] == 0
    assert extracted["records_would_resend"] == {"output_columns_changed": SENT}  # not the empty ones
    assert f"re-sending them would send {SENT} more records" in capfd.readouterr().out
    assert len(_job_creations(emu)) == 1  # the first night's only

    resent = run_dag(
        DAG_ID, logical_date=_at("2025-11-22"), run_conf={"on_output_columns_change": "resend"}
    )
    assert set(resent.task_states.values()) == {"success"}, resent.describe()
    extracted = resent.xcom("geocode.extract")
    # the skipped rows (no result to complete) are not re-sent either: their query is still empty
    assert extracted["records_sent_by_reason"] == {"output_columns_changed": SENT}
    assert extracted["records_skipped"] == len(EMPTY)
    scores = nightly.query("SELECT COUNT(*) FROM addresses_geocoded WHERE scoring_query_score IS NOT NULL")
    assert scores[0][0] > 0
    after = run_dag(DAG_ID, logical_date=_at("2025-11-23"))
    extracted = after.xcom("geocode.extract")
    assert (extracted["records_sent"], extracted["records_would_resend"]) == (0, {})
