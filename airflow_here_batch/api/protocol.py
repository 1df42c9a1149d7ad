"""Requests and answers of every v7 job endpoint, with no I/O.

A builder returns an :class:`ApiRequest` (method, path below the base URL, query, headers); a transport
adds the base URL and credentials, sends it and hands status, headers and body back to an
``interpret_*`` function. The sync hook (requests) and the async hook (aiohttp) are such transports.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from airflow_here_batch import __version__
from airflow_here_batch.api.errors import (
    HereBatchError,
    JobNotFoundError,
    MalformedAnswerError,
    ProtocolError,
    ResultsNotReadyError,
    error_from_response,
)
from airflow_here_batch.api.models import (
    BatchJob,
    DeletedJobs,
    JobsPage,
    JobStatus,
    OutputType,
    ServiceType,
)

USER_AGENT = f"airflow-here-batch/{__version__}"
LIST_PAGE_LIMIT = 100
MAX_BILLING_TAGS = 6
_BILLING_TAG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{2,14})[A-Za-z0-9]$")
_REJECTED_OUTPUT_DELIMITERS = frozenset(' ."()')
MAX_ARGUMENT_LENGTH = 1024
MAX_TAG_LENGTH = 256  # HERE's E6004002 names a 256-character argument limit; tag's own cap is not stated.


class InvalidJobOptionsError(ValueError):
    """A job parameter HERE would refuse, caught before anything is uploaded."""


#: An empty, read-only mapping shared by the requests that carry no parameters or headers of their own.
NO_VALUES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One HTTP request, relative to the API base URL (``https://batch.search.hereapi.com/v7``).

    :param operation: what the request does, in words, for logs and error messages (never a URL).
    """

    method: str
    path: str
    operation: str
    params: Mapping[str, str] = field(default_factory=lambda: NO_VALUES)
    headers: Mapping[str, str] = field(default_factory=lambda: NO_VALUES)

    def url(self, base_url: str) -> str:
        return base_url.rstrip("/") + self.path


#: Headers every request carries; the hooks set them once on their session. ``Accept`` is HERE's
#: error media type too: every operation declares its 4xx/5xx answers as ``application/json``.
DEFAULT_HEADERS: Mapping[str, str] = MappingProxyType(
    {"User-Agent": USER_AGENT, "Accept": "application/json"}
)

#: The trace header HERE declares on every operation (and echoes); HERE's own id of the request is
#: the answer's ``X-Correlation-ID`` (``correlationId`` in error bodies).
REQUEST_ID_HEADER = "X-Request-ID"


def new_request_id() -> str:
    """A fresh ``X-Request-ID`` for one HTTP request (every attempt gets its own): a random UUID."""
    return str(uuid.uuid4())


def redact_url(url: str) -> str:
    """A URL safe to log: the query string (where ``apiKey`` travels) is replaced by ``?***``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "***" if parts.query else "", ""))


def _job_path(job_id: str, suffix: str = "") -> str:
    if not job_id or not str(job_id).strip():
        raise ValueError("job_id is empty: pass the id HERE returned when the job was created (JOB-…)")
    return f"/batch/jobs/{quote(str(job_id), safe='')}{suffix}"


# ---------------------------------------------------------------------------------------------------
# Job options (the query of POST /batch/jobs)


def normalise_billing_tags(tags: str | Iterable[str] | None) -> list[str]:
    """HERE's billing-tag rules, checked before upload (HERE answers only "Invalid billing tags.").

    Up to 6 tags of 4-16 characters from ``[A-Za-z0-9._-]``, not starting or ending with ``.``, ``_``
    or ``-``; duplicates collapse. A string may join them with ``+`` or ``,`` (not both).
    """
    if tags is None:
        return []
    if isinstance(tags, str):
        if "+" in tags and "," in tags:
            raise InvalidJobOptionsError(
                f"billing_tags {tags!r} mixes '+' and ',': HERE accepts one separator; pass a list instead"
            )
        items = [t for t in re.split(r"[+,]", tags) if t != ""]
    else:
        items = [str(t) for t in tags]
    unique = list(dict.fromkeys(t.strip() for t in items))
    for tag in unique:
        if not _BILLING_TAG.match(tag):
            raise InvalidJobOptionsError(
                f"billing tag {tag!r} is invalid: use 4-16 characters of letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
    if len(unique) > MAX_BILLING_TAGS:
        raise InvalidJobOptionsError(
            f"billing_tags has {len(unique)} tags: HERE accepts at most {MAX_BILLING_TAGS} per job"
        )
    return unique


def encode_delimiter(value: str, *, name: str, output: bool = False) -> str:
    """Check a delimiter and return it as HERE's query expects (tab as the two characters ``\\t``)."""
    if value in ("\t", "\\t"):
        return "\\t"
    if len(value) != 1:
        raise InvalidJobOptionsError(
            f"{name} {value!r} must be a single character (or a tab, written '\\t'); HERE recommends '|'"
        )
    if value in ("\n", "\r"):
        raise InvalidJobOptionsError(f"{name} cannot be a line break: one line is one record")
    if output and value in _REJECTED_OUTPUT_DELIMITERS:
        raise InvalidJobOptionsError(
            f"{name} {value!r} is refused by HERE (space . \" ( ) are not allowed); use '|', ';' or ','"
        )
    return value


