"""HERE job endpoints below ``/v7``: health, version, list, read, start, stop, delete, download."""

from __future__ import annotations

import re
import time
import zlib
from typing import Any

from aiohttp import web

from airflow_here_batch import __version__
from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator.errors import TRUNCATE, ApiError, Dropped, bad_arg, json_response
from airflow_here_batch.emulator.state import Emulator, emulator_of
from airflow_here_batch.emulator.store import Job, utc_now

__all__ = [
    "API_VERSION",
    "base_url",
    "delete_job",
    "delete_jobs",
    "errors",
    "get_job",
    "health",
    "job_detail",
    "job_of",
    "list_jobs",
    "newest_first",
    "results",
    "start_job",
    "stop_job",
    "version",
]

#: The HERE Batch API version the emulator answers as (``GET /v7/version``).
API_VERSION = "7.40.0"
_JOB_ID_RE = re.compile(r"^JOB-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SEND_CHUNK = 1 << 18  # bytes read from a results/errors file per write


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/v7"


def job_of(request: web.Request) -> Job:
    job_id = request.match_info["job_id"]
    if not _JOB_ID_RE.match(job_id):
        raise ApiError(
            400,
            c.E_ID_INVALID,
            "ID argument invalid",
            f"'{job_id[:80]}' is not a job id",
            "Use the id returned when the job was created",
        )
    job = emulator_of(request).store.jobs.get(job_id)
    if job is None:
        raise ApiError(
            404, c.E_JOB_NOT_FOUND, "Job not found", f"No job with id {job_id}", "Check the job id"
        )
    return job


def job_detail(request: web.Request, job: Job) -> dict[str, Any]:
    store = emulator_of(request).store
    return job.detail(base_url(request), store.has_results(job), store.has_errors(job))


def _int_arg(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_arg(name, f"'{raw}' is not an integer") from None
    if not lo <= value <= hi:
        raise bad_arg(name, f"{value} is not within {lo}..{hi}")
    return value


def _status_filter(request: web.Request, required: bool) -> str:
    raw = request.query.get("status")
    if raw is None:
        if required:
            raise bad_arg("status", "is required")
        return "any"
    if raw not in c.FILTER_STATUSES:
        raise bad_arg("status", f"'{raw}' is not one of {', '.join(c.FILTER_STATUSES)}")
    return raw


async def health(request: web.Request) -> web.Response:
    """``GET /v7/health``."""
    return json_response({"status": "ok"})  # HERE's HealthResponse.status enum: ok | fail


async def version(request: web.Request) -> web.Response:
    """``GET /v7/version``."""
    return json_response({"apiVersion": API_VERSION, "serviceVersion": f"emulator-{__version__}"})


async def list_jobs(request: web.Request) -> web.Response:
    """``GET /v7/batch/jobs`` with offset paging, newest first; deleted jobs are not listed."""
    emu = emulator_of(request)
    limit = _int_arg(request, "limit", 100, 1, 100)
    offset = _int_arg(request, "offset", 0, 0, 2**31 - 1)
    status = _status_filter(request, required=False)
    tag = request.query.get("tag")
    jobs = [
        j
        for j in newest_first(emu)
        if j.status != c.DELETED and status in ("any", j.status) and (tag is None or j.tag == tag)
    ]
    page = jobs[offset : offset + limit]
    items = [job_detail(request, j) for j in page]
    return json_response({"limit": limit, "count": len(page), "items": items})


def newest_first(emu: Emulator) -> list[Job]:
    jobs = list(emu.store.jobs.values())
    order = {j.id: i for i, j in enumerate(jobs)}
    return sorted(jobs, key=lambda j: (j.created, order[j.id]), reverse=True)


async def _delete(emu: Emulator, job: Job) -> None:
    if job.status == c.DELETED:
        return
    if job.started is not None and job.ended is None:
        job.ended = utc_now()
    job.status = c.DELETED
    job.status_since = time.time()
    job.records.pending = 0
    job.stop_requested = job.start_requested = False
    job.fail_requested = None
    await emu.engine.wait_idle(job.id)
    emu.engine.tasks.pop(job.id, None)
    emu.store.remove_files(job)
    emu.engine.forget(job.id)
    emu.store.save(job)


async def delete_jobs(request: web.Request) -> web.Response:
    """``DELETE /v7/batch/jobs?status=...[&tag=...]``: bulk delete."""
    emu = emulator_of(request)
    status = _status_filter(request, required=True)
    tag = request.query.get("tag")
    matched = [
        j
        for j in newest_first(emu)
        if j.status != c.DELETED and status in ("any", j.status) and (tag is None or j.tag == tag)
    ]
    for job in matched:
        await _delete(emu, job)
    return json_response({"total": len(matched), "jobIds": [j.id for j in matched]})


async def get_job(request: web.Request) -> web.Response:
    """``GET /v7/batch/jobs/{id}``."""
    return json_response(job_detail(request, job_of(request)))


async def delete_job(request: web.Request) -> web.Response:
    """``DELETE /v7/batch/jobs/{id}``: files removed, metadata kept readable with status deleted."""
    job = job_of(request)
    await _delete(emulator_of(request), job)
    return json_response(job.response(base_url(request)))


async def start_job(request: web.Request) -> web.Response:
    """``PUT /v7/batch/jobs/{id}/start``: start, resume a stopped job, or restart a failed one."""
    emu = emulator_of(request)
    job = job_of(request)
    if job.status == c.DELETED:
        raise ApiError(
            400,
            c.E_JOB_NOT_MODIFIABLE,
            "Job cannot be modified",
            "The job has been deleted",
            "Create a new job",
        )
    if job.status in (c.QUEUED, c.PENDING, c.IN_PROGRESS):
        job.stop_requested = False  # already running: nothing happens (a pending stop is cancelled)
    elif job.status in (c.SUBMITTED, c.STOPPED, c.FAILURE):
        running = emu.engine.running_count()
        if running >= emu.settings.max_running_jobs:
            emu.stats["start_job_too_many_jobs"] += 1
            raise ApiError(
                429,
                c.E_TOO_MANY_RUNNING,
                "Too many concurrent jobs running",
                f"{running} jobs are running (limit {emu.settings.max_running_jobs})",
                "Wait for a running job to finish, then start this one",
                {"Retry-After": "5"},
            )
        if job.status == c.FAILURE:
            await emu.engine.wait_idle(job.id)
            emu.engine.forget(job.id)
            emu.engine.reset_for_restart(job)
        job.start_requested = False
        emu.engine.set_status(job, c.QUEUED)
    return json_response(job.response(base_url(request)))


async def stop_job(request: web.Request) -> web.Response:
    """``PUT /v7/batch/jobs/{id}/stop``: asynchronous halt of a running job; no-op otherwise."""
    emu = emulator_of(request)
    job = job_of(request)
    if job.status == c.QUEUED:
        emu.engine.set_status(job, c.STOPPED)
    elif job.status in (c.PENDING, c.IN_PROGRESS):
        job.stop_requested = True
    elif job.status == c.SUBMITTED and job.start_requested:
        job.start_requested = False
    return json_response(job.response(base_url(request)))


async def _download(request: web.Request, kind: str) -> web.StreamResponse:
    emu = emulator_of(request)
    job = job_of(request)
    results = kind == "results"
    if job.status not in (c.COMPLETED, c.STOPPED, c.FAILURE):
        if results:
            raise ApiError(
                404,
                c.E_RESULTS_UNAVAILABLE,
                "Results unavailable",
                f"Job {job.id} is {job.status}; results exist once it has ended",
                "Wait until the job is completed or stopped",
            )
        raise ApiError(
            404,
            c.E_ERRORS_UNAVAILABLE,
            "Errors for job is unavailable.",
            f"Job {job.id} is {job.status}; the errors report exists once it has ended",
            "Wait until the job has ended",
        )
    has = emu.store.has_results(job) and job.status != c.FAILURE if results else emu.store.has_errors(job)
    if not has:
        return web.Response(status=204)
    path = emu.store.results_path(job.id) if results else emu.store.errors_path(job.id)
    size = job.results_size if results else job.errors_size
    truncate = bool(request.get(TRUNCATE))
    gzip = "gzip" in request.headers.get("Accept-Encoding", "").lower() and not truncate
    resp = web.StreamResponse(status=200)
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    resp.headers["Content-Disposition"] = f'attachment; filename="{job.id}-{kind}.txt"'
    if truncate:
        resp.content_length = size
    else:
        resp.enable_chunked_encoding()
    if gzip:
        resp.headers["Content-Encoding"] = "gzip"
    await resp.prepare(request)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
    limit = size // 2 if truncate else size
    sent = 0
    with path.open("rb") as fh:
        while sent < limit:
            data = fh.read(min(_SEND_CHUNK, limit - sent))
            if not data:
                break
            sent += len(data)
            if compressor is not None:
                data = compressor.compress(data)
                if not data:
                    continue
            await resp.write(data)
    if truncate:
        raise Dropped()
    if compressor is not None:
        await resp.write(compressor.flush())
    await resp.write_eof()
    return resp


async def results(request: web.Request) -> web.StreamResponse:
    """``GET /v7/batch/jobs/{id}/results``."""
    return await _download(request, "results")


async def errors(request: web.Request) -> web.StreamResponse:
    """``GET /v7/batch/jobs/{id}/errors``."""
    return await _download(request, "errors")
