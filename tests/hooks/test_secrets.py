"""Failing requests never show the API key: not in log lines, exception texts, tracebacks or chains."""

from __future__ import annotations

import logging
import socket
import traceback
from pathlib import Path

import pytest

from airflow_here_batch.api import HereBatchError, JobOptions, PollSchedule
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook, HereBatchHook
from tests.hooks.conftest import API_KEY, FAST_RETRIES, set_connection


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_clean(error: BaseException) -> None:
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    link: BaseException | None = error
    while link is not None:
        texts += [str(link), repr(link)]
        link = link.__cause__ or link.__context__
    for text in texts:
        assert API_KEY not in text


def test_key_absent_from_logs_and_errors(
    hook: HereBatchHook,
    emulator: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 prints every request URL at DEBUG
    failures: list[BaseException] = []

    def expect_failure(call) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(HereBatchError) as caught:
            call()
        failures.append(caught.value)

    job = hook.create_job(b"recId|q\n1|Berlin\n", options=JobOptions())
    for kind, status in (("status", 500), ("status", 503), ("drop", None), ("status", 400)):
        emulator.admin.inject_fault(endpoint="get_job", kind=kind, status=status, count=10)
        expect_failure(lambda: hook.get_job(job.id))
        emulator.admin.clear_faults()
    expect_failure(lambda: hook.get_job("JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6"))
    emulator.admin.inject_fault(endpoint="results", kind="truncate", count=10)
    hook.wait_for_job(job.id, schedule=PollSchedule(poll_interval=0.05), timeout=30)
    expect_failure(lambda: hook.download_results(job.id, tmp_path / "r.csv"))
    # Nothing listens on this port: requests' own error text would carry the full URL with apiKey.
    set_connection(monkeypatch, "here_down", host=f"http://127.0.0.1:{_free_port()}/v7", password=API_KEY)
    expect_failure(lambda: HereBatchHook("here_down", retry_policy=FAST_RETRIES).get_job(job.id))

    assert len(failures) == 7
    for error in failures:
        _assert_clean(error)
    assert caplog.records, "the failures were logged"
    for record in caplog.records:
        assert API_KEY not in record.getMessage()


async def test_async_key_absent_from_errors(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "here_down", host=f"http://127.0.0.1:{_free_port()}/v7", password=API_KEY)
    async with HereBatchAsyncHook("here_down", retry_policy=FAST_RETRIES) as ahook:
        with pytest.raises(HereBatchError) as caught:
            await ahook.get_job("JOB-1")
    _assert_clean(caught.value)


def test_key_is_registered_with_the_secret_masker(hook: HereBatchHook) -> None:
    from tests.version_compat import redact

    hook.test_connection()
    assert API_KEY not in str(redact(f"url?apiKey={API_KEY}"))
    assert API_KEY not in repr(hook.settings)
