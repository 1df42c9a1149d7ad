"""The ``run_dag`` helper itself: a trivial TaskFlow DAG from ``tests/airflow/dags/`` runs under
``dag.test()`` and its states and XComs (including mapped tasks) come back as plain data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.airflow.support import RunDag, resolve_dag_file
from tests.conftest import TEST_DAGS_DIR


def test_resolve_dag_file_by_id_and_name() -> None:
    assert resolve_dag_file("helper_smoke") == (TEST_DAGS_DIR / "helper_smoke_dag.py", "helper_smoke")
    assert resolve_dag_file("helper_smoke_dag.py") == (TEST_DAGS_DIR / "helper_smoke_dag.py", None)


def test_run_dag_returns_states_and_xcoms(run_dag: RunDag) -> None:
    result = run_dag("helper_smoke")
    assert result.state == "success"
    assert result.task_states == {
        "produce": "success",
        "consume": "success",
        "fan_out": "success",
        "square[0]": "success",
        "square[1]": "success",
        "square[2]": "success",
    }
    assert result.xcom("produce") == {"answer": 42}
    assert result.xcom("consume") == 43
    assert [result.xcom("square", map_index=i) for i in range(3)] == [1, 4, 9]


def test_run_dag_twice_gives_two_runs(run_dag: RunDag) -> None:
    first = run_dag("helper_smoke")
    second = run_dag(Path(TEST_DAGS_DIR / "helper_smoke_dag.py"))
    assert first.run_id != second.run_id
    assert second.xcom("consume") == 43


def test_run_dag_reports_a_failed_run(run_dag: RunDag) -> None:
    result = run_dag("helper_failing", expect="failed")
    assert result.task_states == {"boom": "failed", "after": "upstream_failed"}
    described = result.describe()
    assert "boom: failed" in described
    assert "after: upstream_failed" in described


def test_run_dag_asserts_the_expected_state(run_dag: RunDag) -> None:
    with pytest.raises(AssertionError, match="boom: failed"):
        run_dag("helper_failing")
