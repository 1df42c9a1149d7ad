"""``POST /v7/batch/jobs``: validate the parameters, stream the input to disk, register the job."""

from __future__ import annotations

import re
import shutil
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from aiohttp import web

from airflow_here_batch.api.records import decode_delimiter
from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator.engine import detect_layout
from airflow_here_batch.emulator.errors import ApiError, bad_arg, json_response, too_long
from airflow_here_batch.emulator.jobs import base_url
from airflow_here_batch.emulator.state import Emulator, emulator_of
from airflow_here_batch.emulator.store import EmulatorSettings, Job, utc_now

__all__ = ["create_job"]

_BILLING_TAG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{2,14})[A-Za-z0-9]$")
_READ_CHUNK = 1 << 16  # bytes read from the request body at a time


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


async def create_job(request: web.Request) -> web.Response:
    """``POST /v7/batch/jobs``: validate parameters, stream the input to disk, register the job."""
    emu = emulator_of(request)
    s = emu.settings
    q = request.query
    hrn = q.get("serviceHrn")
    if not hrn:
        raise bad_arg("serviceHrn", "is required")
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
        raise too_long("tag", 256)
    for name in ("inputColumns", "outputColumns", "outputFilter"):
        if name in q and not 1 <= len(q[name]) <= 1024:
            raise too_long(name, 1024) if len(q[name]) > 1024 else bad_arg(name, "must not be empty")
    in_delim = _delimiter(request, "inputDelimiter")
    out_delim = _delimiter(request, "outputDelimiter")
    output_type = q.get("outputType", "csv")
    if output_type not in ("csv", "jsonl"):
        raise bad_arg("outputType", f"'{output_type}' is not csv or jsonl")
    start_raw = q.get("startJob", "true").lower()
    if start_raw not in ("true", "false"):
        raise bad_arg("startJob", f"'{q.get('startJob')}' is not true or false")
    billing = _parse_billing_tags(q["billingTags"]) if q.get("billingTags") else []
    notification_ids = [n for n in q.get("notificationIds", "").split(",") if n] or None
    if notification_ids and len(notification_ids) > 5:
        raise bad_arg("notificationIds", "at most 5 notification ids")
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
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return json_response(job.response(base_url(request)), 201)


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