@dataclass(frozen=True)
class JobOptions:
    """The parameters of a new job, validated as HERE would, turned into the create request's query.

    :param service: ``geocode``, ``revgeocode``, ``lookup`` or the service HRN.
    :param input_columns: column names (a list, or a string already joined with the input delimiter);
        omit when the input's first line is a header. HERE lets this win over a header.
    :param input_delimiter: one character, or tab; HERE's default is ``|``.
    :param output_columns: output column names; omit for the service's defaults.
    :param output_delimiter: one character, or tab; not space . " ( ).
    :param output_type: ``csv`` (default; then no ``outputType`` is sent: HERE's default is csv and the
        parameter is ALPHA) or ``jsonl`` (ALPHA at HERE).
    :param output_filter: jsonl only: comma-separated dotted paths to keep.
    :param tag: a free label, used to list and bulk-delete jobs (and by the operator to reattach).
    :param billing_tags: up to 6 billing tags.
    :param start_job: False leaves the job ``submitted`` until started.
    :param notification_ids: up to 5 notification ids (BETA at HERE).
    :param quality_columns: for a geocode job with named ``output_columns``, also ask for the columns
        the quality verdict reads (:data:`airflow_here_batch.api.quality.QUALITY_OUTPUT_COLUMNS`:
        ``resultType``, ``houseNumberType``, ``scoringQueryScore``, ``scoringFieldScore*``, position,
        ``addressCity``) when missing. HERE's default columns (no ``output_columns``) are left as they
        are. Not part of a record's fingerprint (that covers the columns the user named).
    """

    service: ServiceType | str = ServiceType.GEOCODE
    input_columns: str | Iterable[str] | None = None
    input_delimiter: str = "|"
    output_columns: str | Iterable[str] | None = None
    output_delimiter: str = "|"
    output_type: OutputType | str = OutputType.CSV
    output_filter: str | Iterable[str] | None = None
    tag: str | None = None
    billing_tags: str | Iterable[str] | None = None
    start_job: bool = True
    notification_ids: Iterable[str] | None = None
    quality_columns: bool = True

    def to_query(self) -> dict[str, str]:
        service = ServiceType.from_name(self.service)
        try:
            output_type = OutputType(str(getattr(self.output_type, "value", self.output_type)).lower())
        except ValueError:
            raise InvalidJobOptionsError(
                f"output_type {self.output_type!r} is not supported: use 'csv' or 'jsonl'"
            ) from None
        in_delim = encode_delimiter(self.input_delimiter, name="input_delimiter")
        out_delim = encode_delimiter(self.output_delimiter, name="output_delimiter", output=True)
        query: dict[str, str] = {
            "serviceHrn": service.hrn,
            "inputDelimiter": in_delim,
            "outputDelimiter": out_delim,
            "startJob": "true" if self.start_job else "false",
        }
        if output_type is not OutputType.CSV:
            # ALPHA at HERE: sent only when the user chose it; csv is HERE's default without it.
            query["outputType"] = output_type.value
        joiner_in = "\t" if in_delim == "\\t" else in_delim
        joiner_out = "\t" if out_delim == "\\t" else out_delim
        if self.input_columns:
            query["inputColumns"] = _joined(self.input_columns, joiner_in, "input_columns")
        if self.output_columns:
            columns = self.output_columns
            if self.quality_columns and service is ServiceType.GEOCODE:
                # imported here: the verdict's rules are not needed to parse a DAG file (P5)
                from airflow_here_batch.api.quality import quality_output_columns

                columns = quality_output_columns(columns, joiner_out)
            query["outputColumns"] = _joined(columns, joiner_out, "output_columns")
        if self.output_filter:
            if output_type is not OutputType.JSONL:
                raise InvalidJobOptionsError(
                    "output_filter applies to output_type='jsonl' only: drop it or set output_type='jsonl'"
                )
            query["outputFilter"] = _joined(self.output_filter, ",", "output_filter")
        if self.tag:
            if len(self.tag) > MAX_TAG_LENGTH:
                raise InvalidJobOptionsError(
                    f"tag is {len(self.tag)} characters: keep it to {MAX_TAG_LENGTH}"
                )
            query["tag"] = self.tag
        billing = normalise_billing_tags(self.billing_tags)
        if billing:
            query["billingTags"] = ",".join(billing)
        if self.notification_ids:
            ids = list(self.notification_ids)
            if len(ids) > 5:
                raise InvalidJobOptionsError("notification_ids: HERE accepts at most 5 per job")
            query["notificationIds"] = ",".join(ids)
        return query


