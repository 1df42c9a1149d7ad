"""Every operator inside real Airflow (``dag.test()`` on DAG files in tests/airflow/dags/) against the
session emulator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.airflow.support import TEST_API_KEY, RunDag
from tests.conftest import TEST_AIRFLOW_HOME, TEST_OUTPUT_DIR

if TYPE_CHECKING:
    pass


def jobs_tagged(emu: Any, prefix: str) -> list[dict[str, Any]]:
    return [j for j in emu.admin.jobs() if (j.get("tag") or "").startswith(prefix)]


def test_poke_pipeline_every_operator(run_dag: RunDag, emu: Any) -> None:
    result = run_dag("test_ops_poke_pipeline")
    assert set(result.task_states.values()) == {"success"}, result.describe()
    submitted = result.xcom("submit")
    assert set(submitted) >= {"job_id", "status", "records", "results_href"}
    assert submitted["tag"].startswith("ops-poke_af")
    job_id = submitted["job_id"]

    summary = result.xcom("wait")
    assert summary["status"] == "completed" and summary["records"]["succeeded"] == 3

    both = result.xcom("download_both")
    results_path = Path(both["results"]["path"])
    assert results_path.name == "results.csv" and both["results"]["rows"] >= 3
    assert results_path.read_text(encoding="utf-8").startswith("recId|")
    assert both["results"]["bytes"] == results_path.stat().st_size
    assert both["errors"]["empty"] is True and both["errors"]["path"] is None
    assert not [p for p in results_path.parent.iterdir() if p.name.endswith(".part")]

    geo = result.xcom("download_geojson")
    collection = json.loads(Path(geo["path"]).read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == geo["rows"] >= 3

    records = result.xcom("download_records")
    assert records["path"] is None and records["count"] == len(records["rows"]) >= 3
    assert {r["recId"] for r in records["rows"]} == {"1", "2", "3"}

    listed = result.xcom("list")
    assert job_id in [j["job_id"] for j in listed]
    assert result.xcom("stop_completed")["status"] == "completed"
    assert result.xcom("delete") == {"total": 1, "job_ids": [job_id]}
    assert next(j for j in emu.admin.jobs() if j["id"] == job_id)["status"] == "deleted"


def test_deferrable_submit_and_sensor_and_object_storage_destination(run_dag: RunDag, emu: Any) -> None:
    result = run_dag("test_ops_deferrable")
    assert set(result.task_states.values()) == {"success"}, result.describe()
    submitted = result.xcom("submit_wait")
    assert submitted["status"] == "completed" and submitted["records"]["total"] == 2
    assert result.xcom("wait_deferred")["status"] == "completed"
    downloaded = result.xcom("download_to_object_storage")
    assert downloaded["path"].startswith("file://") and downloaded["rows"] >= 2
    local = Path(downloaded["path"].removeprefix("file://"))
    assert local.read_text(encoding="utf-8").startswith("recId")


def test_sync_wait_with_object_storage_input_and_gzip(
    run_dag: RunDag, emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("recId|q\n" + "".join(f"{i}|Street {i}, Berlin\n" for i in range(50)), encoding="utf-8")
    monkeypatch.setenv("HERE_TEST_INPUT_URI", f"file://{source}")
    result = run_dag("test_ops_sync_wait")
    submitted = result.xcom("submit_sync_wait")
    assert submitted["status"] == "completed" and submitted["records"]["total"] == 50


def test_sensor_reschedule_mode_and_jsonl(run_dag: RunDag, emu: Any) -> None:
    result = run_dag("test_ops_deferred_submit_then_sensor_reschedule")
    assert result.task_states == {"submit": "success", "wait_reschedule": "success"}, result.describe()
    assert result.xcom("wait_reschedule")["service"] == "revgeocode"


def test_task_killed_after_submit_and_retried_reattaches(
    run_dag: RunDag, emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_dag("test_ops_retry_after_kill")
    out = capfd.readouterr().out
    assert "found by its tag ops-kill-tag_af" in out  # lost before the id was kept: the tag finds it
    assert "found by the task-state store" in out  # Airflow 3.3: the kept id finds it
    assert set(result.task_states.values()) == {"success"}, result.describe()
    for task_id, prefix, rows_task in (
        ("submit_tag_path", "ops-kill-tag_af", "rows_tag_path"),
        ("submit_state_path", "ops-kill-state_af", "rows_state_path"),
    ):
        assert result.tasks[task_id].try_number == 2, result.describe()
        jobs = [j for j in jobs_tagged(emu, prefix) if j["tag"].startswith(prefix)]
        mine = [j for j in jobs if j["id"] == result.xcom(task_id)["job_id"]]
        assert len(mine) == 1
        # exactly one job for this task instance (the run id is in the fingerprint)
        assert sum(1 for j in emu.admin.jobs() if j.get("tag") == mine[0]["tag"]) == 1
        assert result.xcom(task_id)["status"] == "completed"
        assert result.xcom(rows_task)["count"] == 2


def test_killing_a_waiting_task_stops_the_job(run_dag: RunDag, emu: Any) -> None:
    from airflow_here_batch.api import PollSchedule
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    emu.admin.settings(records_per_second=0)  # hold: the job never finishes on its own
    result = run_dag("test_ops_kill_waiting", expect="failed")
    assert result.task_states == {"submit_and_wait": "failed"}
    job_id = result.xcom("submit_and_wait", key="job_id")
    # the halt is asynchronous at HERE
    job = HereBatchHook().wait_for_job(job_id, schedule=PollSchedule(0.1, 0.5), timeout=30)
    assert job.status.value == "stopped"
    assert emu.admin.stats()["requests"].get("stop_job", 0) >= 1


def test_invalid_input_fails_before_upload(
    run_dag: RunDag, emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    before = emu.admin.stats()["requests"].get("create_job", 0)
    run_dag("test_ops_invalid_input", expect="failed")
    assert emu.admin.stats()["requests"].get("create_job", 0) == before
    out = capfd.readouterr().out  # dag.test() logs tasks to stdout
    assert "the input was not uploaded: input line 3: has 3 values" in out


def test_api_key_appears_in_no_log_and_no_xcom(
    run_dag: RunDag, emu: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")  # what task logs hold by default (see the report on urllib3 DEBUG lines)
    emu.admin.inject_fault("create_job", "status", status=429, retry_after=0.1, count=1)
    emu.admin.inject_fault("get_job", "status", status=503, count=3)
    emu.admin.inject_fault("list_jobs", "status", status=500, count=1)
    emu.admin.inject_fault("results", "drop", count=1)
    emu.admin.inject_fault("delete_job", "status", status=502, count=1)
    result = run_dag("test_ops_secrets", expect="failed")
    assert result.task_states["download"] == "success", result.describe()
    assert result.task_states["delete_missing"] == "failed"
    assert result.xcom("download")["count"] == 2
    captured = capfd.readouterr()
    texts = [
        captured.out,
        captured.err,
        caplog.text,
        json.dumps({str(k): v for k, v in result.xcoms.items()}, default=str),
    ]
    folder = TEST_AIRFLOW_HOME / "logs" / "dag_id=test_ops_secrets"
    texts += [p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file()]
    texts += [t.log_text for t in result.tasks.values()]
    assert "HTTP 503" in captured.out + captured.err + caplog.text  # the failing requests were logged...
    for text in texts:
        assert TEST_API_KEY not in text  # ...without the key
        assert "apiKey=" not in text


def test_create_answer_lost_after_the_job_was_created_gives_one_job(run_dag: RunDag, emu: Any) -> None:
    emu.admin.inject_fault("create_job", "drop", count=1, after_processing=True)
    result = run_dag("test_ops_lost_answer")
    submitted = result.xcom("submit")
    assert submitted["status"] == "completed"
    assert result.tasks["submit"].try_number == 1
    same_tag = [j for j in emu.admin.jobs() if j.get("tag") == submitted["tag"]]
    assert [j["id"] for j in same_tag] == [submitted["job_id"]]


def test_download_failures_leave_nothing_behind(
    run_dag: RunDag, emu: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    fast_retries = {"max_retries": 2, "backoff_base": 0.05, "backoff_max": 0.2}
    conn = {"conn_type": "here_batch", "host": emu.base_url, "password": "k-fast-0123", "extra": fast_retries}
    monkeypatch.setenv("AIRFLOW_CONN_HERE_BATCH_FAST", json.dumps(conn))
    emu.admin.inject_fault("results", "truncate", count=1)
    result = run_dag("test_ops_download_failures", expect=None)
    assert result.task_states["submit_done"] == "success", result.describe()
    assert result.task_states["records_over_cap"] == "failed"
    assert result.task_states["download_cut_off"] == "success"  # a cut-off download is retried

    emu.admin.inject_fault("results", "truncate", count=10)  # every attempt is cut off
    result = run_dag("test_ops_download_failures", expect="failed")
    assert result.task_states["download_cut_off"] == "failed", result.describe()
    assert result.task_states["download_too_early"] == "failed"
    folder = TEST_OUTPUT_DIR / "cut"
    run_folder = folder / result.run_id.replace(":", "_").replace("+", "_")
    assert not (run_folder / "results.csv").exists()
    assert not [p for p in folder.rglob("*") if p.name.endswith(".part")]
    out = capfd.readouterr().out  # dag.test() logs tasks to stdout
    assert "wait for it first" in out and "max_records_rows" in out


def test_reattach_tag_is_per_task_instance_and_matches_the_user_tag() -> None:
    from airflow_here_batch.operators.batch_job import reattach_tag, tag_matches

    tag = reattach_tag("nightly-2025-01-01", "dag", "task", "run", -1)
    assert tag.startswith("nightly-2025-01-01_af") and len(tag) == len("nightly-2025-01-01_af") + 16
    assert tag == reattach_tag("nightly-2025-01-01", "dag", "task", "run", -1)
    others = {
        reattach_tag("nightly-2025-01-01", "dag", "task", "run", 0),
        reattach_tag("nightly-2025-01-01", "dag", "task", "run2", -1),
        reattach_tag("nightly-2025-01-01", "dag", "task2", "run", -1),
    }
    assert tag not in others and len(others) == 3
    assert tag_matches(tag, "nightly-2025-01-01") and tag_matches("nightly-2025-01-01", "nightly-2025-01-01")
    assert not tag_matches(tag, "nightly-2025-01") and not tag_matches(None, "x")
    assert len(reattach_tag("x" * 400, "d", "t", "r")) <= 256
    assert reattach_tag(None, "d", "t", "r").startswith("af")


def test_mapped_submits_get_one_job_each_and_sensor_rides_out_an_outage(
    run_dag: RunDag, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_retries = {"max_retries": 1, "backoff_base": 0.05, "backoff_max": 0.2}
    conn = {"conn_type": "here_batch", "host": emu.base_url, "password": "k-fast-0123", "extra": fast_retries}
    monkeypatch.setenv("AIRFLOW_CONN_HERE_BATCH_FAST", json.dumps(conn))
    emu.admin.settings(records_per_second=20)
    emu.admin.inject_fault("get_job", "status", status=503, count=6)  # more than the hook retries
    result = run_dag("test_ops_mapped_and_flaky")
    tags = {result.xcom("submit_mapped", map_index=i)["tag"] for i in (0, 1)}
    assert len(tags) == 2 and all(t.startswith("ops-mapped_af") for t in tags)
    assert result.xcom("wait_through_outage")["status"] == "completed"
    assert emu.admin.faults() == []


@pytest.mark.skipif(
    not os.environ.get("HERE_BATCH_REAL_AIRFLOW"),
    reason="starts a real Airflow (api-server, scheduler, dag-processor, triggerer; about 60 s): "
    "set HERE_BATCH_REAL_AIRFLOW=1",
)
def test_real_scheduler_and_triggerer(here_emulator_session: Any, tmp_path: Path) -> None:
    """A real Airflow runs submit -> deferred sensor -> download; a user marking a deferred task failed
    makes the triggerer call BatchJobTrigger.on_kill (Airflow >= 3.3), which stops the HERE job."""
    from tests.airflow.real_airflow import RealAirflow

    emu = here_emulator_session
    emu.admin.clear_faults()
    emu.admin.settings(records_per_second=20.0, queue_delay=0.2)
    try:
        with RealAirflow(tmp_path, emu.base_url, env={"HERE_BATCH_OUTPUT_DIR": str(tmp_path / "out")}) as af:
            af.wait_ready("test_ops_real_kill")
            run_id = af.trigger("test_ops_real_success")
            af.wait_run("test_ops_real_success", run_id)
            assert af.task_states("test_ops_real_success", run_id) == {
                "submit": "success",
                "wait": "success",
                "download": "success",
            }
            tries = af.call(
                "GET", f"/api/v2/dags/test_ops_real_success/dagRuns/{run_id}/taskInstances/wait/tries"
            )
            assert tries["task_instances"], "the sensor ran"

            emu.admin.settings(records_per_second=0)  # hold: the next job never finishes on its own
            run_id = af.trigger("test_ops_real_kill")
            af.wait_for(
                lambda: af.task_states("test_ops_real_kill", run_id).get("submit_and_wait") == "deferred",
                "deferral",
            )
            job = af.wait_for(
                lambda: next(
                    (j for j in emu.admin.jobs() if (j.get("tag") or "").startswith("ops-real-kill_af")), None
                ),
                "the job",
            )
            # Kill only once the triggerer runs the trigger (it polls the job): a kill in the short window
            # before the triggerer picked the trigger up reaches no on_kill (documented limit).
            polls = emu.admin.stats()["requests"].get("get_job", 0)
            af.wait_for(
                lambda: emu.admin.stats()["requests"].get("get_job", 0) >= polls + 2, "the trigger's polls"
            )
            af.call(
                "PATCH",
                f"/api/v2/dags/test_ops_real_kill/dagRuns/{run_id}/taskInstances/submit_and_wait",
                {"new_state": "failed"},
            )
            af.wait_for(
                lambda: next(j for j in emu.admin.jobs() if j["id"] == job["id"])["status"] == "stopped",
                "the triggerer's on_kill to stop the job",
                60,
            )
            texts = [p.read_text(errors="replace") for p in (af.home / "logs").rglob("*") if p.is_file()]
            assert any("HERE Batch" in text for text in texts)  # task and trigger logs were written...
            for path in [*af.logs.iterdir(), *(af.home / "logs").rglob("*")]:
                if path.is_file():
                    assert TEST_API_KEY not in path.read_text(errors="replace"), path  # ...without the key
    finally:
        emu.admin.settings(records_per_second=2000.0, queue_delay=0.2)
