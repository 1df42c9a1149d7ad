"""What the hooks put on the wire, as the emulator received it (its request log, ``/_emulator/requests``).

Every public method of both hooks, every upload form: no chunked body (a known ``Content-Length``),
an ``Accept`` that admits HERE's error media type (application/json) on every call, downloads
included, no ``outputType`` for csv (HERE's default; the parameter is ALPHA), a fresh ``X-Request-ID``
on every request, no body and no ``Content-Type`` on calls that carry none; and a HERE error, in the
exception and in the log, names both our request id and HERE's correlationId.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.api import JobNotFoundError, JobOptions, JobStatus, PollSchedule, ResultsNotReadyError
from airflow_here_batch.api.outcome import JobWait
from airflow_here_batch.api.transfer import LineStream
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks import here_batch
from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook, HereBatchHook
from tests.hooks.conftest import FAST_RETRIES, set_connection

TEXT = "recId|q\n1|Invalidenstrasse 116, Berlin\n2|\n"
FAST = PollSchedule(poll_interval=0.02, max_poll_interval=0.1)
#: The calls that carry a body: (method, path prefix).
WITH_BODY = {
    ("POST", "/v7/batch/jobs"),
    ("POST", "/v7/batch/notifications"),
    ("PUT", "/v7/batch/notifications/"),
    ("POST", "/oauth2/token"),
}
KEY_ID, SECRET = "wire-key-id", "wire-key-secret"


class _OneWay(io.RawIOBase):
    """A stream that cannot seek (a pipe, a socket)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._inner.readinto(buffer)


def _carries_body(entry: dict[str, Any]) -> bool:
    method, path = entry["method"], entry["path"]
    return any(method == m and (path == p or (p.endswith("/") and path.startswith(p))) for m, p in WITH_BODY)


def _accepts_json(accept: str | None) -> bool:
    media = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return "application/json" in media or "*/*" in media or "application/*" in media


def check_wire(entries: list[dict[str, Any]]) -> None:
    """The rules every recorded request follows."""
    assert entries, "nothing was recorded"
    seen: set[str] = set()
    for entry in entries:
        headers, where = entry["headers"], f"{entry['method']} {entry['path']}"
        request_id = headers.get("x-request-id", "")
        assert uuid.UUID(request_id).version == 4, (where, headers)
        assert request_id not in seen, f"{where}: X-Request-ID {request_id} reused"
        seen.add(request_id)
        assert "transfer-encoding" not in headers, (where, headers)
        assert _accepts_json(headers.get("accept")), (where, headers.get("accept"))
        if _carries_body(entry):
            assert int(headers["content-length"]) > 0 and headers.get("content-type"), (where, headers)
        else:
            assert headers.get("content-length", "0") == "0", (where, headers)
            assert "content-type" not in headers, (where, headers)
        if entry["path"] == "/v7/batch/jobs" and entry["method"] == "POST":
            assert entry["query"].get("outputType") != "csv", entry["query"]


@pytest.fixture
def wire(emulator: EmulatorServer) -> Iterator[EmulatorServer]:
    emulator.admin.clear_requests()
    yield emulator
    check_wire(emulator.admin.requests())


def _finish(hook: HereBatchHook, job_id: str) -> None:
    assert hook.wait_for_job(job_id, schedule=FAST, timeout=30).status is JobStatus.COMPLETED


def _uploads(tmp_path: Path) -> list[tuple[str, Any, bool]]:
    path = tmp_path / "in.txt"
    path.write_text(TEXT, encoding="utf-8")
    text_file = path.open("r", encoding="utf-8")
    forms: list[tuple[str, Any, bool]] = []
    for compress in (False, True):
        forms += [
            ("bytes", TEXT.encode(), compress),
            ("path", path, compress),
            ("str path", str(path), compress),
            ("binary file", path.open("rb"), compress),
            ("BytesIO", io.BytesIO(TEXT.encode()), compress),
            ("text file", text_file if not compress else path.open("r", encoding="utf-8"), compress),
            ("one-way stream", _OneWay(TEXT.encode()), compress),
            ("lines", iter(TEXT.splitlines()), compress),
            ("byte lines", (line.encode() for line in TEXT.splitlines()), compress),
            ("LineStream", LineStream(lambda: iter(TEXT.encode().splitlines())), compress),
        ]
    return forms


