"""The aiohttp application: :func:`create_app` (the routes) and the middleware every request goes through.

HERE paths live below ``/v7``; the token endpoint is ``POST /oauth2/token``; emulator controls (fault
injection, settings, inspection) live below ``/_emulator`` and need no credentials (the emulator listens
on loopback by default).

The middleware counts requests, applies injected faults, checks credentials (:mod:`.access`) and turns
errors into HERE's error answers (:mod:`.errors`). The handlers live by concern: :mod:`.jobs` (job
endpoints), :mod:`.upload` (``POST /v7/batch/jobs`` and its input), :mod:`.access` (token endpoint),
:mod:`.notifications` (webhooks) and :mod:`.admin.handlers` (``/_emulator``); the state they share is
the :class:`~.state.Emulator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator import request_id
from airflow_here_batch.emulator.access import check_credentials, token
from airflow_here_batch.emulator.admin.handlers import add_routes as add_admin_routes
from airflow_here_batch.emulator.auth import parse_oauth_header
from airflow_here_batch.emulator.errors import (
    CORRELATION,
    TRUNCATE,
    ApiError,
    Dropped,
    error_response,
    json_response,
)
from airflow_here_batch.emulator.faults import POST_KINDS, Fault
from airflow_here_batch.emulator.jobs import (
    delete_job,
    delete_jobs,
    errors,
    get_job,
    health,
    list_jobs,
    results,
    start_job,
    stop_job,
    version,
)
from airflow_here_batch.emulator.notifications import add_routes as add_notification_routes
from airflow_here_batch.emulator.state import DEFAULT_OAUTH_CREDENTIALS, EMULATOR_KEY, Emulator, emulator_of
from airflow_here_batch.emulator.upload import create_job

__all__ = ["DEFAULT_OAUTH_CREDENTIALS", "Emulator", "RedactingAccessLogger", "create_app", "redact"]

log = logging.getLogger("airflow_here_batch.emulator")

_SECRET_QUERY_RE = re.compile(r"((?:apiKey|apikey|access_token|token)=)[^&\s\"]*")
_NO_AUTH = {"health", "token"}


def redact(text: str) -> str:
    """Replace secret query values (``apiKey``, ``access_token``) with ``***``."""
    return _SECRET_QUERY_RE.sub(r"\1***", text)


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp access log that never prints an ``apiKey`` value (the query string is redacted)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            response.body_length,
            time,
        )


# ---- middleware ----------------------------------------------------------------------------------------


async def _truncate(request: web.Request, resp: web.Response) -> web.StreamResponse:
    body = resp.body if isinstance(resp.body, bytes) else b""
    out = web.StreamResponse(status=resp.status, headers={"Content-Type": resp.content_type})
    out.content_length = len(body)
    await out.prepare(request)
    await out.write(body[: len(body) // 2])
    raise Dropped()


async def _apply_fault(request: web.Request, fault: Fault) -> web.Response | None:
    """Carry out a ``status``/``drop``/``slow`` fault; a response replaces the real one, ``None`` lets
    the request continue (``slow``)."""
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "drop":
        raise Dropped()
    headers = {}
    if fault.retry_after is not None:
        ra = float(fault.retry_after)
        headers["Retry-After"] = str(int(ra)) if ra.is_integer() else str(ra)
    status = int(fault.status)
    code = fault.code or ("E6004290" if status == 429 else f"E600{status}0")
    cause = f"The emulator was told to answer {status}"
    return error_response(request, ApiError(status, code, "Injected fault", cause, "Retry later", headers))


async def _late(request: web.Request, emu: Emulator, resp: web.StreamResponse, delay: float) -> None:
    """Fault ``late``: hide the job just created for ``delay`` s (HERE finishing a create late), drop
    the answer."""
    job_id = None
    if isinstance(resp, web.Response) and isinstance(resp.body, bytes):
        with contextlib.suppress(ValueError):
            job_id = json.loads(resp.body).get("id")
    job = emu.store.jobs.pop(job_id, None) if job_id else None
    if job is not None:
        asyncio.get_running_loop().call_later(delay, emu.store.jobs.__setitem__, job.id, job)
    raise Dropped()


def _malformed(resp: web.StreamResponse) -> web.StreamResponse:
    """Fault ``malformed``: the real status, half of the body, delivered as a whole answer."""
    body = resp.body if isinstance(resp, web.Response) and isinstance(resp.body, bytes) else b"{}"
    return web.Response(
        body=body[: max(1, len(body) // 2)], status=resp.status, content_type="application/json"
    )


_ECHO_FIELDS = ("title", "cause", "action", "error", "error_description", "message")


def _echo(request: web.Request, emu: Emulator, resp: web.StreamResponse) -> web.StreamResponse:
    """Fault ``echo``: every text of an error answer quotes the request, credentials and all."""
    if not isinstance(resp, web.Response) or not isinstance(resp.body, bytes):
        return resp
    try:
        data = json.loads(resp.body)
    except ValueError:
        return resp
    authz = request.headers.get("Authorization", "")
    echo = f" (request {request.method} {request.url} Authorization={authz}"
    oauth = parse_oauth_header(authz) or {}
    secret = emu.oauth_credentials.get(oauth.get("oauth_consumer_key", ""))
    if secret:
        echo += f" secret={secret}"
    echo += ")"
    for name in _ECHO_FIELDS:
        if isinstance(data.get(name), str):
            data[name] += echo
    headers = {k: v for k, v in resp.headers.items() if k.lower() == "retry-after"}
    return json_response(data, resp.status, headers)


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    resp = await _handle(request, handler)
    name = request.match_info.route.name
    emu = emulator_of(request)
    if resp.status >= 400 and name and not name.startswith("admin_") and emu.faults.echoing(name):
        return _echo(request, emu, resp)
    return resp


async def _handle(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    emu = emulator_of(request)
    request[CORRELATION] = str(uuid.uuid4())
    name = request.match_info.route.name
    fault: Fault | None = None
    try:
        if name and not name.startswith("admin_"):
            emu.stats[name] += 1
            fault = emu.faults.take(name)
            if fault is not None:
                if fault.kind == "truncate":
                    request[TRUNCATE] = True
                elif not fault.after_processing and fault.kind not in POST_KINDS:
                    early = await _apply_fault(request, fault)
                    if early is not None:
                        return early
            if name not in _NO_AUTH:
                denied = check_credentials(request, emu)
                if denied is not None:
                    return denied
        resp = await handler(request)
        if fault is not None and fault.kind == "late" and 200 <= resp.status < 300:
            await _late(request, emu, resp, fault.delay)
        if fault is not None and fault.kind == "malformed":
            return _malformed(resp)
        if fault is not None and fault.after_processing and fault.kind not in ("truncate", *POST_KINDS):
            late = await _apply_fault(request, fault)
            if late is not None:
                return late
        if request.get(TRUNCATE) and isinstance(resp, web.Response):
            return await _truncate(request, resp)
        return resp
    except ApiError as err:
        return error_response(request, err)
    except Dropped:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError() from None
    except asyncio.CancelledError:
        raise
    except web.HTTPException as exc:
        if exc.status == 404:
            err = ApiError(
                404,
                c.E_NOT_FOUND,
                "Resource not found",
                f"No resource at {request.path}",
                "Check the URL; HERE paths start with /v7",
            )
        elif exc.status == 405:
            err = ApiError(
                405,
                c.E_METHOD,
                "Method not allowed",
                f"{request.method} is not allowed here",
                "Check the HTTP method",
            )
        elif exc.status == 413:
            err = ApiError(413, c.E_INPUT_TOO_LARGE, "Payload too large", str(exc.reason), "Send less data")
        else:
            err = ApiError(
                exc.status, f"E600{exc.status}0", exc.reason or "Error", exc.text or exc.reason or ""
            )
        return error_response(request, err)
    except Exception:
        log.exception("internal error while handling %s %s", request.method, redact(request.path))
        return error_response(
            request,
            ApiError(
                500,
                "E6005000",
                "Internal Server Error",
                "The emulator failed to handle the request",
                "Report this as an emulator bug",
            ),
        )


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Correlation-ID"] = request.get(CORRELATION) or str(uuid.uuid4())
    rid = request.headers.get("X-Request-ID")
    if rid is not None:
        response.headers["X-Request-ID"] = rid


# ---- the application -----------------------------------------------------------------------------------

def create_app(emulator: Emulator) -> web.Application:
    """Build the aiohttp application around an :class:`Emulator`."""
    app = web.Application(middlewares=[_middleware], client_max_size=1 << 20)
    app[EMULATOR_KEY] = emulator
    request_id.install(app)
    r = app.router
    r.add_get("/v7/health", health, name="health")
    r.add_get("/v7/version", version, name="version")
    r.add_post("/v7/batch/jobs", create_job, name="create_job")
    r.add_get("/v7/batch/jobs", list_jobs, name="list_jobs", allow_head=False)
    r.add_delete("/v7/batch/jobs", delete_jobs, name="delete_jobs")
    r.add_get("/v7/batch/jobs/{job_id}", get_job, name="get_job", allow_head=False)
    r.add_delete("/v7/batch/jobs/{job_id}", delete_job, name="delete_job")
    r.add_put("/v7/batch/jobs/{job_id}/start", start_job, name="start_job")
    r.add_put("/v7/batch/jobs/{job_id}/stop", stop_job, name="stop_job")
    r.add_get("/v7/batch/jobs/{job_id}/results", results, name="results", allow_head=False)
    r.add_get("/v7/batch/jobs/{job_id}/errors", errors, name="errors", allow_head=False)
    r.add_post("/oauth2/token", token, name="token")
    add_admin_routes(app)
    add_notification_routes(app, emulator)
    app.on_response_prepare.append(_on_prepare)

    async def _start(app: web.Application) -> None:
        emulator.engine.start()

    async def _stop(app: web.Application) -> None:
        await emulator.engine.close()

    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


with contextlib.suppress(Exception):  # keep the logger quiet about redacted values by default
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
