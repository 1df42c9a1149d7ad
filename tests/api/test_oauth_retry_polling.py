"""OAuth 1.0a signing, retry decisions and the poll schedule, without a server."""

from __future__ import annotations

import logging
import random

import pytest

from airflow_here_batch.api import (
    BatchJob,
    PollSchedule,
    ProgressTracker,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TooManyJobsError,
    TransportError,
)
from airflow_here_batch.api.errors import InvalidRequestError
from airflow_here_batch.api.oauth import (
    OAuthCredentials,
    hmac_sha256_signature,
    interpret_token_response,
    parse_authorization_header,
    signature_base_string,
    token_request,
)
from airflow_here_batch.api.retry import RetryState
from airflow_here_batch.api.transfer import DownloadDecoder, gzip_chunks, iter_lines_as_chunks


def test_signature_base_string_matches_rfc5849_example() -> None:
    # RFC 5849 section 3.4.1.1 example (its parameters, its expected base string).
    params = [
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
        ("c2", ""),
        ("a3", "2 q"),
    ]
    expected = (
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26"
        "c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26"
        "oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
    )
    assert signature_base_string("post", "http://EXAMPLE.COM:80/request", params) == expected


def test_token_request_is_signed_and_verifiable() -> None:
    creds = OAuthCredentials("key-id", "s3cret", "http://127.0.0.1:1/oauth2/token")
    signed = token_request(creds, now=1000, nonce="n1")
    oauth = parse_authorization_header(signed.headers["Authorization"])
    assert oauth["oauth_consumer_key"] == "key-id" and oauth["oauth_signature_method"] == "HMAC-SHA256"
    signature = oauth.pop("oauth_signature")
    base = signature_base_string(
        "POST", creds.token_url, [("grant_type", "client_credentials"), *oauth.items()]
    )
    assert hmac_sha256_signature(base, "s3cret") == signature
    assert "s3cret" not in repr(creds) and "s3cret" not in str(signed.headers)


def test_credentials_properties() -> None:
    text = "here.user.id = u\nhere.access.key.id = AK\nhere.access.key.secret = SK\nhere.token.endpoint.url = http://t/x\n"
    creds = OAuthCredentials.from_properties(text)
    assert (creds.access_key_id, creds.access_key_secret, creds.token_url) == ("AK", "SK", "http://t/x")
    with pytest.raises(Exception, match=r"lacks here\.access\.key\.secret"):
        OAuthCredentials.from_properties("here.access.key.id=AK")


def test_token_answer() -> None:
    token = interpret_token_response(
        200, {}, b'{"access_token":"tok-xyz","token_type":"bearer","expires_in":120}', now=0
    )
    assert token.value == "tok-xyz" and token.is_fresh(now=59) and not token.is_fresh(now=61)
    assert "tok-xyz" not in repr(token)
    with pytest.raises(Exception, match="refused"):
        interpret_token_response(401, {}, b'{"error":"invalid_client","error_description":"bad sig"}')


def test_retry_rules() -> None:
    policy = RetryPolicy(max_retries=3, backoff_base=1, backoff_max=8)
    assert policy.is_retryable(ServerError("x", status=503))
    assert not policy.is_retryable(ServerError("x", status=501))
    assert not policy.is_retryable(InvalidRequestError("x", status=400))
    assert policy.is_retryable(TransportError("reset"))
    # Job creation: only where HERE surely did nothing.
    assert not policy.is_retryable(TransportError("reset"), idempotent=False)
    assert not policy.is_retryable(ServerError("x", status=503), idempotent=False)
    assert policy.is_retryable(TransportError("refused", connect_failed=True), idempotent=False)
    assert policy.is_retryable(RateLimitError("x", status=429), idempotent=False)
    assert not RetryPolicy(retry_too_many_jobs=False).is_retryable(TooManyJobsError("x"))


def test_backoff_is_bounded_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_retries=10, backoff_base=1, backoff_max=8)
    rng = random.Random(1)
    delays = [policy.delay(n, rng=rng) for n in range(1, 8)]
    assert all(0.5 <= d <= 8 for d in delays) and delays[-1] >= 4
    assert policy.delay(1, RateLimitError("x", retry_after=5)) == 5
    # Retry-After always wins over backoff_max (issue 10 §4); only the caller's deadline bounds it.
    assert policy.delay(1, RateLimitError("x", retry_after=500)) == 500


