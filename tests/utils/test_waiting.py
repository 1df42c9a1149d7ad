"""Issue 10 §2 and §4 inside real Airflow (``dag.test()``): the same scenarios waited on a worker and
deferred to the triggerer end in the same task state with the same message, and while HERE echoes
the API key in every error text, no event, exception text, XCom or task log carries it.

The DAG is ``tests/airflow/dags/ops_wait_rules.py``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.support import TEST_API_KEY, RunDag

#: scenario -> the state both modes must end in
EXPECTED = {
    "submit_failure": "failed",
    "submit_execution_timeout": "failed",
    "failure": "failed",
    "failure_soft": "skipped",  # HERE's verdict on the job: soft
    "stopped": "failed",
    "deleted": "failed",
    "unauthorized_soft": "failed",  # a technical error is never soft
    "timeout_soft": "skipped",  # the sensor's own timeout is soft, as for every sensor
    "outage": "failed",  # the outage rule (max_outage), soft_fail or not
}
MODES = {"submit": ("worker", "deferred"), "sensor": ("poke", "deferred")}


def normalise(text: str) -> str:
    text = re.sub(r"JOB-[0-9a-f-]{36}", "JOB-x", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)
    return re.sub(r"for \d+ s \(max_outage\)", "for N s (max_outage)", text)


def test_same_scenarios_same_state_and_message_in_every_wait_mode(
    run_dag: RunDag,
    emu: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv("HERE_TEST_RESULTS_FILE", str(results))
    conn = {
        "conn_type": "here_batch",
        "host": emu.base_url,
        "password": TEST_API_KEY,
        "extra": {"max_retries": 0},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HERE_NORETRY", json.dumps(conn))
    emu.admin.settings(records_per_second=0)  # jobs stay in progress until the scenario acts
    emu.admin.inject_fault("*", "echo", count=1_000_000)  # every error text quotes URL and apiKey

    result = run_dag("test_ops_wait_rules", expect="failed")

    entries = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    outcomes: dict[str, dict[str, Any]] = {e["task_id"]: e for e in entries if "kind" in e}
    events = [e["event"] for e in entries if "event" in e]
    for scenario, state in EXPECTED.items():
        modes = MODES["submit" if scenario.startswith("submit") else "sensor"]
        first, second = (f"{scenario}_{mode}" for mode in modes)
        assert result.task_states[first] == result.task_states[second] == state, (scenario, result.describe())
        assert first in outcomes and second in outcomes, (scenario, sorted(outcomes))
        assert outcomes[first]["kind"] == outcomes[second]["kind"], scenario
        assert normalise(outcomes[first]["text"]) == normalise(outcomes[second]["text"]), scenario
    # Each deferred task resumed from a trigger event (the mode really was exercised).
    assert len(events) >= len(EXPECTED)

    texts = {k: v["text"] for k, v in outcomes.items()}
    assert (
        "HTTP 401" in texts["unauthorized_soft_deferred"]
        and "apiKey=***" in texts["unauthorized_soft_deferred"]
    )
    assert "max_outage" in texts["outage_deferred"]
    assert "execution_timeout" in texts["submit_execution_timeout_deferred"]
    assert "First lines of HERE's errors report" in texts["failure_deferred"]
    # cancel_on_kill: the job of each execution_timeout run was stopped, in both modes.
    stopped = {o["job_id"] for k, o in outcomes.items() if k.startswith("submit_execution_timeout")}
    assert len(stopped) == 2
    assert {j["id"]: j["status"] for j in emu.admin.jobs() if j["id"] in stopped} == dict.fromkeys(
        stopped, "stopped"
    )

    # §2: HERE echoed the key in every error text; none reached an event, an outcome, XCom or a log.
    logs = capfd.readouterr()
    everything = [
        results.read_text(encoding="utf-8"),
        json.dumps([[str(k), v] for k, v in result.xcoms.items()], default=str),
        logs.out,
        logs.err,
        *(ti.log_text for ti in result.tasks.values()),
    ]
    assert any("Authorization=" in text for text in everything)  # the echo did happen
    for text in everything:
        assert TEST_API_KEY not in text


def test_a_second_job_under_the_task_instances_tag_is_stopped_and_reported(run_dag: RunDag, emu: Any) -> None:
    emu.admin.settings(records_per_second=0)  # both jobs stay running until the submit task acts
    result = run_dag("test_ops_one_job")
    older, newer = result.xcom("plant")
    summary = result.xcom("submit")
    assert summary["job_id"] == newer  # reattached, nothing uploaded again
    assert summary["extra_jobs_stopped"] == [older]
    statuses = {j["id"]: j["status"] for j in emu.admin.jobs() if j.get("tag") == summary["tag"]}
    assert set(statuses) == {older, newer}
    assert statuses[newer] in ("queued", "pending", "inProgress")
    deadline = time.monotonic() + 10
    while next(j["status"] for j in emu.admin.jobs() if j["id"] == older) != "stopped":
        assert time.monotonic() < deadline, "the extra job was not stopped"
        time.sleep(0.05)


def test_a_create_answered_late_leads_to_one_job_not_two(
    run_dag: RunDag, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {
        "conn_type": "here_batch",
        "host": emu.base_url,
        "password": TEST_API_KEY,
        "extra": {"timeout": 0.5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HERE_SHORT_TIMEOUT", json.dumps(conn))
    before = {j["id"] for j in emu.admin.jobs()}
    result = run_dag("test_ops_late_create")
    assert result.tasks["submit"].try_number == 2  # the first try failed: outcome of the create unknown
    summary = result.xcom("submit")
    created = [j for j in emu.admin.jobs() if j["id"] not in before]
    assert [j["id"] for j in created] == [summary["job_id"]]  # the late job was found; one upload only
    assert summary["status"] == "completed" and "extra_jobs_stopped" not in summary
