"""The split path inside real Airflow (``dag.test()``) against the session emulator with a per-job
limit of 4 records: 10 records make 3 jobs, merged in input order."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import RunDag
from tests.airflow.dags.test_split_dags import NO_IDS


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
    assert list(merged[0]) == [
        "recId",
        "seqNumber",
        "seqLength",
        "positionLat",
        "positionLng",
        "addressLabel",
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


@pytest.mark.parametrize("with_ids", [True, False])
def test_write_parts_streams_a_file_into_parts_within_both_limits(tmp_path: Path, with_ids: bool) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.split import SplitLimits
    from airflow_here_batch.operators.split import write_parts

    header = b"recId|q\n" if with_ids else b"q\n"
    records = [
        (b"id-%d|" % n if with_ids else b"") + b"%d Main Street, Berlin\n" % n for n in range(1, 25_001)
    ]
    source = tmp_path / "in.csv"
    source.write_bytes(header + b"".join(records)[:-1])  # no line break after the last record
    limits = SplitLimits(max_records=10_000, max_bytes=300_000)
    folder = ObjectStoragePath(f"file://{tmp_path}/parts")
    with source.open("rb") as handle:
        parts = write_parts(handle, folder, limits=limits, service="geocode")
    written = [Path(p["input"].removeprefix("file://")).read_bytes() for p in parts]
    out_header = b"recId|q\n"
    assert all(w.startswith(out_header) for w in written)
    assert all(len(w) <= limits.max_bytes and w.count(b"\n") - 1 <= limits.max_records for w in written)
    assert [p["bytes"] for p in parts] == [len(w) for w in written]
    body = b"".join(w[len(out_header) :] for w in written)
    expected = records if with_ids else [b"%d|" % n + r for n, r in enumerate(records, 1)]
    assert body == b"".join(expected)  # every record once, in order, recIds kept or generated
    assert [p["first_record"] for p in parts] == [
        1 + sum(p["records"] for p in parts[:i]) for i in range(len(parts))
    ]
    assert len(parts) >= 3


def test_write_parts_leaves_nothing_behind_on_a_bad_line(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import InputValidationError
    from airflow_here_batch.api.split import SplitLimits
    from airflow_here_batch.operators.split import write_parts

    text = b"recId|q\n" + b"".join(b"%d|Berlin\n" % n for n in range(1, 5001)) + b"5001|Berlin|extra\n"
    source = tmp_path / "in.csv"
    source.write_bytes(text)
    with source.open("rb") as handle, pytest.raises(InputValidationError, match="input line 5002"):
        write_parts(
            handle, ObjectStoragePath(f"file://{tmp_path}/parts"), limits=SplitLimits(max_records=1000)
        )
    assert not (tmp_path / "parts").exists()
