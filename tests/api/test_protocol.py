"""Request builders, job options and the mapping of HERE's error bodies, without a server."""

from __future__ import annotations

import json
import pickle

import pytest

from airflow_here_batch.api import (
    AuthenticationError,
    ErrorCode,
    HereBatchError,
    InvalidJobOptionsError,
    InvalidRequestError,
    JobNotFoundError,
    JobOptions,
    JobStatus,
    NotFoundError,
    RateLimitError,
    ResultsNotReadyError,
    ServerError,
    ServiceNotFoundError,
    ServiceType,
    TooManyJobsError,
    protocol,
    redact_url,
)
from airflow_here_batch.api.errors import error_from_response


def test_create_request_carries_every_option() -> None:
    options = JobOptions(
        service="revgeocode",
        input_columns=["recId", "at"],
        input_delimiter="\t",
        output_columns=["addressLabel", "positionLat"],
        output_delimiter=";",
        tag="nightly",
        billing_tags="team1+proj.x+team1",
        start_job=False,
    )
    request = protocol.create_job_request(options, gzip_body=True)
    assert (request.method, request.path) == ("POST", "/batch/jobs")
    assert request.params == {
        "serviceHrn": ServiceType.REVGEOCODE.hrn,
        "inputDelimiter": "\\t",
        "outputDelimiter": ";",
        "startJob": "false",
        "inputColumns": "recId\tat",
        "outputColumns": "addressLabel;positionLat",
        "tag": "nightly",
        "billingTags": "team1,proj.x",
    }
    assert request.headers["Content-Encoding"] == "gzip"
    # csv is HERE's default: the ALPHA outputType is not sent for it (ours above, the default here).
    assert "outputType" not in JobOptions().to_query()


@pytest.mark.parametrize("output_type", ["jsonl", "JSONL"])
def test_output_type_is_sent_only_when_the_user_chose_jsonl(output_type: str) -> None:
    assert JobOptions(output_type=output_type).to_query()["outputType"] == "jsonl"
    assert "outputType" not in JobOptions(output_type="CSV").to_query()


def test_every_request_accepts_heres_error_media_type() -> None:
    """HERE declares its 4xx/5xx answers as application/json on every operation, downloads included."""
    assert protocol.DEFAULT_HEADERS["Accept"] == "application/json"
    for request in (protocol.results_request("J"), protocol.errors_request("J")):
        accepted = [part.split(";")[0].strip() for part in request.headers["Accept"].split(",")]
        assert accepted == ["text/plain", "application/json"]


def test_request_ids_are_fresh_uuids() -> None:
    import uuid

    ids = {protocol.new_request_id() for _ in range(100)}
    assert len(ids) == 100 and all(uuid.UUID(i).version == 4 for i in ids)


def test_error_names_our_request_id_and_heres_correlation_id() -> None:
    request = protocol.get_job_request("JOB-x")
    with pytest.raises(JobNotFoundError) as caught:
        protocol.raise_for_status(request, 404, {}, json.dumps(ERROR_BODY), request_id="rid-1")
    error = caught.value
    assert (error.request_id, error.correlation_id) == ("rid-1", "corr-1")
    assert str(error).endswith("(X-Request-ID rid-1, correlationId corr-1)")
    # Without an id of ours the answer's echo is used; pickling keeps both.
    echoed = error_from_response(404, {"X-Request-ID": "rid-2"}, ERROR_BODY, operation="get job JOB-x")
    assert pickle.loads(pickle.dumps(echoed)).trace() == "X-Request-ID rid-2, correlationId corr-1"


@pytest.mark.parametrize(
    ("error", "status", "gone"),
    [
        (JobNotFoundError("unknown"), None, True),
        (ResultsNotReadyError("404"), JobStatus.DELETED, True),
        (ResultsNotReadyError("404"), None, True),  # the job vanished between the two calls
        (ResultsNotReadyError("404"), JobStatus.IN_PROGRESS, False),
        (ResultsNotReadyError("404"), JobStatus.SUBMITTED, False),
        (NotFoundError("404"), None, False),
    ],
)
def test_errors_report_gone_rule(error: Exception, status: JobStatus | None, gone: bool) -> None:
    needs = protocol.errors_head_needs_status(error)  # type: ignore[arg-type]
    assert needs == isinstance(error, ResultsNotReadyError)
    assert protocol.errors_report_gone(error, status) is gone  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"output_delimiter": " "}, "output_delimiter ' ' is refused"),
        ({"input_delimiter": "||"}, "single character"),
        ({"billing_tags": "a+b,c"}, "mixes"),
        ({"billing_tags": ["abc"]}, "billing tag 'abc' is invalid"),
        ({"billing_tags": ["-abcd"]}, "is invalid"),
        ({"billing_tags": [f"tag{i}x" for i in range(7)]}, "at most 6"),
        ({"output_filter": "title"}, "output_type='jsonl'"),
        ({"output_type": "xml"}, "'csv' or 'jsonl'"),
        ({"service": "autosuggest"}, "geocode, revgeocode, lookup"),
        ({"tag": "x" * 300}, "keep it to 256"),
        ({"output_columns": ["a" * 1100]}, "at most 1024"),
    ],
)
def test_bad_options_name_field_and_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JobOptions(**kwargs).to_query()


