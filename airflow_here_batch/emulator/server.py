"""The aiohttp application: HERE Batch API v7 endpoints, the OAuth token endpoint and the admin API.

HERE paths live below ``/v7``; the token endpoint is ``POST /oauth2/token``; emulator controls (fault
injection, settings, inspection) live below ``/_emulator`` and need no credentials (the emulator listens
on loopback by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from airflow_here_batch.api.records import decode_delimiter
from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator.auth import (
    TIMESTAMP_TOLERANCE,
    TokenIssuer,
    hmac_sha256_signature,
    parse_oauth_header,
    signature_base_string,
)
from airflow_here_batch.emulator.engine import Engine, detect_layout
from airflow_here_batch.emulator.faults import POST_KINDS, Fault, FaultRegistry
from airflow_here_batch.emulator.store import EmulatorSettings, Job, JobStore, utc_now

__all__ = ["DEFAULT_OAUTH_CREDENTIALS", "Emulator", "RedactingAccessLogger", "create_app", "redact"]

log = logging.getLogger("airflow_here_batch.emulator")

API_VERSION = "7.40.0"
#: Used when no OAuth credentials are configured.
DEFAULT_OAUTH_CREDENTIALS = {"emulator-access-key-id": "emulator-access-key-secret"}

_JOB_ID_RE = re.compile(r"^JOB-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BILLING_TAG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{2,14})[A-Za-z0-9]$")
_SECRET_QUERY_RE = re.compile(r"((?:apiKey|apikey|access_token|token)=)[^&\s\"]*")
_NO_AUTH = {"health", "token"}
EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator")
_RequestKey = getattr(web, "RequestKey", None)
CORRELATION: Any = _RequestKey("correlation_id", str) if _RequestKey else "correlation_id"
TRUNCATE: Any = _RequestKey("truncate", bool) if _RequestKey else "truncate"
_READ_CHUNK = 1 << 16


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


class ApiError(Exception):
    """Raised by handlers; rendered as HERE's ``ErrorResponse``."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        cause: str = "",
        action: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status, self.code, self.title = status, code, title
        self.cause = cause or title
        self.action = action or "See the HERE Batch API v7 documentation."
        self.headers = headers or {}


