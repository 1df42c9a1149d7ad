"""``BatchJobTrigger.run()`` against the real emulator (plain pytest-asyncio, no Airflow DB).

Faults are injected in the emulator (429 + Retry-After, 5xx bursts, dropped connections, a job failed
or deleted underneath); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_here_batch.api import JobOptions, PollSchedule
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks.here_batch import HereBatchHook
from airflow_here_batch.triggers.batch_job import BatchJobTrigger, deadline_to_epoch

API_KEY = "trigger-test-api-key-0123456789"
QUICK = PollSchedule(0.05, 0.2)
LINES = ["recId|q\n"] + [f"{i}|Street {i}, Berlin\n" for i in range(1, 21)]


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    with EmulatorServer(records_per_second=400.0, queue_delay=0.05, api_key=API_KEY) as server:
        conn = {"conn_type": "here_batch", "host": server.base_url, "password": API_KEY}
        monkeypatch.setenv("AIRFLOW_CONN_HERE_BATCH_DEFAULT", json.dumps(conn))
        yield server


@pytest.fixture
def hook(emu: EmulatorServer) -> HereBatchHook:
    return HereBatchHook()


def submit(hook: HereBatchHook, **options: Any) -> str:
    return hook.create_job(LINES, options=JobOptions(service="geocode", **options)).id


async def collect(trigger: BatchJobTrigger, limit: float = 60.0) -> list[dict[str, Any]]:
    """Every event ``run()`` yields (it must return on its own, within ``limit`` seconds)."""

    async def drain() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(drain(), limit)


def wait_running(hook: HereBatchHook, job_id: str, limit: float = 30.0) -> None:
    """Poll until the job is inProgress (a stop before that is a no-op at HERE)."""
    end = time.monotonic() + limit
    while hook.get_job(job_id).status.value != "inProgress":
        assert time.monotonic() < end, "job never started"
        time.sleep(0.02)


def fast(job_id: str, **kwargs: Any) -> BatchJobTrigger:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("max_poll_interval", 0.5)
    return BatchJobTrigger(job_id=job_id, **kwargs)


def status_of(emu: EmulatorServer, job_id: str) -> str:
    return next(j["status"] for j in emu.admin.jobs() if j["id"] == job_id)


async def test_completed_job_gives_one_small_success_event(hook: HereBatchHook, emu: EmulatorServer) -> None:
    job_id = submit(hook)
    events = await collect(fast(job_id))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "success" and event["job_id"] == job_id
    assert event["job"]["records"]["succeeded"] == 20
    assert event["job"]["results_href"].endswith("/results")
    assert len(json.dumps(event)) < 2000
    assert API_KEY not in json.dumps(event)


async def test_progress_is_logged_at_every_poll_that_sees_the_job_move(
    hook: HereBatchHook, emu: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.admin.settings(records_per_second=40)
    job_id = submit(hook)
    events = await collect(fast(job_id, poll_interval=0.1))
    assert events[0]["status"] == "success"
    out = capsys.readouterr().out  # Airflow's trigger logger is structlog, printed to stdout here
    lines = [line for line in out.splitlines() if f"job {job_id}" in line and "records" in line]
    assert len(lines) >= 3
    wanted = ("inProgress", "%", "records/s", "ETA")
    assert any(all(w in line for w in wanted) for line in lines)


async def test_unchanged_polls_do_not_repeat_the_progress_line(
    hook: HereBatchHook, emu: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.admin.settings(records_per_second=0)  # held inProgress: every answer is the same
    job_id = submit(hook)
    wait_running(hook, job_id)
    polls_before = emu.admin.stats()["requests"]["get_job"]
    events = await collect(fast(job_id, deadline=time.time() + 1.0, cancel_on_kill=False))
    assert events[0]["status"] == "timeout"
    polls = emu.admin.stats()["requests"]["get_job"] - polls_before
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if f"job {job_id} inProgress: 0/20 records" in line]
    assert polls >= 5 and len(lines) == 1  # the rest went to DEBUG (tracker: a heartbeat every 5 min)


def test_serialise_and_rebuild_round_trip() -> None:
    trigger = BatchJobTrigger(
        job_id="JOB-1",
        here_conn_id="other",
        poll_interval=5,
        max_poll_interval=60,
        deadline="2030-01-01T00:00:00+00:00",
        cancel_on_kill=False,
        allow_stopped=True,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_here_batch.triggers.batch_job.BatchJobTrigger"
    assert kwargs == {
        "job_id": "JOB-1",
        "here_conn_id": "other",
        "poll_interval": 5.0,
        "max_poll_interval": 60.0,
        "deadline": deadline_to_epoch("2030-01-01T00:00:00Z"),
        "cancel_on_kill": False,
        "allow_stopped": True,
        "max_outage": 3600.0,
        "deadline_reason": "timeout",
    }
    json.dumps(kwargs)  # only plain values
    rebuilt = BatchJobTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


async def test_rebuilt_trigger_carries_on(hook: HereBatchHook, emu: EmulatorServer) -> None:
    """A triggerer restart: the first trigger is cancelled mid-wait, a rebuilt one finishes the job."""
    emu.admin.settings(records_per_second=0)  # hold the job
    job_id = submit(hook)
    first = fast(job_id)
    task = asyncio.ensure_future(collect(first))
    while emu.admin.stats()["requests"].get("get_job", 0) < 2:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert status_of(emu, job_id) not in ("stopped", "deleted")  # cancellation never stops the job
    await first.cleanup()
    assert status_of(emu, job_id) not in ("stopped", "deleted")
    emu.admin.settings(records_per_second=1000)
    _classpath, kwargs = first.serialize()
    events = await collect(BatchJobTrigger(**kwargs))
    assert [e["status"] for e in events] == ["success"]


async def test_429_with_retry_after_is_honoured(hook: HereBatchHook, emu: EmulatorServer) -> None:
    job_id = submit(hook)
    emu.admin.inject_fault("get_job", "status", status=429, retry_after=0.4, count=4)
    started = time.monotonic()
    events = await collect(fast(job_id))
    assert [e["status"] for e in events] == ["success"]
    assert time.monotonic() - started >= 4 * 0.4
    assert emu.admin.faults() == []


async def test_5xx_burst_and_dropped_connections_do_not_fail(
    hook: HereBatchHook, emu: EmulatorServer
) -> None:
    job_id = submit(hook)
    emu.admin.inject_fault("get_job", "status", status=503, count=6)  # more than the hook retries
    emu.admin.inject_fault("get_job", "drop", count=3)
    events = await collect(fast(job_id))
    assert [e["status"] for e in events] == ["success"]
    assert emu.admin.stats()["requests"]["get_job"] >= 10


async def test_persistent_outage_ends_with_an_error_event(hook: HereBatchHook, emu: EmulatorServer) -> None:
    job_id = submit(hook)
    emu.admin.inject_fault("get_job", "status", status=500, count=1000)
    events = await collect(fast(job_id, max_outage=1.0, max_poll_interval=0.1))
    assert len(events) == 1 and events[0]["status"] == "error"
    assert "no usable answer for 1 s (max_outage)" in events[0]["message"]
    assert API_KEY not in json.dumps(events) and "apiKey" not in json.dumps(events)


async def test_failure_event_carries_errors_head(hook: HereBatchHook, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = submit(hook)
    emu.admin.fail_job(job_id, reason="backend exploded")
    events = await collect(fast(job_id))
    assert len(events) == 1 and events[0]["status"] == "failure"
    assert events[0]["job"]["status"] == "failure"
    assert isinstance(events[0]["errors_head"], list)


async def test_job_deleted_underneath(hook: HereBatchHook, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = submit(hook)
    trigger = fast(job_id)
    task = asyncio.ensure_future(collect(trigger))
    while emu.admin.stats()["requests"].get("get_job", 0) < 2:
        await asyncio.sleep(0.02)
    hook.delete_job(job_id)
    events = await task
    assert [e["status"] for e in events] == ["deleted"]


async def test_unknown_job_is_an_error_event(emu: EmulatorServer) -> None:
    events = await collect(fast("JOB-00000000-0000-0000-0000-000000000000"))
    assert [e["status"] for e in events] == ["error"]


async def test_stopped_job_event_and_allow_stopped(hook: HereBatchHook, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = submit(hook)
    wait_running(hook, job_id)
    hook.stop_job(job_id)
    assert [e["status"] for e in await collect(fast(job_id))] == ["stopped"]
    events = await collect(fast(job_id, allow_stopped=True))
    assert [e["status"] for e in events] == ["success"] and "partial" in events[0]["message"]


async def test_deadline_gives_timeout_and_stops_the_job(hook: HereBatchHook, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = submit(hook)
    wait_running(hook, job_id)
    events = await collect(fast(job_id, deadline=time.time() + 0.5))
    assert [e["status"] for e in events] == ["timeout"]
    assert "asked to stop" in events[0]["message"]
    hook.wait_for_job(job_id, schedule=QUICK, timeout=10)  # the halt is asynchronous at HERE
    assert status_of(emu, job_id) == "stopped"


async def test_deadline_without_cancel_leaves_job_running(hook: HereBatchHook, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = submit(hook)
    events = await collect(fast(job_id, deadline=time.time() + 0.3, cancel_on_kill=False))
    assert [e["status"] for e in events] == ["timeout"]
    assert emu.admin.stats()["requests"].get("stop_job", 0) == 0


async def test_on_kill_stops_the_job(hook: HereBatchHook, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = submit(hook)
    wait_running(hook, job_id)
    trigger = fast(job_id)
    task = asyncio.ensure_future(collect(trigger))
    while emu.admin.stats()["requests"].get("get_job", 0) < 8:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.on_kill()
    assert hook.wait_for_job(job_id, schedule=QUICK, timeout=10).status.value == "stopped"

    other = submit(hook)
    await fast(other, cancel_on_kill=False).on_kill()
    assert emu.admin.stats()["requests"].get("stop_job", 0) == 1


async def test_one_session_per_run_closed_at_the_end(
    hook: HereBatchHook, emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_here_batch.hooks import here_batch

    opened: list[Any] = []
    original = here_batch.HereBatchAsyncHook.__aenter__

    async def spy(self: Any) -> Any:
        result = await original(self)
        opened.append(self._session)
        return result

    monkeypatch.setattr(here_batch.HereBatchAsyncHook, "__aenter__", spy)
    job_id = submit(hook)
    events = await collect(fast(job_id))
    assert events[0]["status"] == "success"
    assert len(opened) == 1 and opened[0].closed
