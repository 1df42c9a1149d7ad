"""The admin endpoints below ``/_emulator`` (fault injection, settings, inspection); no credentials."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web

from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator.errors import ApiError, error_response, json_response
from airflow_here_batch.emulator.jobs import job_detail, job_of, newest_first
from airflow_here_batch.emulator.state import emulator_of

__all__ = [
    "add_routes",
    "admin_add_fault",
    "admin_clear_faults",
    "admin_expire_tokens",
    "admin_fail_job",
    "admin_get_settings",
    "admin_jobs",
    "admin_list_faults",
    "admin_reset",
    "admin_settings",
    "admin_stats",
]


async def _admin_json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(text="body is not JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


async def admin_add_fault(request: web.Request) -> web.Response:
    """``POST /_emulator/faults`` with a :class:`Fault` as JSON."""
    try:
        fault = emulator_of(request).inject_fault(**await _admin_json(request))
    except (TypeError, ValueError) as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response({"fault": fault.to_dict()}, 201)


async def admin_list_faults(request: web.Request) -> web.Response:
    """``GET /_emulator/faults``."""
    return json_response({"faults": [f.to_dict() for f in emulator_of(request).faults.list()]})


async def admin_clear_faults(request: web.Request) -> web.Response:
    """``DELETE /_emulator/faults``."""
    emulator_of(request).faults.clear()
    return json_response({"faults": []})


async def admin_fail_job(request: web.Request) -> web.Response:
    """``POST /_emulator/jobs/{id}/fail`` (JSON ``{"reason": ...}`` optional): fail the job now; answers
    once it is in ``failure``, with its errors report written."""
    try:
        job = job_of(request)
    except ApiError as err:
        return error_response(request, err)
    if job.status in (c.COMPLETED, c.DELETED, c.FAILURE):
        error = f"job is {job.status}; only unfinished or stopped jobs can be failed"
        return json_response({"error": error}, 409)
    reason = str((await _admin_json(request)).get("reason") or "Internal error (injected by the emulator)")
    job.fail_requested = reason
    if job.status not in (c.PENDING, c.IN_PROGRESS):
        job.status = c.PENDING  # the engine fails pending/inProgress jobs
        job.status_since = time.time()
    deadline = time.monotonic() + 60
    while job.status != c.FAILURE and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return json_response(job_detail(request, job))


async def admin_jobs(request: web.Request) -> web.Response:
    """``GET /_emulator/jobs``: every job, deleted ones included, newest first."""
    emu = emulator_of(request)
    return json_response({"items": [job_detail(request, j) for j in newest_first(emu)]})


async def admin_stats(request: web.Request) -> web.Response:
    """``GET /_emulator/stats``: request counts per endpoint, job counts per status, and the most jobs
    that were ever running at once (``peak_running``); ``DELETE`` clears the counts and the peak."""
    emu = emulator_of(request)
    if request.method == "DELETE":
        emu.stats.clear()
        emu.engine.peak_running = emu.engine.running_count()
    return json_response(
        {
            "requests": dict(emu.stats),
            "jobs": dict(Counter(j.status for j in emu.store.jobs.values())),
            "peak_running": emu.engine.peak_running,
        }
    )


async def admin_get_settings(request: web.Request) -> web.Response:
    """``GET /_emulator/settings``."""
    return json_response(emulator_of(request).settings.to_dict())


async def admin_settings(request: web.Request) -> web.Response:
    """``POST /_emulator/settings`` with a partial settings object."""
    emu = emulator_of(request)
    try:
        emu.settings.update(await _admin_json(request))
    except (KeyError, TypeError, ValueError) as exc:
        return json_response({"error": f"bad setting: {exc}"}, 400)
    return json_response(emu.settings.to_dict())


async def admin_reset(request: web.Request) -> web.Response:
    """``POST /_emulator/reset``: forget everything, restore start settings."""
    emu = emulator_of(request)
    emu.engine.paused = True  # no new chunk may start while jobs and files go away
    try:
        for job_id in list(emu.engine.tasks):
            await emu.engine.wait_idle(job_id)
        emu.engine.tasks.clear()
        emu.reset()
    finally:
        emu.engine.paused = False
    return json_response({"reset": True})


async def admin_expire_tokens(request: web.Request) -> web.Response:
    """``POST /_emulator/tokens/expire``: make every issued token expired (tests of token refresh)."""
    emulator_of(request).tokens.expire_all()
    return json_response({"expired": True})


def add_routes(app: web.Application) -> None:
    """Register the ``/_emulator`` routes on ``app`` (route names start with ``admin_``: never faulted,
    never counted, no credentials)."""
    r = app.router
    r.add_post("/_emulator/faults", admin_add_fault, name="admin_add_fault")
    r.add_get("/_emulator/faults", admin_list_faults, name="admin_list_faults", allow_head=False)
    r.add_delete("/_emulator/faults", admin_clear_faults, name="admin_clear_faults")
    r.add_post("/_emulator/jobs/{job_id}/fail", admin_fail_job, name="admin_fail_job")
    r.add_get("/_emulator/jobs", admin_jobs, name="admin_jobs", allow_head=False)
    r.add_get("/_emulator/stats", admin_stats, name="admin_stats", allow_head=False)
    r.add_delete("/_emulator/stats", admin_stats, name="admin_stats_reset")
    r.add_get("/_emulator/settings", admin_get_settings, name="admin_get_settings", allow_head=False)
    r.add_post("/_emulator/settings", admin_settings, name="admin_settings")
    r.add_post("/_emulator/reset", admin_reset, name="admin_reset")
    r.add_post("/_emulator/tokens/expire", admin_expire_tokens, name="admin_expire_tokens")