def test_every_upload_form_goes_out_with_a_content_length(
    hook: HereBatchHook, wire: EmulatorServer, tmp_path: Path
) -> None:
    forms = _uploads(tmp_path)
    for name, data, compress in forms:
        job = hook.create_job(data, options=JobOptions(start_job=False, tag="wire"), compress=compress)
        assert hook.get_job(job.id).status is JobStatus.SUBMITTED, name
    creates = [e for e in wire.admin.requests() if e["method"] == "POST" and e["path"] == "/v7/batch/jobs"]
    assert len(creates) == len(forms)
    plain, gz = len(TEXT.encode()), len(gzip.compress(TEXT.encode(), 1))
    for (name, _, compress), entry in zip(forms, creates, strict=True):
        assert entry["headers"].get("content-encoding") == ("gzip" if compress else None), name
        assert "outputType" not in entry["query"], name
        if not compress:
            assert int(entry["headers"]["content-length"]) == plain, name
        else:  # gzip headers differ (name, time) but not the size class
            assert abs(int(entry["headers"]["content-length"]) - gz) < 64, name
    for job in wire.admin.jobs():  # every form reached HERE whole: the emulator counted its records
        hook.start_job(job["id"])
    for job in wire.admin.jobs():
        _finish(hook, job["id"])
        assert hook.get_job(job["id"]).records.total == 2


def test_a_jsonl_job_sends_its_alpha_output_type(hook: HereBatchHook, wire: EmulatorServer) -> None:
    hook.create_job(TEXT.encode(), options=JobOptions(start_job=False, output_type="jsonl"))
    (create,) = [e for e in wire.admin.requests() if e["method"] == "POST"]
    assert create["query"]["outputType"] == "jsonl"


def test_every_sync_method(hook: HereBatchHook, wire: EmulatorServer, tmp_path: Path) -> None:
    from tests.webhook_receiver import WebhookReceiver

    assert hook.get_health() == "ok" and hook.get_version()["apiVersion"]
    assert hook.test_connection()[0]
    job = hook.create_job(TEXT.encode(), options=JobOptions(start_job=False, tag="wire-all"))
    hook.start_job(job.id)
    _finish(hook, job.id)
    assert hook.download_results(job.id, tmp_path / "results.csv")
    sink = io.BytesIO()
    assert hook.download_results(job.id, sink) and hook.download_errors(job.id, tmp_path / "errors.txt")
    assert hook.download_errors_head(job.id, 5)
    assert hook.wait_outcome(JobWait(job.id, schedule=FAST)).kind == "success"
    assert hook.find_job_by_tag("wire-all") is not None and hook.find_jobs_by_tag("wire-all")
    assert list(hook.list_jobs(status="completed"))
    future = datetime.now(timezone.utc) + timedelta(days=1)
    assert [j.id for j in hook.list_jobs_created_before(future, tag="wire-all")] == [job.id]
    held = hook.create_job(TEXT.encode(), options=JobOptions(tag="wire-held"))
    hook.stop_job(held.id)
    hook.delete_job(job.id)
    assert hook.download_errors_head(job.id) == []  # deleted: no report any more
    hook.delete_jobs(status="any", tag="wire-held")
    with WebhookReceiver() as receiver:
        created = hook.create_notification(receiver.url + "/n?job=${JOB_ID}")
        assert hook.list_notifications() and hook.get_notification(created.id) == created
        hook.replace_notification(created.id, receiver.url + "/m")
        hook.test_notification(created.id)
        hook.delete_notification(created.id)
    recorded = {(e["method"], e["path"].rsplit("/", 1)[-1] if "JOB-" in e["path"] else e["path"])
                for e in wire.admin.requests()}
    assert {("PUT", "start"), ("PUT", "stop"), ("DELETE", "/v7/batch/jobs"), ("GET", "results"),
            ("GET", "errors"), ("GET", "/v7/health"), ("GET", "/v7/version")} <= recorded


async def test_every_async_method(hook: HereBatchHook, wire: EmulatorServer) -> None:
    job = hook.create_job(TEXT.encode(), options=JobOptions(start_job=False))
    async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as ahook:
        await ahook.start_job(job.id)
        while not (await ahook.get_job(job.id)).is_terminal:
            await asyncio.sleep(0.02)
        assert await ahook.download_errors_head(job.id, 5)
        await ahook.stop_job(job.id)
        await ahook.delete_job(job.id)
        assert await ahook.download_errors_head(job.id, 5) == []
    puts = [e for e in wire.admin.requests() if e["method"] == "PUT"]
    assert len(puts) == 2 and all("content-type" not in e["headers"] for e in puts)