class Emulator:
    """All emulator state: jobs, engine, settings, faults, tokens and request statistics."""

    def __init__(
        self,
        data_dir: Path,
        *,
        api_key: str | None = None,
        oauth_credentials: dict[str, str] | None = None,
        settings: EmulatorSettings | None = None,
        forbidden_api_keys: set[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.oauth_credentials = dict(oauth_credentials or DEFAULT_OAUTH_CREDENTIALS)
        self.settings = settings or EmulatorSettings()
        self._initial_settings = EmulatorSettings(**self.settings.__dict__)
        self.forbidden_api_keys = set(forbidden_api_keys or ())
        self.store = JobStore(self.data_dir)
        self.engine = Engine(self.store, self.settings)
        self.faults = FaultRegistry()
        self.tokens = TokenIssuer()
        self.stats: Counter[str] = Counter()
        from airflow_here_batch.emulator.notifications import NotificationStore, Notifier

        self.notifications = NotificationStore(self.data_dir)  # HERE's BETA webhooks
        self.notifier = Notifier(self.notifications)

    def inject_fault(self, **kwargs: Any) -> Fault:
        """In-process fault injection (same fields as ``POST /_emulator/faults``)."""
        fault = Fault(**kwargs)
        self.faults.add(fault)
        return fault

    def reset(self) -> None:
        """Forget jobs, faults, tokens and statistics; restore the settings given at start."""
        for job_id in list(self.store.jobs):
            self.engine.forget(job_id)
        self.store.clear()
        self.notifications.clear()
        self.faults.clear()
        self.tokens.clear()
        self.stats.clear()
        self.engine.peak_running = 0
        self.settings.__dict__.update(self._initial_settings.__dict__)


# ---- helpers -------------------------------------------------------------------------------------------


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/v7"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _error_body(request: web.Request, err: ApiError) -> web.Response:
    body = {
        "title": err.title,
        "status": err.status,
        "code": err.code,
        "cause": err.cause,
        "action": err.action,
        "correlationId": request.get(CORRELATION, ""),
    }
    return _json(body, err.status, err.headers)


def _auth_error(status: int, description: str) -> web.Response:
    error = "Unauthorized" if status == 401 else "Forbidden"
    return _json({"error": error, "error_description": description}, status)


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


def _job(request: web.Request) -> Job:
    job_id = request.match_info["job_id"]
    if not _JOB_ID_RE.match(job_id):
        raise ApiError(
            400,
            c.E_ID_INVALID,
            "ID argument invalid",
            f"'{job_id[:80]}' is not a job id",
            "Use the id returned when the job was created",
        )
    job = _emu(request).store.jobs.get(job_id)
    if job is None:
        raise ApiError(
            404, c.E_JOB_NOT_FOUND, "Job not found", f"No job with id {job_id}", "Check the job id"
        )
    return job


def _detail(request: web.Request, job: Job) -> dict[str, Any]:
    store = _emu(request).store
    return job.detail(_base(request), store.has_results(job), store.has_errors(job))


def _bad_arg(name: str, cause: str) -> ApiError:
    return ApiError(
        400,
        c.E_ARG_INVALID,
        "Invalid argument",
        f"Parameter '{name}': {cause}",
        "Correct the parameter and retry",
    )


def _too_long(name: str, limit: int) -> ApiError:
    return ApiError(
        400,
        c.E_ARG_TOO_LONG,
        f"Argument exceeds maximum length limit ({limit} characters)",
        f"Parameter '{name}' is longer than {limit} characters",
        "Shorten the parameter",
    )


def _int_arg(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_arg(name, f"'{raw}' is not an integer") from None
    if not lo <= value <= hi:
        raise _bad_arg(name, f"{value} is not within {lo}..{hi}")
    return value


def _status_filter(request: web.Request, required: bool) -> str:
    raw = request.query.get("status")
    if raw is None:
        if required:
            raise _bad_arg("status", "is required")
        return "any"
    if raw not in c.FILTER_STATUSES:
        raise _bad_arg("status", f"'{raw}' is not one of {', '.join(c.FILTER_STATUSES)}")
    return raw


def _parse_billing_tags(raw: str) -> list[str]:
    if "+" in raw and "," in raw:
        raise ApiError(
            400,
            c.E_ARG_INVALID,
            "Invalid billing tags.",
            "Mixes '+' and ',' separators",
            "Join billing tags with '+' or ',' only",
        )
    tags = [t for t in re.split(r"[+,]", raw)]
    out: list[str] = []
    for tag in tags:
        if not _BILLING_TAG_RE.match(tag):
            raise ApiError(
                400,
                c.E_ARG_INVALID,
                "Invalid billing tags.",
                f"Billing tag '{tag[:40]}' is invalid",
                "Use 4-16 characters [A-Za-z0-9._-], not starting/ending with . _ -",
            )
        if tag not in out:
            out.append(tag)
    if len(out) > 6:
        raise ApiError(
            400,
            c.E_ARG_INVALID,
            "Invalid billing tags.",
            "More than 6 billing tags",
            "Use at most 6 billing tags",
        )
    return out


def _delimiter(request: web.Request, name: str) -> str:
    raw = request.query.get(name, "|")
    try:
        value = decode_delimiter(raw)
    except ValueError:
        value = ""
    bad = ' ."()' if name == "outputDelimiter" else '\n\r"'
    if not value or value in bad:
        raise ApiError(
            400,
            c.E_DELIMITER,
            "Delimiter character is unsupported",
            f"{name} '{raw}' is not supported",
            "Use e.g. '|', ';', ',' or '\\t'",
        )
    return value


# ---- middleware ----------------------------------------------------------------------------------------


class _Dropped(Exception):
    """The connection was closed on purpose (fault injection)."""


def _check_auth(request: web.Request, emu: Emulator) -> web.Response | None:
    authz = request.headers.get("Authorization", "")
    if authz[:7].lower() == "bearer ":
        token = authz[7:].strip()
        problem = emu.tokens.check(token) if token else "unknown"
        if problem == "expired":
            return _auth_error(401, "Token Validation Failure - token is expired")
        if problem:
            return _auth_error(401, "Invalid or incorrectly encoded authorization token.")
        return None
    key = request.query.get("apiKey")
    if not key:
        return _auth_error(401, "No credentials found")
    if key in emu.forbidden_api_keys:
        return _auth_error(403, "These credentials do not authorize access")
    if emu.api_key is not None and key != emu.api_key:
        return _auth_error(401, "apiKey invalid. apiKey not found.")
    return None


async def _truncate(request: web.Request, resp: web.Response) -> web.StreamResponse:
    body = resp.body if isinstance(resp.body, bytes) else b""
    out = web.StreamResponse(status=resp.status, headers={"Content-Type": resp.content_type})
    out.content_length = len(body)
    await out.prepare(request)
    await out.write(body[: len(body) // 2])
    raise _Dropped()


async def _apply_fault(request: web.Request, fault: Fault) -> web.Response | None:
    """Carry out a ``status``/``drop``/``slow`` fault; a response replaces the real one, ``None`` lets
    the request continue (``slow``)."""
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "drop":
        raise _Dropped()
    headers = {}
    if fault.retry_after is not None:
        ra = float(fault.retry_after)
        headers["Retry-After"] = str(int(ra)) if ra.is_integer() else str(ra)
    status = int(fault.status)
    code = fault.code or ("E6004290" if status == 429 else f"E600{status}0")
    cause = f"The emulator was told to answer {status}"
    return _error_body(request, ApiError(status, code, "Injected fault", cause, "Retry later", headers))


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
    raise _Dropped()


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
    return _json(data, resp.status, headers)


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    resp = await _handle(request, handler)
    name = request.match_info.route.name
    if resp.status >= 400 and name and not name.startswith("admin_") and _emu(request).faults.echoing(name):
        return _echo(request, _emu(request), resp)
    return resp


async def _handle(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    emu = _emu(request)
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
                denied = _check_auth(request, emu)
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
        return _error_body(request, err)
    except _Dropped:
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
        return _error_body(request, err)
    except Exception:
        log.exception("internal error while handling %s %s", request.method, redact(request.path))
        return _error_body(
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


# ---- HERE endpoints ------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """``GET /v7/health``."""
    return _json({"status": "ok"})  # HERE's HealthResponse.status enum: ok | fail


async def version(request: web.Request) -> web.Response:
    """``GET /v7/version``."""
    from airflow_here_batch import __version__

    return _json({"apiVersion": API_VERSION, "serviceVersion": f"emulator-{__version__}"})


async def create_job(request: web.Request) -> web.Response:
    """``POST /v7/batch/jobs``: validate parameters, stream the input to disk, register the job."""
    emu = _emu(request)
    s = emu.settings
    q = request.query
    hrn = q.get("serviceHrn")
    if not hrn:
        raise _bad_arg("serviceHrn", "is required")
    if hrn not in c.SERVICES:
        raise ApiError(
            404,
            c.E_SERVICE_NOT_FOUND,
            "Service not found or is unsupported",
            f"Unknown serviceHrn '{hrn[:100]}'",
            "Use one of the geocode, revgeocode or lookup HRNs",
        )
    tag = q.get("tag")
    if tag is not None and len(tag) > 256:
        raise _too_long("tag", 256)
    for name in ("inputColumns", "outputColumns", "outputFilter"):
        if name in q and not 1 <= len(q[name]) <= 1024:
            raise _too_long(name, 1024) if len(q[name]) > 1024 else _bad_arg(name, "must not be empty")
    in_delim = _delimiter(request, "inputDelimiter")
    out_delim = _delimiter(request, "outputDelimiter")
    output_type = q.get("outputType", "csv")
    if output_type not in ("csv", "jsonl"):
        raise _bad_arg("outputType", f"'{output_type}' is not csv or jsonl")
    start_raw = q.get("startJob", "true").lower()
    if start_raw not in ("true", "false"):
        raise _bad_arg("startJob", f"'{q.get('startJob')}' is not true or false")
    billing = _parse_billing_tags(q["billingTags"]) if q.get("billingTags") else []
    notification_ids = [n for n in q.get("notificationIds", "").split(",") if n] or None
    if notification_ids and len(notification_ids) > 5:
        raise _bad_arg("notificationIds", "at most 5 notification ids")
    emu.notifications.check_job_ids(notification_ids)  # HERE: they must exist up front
    ctype = request.content_type.lower()
    if ctype not in ("text/plain", "text/csv"):
        raise ApiError(
            400,
            c.E_INPUT_INVALID,
            "Input empty or invalid",
            f"Content-Type '{ctype}' is not supported",
            "Send the input as text/plain",
        )
    startable = sum(1 for j in emu.store.jobs.values() if j.status in c.STARTABLE_STATUSES)
    if startable >= s.max_startable_jobs:
        raise ApiError(
            429,
            c.E_TOO_MANY_STARTABLE,
            "Too many jobs in a startable state",
            f"{startable} jobs are submitted, queued or failed (limit {s.max_startable_jobs})",
            "Start, finish or delete jobs before submitting more",
            {"Retry-After": "10"},
        )

    job_id = f"JOB-{uuid.uuid4()}"
    directory = emu.store.dir(job_id)
    directory.mkdir(parents=True)
    try:
        lines, _size = await _receive(request, emu.store.input_path(job_id), s)
        job = _register(
            emu,
            job_id,
            lines,
            dict(
                service_hrn=hrn,
                tag=tag,
                billing_tags=billing,
                notification_ids=notification_ids,
                output_type=output_type,
                input_delimiter=in_delim,
                output_delimiter=out_delim,
                input_columns=q.get("inputColumns"),
                output_columns=q.get("outputColumns"),
                output_filter=q.get("outputFilter"),
                start_requested=start_raw == "true",
            ),
        )
    except BaseException:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        raise
    return _json(job.response(_base(request)), 201)


async def _receive(request: web.Request, path: Path, s: EmulatorSettings) -> tuple[int, int]:
    """Stream the (already gunzipped by aiohttp) body to ``path``; returns (line count, bytes)."""
    size = 0
    lines = 0
    last = b""
    too_many = s.max_records + 1  # one header line allowed on top
    problem: ApiError | None = None
    cr_pending = False  # the previous chunk ended with a CR
    try:
        with path.open("wb") as fh:
            async for chunk in request.content.iter_chunked(_READ_CHUNK):
                if not chunk:
                    continue
                if problem is None:
                    bare = _bare_cr(chunk, cr_pending)
                    if bare is not None:
                        problem = _bare_cr_error(lines + chunk[:bare].count(b"\n") + 1)
                    cr_pending = chunk.endswith(b"\r")
                size += len(chunk)
                lines += chunk.count(b"\n")
                last = chunk[-1:]
                if problem is not None:
                    continue  # drain (and discard) the rest so the client reads our 400/413
                if size > s.max_input_bytes:
                    problem = ApiError(
                        413,
                        c.E_INPUT_TOO_LARGE,
                        "Input exceeds maximum size limit.",
                        f"The uncompressed input exceeds {s.max_input_bytes} bytes",
                        "Split the input into several jobs",
                    )
                elif lines > too_many:
                    problem = ApiError(
                        413,
                        c.E_INPUT_TOO_LARGE,
                        "Input exceeds maximum record count limit.",
                        f"The input has more than {s.max_records} records",
                        "Split the input into several jobs",
                    )
                else:
                    fh.write(chunk)
    except (zlib.error, ValueError, OSError) as exc:
        raise ApiError(
            400,
            c.E_INPUT_INVALID,
            "Input empty or invalid",
            f"Cannot read the body: {exc}",
            "Check Content-Encoding and the gzip stream",
        ) from None
    except Exception as exc:  # aiohttp's ContentEncodingError and friends
        if exc.__class__.__name__ in (
            "ContentEncodingError",
            "BadHttpMessage",
            "TransferEncodingError",
            "RequestPayloadError",
        ):
            raise ApiError(
                400,
                c.E_INPUT_INVALID,
                "Input empty or invalid",
                f"Cannot decode the body: {exc}",
                "Check Content-Encoding and the gzip stream",
            ) from None
        raise
    if problem is None and cr_pending:
        problem = _bare_cr_error(lines + 1)
    if problem is not None:
        raise problem
    if last and last != b"\n":
        lines += 1
    return lines, size


def _bare_cr(chunk: bytes, cr_pending: bool) -> int | None:
    """Offset of the first CR in ``chunk`` not followed by LF (a chunk-final CR is left for the next
    chunk), or ``None``; ``0`` when the previous chunk's final CR is not followed by LF."""
    if cr_pending and not chunk.startswith(b"\n"):
        return 0
    if chunk.count(b"\r") == chunk.count(b"\r\n") + (1 if chunk.endswith(b"\r") else 0):
        return None
    at = chunk.find(b"\r")
    while at >= 0 and (at + 1 == len(chunk) or chunk[at + 1 : at + 2] == b"\n"):
        at = chunk.find(b"\r", at + 1)
    return at if at >= 0 else None


def _bare_cr_error(line: int) -> ApiError:
    # HERE answers 400 to an input whose lines end with a bare CR (issue 10, observed); a record ends
    # at LF only (CRLF is read as LF).
    return ApiError(
        400,
        c.E_INPUT_INVALID,
        "Input empty or invalid",
        f"Line {line} holds a carriage return (CR) that is not followed by a line feed (LF); records "
        "end with LF or CRLF",
        "Convert the line endings to LF",
    )


def _first_line(path: Path) -> tuple[str, int, int]:
    """First non-empty line, its byte end offset, and how many empty lines precede it."""
    offset = 0
    with path.open("rb") as fh:
        for raw in fh:
            offset += len(raw)
            if raw.strip():
                return raw.decode("utf-8", "replace").rstrip("\r\n"), offset, 0
    return "", offset, 0


def _register(emu: Emulator, job_id: str, lines: int, fields: dict[str, Any]) -> Job:
    """Check the stored input (descriptor, record count) and create the job record."""
    path = emu.store.input_path(job_id)
    first, first_end, _ = _first_line(path)
    if not first:
        raise ApiError(
            400,
            c.E_INPUT_INVALID,
            "Input empty or invalid",
            "The input has no records",
            "Upload at least one record",
        )
    q_columns = fields["input_columns"]
    in_delim = fields["input_delimiter"]
    try:
        layout = detect_layout(first, first_end, in_delim, q_columns)
    except ValueError as exc:
        raise ApiError(
            400,
            c.E_INPUT_NOT_DEFINED,
            "Input for the job is not defined",
            f"No usable column descriptor: {exc}",
            "Send inputColumns or a header line",
        ) from None
    if layout.descriptor is not None and not q_columns and len(layout.descriptor.columns) == 1:
        only = layout.descriptor.columns[0]
        if any(d in only for d in "|,;\t" if d != in_delim):
            raise ApiError(
                400,
                c.E_DELIMITER,
                "Delimiter character is unsupported",
                f"The header line is not separated by inputDelimiter '{in_delim}'",
                "Set inputDelimiter to the delimiter used in the file",
            )
    records = lines - (1 if layout.data_offset else 0)
    if records <= 0:
        raise ApiError(
            400,
            c.E_INPUT_INVALID,
            "Input empty or invalid",
            "The input has a header but no records",
            "Upload at least one record",
        )
    if records > emu.settings.max_records:
        raise ApiError(
            413,
            c.E_INPUT_TOO_LARGE,
            "Input exceeds maximum record count limit.",
            f"The input has {records} records (limit {emu.settings.max_records})",
            "Split the input into several jobs",
        )
    job = Job(id=job_id, created=utc_now(), status_since=time.time(), **fields)
    job.records.total = job.estimated_total = (
        lines  # HERE: an estimate (header and empty lines included) until validation
    )
    emu.store.add(job)
    return job


async def list_jobs(request: web.Request) -> web.Response:
    """``GET /v7/batch/jobs`` with offset paging, newest first; deleted jobs are not listed."""
    emu = _emu(request)
    limit = _int_arg(request, "limit", 100, 1, 100)
    offset = _int_arg(request, "offset", 0, 0, 2**31 - 1)
    status = _status_filter(request, required=False)
    tag = request.query.get("tag")
    jobs = [
        j
        for j in _ordered(emu)
        if j.status != c.DELETED and status in ("any", j.status) and (tag is None or j.tag == tag)
    ]
    page = jobs[offset : offset + limit]
    return _json({"limit": limit, "count": len(page), "items": [_detail(request, j) for j in page]})


def _ordered(emu: Emulator) -> list[Job]:
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
    emu = _emu(request)
    status = _status_filter(request, required=True)
    tag = request.query.get("tag")
    matched = [
        j
        for j in _ordered(emu)
        if j.status != c.DELETED and status in ("any", j.status) and (tag is None or j.tag == tag)
    ]
    for job in matched:
        await _delete(emu, job)
    return _json({"total": len(matched), "jobIds": [j.id for j in matched]})


async def get_job(request: web.Request) -> web.Response:
    """``GET /v7/batch/jobs/{id}``."""
    return _json(_detail(request, _job(request)))


async def delete_job(request: web.Request) -> web.Response:
    """``DELETE /v7/batch/jobs/{id}``: files removed, metadata kept readable with status deleted."""
    job = _job(request)
    await _delete(_emu(request), job)
    return _json(job.response(_base(request)))


async def start_job(request: web.Request) -> web.Response:
    """``PUT /v7/batch/jobs/{id}/start``: start, resume a stopped job, or restart a failed one."""
    emu = _emu(request)
    job = _job(request)
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
    return _json(job.response(_base(request)))


async def stop_job(request: web.Request) -> web.Response:
    """``PUT /v7/batch/jobs/{id}/stop``: asynchronous halt of a running job; no-op otherwise."""
    emu = _emu(request)
    job = _job(request)
    if job.status == c.QUEUED:
        emu.engine.set_status(job, c.STOPPED)
    elif job.status in (c.PENDING, c.IN_PROGRESS):
        job.stop_requested = True
    elif job.status == c.SUBMITTED and job.start_requested:
        job.start_requested = False
    return _json(job.response(_base(request)))


async def _download(request: web.Request, kind: str) -> web.StreamResponse:
    emu = _emu(request)
    job = _job(request)
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
            data = fh.read(min(_READ_CHUNK * 4, limit - sent))
            if not data:
                break
            sent += len(data)
            if compressor is not None:
                data = compressor.compress(data)
                if not data:
                    continue
            await resp.write(data)
    if truncate:
        raise _Dropped()
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


# ---- OAuth token endpoint ----------------------------------------------------------------------------


def _token_error(status: int, error: str, message: str, code: int) -> web.Response:
    return _json(
        {
            "error": error,
            "error_description": f"errorCode: '{code}'. {message}",
            "errorCode": code,
            "httpStatus": status,
            "message": message,
        },
        status,
    )


async def token(request: web.Request) -> web.Response:
    """``POST /oauth2/token``: verify an OAuth 1.0a HMAC-SHA256 signed request, issue a bearer token."""
    emu = _emu(request)
    oauth = parse_oauth_header(request.headers.get("Authorization", ""))
    if oauth is None:
        return _token_error(401, "invalid_request", "Missing OAuth 1.0 Authorization header.", 401202)
    body = (await request.content.read(65536)).decode("utf-8", "replace")
    from urllib.parse import parse_qsl

    form = parse_qsl(body, keep_blank_values=True)
    if oauth.get("oauth_signature_method") != "HMAC-SHA256":
        return _token_error(401, "invalid_request", "Signature method must be HMAC-SHA256.", 401203)
    consumer_key = oauth.get("oauth_consumer_key", "")
    secret = emu.oauth_credentials.get(consumer_key)
    if secret is None:
        return _token_error(401, "invalid_client", "Invalid client credentials.", 401300)
    try:
        ts = int(oauth.get("oauth_timestamp", ""))
    except ValueError:
        ts = 0
    if abs(time.time() - ts) > TIMESTAMP_TOLERANCE:
        return _token_error(401, "invalid_request", "Timestamp out of the accepted range.", 401204)
    signature = oauth.pop("oauth_signature", "")
    params = [(k, v) for k, v in oauth.items()] + form + list(request.query.items())
    url = str(request.url.with_query(None).with_fragment(None))
    expected = hmac_sha256_signature(signature_base_string(request.method, url, params), secret)
    import hmac as _hmac

    if not _hmac.compare_digest(expected, signature):
        return _token_error(
            401,
            "invalid_client",
            "Signature mismatch. Authorization signature or client credential is wrong.",
            401300,
        )
    if emu.tokens.seen_nonce(consumer_key, oauth.get("oauth_nonce", ""), str(ts)):
        return _token_error(401, "invalid_request", "Nonce already used.", 401205)
    if dict(form).get("grant_type") != "client_credentials":
        return _token_error(400, "unsupported_grant_type", "grant_type must be client_credentials.", 400200)
    ttl = emu.settings.token_ttl
    access = emu.tokens.issue(ttl)
    return _json({"access_token": access, "token_type": "bearer", "expires_in": max(0, round(ttl))})


# ---- admin endpoints -----------------------------------------------------------------------------------


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


def create_app(emulator: Emulator) -> web.Application:
    """Build the aiohttp application around an :class:`Emulator`."""
    app = web.Application(middlewares=[_middleware], client_max_size=1 << 20)
    app[EMULATOR_KEY] = emulator
    __import__("airflow_here_batch.emulator.request_id").emulator.request_id.install(app)
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
    from airflow_here_batch.emulator.notifications import add_routes as add_notification_routes

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
