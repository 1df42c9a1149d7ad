"""HereBatchHook against the emulator: every endpoint, streaming, gzip, retries, errors."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import pytest

from airflow_here_batch.api import (
    AuthenticationError,
    JobNotFoundError,
    JobOptions,
    JobStatus,
    PollSchedule,
    ResultsNotReadyError,
    ServerError,
    TransportError,
)
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks.here_batch import HereBatchHook, base_url_from_connection
from tests.hooks.conftest import set_connection

ADDRESSES = [
    "recId|q",
    "1|Invalidenstraße 116, 10115 Berlin",
    "2|10 Downing Street, London",
    "3|",  # empty query: HERE reports it in the errors file
    "4|Champs-Élysées, Paris",
]
FAST = PollSchedule(poll_interval=0.05, max_poll_interval=0.2)


def _geocode(**kwargs: object) -> JobOptions:
    return JobOptions(service="geocode", **kwargs)  # type: ignore[arg-type]


def _finish(hook: HereBatchHook, job_id: str) -> None:
    job = hook.wait_for_job(job_id, schedule=FAST, timeout=30)
    assert job.status is JobStatus.COMPLETED, job


def test_full_cycle_from_a_path(hook: HereBatchHook, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("\n".join(ADDRESSES) + "\n", encoding="utf-8")
    job = hook.create_job(source, options=_geocode(tag="cycle"))
    assert job.id.startswith("JOB-") and job.tag == "cycle"
    _finish(hook, job.id)
    done = hook.get_job(job.id)
    assert done.records.total == 4 and done.records.failed + done.records.invalid >= 1
    results = tmp_path / "out" / "results.csv"
    size = hook.download_results(job.id, results)
    lines = results.read_text(encoding="utf-8").splitlines()
    assert size == results.stat().st_size and lines[0].startswith("recId")
    assert {line.split("|")[0] for line in lines[1:]} == {"1", "2", "4"}
    errors = tmp_path / "errors.txt"
    assert hook.download_errors(job.id, errors) and "3" in errors.read_text()
    assert [p.name for p in results.parent.iterdir()] == ["results.csv"]  # no temp files left behind


@pytest.mark.parametrize("kind", ["bytes", "lines", "file", "gzip-path"])
def test_upload_forms(hook: HereBatchHook, tmp_path: Path, kind: str) -> None:
    text = "\n".join(ADDRESSES[:3]) + "\n"
    path = tmp_path / "in.txt"
    path.write_text(text, encoding="utf-8")
    data: object = {
        "bytes": text.encode(),
        "lines": iter(ADDRESSES[:3]),
        "file": io.BytesIO(text.encode()),
        "gzip-path": path,
    }[kind]
    job = hook.create_job(data, options=_geocode(), compress=kind == "gzip-path")  # type: ignore[arg-type]
    _finish(hook, job.id)
    assert hook.get_job(job.id).records.total == 2


def test_results_arrive_gzip_encoded_and_are_decoded(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    job = hook.create_job("\n".join(ADDRESSES[:3]).encode(), options=_geocode())
    _finish(hook, job.id)
    sink = io.BytesIO()
    hook.download_results(job.id, sink)
    assert sink.getvalue().startswith(b"recId")
    # The emulator did send gzip: the raw response is compressed.
    import requests

    raw = requests.get(
        f"{emulator.base_url}/batch/jobs/{job.id}/results",
        params={"apiKey": "test-key-7f3a9c"},
        headers={"Accept-Encoding": "gzip"},
        stream=True,
    )
    assert raw.headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(raw.raw.read()) == sink.getvalue()


def test_start_stop_resume(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    emulator.admin.settings(records_per_second=0)  # hold: jobs make no progress
    job = hook.create_job("\n".join(ADDRESSES).encode(), options=_geocode(start_job=False))
    assert job.status is JobStatus.SUBMITTED
    assert hook.get_job(job.id).status is JobStatus.SUBMITTED
    hook.start_job(job.id)
    _wait_status(hook, job.id, JobStatus.IN_PROGRESS)
    hook.stop_job(job.id)
    assert _wait_status(hook, job.id, JobStatus.STOPPED).records.pending == 0
    emulator.admin.settings(records_per_second=1_000_000)
    hook.start_job(job.id)
    _finish(hook, job.id)


def _wait_status(hook: HereBatchHook, job_id: str, status: JobStatus):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = hook.get_job(job_id)
        if job.status is status:
            return job
        time.sleep(0.02)
    raise AssertionError(f"{job_id} never reached {status}: {job.status}")


def test_results_before_the_end_are_not_ready(
    hook: HereBatchHook, emulator: EmulatorServer, tmp_path: Path
) -> None:
    emulator.admin.settings(records_per_second=0)
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode())
    with pytest.raises(ResultsNotReadyError):
        hook.download_results(job.id, tmp_path / "r.csv")
    with pytest.raises(ResultsNotReadyError):
        hook.download_errors(job.id, tmp_path / "e.csv")
    assert not list(tmp_path.iterdir())


def test_no_errors_means_none(hook: HereBatchHook, tmp_path: Path) -> None:
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode())
    _finish(hook, job.id)
    assert hook.download_errors(job.id, tmp_path / "e.txt") is None
    assert hook.download_errors_head(job.id) == []
    assert not (tmp_path / "e.txt").exists()


def test_list_pages_filters_and_deletes(hook: HereBatchHook) -> None:
    ids = [
        hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode(tag="paging", start_job=False)).id
        for _ in range(5)
    ]
    hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode(tag="other", start_job=False))
    listed = [job.id for job in hook.list_jobs(tag="paging", page_size=2)]
    assert sorted(listed) == sorted(ids)
    assert {job.id for job in hook.list_jobs(status="submitted", tag="paging")} == set(ids)
    assert hook.find_job_by_tag("paging").id in ids  # type: ignore[union-attr]
    deleted = hook.delete_job(ids[0])
    assert deleted.status is JobStatus.DELETED
    assert hook.get_job(ids[0]).status is JobStatus.DELETED
    assert ids[0] not in {job.id for job in hook.list_jobs(tag="paging")}
    bulk = hook.delete_jobs(status="any", tag="paging")
    assert bulk.total == 4 and set(bulk.job_ids) == set(ids[1:])
    assert [job.tag for job in hook.list_jobs()] == ["other"]


def test_unknown_job(hook: HereBatchHook) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        hook.get_job("JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert caught.value.code == "E6004041" and caught.value.correlation_id


def test_wrong_key_is_an_auth_error(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "here_bad", host=emulator.base_url, password="not-the-key")
    with pytest.raises(AuthenticationError) as caught:
        HereBatchHook("here_bad").get_job("JOB-1")
    assert caught.value.status in (401, 403)


def test_retry_after_is_honoured(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode(start_job=False))
    before = emulator.admin.stats()["requests"].get("get_job", 0)
    emulator.admin.inject_fault(endpoint="get_job", kind="status", status=429, retry_after=1, count=1)
    started = time.monotonic()
    assert hook.get_job(job.id).id == job.id
    assert time.monotonic() - started >= 1.0
    assert emulator.admin.stats()["requests"]["get_job"] - before == 2


@pytest.mark.parametrize(("kind", "status"), [("status", 503), ("status", 500), ("drop", None)])
def test_transient_failures_are_retried(
    hook: HereBatchHook, emulator: EmulatorServer, kind: str, status: int | None
) -> None:
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode(start_job=False))
    emulator.admin.inject_fault(endpoint="get_job", kind=kind, status=status, count=3)
    assert hook.get_job(job.id).status is JobStatus.SUBMITTED


def test_retries_run_out(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    emulator.admin.inject_fault(endpoint="get_job", kind="status", status=503, count=10)
    with pytest.raises(ServerError):
        hook.get_job("JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6")


def test_create_is_not_retried_after_an_ambiguous_failure(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    emulator.admin.inject_fault(endpoint="create_job", kind="status", status=503, count=1)
    with pytest.raises(ServerError):
        hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode())
    emulator.admin.inject_fault(endpoint="create_job", kind="status", status=429, retry_after=0, count=1)
    assert hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode()).id


def test_create_reattaches_by_tag_after_a_lost_answer(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    emulator.admin.inject_fault(endpoint="create_job", kind="drop", count=1, after_processing=True)
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=_geocode(tag="unique-tag-1"), reattach_by_tag=True)
    assert [j["id"] for j in emulator.admin.jobs()] == [job.id]


def test_truncated_download_is_retried_and_never_left_partial(
    hook: HereBatchHook, emulator: EmulatorServer, tmp_path: Path
) -> None:
    rows = "\n".join(["recId|q"] + [f"{i}|Berlin {i}" for i in range(2000)]).encode()
    job = hook.create_job(rows, options=_geocode())
    _finish(hook, job.id)
    emulator.admin.inject_fault(endpoint="results", kind="truncate", count=1)
    target = tmp_path / "results.csv"
    hook.download_results(job.id, target)
    assert len(target.read_text().splitlines()) == 2001
    emulator.admin.inject_fault(endpoint="results", kind="truncate", count=10)
    again = tmp_path / "again.csv"
    with pytest.raises(TransportError):
        hook.download_results(job.id, again)
    assert list(tmp_path.iterdir()) == [target]


def test_test_connection(
    hook: HereBatchHook, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, message = hook.test_connection()
    assert ok and emulator.base_url in message
    set_connection(monkeypatch, "here_bad", host=emulator.base_url, password="wrong")
    ok, message = HereBatchHook("here_bad").test_connection()
    assert not ok and "wrong" not in message


@pytest.mark.parametrize(
    ("host", "port", "schema", "scheme", "expected"),
    [
        (None, None, None, None, "https://batch.search.hereapi.com/v7"),
        ("http://127.0.0.1:8765/v7", None, None, None, "http://127.0.0.1:8765/v7"),
        ("http://127.0.0.1", 8765, "v7", None, "http://127.0.0.1:8765/v7"),
        ("127.0.0.1", 8765, "v7", "http", "http://127.0.0.1:8765/v7"),
        ("batch.search.hereapi.com", None, None, None, "https://batch.search.hereapi.com/v7"),
    ],
)
def test_base_url_from_connection(host, port, schema, scheme, expected) -> None:  # type: ignore[no-untyped-def]
    assert base_url_from_connection(host, port, schema, scheme) == expected


def test_an_iterator_upload_is_sent_once_and_reports_heres_answer(
    hook: HereBatchHook, emulator: EmulatorServer
) -> None:
    """An iterator cannot be replayed: a refused upload fails with HERE's own answer, not a retry error."""
    from airflow_here_batch.api import RateLimitError

    emulator.admin.inject_fault(endpoint="create_job", kind="status", status=429, retry_after=0, count=1)
    with pytest.raises(RateLimitError):
        hook.create_job(iter(["recId|q", "1|Berlin"]), options=_geocode())
    assert emulator.admin.stats()["requests"]["create_job"] == 1
    assert emulator.admin.jobs() == []
