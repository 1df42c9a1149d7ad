"""The split path inside real Airflow (``dag.test()``) against the session emulator with a per-job
limit of 4 records: 10 records make 3 jobs, merged in input order."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.api.quality import QUALITY_OUTPUT_COLUMNS
from tests.airflow.dags.split_dags import NO_IDS
from tests.airflow.support import RunDag


@pytest.fixture
def split_emu(emu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The session emulator refusing more than 4 records per job (HERE's 413), with fresh statistics."""
    monkeypatch.setenv("HERE_TEST_SPLIT_OUT", str(tmp_path / "out"))
    emu.admin.settings(max_records=4, max_running_jobs=5)
    emu.admin.reset_stats()
    yield emu
    emu.admin.settings(max_records=1_000_000, max_running_jobs=5)


def rows(path: str) -> list[dict[str, str]]:
    text = Path(path.removeprefix("file://")).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="|"))


def single_job_results(text: str, tmp_path: Path) -> bytes:
    from airflow_here_batch.api.polling import PollSchedule
    from airflow_here_batch.api.protocol import JobOptions
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    hook = HereBatchHook()
    job = hook.create_job(text.encode("utf-8"), options=JobOptions(service="geocode"))
    hook.wait_for_job(job.id, schedule=PollSchedule(0.1, 0.5), timeout=60)
    hook.download_results(job.id, tmp_path / "single.csv")
    return (tmp_path / "single.csv").read_bytes()


