"""SubmitBatchJobOperator with bad inputs inside real Airflow (issue 10 §1)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.airflow.support import RunDag


def test_skip_leaves_bad_rows_out_writes_rejects_and_says_so(
    run_dag: RunDag, emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import ObjectStoragePath

    result = run_dag("test_ops_inputs_skip")
    assert set(result.task_states.values()) == {"success"}, result.describe()
    submitted = result.xcom("submit_skip")
    assert submitted["status"] == "completed" and submitted["records"]["total"] == 2
    assert result.xcom("submit_skip", key="rejected") == 2
    path = result.xcom("submit_skip", key="rejects_path")
    assert path.endswith(f"/test_ops_inputs_skip/{result.run_id}/submit_skip/rejects.jsonl")
    rejects = [json.loads(line) for line in ObjectStoragePath(path).read_text().splitlines()]
    assert [(r["where"], r["problems"][0]["field"]) for r in rejects] == [("row 2", "q"), ("row 3", "q")]
    assert (
        "line break" in rejects[0]["problems"][0]["message"]
        and "None" in rejects[1]["problems"][0]["message"]
    )
    out = capfd.readouterr().out
    assert "2 of 4 records left out (on_bad_record='skip')" in out  # never silently

    # A BOM is stripped: HERE gets the recIds as given (7, 9), not numbers of its own (1, 2).
    assert result.xcom("submit_bom", key="rejected") == 0
    assert {row["recId"] for row in result.xcom("bom_records")["rows"]} == {"7", "9"}


def test_refused_inputs_fail_before_upload_naming_lines_and_fixes(
    run_dag: RunDag, emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    before = emu.admin.stats()["requests"].get("create_job", 0)
    result = run_dag("test_ops_inputs_refused", expect="failed")
    assert result.task_states == {"header_only": "failed", "many_bad_positions": "failed"}
    assert emu.admin.stats()["requests"].get("create_job", 0) == before
    out = capfd.readouterr().out
    # Jinja drops the trailing newline of "recId|q\n"; it is still text, not a file path.
    assert "the input was not uploaded: the input holds no records (only a header)" in out
    assert "does not exist" not in out and "is not an existing file" not in out
    assert "the input was not uploaded: input: 31 problems ('at' not a position: 31); the first 20:" in out
    assert "  line 2: 'at' is '95.0,200.0': latitude 95.0 is outside -90..90" in out
    assert "... and 11 more" in out and "on_bad_record='skip'" in out