def test_invalid_options_are_value_errors() -> None:
    assert issubclass(InvalidJobOptionsError, ValueError)


def test_job_paths_are_quoted() -> None:
    assert protocol.get_job_request("JOB-1/../x").path == "/batch/jobs/JOB-1%2F..%2Fx"
    assert protocol.stop_job_request("JOB-1").path == "/batch/jobs/JOB-1/stop"
    with pytest.raises(ValueError, match="job_id is empty"):
        protocol.start_job_request(" ")


def test_list_and_bulk_delete_filters() -> None:
    assert protocol.list_jobs_request(status="inProgress", tag="t", offset=200).params == {
        "status": "inProgress",
        "offset": "200",
        "limit": "100",
        "tag": "t",
    }
    assert protocol.delete_jobs_request(status="any").params == {"status": "any"}
    with pytest.raises(ValueError, match="not accepted by HERE"):
        protocol.list_jobs_request(status="deleted")


def test_downloads_ask_for_gzip() -> None:
    assert protocol.results_request("J").headers["Accept-Encoding"] == "gzip"


def test_redact_url_hides_query() -> None:
    assert redact_url("http://h/v7/batch/jobs?apiKey=SECRET&x=1") == "http://h/v7/batch/jobs?***"
    assert "SECRET" not in redact_url("https://h/p?apiKey=SECRET")


ERROR_BODY = {
    "title": "Job not found",
    "status": 404,
    "code": "E6004041",
    "cause": "The job JOB-x does not exist",
    "action": "Check the job id",
    "correlationId": "corr-1",
}


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, ErrorCode.JOB_NOT_FOUND, JobNotFoundError),
        (404, ErrorCode.RESULTS_UNAVAILABLE, ResultsNotReadyError),
        (404, ErrorCode.SERVICE_NOT_FOUND, ServiceNotFoundError),
        (404, ErrorCode.INPUT_UNDEFINED, NotFoundError),
        (400, ErrorCode.INPUT_INVALID, InvalidRequestError),
        (413, ErrorCode.INPUT_TOO_LARGE, InvalidRequestError),
        (429, ErrorCode.TOO_MANY_JOBS, TooManyJobsError),
        (503, None, ServerError),
    ],
)
def test_error_bodies_map_to_exceptions(status: int, code: ErrorCode | None, expected: type) -> None:
    body = {**ERROR_BODY, "status": status, "code": code.value if code else ""}
    error = error_from_response(status, {}, body, operation="get job JOB-x")
    assert type(error) is expected
    text = str(error)
    assert "get job JOB-x" in text and "Check the job id" in text and "corr-1" in text


def test_auth_error_body() -> None:
    body = b'{"error":"Unauthorized","error_description":"No credentials found"}'
    error = error_from_response(401, {"X-Correlation-ID": "c9"}, body, operation="list batch jobs")
    assert isinstance(error, AuthenticationError)
    assert "No credentials found" in str(error) and "c9" in str(error)


def test_rate_limit_reads_retry_after() -> None:
    error = error_from_response(429, {"Retry-After": "7"}, b"", operation="get job J")
    assert isinstance(error, RateLimitError) and error.retry_after == 7.0


def test_errors_endpoint_404_means_not_ready() -> None:
    request = protocol.errors_request("J")
    body = {**ERROR_BODY, "code": "", "title": "Errors for job is unavailable."}
    with pytest.raises(ResultsNotReadyError):
        protocol.raise_for_status(request, 404, {}, str(body).replace("'", '"'))


def test_non_json_error_body_is_excerpted() -> None:
    error = error_from_response(502, {}, b"<html>Bad gateway</html>", operation="get job J")
    assert isinstance(error, ServerError) and "Bad gateway" in str(error)


def test_errors_survive_pickling() -> None:
    error = error_from_response(
        429, {"Retry-After": "3"}, ERROR_BODY | {"code": "E6004291"}, operation="start"
    )
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is TooManyJobsError and clone.retry_after == 3.0 and clone.code == "E6004291"
    assert isinstance(clone, HereBatchError) and str(clone) == str(error)


def test_interpret_job_rejects_garbage() -> None:
    request = protocol.get_job_request("J")
    with pytest.raises(HereBatchError, match="not JSON"):
        protocol.interpret_job(request, 200, {}, b"<html>")
    with pytest.raises(HereBatchError, match="unreadable job"):
        protocol.interpret_job(request, 200, {}, b'{"id": "J"}')
