"""The admin endpoints below ``/_emulator`` (fault injection, settings, inspection); no credentials."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web

from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator.errors import ApiError, _error_body, _json
from airflow_here_batch.emulator.jobs import _detail, _job, _ordered
from airflow_here_batch.emulator.state import _emu


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
        fault = _emu(request).inject_fault(**await _admin_json(request))
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"fault": fault.to_dict()}, 201)


async def admin_list_faults(request: web.Request) -> web.Response:
    """``GET /_emulator/faults``."""
    return _json({"faults": [f.to_dict() for f in _emu(request).faults.list()]})


async def admin_clear_faults(request: web.Request) -> web.Response:
    """``DELETE /_emulator/faults``."""
    _emu(request).faults.clear()
    return _json({"faults": []})


async def admin_fail_job(request: web.Request) -> web.Response:
    """``POST /_emulator/jobs/{id}/fail`` (JSON ``{"reason": ...}`` optional): fail the job now; answers
    once it is in ``failure``, with its errors report written."""
    try:
        job = _job(request)
    except ApiError as err:
        return _error_body(request, err)
    if job.status in (c.COMPLETED, c.DELETED, c.FAILURE):
        return _json({"error": f"job is {job.status}; only unfinished or stopped jobs can be failed"}, 409)
    reason = str((await _admin_json(request)).get("reason") or "Internal error (injected by the emulator)")
    job.fail_requested = reason
    if job.status not in (c.PENDING, c.IN_PROGRESS):
        job.status = c.PENDING  # the engine fails pending/inProgress jobs
        job.status_since = time.time()
    deadline = time.monotonic() + 60
    while job.status != c.FAILURE and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return _json(_detail(request, job))


async def admin_jobs(request: web.Request) -> web.Response:
    """``GET /_emulator/jobs``: every job, deleted ones included, newest first."""
    emu = _emu(request)
    return _json({"items": [_detail(request, j) for j in _ordered(emu)]})


async def admin_stats(request: web.Request) -> web.Response:
    """``GET /_emulator/stats``: request counts per endpoint, job counts per status, and the most jobs
    that were ever running at once (``peak_running``); ``DELETE`` clears the counts and the peak."""
    emu = _emu(request)
    if request.method == "DELETE":
        emu.stats.clear()
        emu.engine.peak_running = emu.engine.running_count()
    return _json(
        {
            "requests": dict(emu.stats),
            "jobs": dict(Counter(j.status for j in emu.store.jobs.values())),
            "peak_running": emu.engine.peak_running,
        }
    )


async def admin_get_settings(request: web.Request) -> web.Response:
    """``GET /_emulator/settings``."""
    return _json(_emu(request).settings.to_dict())


async def admin_settings(request: web.Request) -> web.Response:
    """``POST /_emulator/settings`` with a partial settings object."""
    emu = _emu(request)
    try:
        emu.settings.update(await _admin_json(request))
    except (KeyError, TypeError, ValueError) as exc:
        return _json({"error": f"bad setting: {exc}"}, 400)
    return _json(emu.settings.to_dict())


async def admin_reset(request: web.Request) -> web.Response:
    """``POST /_emulator/reset``: forget everything, restore start settings."""
    emu = _emu(request)
    emu.engine.paused = True  # no new chunk may start while jobs and files go away
    try:
        for job_id in list(emu.engine.tasks):
            await emu.engine.wait_idle(job_id)
        emu.engine.tasks.clear()
        emu.reset()
    finally:
        emu.engine.paused = False
    return _json({"reset": True})


async def admin_expire_tokens(request: web.Request) -> web.Response:
    """``POST /_emulator/tokens/expire``: make every issued token expired (tests of token refresh)."""
    emu = _emu(request)
    with emu.tokens._lock:
        for key in emu.tokens._tokens:
            emu.tokens._tokens[key] = 0.0
    return _json({"expired": True})
