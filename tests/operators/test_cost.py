"""The spend guard and the dry run of the submit operator and the split, inside real Airflow against the
emulator: a dry run creates no job (the emulator's request log shows none), a bound below the count
fails before any upload, mapped submits and split parts count together."""

from __future__ import annotations

from typing import Any

import pytest

from tests.airflow.support import RunDag


@pytest.fixture
def cost_emu(emu: Any) -> Any:
    emu.admin.clear_requests()
    emu.admin.settings(max_records=1_000_000, max_running_jobs=5)
    return emu


def _creations(emu: Any) -> list[dict[str, Any]]:
    """``POST /batch/jobs`` requests in the emulator's request log."""
    return [r for r in emu.admin.requests() if r["method"] == "POST" and r["path"].endswith("/batch/jobs")]


def _text(result: Any, key: str, capfd: pytest.CaptureFixture[str]) -> str:
    return result.tasks[key].log_text + capfd.readouterr().out


def test_a_dry_run_submit_counts_and_creates_no_job(run_dag: RunDag, cost_emu: Any) -> None:
    result = run_dag("test_cost_submit", run_conf={"dry_run": True})
    assert result.xcom("submit") == {
        "dry_run": True,
        "job_id": None,
        "records_to_send": 5,
        "rejected": 0,
        "estimated_cost": 0.01,
        "max_records_to_send": None,
        "bound_exceeded": False,
    }
    assert cost_emu.admin.requests() == []  # not even a look-up


def test_a_submit_above_its_bound_fails_before_any_upload(
    run_dag: RunDag, cost_emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_dag("test_cost_submit", run_conf={"max_records_to_send": 4}, expect="failed")
    assert result.tasks["submit"].state == "failed" and result.tasks["submit"].try_number == 1
    assert _creations(cost_emu) == []
    text = _text(result, "submit", capfd)
    assert "this task would send 5 records to HERE, above the bound of 4" in text
    assert "(the task's max_records_to_send); nothing was uploaded" in text
    assert "by reason: 5 input" in text

    assert run_dag("test_cost_submit", run_conf={"max_records_to_send": 5}).state == "success"
    assert len(_creations(cost_emu)) == 1


def test_mapped_submits_count_together(
    run_dag: RunDag, cost_emu: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two mapped instances of 3 records under a bound of 5: each alone fits, together they do not; the
    instance that counts second sees both counts and is refused before its upload."""
    monkeypatch.setenv("HERE_TEST_COST_BOUND", "5")
    result = run_dag("test_cost_mapped_submits", expect="failed")
    states = sorted(result.tasks[k].state or "" for k in ("submit[0]", "submit[1]"))
    assert states == ["failed", "success"], result.describe()
    assert len(_creations(cost_emu)) == 1
    refused = next(k for k in ("submit[0]", "submit[1]") if result.tasks[k].state == "failed")
    assert "the 2 mapped instances of submit together (as counted so far) would send 6 records" in _text(
        result, refused, capfd
    )

    monkeypatch.setenv("HERE_TEST_COST_BOUND", "6")
    cost_emu.admin.clear_requests()
    assert run_dag("test_cost_mapped_submits").state == "success"
    assert len(_creations(cost_emu)) == 2


def test_a_dry_run_split_plans_the_parts_and_creates_no_job(run_dag: RunDag, cost_emu: Any) -> None:
    result = run_dag("test_cost_split", run_conf={"dry_run": True})
    assert result.task_states["geo.plan"] == "success"
    assert result.task_states["geo.merge"] == "skipped"
    assert all(s == "skipped" for k, s in result.task_states.items() if k.startswith("geo.run"))
    assert result.xcom("geo.plan") == []
    plan = result.xcom("geo.plan", key="plan")
    assert [p["records"] for p in plan["parts"]] == [2, 2, 1]
    assert (plan["records"], plan["estimated_cost"], plan["bound_exceeded"]) == (5, 0.005, False)
    assert cost_emu.admin.requests() == []


def test_a_split_counts_all_its_parts_together(
    run_dag: RunDag, cost_emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_dag("test_cost_split", run_conf={"max_records_to_send": 4}, expect="failed")
    assert result.tasks["geo.plan"].state == "failed"
    assert _creations(cost_emu) == []
    assert "this split (3 parts together) would send 5 records to HERE, above the bound of 4" in _text(
        result, "geo.plan", capfd
    )
