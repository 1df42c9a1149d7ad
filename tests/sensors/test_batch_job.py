"""``BatchJobSensor`` inside real Airflow (``dag.test()``) against the session emulator: every outcome."""

from __future__ import annotations

from typing import Any

import pytest

from tests.airflow.support import RunDag


def test_sensor_outcomes(run_dag: RunDag, emu: Any, capfd: pytest.CaptureFixture[str]) -> None:
    emu.admin.settings(records_per_second=0)  # jobs stay in progress until failed or stopped
    result = run_dag("test_ops_sensor_outcomes", expect="failed")
    states = result.task_states
    assert states["failure_poke"] == "failed", result.describe()
    assert states["failure_deferred"] == "failed", result.describe()
    assert states["failure_soft"] == "skipped", result.describe()
    assert states["stopped_default"] == "failed", result.describe()
    assert states["stopped_allowed"] == "success", result.describe()
    assert states["unknown_job"] == "failed", result.describe()
    assert states["timeout_deferred"] == "skipped", result.describe()  # soft_fail on the deadline
    assert result.xcom("stopped_allowed")["status"] == "stopped"
    assert result.xcom("stop")["status"] == "stopped"
    out = capfd.readouterr().out  # dag.test() logs tasks to stdout
    assert "as failed" in out and "First lines of HERE's errors report" in out
    assert "was stopped with" in out and "allow_stopped=True" in out
    assert "does not exist at HERE" in out


def test_completed_job_sensor_returns_summary(run_dag: RunDag, emu: Any) -> None:
    result = run_dag("test_ops_poke_pipeline")
    summary = result.xcom("wait")
    assert summary["status"] == "completed"
    assert set(summary) >= {"job_id", "status", "service", "records", "results_href", "errors_href"}
