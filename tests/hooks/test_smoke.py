"""The smoke check (``here-batch-smoke``) against the emulator: it runs green, bills two records, deletes
its job, refuses to run unconfirmed, and a failure names both request ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks.here_batch import HereBatchHook
from airflow_here_batch.smoke import CONFIRM_FLAG, SmokeCheckRefusedError, main, run_smoke_check
from tests.hooks.conftest import API_KEY
from tests.hooks.test_wire import check_wire


def test_the_smoke_check_runs_green(
    hook: HereBatchHook, emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.admin.clear_requests()
    assert main(["--conn-id", "here_test", CONFIRM_FLAG, "--poll-interval", "0.05"]) == 0
    out = capsys.readouterr().out
    # Airflow 3.0 logs to stdout too: the check's own lines are those that start with a verdict.
    steps = [line.split()[:2] for line in out.splitlines() if line.split()[:1] in (["ok"], ["FAIL"])]
    assert steps == [["ok", s] for s in ("version", "create", "wait", "results", "errors", "delete")], out
    assert "(gzip)" in out and "total 2, succeeded 2" in out
    assert out.splitlines()[-1].startswith("PASSED") and out.endswith("cost: 2 records billed by HERE\n")
    (job,) = emulator.admin.jobs()
    assert job["status"] == "deleted" and job["records"]["total"] == 2
    entries = emulator.admin.requests()
    check_wire(entries)
    create = next(e for e in entries if e["method"] == "POST")
    assert create["headers"]["content-encoding"] == "gzip"


def test_it_refuses_to_run_unconfirmed(
    hook: HereBatchHook, emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.admin.clear_requests()
    assert main(["--conn-id", "here_test"]) == 2
    assert CONFIRM_FLAG in capsys.readouterr().err
    with pytest.raises(SmokeCheckRefusedError, match="bills"):
        run_smoke_check(hook, confirm_billing=False)
    assert emulator.admin.requests() == []  # nothing reached HERE


def test_a_failed_step_names_both_ids_and_the_job_is_still_deleted(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    emulator.admin.inject_fault(endpoint="results", kind="status", status=403, count=1)
    lines: list[str] = []
    report = run_smoke_check(hook, confirm_billing=True, poll_interval=0.05, echo=lines.append)
    assert not report.ok and report.steps[-1][0] == "results" and report.records_billed == 2
    request_id = next(
        e["headers"]["x-request-id"] for e in emulator.admin.requests() if e["path"].endswith("/results")
    )
    failed = next(line for line in lines if line.startswith("FAIL"))
    assert f"X-Request-ID {request_id}" in failed and "correlationId " in failed
    assert emulator.admin.jobs()[0]["status"] == "deleted"
    assert lines[-1].startswith("FAILED") and "2 records billed" in lines[-1]


def test_the_command_runs_green_in_its_own_process(emulator: EmulatorServer) -> None:
    conn = {"conn_type": "here_batch", "host": emulator.base_url, "password": API_KEY}
    env = {**os.environ, "AIRFLOW_CONN_HERE_SMOKE": json.dumps(conn)}
    command = [sys.executable, "-m", "airflow_here_batch.smoke", "--conn-id", "here_smoke", CONFIRM_FLAG]
    done = subprocess.run([*command, "--poll-interval", "0.1"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "PASSED" in done.stdout and API_KEY not in done.stdout + done.stderr