def jobs_of(emu: Any, run_xcom: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = {p["job_id"] for p in run_xcom}
    return [j for j in emu.admin.jobs() if j["id"] in ids]


def mapped(result: Any, task_id: str) -> list[Any]:
    return [
        v
        for (t, i, k), v in sorted(result.xcoms.items(), key=lambda kv: kv[0][1])
        if t == task_id and k == "return_value"
    ]


def test_two_and_a_half_limits_make_three_jobs_and_one_output_in_input_order(
    run_dag: RunDag, split_emu: Any, tmp_path: Path
) -> None:
    result = run_dag("test_split_generated_ids")
    parts = result.xcom("geo.plan")
    assert [p["records"] for p in parts] == [4, 4, 2]
    assert [p["first_record"] for p in parts] == [1, 5, 9]
    runs = mapped(result, "geo.run")
    assert len(runs) == 3 and len({r["job_id"] for r in runs}) == 3
    summary = result.xcom("geo.merge")
    assert (
        summary["parts"] == 3 and summary["records"]["total"] == 10 and summary["records"]["succeeded"] == 10
    )
    assert summary["results"].startswith("file://" + str(tmp_path / "out"))
    merged = rows(summary["results"])
    # every record once, in input order, with the recIds the split generated (the input's ordinals)
    assert [r["recId"] for r in merged if r["seqNumber"] == "1"] == [str(n) for n in range(1, 11)]
    assert split_emu.admin.stats()["requests"].get("create_job") == 3
    assert all(j["records"]["total"] <= 4 for j in jobs_of(split_emu, runs))
    # byte for byte what one job over the whole input gives (HERE numbering the records from 1)
    split_emu.admin.settings(max_records=1_000_000)
    assert Path(summary["results"].removeprefix("file://")).read_bytes() == single_job_results(
        NO_IDS, tmp_path
    )
    assert summary["errors"] is None and summary["results_rows"] == len(merged)
    assert not any(Path(p["input"].removeprefix("file://")).exists() for p in parts)  # parts cleaned up


def test_user_recids_kept_and_the_concurrency_limit_holds(run_dag: RunDag, split_emu: Any) -> None:
    result = run_dag("test_split_user_ids")
    summary = result.xcom("geo.merge")
    merged = rows(summary["results"])
    # The named columns, then the ones the quality verdict reads (asked for automatically).
    assert list(merged[0]) == [
        "recId",
        "seqNumber",
        "seqLength",
        "positionLat",
        "positionLng",
        "addressLabel",
        *(c for c in QUALITY_OUTPUT_COLUMNS if c not in ("positionLat", "positionLng")),
    ]
    assert [r["recId"] for r in merged] == [f"cust-{n:03d}" for n in range(1, 11)]
    runs = mapped(result, "geo.run")
    assert all(r["results"] is not None for r in runs)
    assert not any(Path(r["results"].removeprefix("file://")).exists() for r in runs)  # cleaned up
    assert all(j["tag"].startswith("split-user_af") for j in jobs_of(split_emu, runs))
    assert len({j["tag"] for j in jobs_of(split_emu, runs)}) == 3  # one reattach tag per map index
    assert split_emu.admin.stats()["peak_running"] <= 3


def test_a_part_failed_at_here_is_retried_alone(run_dag: RunDag, split_emu: Any) -> None:
    result = run_dag("test_split_part_fails")
    assert result.tasks["run[1]"].try_number == 2, result.describe()
    assert result.tasks["run[0]"].try_number == 1 and result.tasks["run[2]"].try_number == 1
    tagged = [
        j for j in split_emu.admin.jobs() if (j.get("tag") or "").startswith("test-split-part-fails_af")
    ]
    by_tag: dict[str, list[str]] = {}
    for job in tagged:
        by_tag.setdefault(job["tag"], []).append(job["status"])
    assert sorted(sorted(v) for v in by_tag.values()) == [
        ["completed"],
        ["completed"],
        ["completed", "failure"],
    ]
    merged = rows(result.xcom("merge")["results"])
    assert [r["recId"] for r in merged if r["seqNumber"] == "1"] == [str(n) for n in range(1, 11)]


def test_a_task_retried_mid_way_creates_no_extra_job(
    run_dag: RunDag, split_emu: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_dag("test_split_worker_lost")
    assert all(result.tasks[f"run[{i}]"].try_number == 2 for i in range(3)), result.describe()
    assert split_emu.admin.stats()["requests"].get("create_job") == 3  # one job per part, not six
    assert "reattaching to job" in capfd.readouterr().out
    assert result.xcom("merge")["records"]["succeeded"] == 10


def test_too_many_concurrent_jobs_waits_and_retries(run_dag: RunDag, split_emu: Any) -> None:
    """HERE answers every start with 429 E6004291 until a slot frees up; the parts wait and then run."""
    import threading

    split_emu.admin.settings(max_running_jobs=0)

    def free_a_slot_after_a_refusal() -> None:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if split_emu.admin.stats()["requests"].get("start_job_too_many_jobs", 0) >= 1:
                break
            time.sleep(0.05)
        split_emu.admin.settings(max_running_jobs=1)

    helper = threading.Thread(target=free_a_slot_after_a_refusal, daemon=True)
    helper.start()
    result = run_dag("test_split_too_many_jobs")
    helper.join(5)
    stats = split_emu.admin.stats()
    assert stats["requests"]["start_job_too_many_jobs"] >= 1
    assert stats["peak_running"] <= 1
    assert result.xcom("geo.merge")["records"]["succeeded"] == 10


def test_bad_input_fails_the_plan_before_any_upload(run_dag: RunDag, split_emu: Any) -> None:
    result = run_dag("test_split_bad_input", expect="failed")
    assert result.tasks["geo.plan"].state == "failed"
    assert split_emu.admin.stats()["requests"].get("create_job") is None


@pytest.mark.parametrize("dag_id", ["test_split_header_only", "test_split_no_input"])
def test_nothing_to_send_skips_the_here_part_cleanly(
    run_dag: RunDag, split_emu: Any, tmp_path: Path, dag_id: str
) -> None:
    """Issue 19: a header alone, or no input (a SQL source with no row to send), is not a failed plan:
    no part, no HERE job, the parts and the merge skipped as when nothing had to be sent."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "header_only.csv").write_text("recId|q\n", encoding="utf-8")
    result = run_dag(dag_id)
    assert result.xcom("geo.plan") == []
    assert result.tasks["geo.plan"].state == "success"
    assert {k: v for k, v in result.task_states.items() if k != "geo.plan"} == {
        k: "skipped" for k in result.task_states if k != "geo.plan"
    }
    assert split_emu.admin.stats()["requests"].get("create_job") is None


def _plan_log(result: Any, capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()  # dag.test() without an executor logs to stdout
    return "\n".join([result.describe(), captured.out, captured.err])


@pytest.mark.parametrize(
    ("dag_id", "message"),
    [
        ("test_split_blank_lines", "the input holds only blank lines: it holds no records and no header"),
        (
            "test_split_repeated_recid",
            "line 3 and line 12: both have recId 'cust-002'; recIds must be unique within a job",
        ),
        ("test_split_destination_is_a_file", "a-file is a file, not a folder"),
    ],
)
def test_a_bad_input_or_destination_fails_the_plan_before_any_upload(
    run_dag: RunDag,
    split_emu: Any,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    dag_id: str,
    message: str,
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a-file").write_text("not a folder")
    result = run_dag(dag_id, expect="failed")
    assert result.tasks["geo.plan"].state == "failed"
    log = _plan_log(result, capfd)
    assert message in log, log
    assert "ValueError:" not in log
    assert split_emu.admin.stats()["requests"].get("create_job") is None


def test_initial_load_example_dag_splits_the_sample_into_four_jobs(
    run_dag: RunDag, emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import EXAMPLE_DAGS_DIR

    monkeypatch.setenv("HERE_BATCH_MAX_RECORDS_PER_JOB", "100")
    monkeypatch.setenv("HERE_BATCH_POLL_INTERVAL", "0.2")
    sample = EXAMPLE_DAGS_DIR / "data" / "addresses_default.csv"
    ids = [line.split("|", 1)[0] for line in sample.read_text(encoding="utf-8").splitlines()[1:]]
    result = run_dag("here_batch_initial_load")
    summary = result.xcom("summarize")
    assert summary["parts"] == 4 and summary["records"]["total"] == len(ids) == 322
    merged = rows(summary["results"])
    firsts = [r["recId"] for r in merged if r["seqNumber"] == "1"]
    failed = {line.split("|", 1)[0] for line in Path(summary["errors"][7:]).read_text().splitlines()[1:]}
    assert [i for i in ids if i not in failed] == firsts  # input order, every recId that succeeded
    assert len(failed) == summary["records"]["failed"] >= 3


@pytest.mark.skipif(
    not os.environ.get("HERE_BATCH_REAL_AIRFLOW"),
    reason="starts a real Airflow (api-server, scheduler, dag-processor, triggerer; about 90 s): "
    "set HERE_BATCH_REAL_AIRFLOW=1 (ports from HERE_BATCH_REAL_AIRFLOW_PORTS, default 18400-18499)",
)
def test_real_scheduler_never_runs_more_than_max_active_jobs(
    here_emulator_session: Any, tmp_path: Path
) -> None:
    """Six parts, max_active_jobs=2, a real scheduler and triggerer: the parts run side by side, two at a
    time (the deferred ones count against max_active_tis_per_dagrun), never three."""
    from tests.airflow.real_airflow import RealAirflow

    emu = here_emulator_session
    emu.admin.clear_faults()
    emu.admin.settings(records_per_second=20.0, queue_delay=0.2, max_running_jobs=10, max_records=20)
    emu.admin.reset_stats()
    first, last = (int(x) for x in os.environ.get("HERE_BATCH_REAL_AIRFLOW_PORTS", "18400-18499").split("-"))
    dag_id = "test_split_real_concurrency"
    try:
        with RealAirflow(tmp_path, emu.base_url, port_range=(first, last)) as af:
            af.wait_ready(dag_id)
            run_id = af.trigger(dag_id)
            state = af.wait_run(dag_id, run_id, 300)
            tis = af.task_instances(dag_id, run_id)
            assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
            runs = [t for t in tis if t["task_id"] == "geo.run"]
            assert len(runs) == 6 and all(t["state"] == "success" for t in runs)
            stats = emu.admin.stats()
            assert stats["requests"]["create_job"] == 6  # one job per part
            assert stats["peak_running"] == 2, stats  # side by side, and never more than max_active_jobs
    finally:
        emu.admin.settings(
            records_per_second=2000.0, queue_delay=0.2, max_running_jobs=5, max_records=1_000_000
        )


def test_plan_takes_rows_and_a_gzipped_object_storage_file(airflow_db: Path, tmp_path: Path) -> None:
    import gzip
    from types import SimpleNamespace

    from airflow_here_batch.operators.split import PlanSplitOperator

    ti = SimpleNamespace(
        dag_id="d", run_id="manual__2026-01-01T00:00:00+00:00", task_id="geo.plan", map_index=-1
    )
    rows = [{"q": f"{n} Main Street, Berlin"} for n in range(1, 6)]
    plan = PlanSplitOperator(task_id="geo.plan", input=rows, split_id="rows", max_records_per_job=2)
    parts = plan.execute({"ti": ti})  # type: ignore[arg-type]
    texts = [Path(p["input"].removeprefix("file://")).read_text(encoding="utf-8") for p in parts]
    assert texts == [
        "recId|q\n1|1 Main Street, Berlin\n2|2 Main Street, Berlin\n",
        "recId|q\n3|3 Main Street, Berlin\n4|4 Main Street, Berlin\n",
        "recId|q\n5|5 Main Street, Berlin\n",
    ]
    assert "/split/d/manual__2026-01-01T00_00_00_00_00/rows/part-00001/" in parts[0]["input"]

    source = tmp_path / "addresses.csv.gz"
    source.write_bytes(gzip.compress(b"\xef\xbb\xbfrecId|q\r\na|Berlin\r\nb|Rome\r\nc|Oslo\r\n"))
    plan = PlanSplitOperator(
        task_id="geo.plan", input=f"file://{source}", split_id="gz", max_records_per_job=2
    )
    parts = plan.execute({"ti": ti})  # type: ignore[arg-type]
    assert [Path(p["input"].removeprefix("file://")).read_bytes() for p in parts] == [
        b"recId|q\na|Berlin\r\nb|Rome\r\n",
        b"recId|q\nc|Oslo\r\n",
    ]


def _outcomes(results: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    import json

    entries = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    return {e["task_id"]: e for e in entries if "kind" in e}, [e for e in entries if "event" in e]


def _normalise(text: str) -> str:
    import re

    text = re.sub(r"JOB-[0-9a-f-]{36}", "JOB-x", text)
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)


def test_a_parts_wait_ends_at_execution_timeout_deferred_or_not_and_the_job_is_stopped(
    run_dag: RunDag,
    split_emu: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The shared wait rules on the split path: Airflow does not apply execution_timeout to a deferred
    task, the part's trigger does (and stops the job); a 401 during the wait fails the part in both
    modes; HERE echoing the API key in every error text leaks it nowhere."""
    import json

    from tests.airflow.support import TEST_API_KEY

    results = tmp_path / "results.jsonl"
    monkeypatch.setenv("HERE_TEST_RESULTS_FILE", str(results))
    conn = {"conn_type": "here_batch", "host": split_emu.base_url, "password": TEST_API_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_HERE_NORETRY", json.dumps({**conn, "extra": {"max_retries": 0}}))
    split_emu.admin.settings(records_per_second=0)  # the jobs never finish by themselves
    split_emu.admin.inject_fault("*", "echo", count=1_000_000)  # every error text quotes URL and apiKey

    result = run_dag("test_split_wait_rules", expect="failed")

    logs = capfd.readouterr()
    outcomes, events = _outcomes(results)
    raised = [line for line in logs.out.splitlines() + logs.err.splitlines() if "JobWaitError: " in line]
    for name in ("timeout", "unauthorized"):
        deferred, worker = (f"{name}_{mode}" for mode in ("deferred", "worker"))
        assert result.task_states[f"{deferred}[0]"] == result.task_states[f"{worker}[0]"] == "failed", (
            result.describe()
        )
        assert outcomes[deferred]["kind"] == outcomes[worker]["kind"]
        assert _normalise(outcomes[deferred]["text"]) == _normalise(outcomes[worker]["text"])
        for task in (deferred, worker):  # a technical error or execution_timeout: never soft
            assert any(outcomes[task]["job_id"] in line for line in raised), task
    # The deferred part resumed from its trigger's events: the deadline was the trigger's.
    by_task = {e["task_id"]: e["event"] for e in events}
    assert set(by_task) == {"timeout_deferred", "unauthorized_deferred"}
    assert by_task["timeout_deferred"]["status"] == "timeout"
    assert by_task["timeout_deferred"]["reason"] == "execution_timeout"
    assert outcomes["timeout_worker"]["reason"] == "execution_timeout"
    assert "execution_timeout" in outcomes["timeout_deferred"]["text"]
    stopped = {outcomes[t]["job_id"] for t in ("timeout_deferred", "timeout_worker")}
    assert len(stopped) == 2
    statuses = {j["id"]: j["status"] for j in split_emu.admin.jobs() if j["id"] in stopped}
    assert statuses == dict.fromkeys(stopped, "stopped")  # cancel_on_kill, in both modes
    text = by_task["unauthorized_deferred"]["message"]
    assert "HTTP 401" in text and "apiKey=***" in text
    assert split_emu.admin.stats()["requests"].get("create_job") == 4  # one job per task, no retry

    everything = [
        results.read_text(encoding="utf-8"),
        json.dumps([[str(k), v] for k, v in result.xcoms.items()], default=str),
        logs.out,
        logs.err,
        *(ti.log_text for ti in result.tasks.values()),
    ]
    assert any("Authorization=" in t for t in everything)  # the echo did happen
    for t in everything:
        assert TEST_API_KEY not in t


def test_no_free_job_slot_before_execution_timeout_fails_the_part(
    run_dag: RunDag, split_emu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every start is refused (429 E6004291, Retry-After 5 s): the wait for a slot, deferred or on the
    worker, ends at the task's execution_timeout (3 s) with the shared timeout outcome; the job, never
    started, stays submitted for a retry to reattach to."""
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv("HERE_TEST_RESULTS_FILE", str(results))
    split_emu.admin.settings(max_running_jobs=0)

    result = run_dag("test_split_no_slot", expect="failed")

    outcomes, events = _outcomes(results)
    assert not events  # no job wait was deferred: the part never got a slot
    for mode in ("deferred", "worker"):
        assert result.task_states[f"no_slot_{mode}[0]"] == "failed", result.describe()
        outcome = outcomes[f"no_slot_{mode}"]
        assert (outcome["kind"], outcome["reason"]) == ("timeout", "execution_timeout")
        assert "last seen submitted" in outcome["text"]
        job = next(j for j in split_emu.admin.jobs() if j["id"] == outcome["job_id"])
        assert job["status"] == "submitted"
    assert split_emu.admin.stats()["requests"]["start_job_too_many_jobs"] >= 2


def test_slot_wait_trigger_carries_the_deadline_through_a_triggerer_restart() -> None:
    """The slot deferral's trigger serialises only numbers; rebuilt from them (as a triggerer does after a
    restart) it fires at its moment with the part's deadline, the same with no deadline."""
    import asyncio
    import time

    from airflow_here_batch.api.outcome import EXECUTION_TIMEOUT, Deadline
    from airflow_here_batch.operators import split
    from airflow_here_batch.triggers.slot_wait import SlotWaitTrigger

    assert split.SlotWaitTrigger is SlotWaitTrigger  # triggers serialised under the old path still load

    async def first_event(trigger: SlotWaitTrigger) -> Any:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    for deadline in (Deadline(1_900_000_000.5, EXECUTION_TIMEOUT), None):
        path, kwargs = SlotWaitTrigger(time.time() + 0.05, deadline).serialize()
        assert path == "airflow_here_batch.triggers.slot_wait.SlotWaitTrigger"
        rebuilt = SlotWaitTrigger(**kwargs)
        assert rebuilt.deadline == deadline and rebuilt.serialize() == (path, kwargs)
        payload = asyncio.run(first_event(rebuilt))
        assert payload == {
            "deadline": None if deadline is None else {"at": 1_900_000_000.5, "reason": "execution_timeout"}
        }
