"""HereBatchAsyncHook against the emulator: same rules as the sync hook, on aiohttp."""

from __future__ import annotations

import asyncio

import pytest

from airflow_here_batch.api import JobNotFoundError, JobOptions, JobStatus
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook, HereBatchHook
from tests.hooks.conftest import FAST_RETRIES


async def test_get_start_stop_and_errors_head(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    emulator.admin.settings(records_per_second=0)
    job = hook.create_job(b"recId|q\n1|Berlin\n2|\n", options=JobOptions(start_job=False))
    async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as ahook:
        assert (await ahook.get_job(job.id)).status is JobStatus.SUBMITTED
        await ahook.start_job(job.id)
        while (await ahook.get_job(job.id)).status is not JobStatus.IN_PROGRESS:
            await asyncio.sleep(0.02)
        await ahook.stop_job(job.id)
        while (await ahook.get_job(job.id)).status is not JobStatus.STOPPED:
            await asyncio.sleep(0.02)
        emulator.admin.settings(records_per_second=1_000_000)
        await ahook.start_job(job.id)
        while not (current := await ahook.get_job(job.id)).is_terminal:
            await asyncio.sleep(0.02)
        assert current.status is JobStatus.COMPLETED
        head = await ahook.download_errors_head(job.id, max_lines=5)
        assert head and any(line.startswith("2") for line in head)
        with pytest.raises(JobNotFoundError):
            await ahook.get_job("JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6")


@pytest.mark.parametrize(("kind", "status"), [("status", 429), ("status", 502), ("drop", None)])
async def test_async_retries(
    hook: HereBatchHook, emulator: EmulatorServer, kind: str, status: int | None
) -> None:
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=JobOptions(start_job=False))
    emulator.admin.inject_fault(endpoint="get_job", kind=kind, status=status, retry_after=0, count=2)
    async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as ahook:
        assert (await ahook.get_job(job.id)).id == job.id


async def test_session_is_required() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await HereBatchAsyncHook("here_test")._exchange("GET", "http://127.0.0.1:1/", "x")


async def test_hooks_of_one_loop_share_sockets_not_sessions(hook: HereBatchHook) -> None:
    """Each ``async with`` has its own session; the sockets come from one pool per event loop, which
    stays open while any hook uses it and is closed by the last one to leave."""
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=JobOptions(start_job=False))
    first = HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES)
    second = HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES)
    async with first:
        async with second:
            await asyncio.gather(first.get_job(job.id), second.get_job(job.id))
            assert first._session is not second._session
            pool = first._session.connector
            assert pool is second._session.connector
        assert not pool.closed  # second left: first still polls through the pool
        assert (await first.get_job(job.id)).id == job.id
    assert pool.closed
    async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as third:
        assert third._session.connector is not pool and (await third.get_job(job.id)).id == job.id


async def test_each_event_loop_gets_its_own_pool(hook: HereBatchHook) -> None:
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=JobOptions(start_job=False))

    async def poll() -> object:
        async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as ahook:
            await ahook.get_job(job.id)
            return ahook._session.connector

    async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as outer:
        other_loop_pool = await asyncio.to_thread(asyncio.run, poll())
        assert other_loop_pool is not outer._session.connector and other_loop_pool.closed
        assert (await outer.get_job(job.id)).id == job.id
