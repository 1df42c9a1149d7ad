"""The one rule for what a job state means (``api.outcome``), the one transient classification, the
secret scrubbing of server texts, and times read as UTC: the core, without a server."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from airflow_here_batch.api.errors import (
    AuthenticationError,
    JobNotFoundError,
    MalformedAnswerError,
    RateLimitError,
    ServerError,
    TransportError,
    error_from_response,
    scrub,
)
from airflow_here_batch.api.models import BatchJob
from airflow_here_batch.api.oauth import interpret_token_response
from airflow_here_batch.api.outcome import (
    EXECUTION_TIMEOUT,
    WAIT_TIMEOUT,
    Deadline,
    JobOutcome,
    JobWait,
    OutcomeKind,
    is_transient,
    to_epoch,
    verdict,
    wait_deadline,
)
from airflow_here_batch.api.polling import PollSchedule
from airflow_here_batch.api.protocol import get_job_request, interpret_job
from airflow_here_batch.api.retry import RetryPolicy, RetryState

HRN = "hrn:here:service::olp-here:search-geocode-7"
KEY = "k3y-Secret-0123456789abcdef"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-token-value"
OAUTH_SECRET = "oauth/Secret+with=chars"


def job(status: str, **records: int) -> BatchJob:
    counts = {"total": 10, "processed": 4, **records}
    return BatchJob.from_dict({"id": "JOB-1", "serviceHrn": HRN, "status": status, "records": counts})


@pytest.mark.parametrize(
    ("status", "allow_stopped", "kind", "soft"),
    [
        ("completed", False, OutcomeKind.SUCCESS, False),
        ("failure", False, OutcomeKind.FAILURE, True),
        ("deleted", False, OutcomeKind.DELETED, True),
        ("stopped", False, OutcomeKind.STOPPED, True),
        ("stopped", True, OutcomeKind.SUCCESS, False),
    ],
)
def test_verdict_of_each_final_status(
    status: str, allow_stopped: bool, kind: OutcomeKind, soft: bool
) -> None:
    outcome = verdict(job(status), allow_stopped=allow_stopped)
    assert outcome is not None and outcome.kind is kind and outcome.soft is soft
    assert outcome.job is not None and outcome.job["status"] == status
    assert JobOutcome.from_event(outcome.to_event()) == outcome


@pytest.mark.parametrize("status", ["submitted", "queued", "pending", "inProgress"])
def test_running_job_has_no_verdict(status: str) -> None:
    assert verdict(job(status)) is None


def test_failure_carries_a_trimmed_errors_head() -> None:
    outcome = verdict(job("failure"), errors_head=["x" * 1000] + [f"line {i}" for i in range(20)])
    assert outcome is not None
    assert len(outcome.errors_head) == 10 and len(outcome.errors_head[0]) == 300
    assert "First lines of HERE's errors report" in outcome.text()


def test_only_heres_verdicts_and_the_wait_timeout_are_soft() -> None:
    wait = JobWait("JOB-1", deadline=Deadline(0.0, WAIT_TIMEOUT))
    assert wait.timed_out().soft
    assert not JobWait("JOB-1", deadline=Deadline(0.0, EXECUTION_TIMEOUT)).timed_out().soft
    refused = JobWait("JOB-1").failed(AuthenticationError("HTTP 401", status=401), 0.0)
    assert refused is not None and refused.kind is OutcomeKind.ERROR and not refused.soft
    unknown = JobWait("JOB-1").failed(JobNotFoundError("HTTP 404"), 0.0)
    assert unknown is not None and "does not exist at HERE" in unknown.message and not unknown.soft


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("429"),
        ServerError("503", status=503),
        TransportError("reset"),
        MalformedAnswerError("cut"),
    ],
)
def test_transient_errors(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", [AuthenticationError("401"), JobNotFoundError("404"), ValueError("x")])
def test_not_transient(error: Exception) -> None:
    assert not is_transient(error)


def test_outage_rule_is_time_based_and_reset_by_a_good_answer() -> None:
    wait = JobWait("JOB-1", max_outage=60.0)
    for now in (0.0, 10.0, 59.0):
        assert wait.failed(ServerError("503", status=503), now) is None
    assert wait.ended(job("inProgress"), 59.5) is False  # a good answer ends the outage
    for now in (60.0, 100.0, 119.0):
        assert wait.failed(TransportError("reset"), now) is None
    outcome = wait.failed(TransportError("reset"), 120.0)
    assert outcome is not None and outcome.kind is OutcomeKind.ERROR and "max_outage" in outcome.message
    assert outcome.job is not None  # the last job seen


def test_retry_after_wins_over_backoff_max_but_not_over_the_deadline() -> None:
    wait = JobWait("JOB-1", schedule=PollSchedule(1.0, 5.0), deadline=Deadline(1000.0), backoff_max=5.0)
    wait.failed(RateLimitError("429", retry_after=120.0), 0.0)
    assert wait.delay_after_error(RateLimitError("429", retry_after=120.0), 0.0) == 120.0
    assert wait.delay_after_error(RateLimitError("429", retry_after=120.0), 950.0) == 50.0
    # The hooks' per-request rule is the same.
    policy = RetryPolicy(max_retries=3, backoff_base=0.1, backoff_max=1.0)
    assert policy.delay(1, RateLimitError("429", retry_after=90.0)) == 90.0
    assert RetryState(policy).after(RateLimitError("429", retry_after=90.0), remaining=7.0) == 7.0
    assert RetryState(policy).after(RateLimitError("429", retry_after=90.0), remaining=0.0) is None


def test_backoff_without_retry_after_is_bounded() -> None:
    wait = JobWait("JOB-1", schedule=PollSchedule(1.0, 8.0))
    for now in range(10):
        wait.failed(ServerError("503", status=503), float(now))
    assert 4.0 <= wait.delay_after_error(ServerError("503", status=503), 10.0, random.Random(1)) <= 8.0


@pytest.fixture
def local_zone_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process whose local zone is not UTC (where a naive datetime's ``.timestamp()`` differs)."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_naive_datetime_and_naive_iso_text_are_the_same_utc_time(local_zone_not_utc: None) -> None:
    from airflow_here_batch.triggers.batch_job import BatchJobTrigger

    naive = datetime(2030, 1, 1, 12, 0)
    assert (
        BatchJobTrigger("JOB-1", deadline=naive).deadline
        == BatchJobTrigger("JOB-1", deadline=naive.isoformat()).deadline
    )
    expected = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    assert to_epoch(datetime(2030, 1, 1, 12, 0)) == expected
    assert to_epoch("2030-01-01T12:00:00") == expected
    assert to_epoch("2030-01-01 12:00") == expected
    assert to_epoch("2030-01-01T13:00:00+01:00") == expected
    assert to_epoch(datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)) == expected
    assert to_epoch(expected) == expected and to_epoch(str(expected)) == expected
    assert to_epoch(None) is None


def test_deadline_is_the_earlier_of_timeout_and_execution_timeout() -> None:
    start = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    now = start.timestamp() + 5
    d = wait_deadline(now, timeout=100, task_start=start, execution_timeout=8)
    assert d == Deadline(start.timestamp() + 8, EXECUTION_TIMEOUT)
    d = wait_deadline(now, timeout=1, task_start=start, execution_timeout=8)
    assert d == Deadline(now + 1, WAIT_TIMEOUT)
    assert wait_deadline(now) is None


# -- secrets in server texts --------------------------------------------------------------------------


def echoing_body(status: int) -> bytes:
    url = f"https://batch.search.hereapi.com/v7/batch/jobs/JOB-1?apiKey={KEY}&x=1"
    return (
        '{"error": "Unauthorized", "error_description": "apiKey invalid in '
        + url
        + f' Authorization=Bearer {TOKEN} secret={OAUTH_SECRET}", "title": "t {KEY}", "cause": "c {TOKEN}",'
        + f' "action": "a {OAUTH_SECRET}", "status": {status}, "code": "E{KEY}", "correlationId": "{KEY}"}}'
    ).encode()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
def test_error_mapping_scrubs_every_text(status: int) -> None:
    error = error_from_response(
        status,
        {},
        echoing_body(status),
        operation="get job JOB-1",
        scrub=lambda t: scrub(t, [KEY, TOKEN, OAUTH_SECRET]),
    )
    texts = [str(error), repr(error), *(str(v) for v in vars(error).values())]
    for secret in (KEY, TOKEN, OAUTH_SECRET):
        assert not any(secret in text for text in texts), (secret, texts)


def test_patterns_scrub_credentials_the_caller_did_not_name() -> None:
    body = f"not json: GET /v7/batch/jobs?apiKey={KEY} Authorization: Bearer {TOKEN} access_token={TOKEN}"
    error = error_from_response(502, {}, body.encode(), operation="get job JOB-1")
    assert KEY not in str(error) and TOKEN not in str(error)


def test_secrets_are_scrubbed_before_the_excerpt_is_cut() -> None:
    body = ("x" * 190 + KEY + "y" * 50).encode()  # the 200-character excerpt would cut the key
    error = error_from_response(500, {}, body, operation="get job JOB-1", scrub=lambda t: scrub(t, [KEY]))
    assert KEY[:10] not in str(error)


def test_token_endpoint_refusals_are_auth_errors_but_503_and_429_stay_retryable() -> None:
    with pytest.raises(AuthenticationError):
        interpret_token_response(401, {}, b'{"error": "invalid_client"}')
    with pytest.raises(ServerError) as server:
        interpret_token_response(503, {}, b"{}")
    assert RetryPolicy().is_retryable(server.value)
    with pytest.raises(RateLimitError):
        interpret_token_response(429, {"Retry-After": "2"}, b"{}")


def test_a_status_answer_that_is_not_json_is_transient() -> None:
    with pytest.raises(MalformedAnswerError) as error:
        interpret_job(get_job_request("JOB-x"), 200, {}, b'{"id": "JOB-x", "status": "inProg')
    assert RetryPolicy().is_retryable(error.value) and is_transient(error.value)
    assert not RetryPolicy().is_retryable(error.value, idempotent=False)


def test_job_summary_hrefs_are_scrubbed() -> None:
    job = BatchJob.from_dict(
        {
            "id": "JOB-1",
            "serviceHrn": HRN,
            "status": "completed",
            "resultsHref": f"https://batch.example/v7/batch/jobs/JOB-1/results?apiKey={KEY}",
            "errorsHref": "https://batch.example/v7/batch/jobs/JOB-1/errors",
        }
    )
    summary = job.summary()
    assert KEY not in str(summary) and summary["results_href"].endswith("results?apiKey=***")
    assert summary["errors_href"] == "https://batch.example/v7/batch/jobs/JOB-1/errors"