def test_oauth_token_requests_are_traced_too(monkeypatch: pytest.MonkeyPatch) -> None:
    here_batch._tokens.clear()
    with EmulatorServer(oauth_credentials={KEY_ID: SECRET}, queue_delay=0, records_per_second=1e6) as emu:
        extra = {"access_key_id": KEY_ID, "access_key_secret": SECRET, "token_url": emu.token_url}
        set_connection(monkeypatch, "here_wire_oauth", host=emu.base_url, extra=extra)
        hook = HereBatchHook("here_wire_oauth", retry_policy=FAST_RETRIES)
        job = hook.create_job(TEXT.encode(), options=JobOptions(start_job=False))
        here_batch._tokens.clear()

        async def run() -> None:
            async with HereBatchAsyncHook("here_wire_oauth", retry_policy=FAST_RETRIES) as ahook:
                await ahook.get_job(job.id)

        asyncio.run(run())
        entries = emu.admin.requests()
        check_wire(entries)
        tokens = [e for e in entries if e["path"] == "/oauth2/token"]
        assert len(tokens) == 2 and all(e["headers"]["authorization"] == "OAuth ***" for e in tokens)
        assert all(e["headers"].get("authorization") == "Bearer ***" for e in entries if e not in tokens)
    here_batch._tokens.clear()


def test_a_here_error_names_both_ids_in_the_exception_and_the_log(
    hook: HereBatchHook, wire: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="airflow_here_batch")
    with pytest.raises(JobNotFoundError) as caught:
        hook.get_job("JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6")
    (sent,) = wire.admin.requests()
    request_id = sent["headers"]["x-request-id"]
    error = caught.value
    assert error.request_id == request_id and error.correlation_id
    assert error.correlation_id != request_id  # HERE's own id of the request, from its answer
    assert str(error).endswith(f"(X-Request-ID {request_id}, correlationId {error.correlation_id})")
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    failures = [m for level, m in messages if level >= logging.WARNING]
    assert any(request_id in m and error.correlation_id in m for m in failures), failures
    debug = [m for level, m in messages if level == logging.DEBUG and request_id in m]
    path = "/batch/jobs/JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6"
    assert debug == [f"HERE Batch: GET {path} (X-Request-ID {request_id})"]
    assert all("test-key" not in r.getMessage() for r in caplog.records)  # never the key


def test_every_retry_has_its_own_request_id(hook: HereBatchHook, wire: EmulatorServer) -> None:
    job = hook.create_job(TEXT.encode(), options=JobOptions(start_job=False))
    wire.admin.clear_requests()
    wire.admin.inject_fault(endpoint="get_job", kind="status", status=503, retry_after=0, count=2)
    hook.get_job(job.id)
    entries = wire.admin.requests()
    assert [e["method"] for e in entries] == ["GET"] * 3  # check_wire asserts the ids are distinct


def test_the_hooks_agree_on_the_errors_head(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    """One rule (protocol.errors_report_gone): [] for a deleted or unknown job; not ended raises."""
    unknown = "JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6"
    # never started, so it cannot end while the heads are read (the emulator's speed is global)
    running = hook.create_job(TEXT.encode(), options=JobOptions(start_job=False))
    ended = hook.create_job(TEXT.encode(), options=JobOptions(start_job=False))
    hook.start_job(ended.id)
    _finish(hook, ended.id)
    hook.delete_job(ended.id)

    async def async_heads() -> dict[str, Any]:
        async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as ahook:
            heads: dict[str, Any] = {}
            for name, job_id in (("deleted", ended.id), ("unknown", unknown), ("running", running.id)):
                try:
                    heads[name] = await ahook.download_errors_head(job_id)
                except ResultsNotReadyError as exc:
                    heads[name] = type(exc)
            return heads

    sync: dict[str, Any] = {}
    for name, job_id in (("deleted", ended.id), ("unknown", unknown), ("running", running.id)):
        try:
            sync[name] = hook.download_errors_head(job_id)
        except ResultsNotReadyError as exc:
            sync[name] = type(exc)
    assert sync == asyncio.run(async_heads()) == {
        "deleted": [], "unknown": [], "running": ResultsNotReadyError
    }


def _open_temporary_files() -> list[str]:
    """What this process's open descriptors point at that is a removed or spooled file."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "(deleted)" in target or "here-batch-upload" in target:
            targets.append(target)
    return targets


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_spooled_uploads_leave_nothing_behind(hook: HereBatchHook, wire: EmulatorServer) -> None:
    """The temporary file of a spooled upload is gone after a success, a refusal and a failing source."""
    from airflow_here_batch.api import InvalidRequestError

    def broken() -> Iterator[str]:
        yield "recId|q"
        raise RuntimeError("the source failed")

    before = _open_temporary_files()
    hook.create_job(iter(TEXT.splitlines()), options=JobOptions(start_job=False), compress=True)
    wire.admin.inject_fault(endpoint="create_job", kind="status", status=400, count=1)
    with pytest.raises(InvalidRequestError):
        hook.create_job(iter(TEXT.splitlines()), options=JobOptions(start_job=False), compress=True)
    with pytest.raises(RuntimeError, match="source failed"):
        hook.create_job(broken(), options=JobOptions(start_job=False))
    assert _open_temporary_files() == before
