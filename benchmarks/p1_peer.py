"""P1-peer: the same 1,000 waits through ``BatchJobTrigger`` and through the HTTP provider's trigger.

What a user would otherwise write is ``HttpSensor(deferrable=True)`` from
``apache-airflow-providers-http``: it defers to ``HttpSensorTrigger``, which keeps waiting only while
the URL answers 404 and fires at the first other answer (a ``response_check`` makes the sensor poke on
a worker instead of deferring). HERE's job status URL answers 200 at once, so the HTTP provider's only
deferrable wait on a HERE job polls the job's **results** URL, which HERE answers 404 (``E6004042``)
until the job ended. That is the peer.

The emulator runs in its own process with ``records_per_second=0``: every job stays ``inProgress``,
every trigger keeps waiting. Both sides run N triggers as tasks in one event loop in a fresh process,
logging as the triggerer's runner process logs (JSON lines over an unbuffered channel), each built as
the triggerer builds it and polling every ``interval`` seconds. CPU per poll = the child's CPU time in a
steady-state window / the requests the emulator answered in it; memory per waiting trigger = (RSS in
the window - RSS before any trigger exists) / N. Full run: three runs of each side, interleaved; each
side keeps its run with the lowest CPU per poll (noise only adds CPU).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import urllib.request
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
    run_child,
    wait_job,
    workdir,
)

HTTP_CONN = "here_http"


def _polls(root_url: str) -> int:
    with urllib.request.urlopen(f"{root_url}/_emulator/stats", timeout=60) as response:
        requests = json.loads(response.read())["requests"]
    return int(requests.get("get_job", 0)) + int(requests.get("results", 0))


def _trigger(mode: str, job_id: str, interval: float) -> Any:
    if mode == "ours":
        from airflow_here_batch.triggers.batch_job import BatchJobTrigger

        return BatchJobTrigger(job_id, poll_interval=interval, max_poll_interval=interval)
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    return HttpSensorTrigger(
        endpoint=f"batch/jobs/{job_id}/results?apiKey={API_KEY}",
        http_conn_id=HTTP_CONN,
        poke_interval=interval,
    )


async def _wait(trigger: Any) -> None:
    async for event in trigger.run():
        raise RuntimeError(f"a held job's wait ended: {event}")


async def _child(p: dict[str, Any]) -> dict[str, Any]:
    from airflow.sdk.log import configure_logging, reset_logging

    raise_fd_limit()
    n, interval, jobs, mode = p["n"], p["interval"], p["jobs"], p["mode"]
    root_url = p["base_url"][: -len("/v7")]
    reset_logging()
    channel = os.open(p["log_channel"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    configure_logging(
        json_output=True, output=os.fdopen(channel, "wb", buffering=0), sending_to_supervisor=True
    )
    # warm up imports and the connection lookup, outside the measurement
    warm = _trigger(mode, jobs[0], interval).run()
    task = asyncio.ensure_future(warm.__anext__())
    await asyncio.sleep(min(interval, 1.0))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await warm.aclose()
    gc.collect()
    rss0 = current_rss_mb()
    count0 = await asyncio.to_thread(_polls, root_url)
    tasks = [asyncio.create_task(_wait(_trigger(mode, jobs[i % len(jobs)], interval))) for i in range(n)]
    deadline = time.monotonic() + p["max_startup"]
    while await asyncio.to_thread(_polls, root_url) - count0 < 2 * n:
        if time.monotonic() > deadline:
            raise RuntimeError("the triggers did not all poll within the start-up bound")
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        await asyncio.sleep(0.2)
    await asyncio.sleep(interval)
    cpu0, w0 = time.process_time(), time.monotonic()
    count1 = await asyncio.to_thread(_polls, root_url)
    await asyncio.sleep(p["window"])
    cpu1, w1 = time.process_time(), time.monotonic()
    count2 = await asyncio.to_thread(_polls, root_url)
    rss1 = current_rss_mb()
    ended = [t for t in tasks if t.done()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if ended:
        raise RuntimeError(f"{len(ended)} waits ended early: {ended[0].exception()!r}")
    polls = count2 - count1
    return {
        "cpu_per_poll_ms": (cpu1 - cpu0) / polls * 1000,
        "polls_per_s": polls / (w1 - w0),
        "kb_per_trigger": (rss1 - rss0) * 1024 / n,
    }


def run(quick: bool) -> list[Row]:
    try:
        import airflow.providers.http  # noqa: F401
    except ImportError:
        return [
            Row(
                "P1-peer",
                "HTTP provider not installed: pip install -e '.[benchmarks]'",
                "-",
                "-",
                "-",
                "-",
                None,
            )
        ]
    n, interval, window = (100, 0.5, 2.0) if quick else (1_000, 1.0, 10.0)
    order = ("ours", "http") if quick else ("ours", "http", "http", "ours", "ours", "http")
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "http": []}
    with workdir("p1peer-") as work:
        home = work / "airflow"
        home.mkdir()
        with Emulator(
            work / "emu",
            records_per_second=0,
            queue_delay=0,
            max_running_jobs=100_000,
            max_startable_jobs=100_000,
        ) as emu:
            body = b"recId|q\n1|Berlin\n2|Paris\n"
            jobs = [create_job(emu.base_url, body, GEOCODE)["id"] for _ in range(10 if quick else 100)]
            for job_id in jobs:
                wait_job(emu.base_url, job_id, lambda b: b["status"] == "inProgress", timeout=60)
            env = child_env(emu.base_url, home)
            env[f"AIRFLOW_CONN_{HTTP_CONN.upper()}"] = json.dumps({"conn_type": "http", "host": emu.base_url})
            for i, mode in enumerate(order):
                log = work / f"{mode}-{i}.log"
                payload = {
                    "mode": mode,
                    "n": n,
                    "interval": interval,
                    "window": window,
                    "jobs": jobs,
                    "base_url": emu.base_url,
                    "max_startup": 60 + n / 50,
                    "log_channel": f"{log}.json",
                }
                runs[mode].append(
                    run_child("benchmarks.p1_peer", payload, env, timeout=300 + n / 20, log=log)
                )
    print(f"# P1-peer: {runs}", file=sys.stderr, flush=True)
    ours = min(runs["ours"], key=lambda r: r["cpu_per_poll_ms"])
    http = min(runs["http"], key=lambda r: r["cpu_per_poll_ms"])
    cpu_ratio = ours["cpu_per_poll_ms"] / http["cpu_per_poll_ms"]
    kb_ratio = ours["kb_per_trigger"] / max(http["kb_per_trigger"], 0.1)
    return [
        Row(
            "P1-peer",
            f"CPU per poll, N={n:,} waits: BatchJobTrigger vs HttpSensorTrigger (poll every {interval:g} s)",
            f"{ours['cpu_per_poll_ms']:.2f} ms ({ours['polls_per_s']:.0f} polls/s)",
            f"{http['cpu_per_poll_ms']:.2f} ms ({http['polls_per_s']:.0f} polls/s)",
            f"{cpu_ratio:.2f}x",
            "< 1x (ours lower)",
            cpu_ratio < 1,
        ),
        Row(
            "P1-peer",
            f"memory per waiting trigger, N={n:,}: BatchJobTrigger vs HttpSensorTrigger",
            f"{ours['kb_per_trigger']:.1f} KB",
            f"{http['kb_per_trigger']:.1f} KB",
            f"{kb_ratio:.2f}x",
            "< 1x (ours lower)",
            kb_ratio < 1,
        ),
    ]


__all__ = ["run"]

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(_child(json.loads(sys.argv[2])))), flush=True)
    else:  # pragma: no cover
        for row in run(quick="--quick" in sys.argv):
            print(row)