def _joined(value: str | Iterable[str], joiner: str, name: str) -> str:
    text = value if isinstance(value, str) else joiner.join(str(v) for v in value)
    if not text:
        raise InvalidJobOptionsError(f"{name} is empty")
    if len(text) > MAX_ARGUMENT_LENGTH:
        raise InvalidJobOptionsError(
            f"{name} is {len(text)} characters long: HERE accepts at most {MAX_ARGUMENT_LENGTH}"
        )
    return text


# ---------------------------------------------------------------------------------------------------
# Builders


def create_job_request(options: JobOptions, *, gzip_body: bool = False) -> ApiRequest:
    """POST /batch/jobs. Not idempotent: a retry after an ambiguous failure may create a second job."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if gzip_body:
        headers["Content-Encoding"] = "gzip"
    return ApiRequest("POST", "/batch/jobs", "create a batch job", options.to_query(), headers)


def get_job_request(job_id: str) -> ApiRequest:
    return ApiRequest("GET", _job_path(job_id), f"get job {job_id}")


def start_job_request(job_id: str) -> ApiRequest:
    return ApiRequest("PUT", _job_path(job_id, "/start"), f"start job {job_id}")


def stop_job_request(job_id: str) -> ApiRequest:
    return ApiRequest("PUT", _job_path(job_id, "/stop"), f"stop job {job_id}")


def delete_job_request(job_id: str) -> ApiRequest:
    return ApiRequest("DELETE", _job_path(job_id), f"delete job {job_id}")


_LISTABLE = ("any", *(s.value for s in JobStatus if s is not JobStatus.DELETED))


def _status_filter(status: JobStatus | str | None) -> str:
    value = "any" if status is None else str(getattr(status, "value", status))
    if value not in _LISTABLE:
        raise ValueError(
            f"status filter {value!r} is not accepted by HERE: use one of {', '.join(_LISTABLE)}"
        )
    return value


def list_jobs_request(
    *,
    status: JobStatus | str | None = None,
    tag: str | None = None,
    offset: int = 0,
    limit: int = LIST_PAGE_LIMIT,
) -> ApiRequest:
    if not 1 <= limit <= LIST_PAGE_LIMIT:
        raise ValueError(f"limit must be 1-{LIST_PAGE_LIMIT}, got {limit}")
    params = {"status": _status_filter(status), "offset": str(max(0, offset)), "limit": str(limit)}
    if tag:
        params["tag"] = tag
    return ApiRequest("GET", "/batch/jobs", "list batch jobs", params)


def delete_jobs_request(*, status: JobStatus | str, tag: str | None = None) -> ApiRequest:
    """Bulk delete. ``status`` is required by HERE (``any`` allowed): no accidental delete-everything."""
    params = {"status": _status_filter(status)}
    if tag:
        params["tag"] = tag
    return ApiRequest("DELETE", "/batch/jobs", "delete batch jobs", params)


def results_request(job_id: str) -> ApiRequest:
    return ApiRequest(
        "GET", _job_path(job_id, "/results"), f"download results of job {job_id}", {}, _download_headers()
    )


def errors_request(job_id: str) -> ApiRequest:
    return ApiRequest(
        "GET", _job_path(job_id, "/errors"), f"download errors of job {job_id}", {}, _download_headers()
    )


#: A download's ``Accept``: the file (text/plain) or HERE's error body (application/json), which HERE
#: declares for the 401/403/404/default answers of /results and /errors; a strict server answering
#: ``Accept: text/plain`` alone could send 406 instead of the error the caller needs to read.
DOWNLOAD_ACCEPT = "text/plain, application/json"


def _download_headers() -> dict[str, str]:
    return {"Accept": DOWNLOAD_ACCEPT, "Accept-Encoding": "gzip"}


def health_request() -> ApiRequest:
    return ApiRequest("GET", "/health", "check health")


# ---------------------------------------------------------------------------------------------------
# Answers


def raise_for_status(
    request: ApiRequest,
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | None,
    *,
    scrub: Callable[[str], str] | None = None,
    request_id: str | None = None,
) -> None:
    """Raise the mapped :class:`HereBatchError` for a non-2xx answer.

    ``scrub`` removes the caller's secrets from every text taken from the answer (HERE's error texts
    may echo the request, key and all). ``request_id``: the ``X-Request-ID`` the request was sent
    with; the error names it beside HERE's ``correlationId``.

    The errors endpoint says "Errors for job is unavailable." with a 404 whose code HERE does not
    document; any 404 there other than an unknown job is taken to mean "not ended yet".
    """
    if 200 <= status < 300:
        return
    errors_endpoint = request.path.endswith("/errors")
    raise error_from_response(
        status,
        headers,
        body,
        operation=request.operation,
        not_found=ResultsNotReadyError if errors_endpoint else None,
        scrub=scrub,
        request_id=request_id,
    )


def _json(request: ApiRequest, body: bytes | str) -> Mapping[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        # Transient: a body cut short or garbled on the way; asking again usually gets a whole one.
        raise MalformedAnswerError(
            f"HERE answered {request.operation} with a body that is not JSON"
        ) from None
    if type(data) is not dict:  # json.loads makes a dict of every object (and no ABC check is cheaper)
        raise MalformedAnswerError(f"HERE answered {request.operation} with JSON that is not an object")
    return data


def interpret_job(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str
) -> BatchJob:
    """Answer of create/get/start/stop/delete: a job body."""
    raise_for_status(request, status, headers, body)
    try:
        return BatchJob.from_dict(_json(request, body))
    except ValueError as exc:
        raise ProtocolError(f"HERE answered {request.operation} with an unreadable job: {exc}") from None


def interpret_jobs_page(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str
) -> JobsPage:
    raise_for_status(request, status, headers, body)
    return JobsPage.from_dict(_json(request, body))


def interpret_deleted_jobs(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str
) -> DeletedJobs:
    raise_for_status(request, status, headers, body)
    return DeletedJobs.from_dict(_json(request, body))


def download_has_content(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str | None
) -> bool:
    """For results/errors: True for 200 (stream the body), False for 204 (nothing of this kind)."""
    raise_for_status(request, status, headers, body)
    return status != 204


def errors_head_needs_status(error: HereBatchError) -> bool:
    """Whether :func:`errors_report_gone` needs the job's status to judge ``error`` (a 404 that says
    "not ended yet", which HERE also answers for a deleted job)."""
    return isinstance(error, ResultsNotReadyError)


def errors_report_gone(error: HereBatchError, job_status: JobStatus | None = None) -> bool:
    """The one rule for an errors head (the report's first lines) that HERE refused: True when the
    report cannot exist any more, so the head is ``[]``; False when ``error`` is to be raised.

    Gone: the job is unknown (404 ``E6004041``: never existed, or its metadata expired after 60 days),
    or it was deleted (HERE removed its files; its errors endpoint answers the same 404 as for a job
    that has not ended, hence the status). A job that has not ended keeps
    :class:`ResultsNotReadyError`: asking for its report is the caller's mistake.

    :param error: what the errors endpoint answered.
    :param job_status: the job's status read after that answer (only when
        :func:`errors_head_needs_status`), None when the job turned out to be unknown.
    """
    if isinstance(error, JobNotFoundError):
        return True
    if isinstance(error, ResultsNotReadyError):
        return job_status is None or job_status is JobStatus.DELETED
    return False


# ---------------------------------------------------------------------------------------------------
# API information: /health and /version (HERE OpenAPI 7.40.0, tag "API Information")


def version_request() -> ApiRequest:
    """``GET /version`` (authenticated): ``VersionResponse``."""
    return ApiRequest("GET", "/version", "get the API version")


def interpret_health(request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str) -> str:
    """Answer of ``GET /health``: HERE's ``HealthResponse.status``, ``"ok"`` or ``"fail"``.

    HERE's schema defaults ``status`` to ``fail``, so an answer without it reads as ``"fail"``; the
    value is lower-cased (the enum is lower case).
    """
    raise_for_status(request, status, headers, body)
    return str(_json(request, body).get("status") or "fail").lower()


def interpret_version(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str
) -> dict[str, Any]:
    """Answer of ``GET /version``: ``{"apiVersion", "serviceVersion", "dataVersions"?}`` as HERE sends it."""
    raise_for_status(request, status, headers, body)
    data = dict(_json(request, body))
    if "apiVersion" not in data or "serviceVersion" not in data:
        raise ProtocolError(f"HERE answered {request.operation} without apiVersion/serviceVersion")
    return data