def test_retry_state_counts_attempts() -> None:
    state = RetryState(RetryPolicy(max_retries=2, backoff_base=0.01))
    error = ServerError("x", status=503)
    assert state.after(error) is not None and state.after(error) is not None
    assert state.after(error) is None
    assert RetryState(RetryPolicy()).after(InvalidRequestError("x", status=400)) is None


def _job(status: str, processed: int, total: int = 1000) -> BatchJob:
    return BatchJob.from_dict(
        {
            "id": "J",
            "serviceHrn": "",
            "status": status,
            "records": {"total": total, "valid": total, "processed": processed, "pending": total - processed},
        }
    )


def test_poll_schedule_grows_and_caps() -> None:
    schedule = PollSchedule(poll_interval=10, max_poll_interval=300)
    assert schedule.next_delay(0) == 10
    assert schedule.next_delay(1000) == 100
    assert schedule.next_delay(100_000) == 300
    assert schedule.next_delay(0, retry_after=42) == 42
    assert schedule.next_delay(1000, remaining=3) == 3
    assert schedule.next_delay(20, eta=120) == 120
    with pytest.raises(ValueError):
        PollSchedule(poll_interval=0)


def test_progress_tracker_rate_and_eta() -> None:
    tracker = ProgressTracker()
    tracker.observe(_job("inProgress", 0), now=0)
    tracker.observe(_job("inProgress", 200), now=10)
    assert tracker.rate == pytest.approx(20)
    assert tracker.eta(_job("inProgress", 200)) == pytest.approx(40)
    line = tracker.describe(_job("inProgress", 200))
    assert "200/1000" in line and "20.0%" in line and "20 records/s" in line and "ETA 40 s" in line


def test_progress_line_level_info_on_change_debug_on_repeat() -> None:
    tracker = ProgressTracker(repeat_unchanged_after=300)
    levels = [
        tracker.observe(_job("queued", 0), now=0),  # first answer
        tracker.observe(_job("queued", 0), now=10),  # same
        tracker.observe(_job("inProgress", 0), now=20),  # status moved
        tracker.observe(_job("inProgress", 0), now=30),  # same
        tracker.observe(_job("inProgress", 5), now=40),  # a counter moved
        tracker.observe(_job("inProgress", 5), now=339),  # same, 299 s after the last INFO line
        tracker.observe(_job("inProgress", 5), now=340),  # same, 300 s after: heartbeat
    ]
    assert levels == [
        logging.INFO,
        logging.DEBUG,
        logging.INFO,
        logging.DEBUG,
        logging.INFO,
        logging.DEBUG,
        logging.INFO,
    ]
    assert tracker.rate is not None  # DEBUG answers still feed the rate


def test_poll_calls_for_an_hour_long_job() -> None:
    """A steady 1 h job is noticed promptly with few calls (benchmarks measure more cases)."""
    schedule, tracker = PollSchedule(), ProgressTracker()
    duration, now, calls = 3600.0, 0.0, 0
    while True:
        calls += 1
        processed = min(1000, int(1000 * now / duration))
        job = _job("completed" if now >= duration else "inProgress", processed)
        tracker.observe(job, now)
        if job.is_terminal:
            break
        now += schedule.next_delay(now, eta=tracker.eta(job))
    assert calls <= 25
    assert now - duration <= max(0.1 * duration, schedule.poll_interval)


def test_gzip_round_trip_and_truncation() -> None:
    data = b"".join(iter_lines_as_chunks(["1|Berlin"] * 50_000, chunk_size=4096))
    assert data.count(b"\n") == 50_000
    packed = b"".join(gzip_chunks([data[:100], data[100:]]))
    decoder = DownloadDecoder("gzip")
    assert decoder.feed(packed) + decoder.finish() == data
    cut = DownloadDecoder("gzip")
    cut.feed(packed[:-10])
    with pytest.raises(TransportError, match="ended early"):
        cut.finish()
    short = DownloadDecoder(None, expected_length=10)
    short.feed(b"12345")
    with pytest.raises(TransportError, match="5 of 10"):
        short.finish()
