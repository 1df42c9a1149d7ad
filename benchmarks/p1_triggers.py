"""P1: N concurrent ``BatchJobTrigger.run()`` in one event loop, polling the emulator.

The emulator runs in its own process with ``records_per_second=0``, so every job stays ``inProgress``
and every trigger keeps waiting. Each trigger is built as the triggerer builds it and its ``run()`` is
consumed as the triggerer consumes it (one task per trigger, one loop); each opens its own aiohttp
session, as built, and logs a progress line at every poll as the triggerer's runner process logs
(JSON lines over an unbuffered channel). The baseline is a bare loop of N tasks doing
``GET /batch/jobs/{id}`` + ``read()`` on one shared ``aiohttp.ClientSession`` with the same interval.
Full run: three runs of each side, interleaved; each side keeps its run with the lowest CPU per poll.

CPU per poll = the child's CPU time (user+sys, all threads) in a steady-state window / status calls
the emulator answered in that window. Memory per waiting trigger = (RSS in the window - RSS after the
imports, before any trigger exists) / N.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks._common import (
    API_KEY,
    GEOCODE,
    Emulator,
    Row,
    child_env,
    create_job,
    current_rss_mb,
    raise_fd_limit,
    wait_job,
    workdir,
    write_geocode_input,
)

CPU_TARGET = 1.5
KB_TARGET = 20.0


def _get_job_count(root_url: str) -> int:
    with urllib.request.urlopen(f"{root_url}/_emulator/stats", timeout=60) as response:
        return int(json.loads(response.read())["requests"].get("get_job", 0))


async def _bare_task(session: Any, url: str, interval: float) -> None:
    while True:
        async with session.get(url, params={"apiKey": API_KEY}) as response:
            await response.read()
        await asyncio.sleep(interval)


async def _trigger_task(trigger: Any) -> None:
    async for event in trigger.run():
        raise RuntimeError(f"a held job ended: {event}")


async def _child(p: dict[str, Any]) -> dict[str, Any]:
    raise_fd_limit()
    n, interval, jobs, base_url = p["n"], p["interval"], p["jobs"], p["base_url"]
    root_url = base_url[: -len("/v7")]
    session = None
    if p["mode"] == "trigger":
        from airflow.sdk.log import configure_logging, reset_logging

        from airflow_here_batch.triggers.batch_job import BatchJobTrigger

        # Log as the triggerer's runner process does: JSON lines to the supervisor over an unbuffered
        # channel (airflow.sdk.execution_time.supervisor._configure_logs_over_json_channel); here the
        # channel is a file. Airflow's default console renderer costs more per line.
        reset_logging()
        channel = os.open(p["log_channel"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        output = os.fdopen(channel, "wb", buffering=0)
        configure_logging(json_output=True, output=output, sending_to_supervisor=True)

        # Warm up imports and the connection lookup path once, outside the measurement.
        warm = BatchJobTrigger(jobs[0], poll_interval=interval, max_poll_interval=interval)
        agen = warm.run()
        task = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(min(interval, 1.0))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agen.aclose()
    else:
        import aiohttp

        session = aiohttp.ClientSession()
        async with session.get(f"{base_url}/batch/jobs/{jobs[0]}", params={"apiKey": API_KEY}) as r:
            await r.read()
    gc.collect()
    rss0 = current_rss_mb()
    count0 = await asyncio.to_thread(_get_job_count, root_url)
    t_start = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    for i in range(n):
        job_id = jobs[i % len(jobs)]
        if p["mode"] == "trigger":
            trigger = BatchJobTrigger(job_id, poll_interval=interval, max_poll_interval=interval)
            tasks.append(asyncio.create_task(_trigger_task(trigger)))
        else:
            url = f"{base_url}/batch/jobs/{job_id}"
            tasks.append(asyncio.create_task(_bare_task(session, url, interval)))
    # Warm-up: every task has polled at least once, then one more interval.
    deadline = time.monotonic() + p["max_startup"]
    while await asyncio.to_thread(_get_job_count, root_url) - count0 < 2 * n:
        if time.monotonic() > deadline:
            raise RuntimeError("the tasks did not all poll within the start-up bound")
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        await asyncio.sleep(0.2)
    startup = time.monotonic() - t_start
    await asyncio.sleep(interval)
    cpu0, w0 = time.process_time(), time.monotonic()
    count1 = await asyncio.to_thread(_get_job_count, root_url)
    await asyncio.sleep(p["window"])
    cpu1, w1 = time.process_time(), time.monotonic()
    count2 = await asyncio.to_thread(_get_job_count, root_url)
    rss1 = current_rss_mb()
    failed = [t for t in tasks if t.done()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if session is not None:
        await session.close()
    if failed:
        raise RuntimeError(f"{len(failed)} tasks ended early: {failed[0].exception()!r}")
    polls = count2 - count1
    return {
        "cpu_per_poll_ms": (cpu1 - cpu0) / polls * 1000,
        "polls": polls,
        "polls_per_s": polls / (w1 - w0),
        "cpu_util": (cpu1 - cpu0) / (w1 - w0),
        "kb_per_task": (rss1 - rss0) * 1024 / n,
        "startup_s": startup,
    }


def _measure(emu: Emulator, home: Path, log: Path, mode: str, n: int, interval: float, window: float,
             jobs: list[str]) -> dict[str, Any]:
    from benchmarks._common import run_child

    payload = {"mode": mode, "n": n, "interval": interval, "window": window, "jobs": jobs,
               "base_url": emu.base_url, "max_startup": 60 + n / 50, "log_channel": str(log) + ".json"}
    result = run_child("benchmarks.p1_triggers", payload, child_env(emu.base_url, home),
                       timeout=300 + n / 20, log=log)
    if mode == "trigger":
        # Every trigger writes an INFO progress line at its first poll, and at every poll that sees the
        # job move: check they were written (the cost measured includes them).
        with open(payload["log_channel"], "rb") as channel:
            result["progress_lines"] = sum(b'"event":"HERE Batch: job ' in line for line in channel)
        if result["progress_lines"] < n:
            raise RuntimeError(f"expected a progress line per trigger, found {result['progress_lines']}")
    return result


def _moving_jobs(emu: Emulator, work: Path) -> list[str]:
    """10 jobs of 100,000 records, once every one of them is being processed."""
    path = work / "moving.txt"
    write_geocode_input(path, 100_000, distinct=1_000)
    body = path.read_bytes()
    path.unlink()
    jobs = [create_job(emu.base_url, body, GEOCODE)["id"] for _ in range(10)]
    for job_id in jobs:
        wait_job(emu.base_url, job_id, lambda b: b["records"]["processed"] > 0, timeout=60)
    return jobs


def run(quick: bool) -> list[Row]:
    # (N, poll interval, window): about 1,000 polls/s at full scale, 10,000 idle sockets at the top.
    sizes = [(100, 0.5, 2.0)] if quick else [(1_000, 1.0, 10.0), (10_000, 10.0, 20.0)]
    rows: list[Row] = []
    with workdir("p1-") as work:
        home = work / "airflow"
        home.mkdir()
        with Emulator(work / "emu", records_per_second=0, queue_delay=0, max_running_jobs=100_000,
                      max_startable_jobs=100_000) as emu:
            n_jobs = 10 if quick else 100
            body = b"recId|q\n1|Berlin\n2|Paris\n"
            jobs = [create_job(emu.base_url, body, GEOCODE)["id"] for _ in range(n_jobs)]
            for job_id in jobs:  # queued -> inProgress, held there
                wait_job(emu.base_url, job_id, lambda b: b["status"] == "inProgress", timeout=60)
            for n, interval, window in sizes:
                # Three runs of each side, interleaved (quick: one of each): a load that comes or goes
                # during the run weighs on both sides alike. Each side keeps its least disturbed run,
                # the one with the lowest CPU per poll (noise only ever adds CPU).
                runs: dict[str, list[dict[str, Any]]] = {"bare": [], "trigger": []}
                order = ("bare", "trigger")
                if not quick:
                    order = ("bare", "trigger", "trigger", "bare", "bare", "trigger")
                for i, mode in enumerate(order):
                    log = work / f"{mode}-{n}-{i}.log"
                    runs[mode].append(_measure(emu, home, log, mode, n, interval, window, jobs))
                bare = min(runs["bare"], key=lambda r: r["cpu_per_poll_ms"])
                trig = min(runs["trigger"], key=lambda r: r["cpu_per_poll_ms"])
                ratio = trig["cpu_per_poll_ms"] / bare["cpu_per_poll_ms"]
                rows.append(Row(
                    "P1", f"CPU per poll, N={n:,} triggers (poll every {interval:g} s)",
                    f"{trig['cpu_per_poll_ms']:.2f} ms ({trig['polls_per_s']:.0f} polls/s)",
                    f"{bare['cpu_per_poll_ms']:.2f} ms ({bare['polls_per_s']:.0f} polls/s)",
                    f"{ratio:.2f}x", f"<= {CPU_TARGET}x", ratio <= CPU_TARGET,
                ))
                rows.append(Row(
                    "P1", f"memory per waiting trigger, N={n:,}",
                    f"{trig['kb_per_task']:.1f} KB", f"{bare['kb_per_task']:.1f} KB (bare task)",
                    f"{trig['kb_per_task'] / max(bare['kb_per_task'], 0.1):.1f}x",
                    f"<= {KB_TARGET:.0f} KB", trig["kb_per_task"] <= KB_TARGET,
                ))
                print(f"# P1 N={n}: {runs}", file=sys.stderr, flush=True)
                if quick or n != 1_000:
                    continue
                # Jobs that move at every poll, so every poll writes an INFO progress line: what a
                # line in Airflow's log pipeline costs (information; the target row is the one above).
                # 50 records/s per job: 100,000 records last longer than the run.
                with Emulator(work / "emu-moving", records_per_second=50, queue_delay=0,
                              max_running_jobs=100, max_startable_jobs=100) as moving_emu:
                    moving_jobs = _moving_jobs(moving_emu, work)
                    log = work / f"moving-{n}.log"
                    moving = _measure(moving_emu, home, log, "trigger", n, interval, window, moving_jobs)
                if moving["progress_lines"] < moving["polls"]:
                    raise RuntimeError(f"{moving['progress_lines']} progress lines, {moving['polls']} polls")
                print(f"# P1 N={n} moving jobs: {moving}", file=sys.stderr, flush=True)
                rows.append(Row(
                    "P1", f"CPU per poll, N={n:,} triggers, jobs moving (an INFO line at every poll)",
                    f"{moving['cpu_per_poll_ms']:.2f} ms ({moving['polls_per_s']:.0f} polls/s)",
                    f"{bare['cpu_per_poll_ms']:.2f} ms ({bare['polls_per_s']:.0f} polls/s)",
                    f"{moving['cpu_per_poll_ms'] / bare['cpu_per_poll_ms']:.2f}x", f"<= {CPU_TARGET}x", None,
                ))
    return rows


__all__ = ["run"]

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(_child(json.loads(sys.argv[2])))), flush=True)
    else:  # pragma: no cover
        for row in run(quick="--quick" in sys.argv):
            print(row)
