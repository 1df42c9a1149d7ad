"""Issue 10 in the triggerer: ``BatchJobTrigger.run()`` against the emulator with the new faults.

A deferred wait survives the OAuth token endpoint failing and status answers that are not JSON; its
events carry no secret when every error text HERE sends echoes the request; an outage ends the wait by
time (``max_outage``), never by a count; ``Retry-After`` wins over the backoff cap.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_here_batch.api import JobOptions
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks import here_batch
from airflow_here_batch.hooks.here_batch import HereBatchHook
from airflow_here_batch.triggers.batch_job import BatchJobTrigger

API_KEY = "trigger-rules-api-key-0123456789"
KEY_ID, SECRET = "AKID-trigger-rules", "trigger-rules-oauth-secret"
LINES = ["recId|q\n"] + [f"{i}|Street {i}, Berlin\n" for i in range(1, 11)]


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    here_batch._tokens.clear()
    with EmulatorServer(
        records_per_second=400.0, queue_delay=0.05, api_key=API_KEY, oauth_credentials={KEY_ID: SECRET}
    ) as server:
        conn = {"conn_type": "here_batch", "host": server.base_url, "password": API_KEY}
        monkeypatch.setenv("AIRFLOW_CONN_HERE_BATCH_DEFAULT", json.dumps(conn))
        extra = {"access_key_id": KEY_ID, "access_key_secret": SECRET, "token_url": server.token_url}
        oauth = {"conn_type": "here_batch", "host": server.base_url, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_HERE_OAUTH", json.dumps(oauth))
        yield server
    here_batch._tokens.clear()


def submit(emu: EmulatorServer) -> str:
    return HereBatchHook().create_job(LINES, options=JobOptions(service="geocode")).id


async def collect(trigger: BatchJobTrigger, limit: float = 60.0) -> list[dict[str, Any]]:
    async def drain() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(drain(), limit)


def fast(job_id: str, **kwargs: Any) -> BatchJobTrigger:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("max_poll_interval", 0.3)
    return BatchJobTrigger(job_id=job_id, **kwargs)


@pytest.mark.parametrize(("kind", "status"), [("status", 503), ("status", 429), ("drop", 503)])
async def test_token_endpoint_faults_do_not_end_a_deferred_wait(
    emu: EmulatorServer, kind: str, status: int
) -> None:
    emu.admin.settings(records_per_second=20)
    job_id = submit(emu)
    # More faults than the trigger's hook retries at once: the outage rule carries the wait on.
    emu.admin.inject_fault("token", kind, status=status, retry_after=0, count=5)
    events = await collect(fast(job_id, here_conn_id="here_oauth"))
    assert [e["status"] for e in events] == ["success"]
    assert emu.admin.faults() == []


async def test_status_answers_that_are_not_json_do_not_end_the_wait(emu: EmulatorServer) -> None:
    job_id = submit(emu)
    emu.admin.inject_fault("get_job", "malformed", count=6)  # more than the hook retries
    events = await collect(fast(job_id))
    assert [e["status"] for e in events] == ["success"]


async def test_events_carry_no_secret_when_heres_texts_echo_them(
    emu: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.admin.inject_fault("*", "echo", count=1000)
    job_id = submit(emu)
    emu.admin.inject_fault("get_job", "status", status=503, count=3)
    emu.admin.inject_fault("get_job", "status", status=401, count=1)
    events = await collect(fast(job_id))
    assert [e["status"] for e in events] == ["error"]
    assert "401" in events[0]["message"] and "apiKey=***" in events[0]["message"]
    # OAuth: bearer tokens and the secret echoed by the API and the token endpoint.
    here_batch._tokens.clear()
    emu.admin.inject_fault("token", "status", status=503, count=1)
    emu.admin.inject_fault("get_job", "status", status=500, count=2)
    emu.admin.inject_fault("get_job", "status", status=403, count=1)
    oauth_events = await collect(fast(job_id, here_conn_id="here_oauth"))
    assert [e["status"] for e in oauth_events] == ["error"] and "Bearer ***" in oauth_events[0]["message"]
    tokens = [t.value for t in here_batch._tokens.values()]
    assert tokens
    logged = capsys.readouterr()
    for text in (json.dumps(events), json.dumps(oauth_events), logged.out, logged.err):
        for secret in (API_KEY, SECRET, *tokens):
            assert secret not in text


async def test_failure_event_errors_head_is_scrubbed(emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    lines = ["recId|q\n", f"1|apiKey={API_KEY}\n", "2|__EMULATOR_FAIL_JOB__\n"]
    job_id = HereBatchHook().create_job(lines, options=JobOptions(service="geocode")).id
    emu.admin.fail_job(job_id, reason=f"key {API_KEY} refused")
    events = await collect(fast(job_id))
    assert [e["status"] for e in events] == ["failure"]
    assert any("***" in line for line in events[0]["errors_head"])
    assert API_KEY not in json.dumps(events)


async def test_outage_ends_by_time_not_by_count(emu: EmulatorServer) -> None:
    job_id = submit(emu)
    emu.admin.inject_fault("get_job", "status", status=503, count=100_000)
    started = time.monotonic()
    events = await collect(fast(job_id, max_outage=1.5, poll_interval=0.02, max_poll_interval=0.05))
    took = time.monotonic() - started
    assert [e["status"] for e in events] == ["error"] and "max_outage" in events[0]["message"]
    assert 1.5 <= took < 10
    assert emu.admin.stats()["requests"]["get_job"] > 12  # well beyond the old count of 10 failed polls


async def test_outage_never_outlasts_the_deadline(emu: EmulatorServer) -> None:
    job_id = submit(emu)
    emu.admin.inject_fault("get_job", "status", status=503, count=100_000)
    events = await collect(fast(job_id, deadline=time.time() + 1.0, cancel_on_kill=False), limit=15)
    assert [e["status"] for e in events] == ["timeout"]


async def test_retry_after_above_the_poll_cap_is_honoured(emu: EmulatorServer) -> None:
    job_id = submit(emu)
    emu.admin.inject_fault("get_job", "status", status=429, retry_after=1.2, count=4)
    started = time.monotonic()
    events = await collect(fast(job_id, max_poll_interval=0.1))
    assert [e["status"] for e in events] == ["success"]
    assert time.monotonic() - started >= 4 * 1.2


async def test_execution_timeout_deadline_gives_a_hard_timeout_and_stops_the_job(emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = submit(emu)
    events = await collect(fast(job_id, deadline=time.time() + 0.5, deadline_reason="execution_timeout"))
    assert [e["status"] for e in events] == ["timeout"] and events[0]["reason"] == "execution_timeout"
    assert "execution_timeout" in events[0]["message"] and "asked to stop" in events[0]["message"]


def test_trigger_serialised_by_an_older_version_still_loads() -> None:
    old = {"job_id": "JOB-1", "deadline": None, "max_transient_errors": 10}
    assert BatchJobTrigger(**old).serialize()[1]["max_outage"] == 3600.0


def test_trigger_defaults_are_the_cores() -> None:
    from airflow_here_batch.api.outcome import DEFAULT_MAX_OUTAGE, WAIT_TIMEOUT

    trigger = BatchJobTrigger("JOB-1")
    assert (trigger.max_outage, trigger.deadline_reason) == (DEFAULT_MAX_OUTAGE, WAIT_TIMEOUT)
