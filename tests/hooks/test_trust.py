"""Issue 10 §2-§4 at the hooks, against the emulator: secrets echoed by the server never come out, the
token endpoint's faults are retried, a garbled answer is transient, a create answered late is never
uploaded twice, Retry-After wins, and the token cache knows the secret."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator

import pytest

from airflow_here_batch.api import HereBatchError, JobOptions, JobStatus, RetryPolicy
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks import here_batch
from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook, HereBatchHook
from tests.hooks.conftest import API_KEY, FAST_RETRIES, set_connection

KEY_ID, SECRET = "AKID-trust-1", "trust-oauth-secret-value"
LINES = b"recId|q\n1|Berlin\n2|Paris\n"


def texts_of(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [str(v) for v in vars(error).values()]
    return texts


def assert_no_secret(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked in {text!r}"


@pytest.fixture
def oauth_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    here_batch._tokens.clear()
    with EmulatorServer(
        oauth_credentials={KEY_ID: SECRET}, queue_delay=0, records_per_second=1_000_000
    ) as emu:
        extra = {"access_key_id": KEY_ID, "access_key_secret": SECRET, "token_url": emu.token_url}
        set_connection(monkeypatch, "here_oauth", host=emu.base_url, extra=extra)
        yield emu
    here_batch._tokens.clear()


def current_tokens() -> list[str]:
    return [token.value for token in here_batch._tokens.values()]


# -- §2 secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "kind", "status"),
    [
        ("get_job", "status", 500),
        ("get_job", "status", 400),
        ("get_job", "status", 429),
        ("list_jobs", "status", 503),
    ],
)
def test_echoed_api_key_never_leaves_the_hook(
    hook: HereBatchHook,
    emulator: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    kind: str,
    status: int,
) -> None:
    emulator.admin.inject_fault("*", "echo", count=100)
    emulator.admin.inject_fault(endpoint, kind, status=status, retry_after=0, count=10)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HereBatchError) as error:
        hook.get_job("JOB-x") if endpoint == "get_job" else list(hook.list_jobs())
    assert "Authorization=" in str(error.value) or "request GET" in str(error.value)  # the echo is there
    assert_no_secret([*texts_of(error.value), caplog.text], API_KEY)


def test_echoed_wrong_api_key_in_a_401_is_scrubbed(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-key-4d5e6f7a8b"
    set_connection(monkeypatch, "here_wrong", host=emulator.base_url, password=wrong)
    emulator.admin.inject_fault("*", "echo", count=10)
    with pytest.raises(HereBatchError) as error:
        HereBatchHook("here_wrong", retry_policy=FAST_RETRIES).get_job("JOB-x")
    assert error.value.status == 401 and "apiKey=***" in str(error.value)
    assert_no_secret(texts_of(error.value), wrong)


def test_echoed_bearer_token_and_oauth_secret_are_scrubbed(
    oauth_emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = HereBatchHook("here_oauth", retry_policy=FAST_RETRIES)
    list(hook.list_jobs())  # a token is cached
    oauth_emulator.admin.inject_fault("*", "echo", count=100)
    oauth_emulator.admin.inject_fault("get_job", "status", status=500, count=10)
    with pytest.raises(HereBatchError) as api_error:
        hook.get_job("JOB-x")
    assert "Bearer ***" in str(api_error.value)
    # The token endpoint echoes the access key secret on its refusals.
    here_batch._tokens.clear()
    oauth_emulator.admin.inject_fault("token", "status", status=401, count=1)
    with pytest.raises(HereBatchError) as token_error:
        hook.get_job("JOB-x")
    assert "secret=***" in str(token_error.value)
    assert_no_secret(
        [*texts_of(api_error.value), *texts_of(token_error.value), caplog.text], SECRET, *current_tokens()
    )


async def test_async_hook_scrubs_echoed_secrets_and_errors_head(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "here_test", host=emulator.base_url, password=API_KEY)
    emulator.admin.inject_fault("*", "echo", count=100)
    emulator.admin.inject_fault("get_job", "status", status=502, count=10)
    async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as hook:
        with pytest.raises(HereBatchError) as error:
            await hook.get_job("JOB-x")
    assert "request GET" in str(error.value)
    assert_no_secret(texts_of(error.value), API_KEY)


# -- §3 the token endpoint is retried like every call ----------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("status", 503), ("status", 429), ("drop", 0)])
def test_token_endpoint_faults_are_retried(oauth_emulator: EmulatorServer, kind: str, status: int) -> None:
    oauth_emulator.admin.inject_fault("token", kind, status=status or 503, retry_after=0, count=2)
    hook = HereBatchHook("here_oauth", retry_policy=FAST_RETRIES)
    job = hook.create_job(LINES, options=JobOptions(start_job=False))  # not idempotent, still retried
    assert job.status is JobStatus.SUBMITTED
    assert len(oauth_emulator.admin.jobs()) == 1
    assert oauth_emulator.admin.stats()["requests"]["token"] == 3


@pytest.mark.parametrize(("kind", "status"), [("status", 503), ("status", 429), ("drop", 0)])
async def test_async_token_endpoint_faults_are_retried(
    oauth_emulator: EmulatorServer, kind: str, status: int
) -> None:
    job = HereBatchHook("here_oauth", retry_policy=FAST_RETRIES).create_job(
        LINES, options=JobOptions(start_job=False)
    )
    here_batch._tokens.clear()
    oauth_emulator.admin.inject_fault("token", kind, status=status or 503, retry_after=0, count=2)
    async with HereBatchAsyncHook("here_oauth", retry_policy=FAST_RETRIES) as hook:
        assert (await hook.get_job(job.id)).id == job.id


def test_wrong_secret_with_a_cached_key_id_is_not_connected(
    oauth_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert HereBatchHook("here_oauth").test_connection()[0] is True
    extra = {
        "access_key_id": KEY_ID,
        "access_key_secret": "a-wrong-secret-xyz",
        "token_url": oauth_emulator.token_url,
    }
    set_connection(monkeypatch, "here_oauth_wrong", host=oauth_emulator.base_url, extra=extra)
    ok, message = HereBatchHook("here_oauth_wrong").test_connection()
    assert ok is False and "401" in message
    assert "a-wrong-secret-xyz" not in message


# -- §3 a garbled status answer is transient -----------------------------------------------------------


def test_status_answer_that_is_not_json_is_retried(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    job = hook.create_job(LINES, options=JobOptions(start_job=False))
    emulator.admin.inject_fault("get_job", "malformed", count=2)
    assert hook.get_job(job.id).id == job.id
    assert emulator.admin.faults() == []


async def test_async_status_answer_that_is_not_json_is_retried(
    hook: HereBatchHook, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = hook.create_job(LINES, options=JobOptions(start_job=False))
    emulator.admin.inject_fault("get_job", "malformed", count=2)
    async with HereBatchAsyncHook("here_test", retry_policy=FAST_RETRIES) as async_hook:
        assert (await async_hook.get_job(job.id)).id == job.id


# -- §3 one job per task instance ------------------------------------------------------------------------


def _tagged(emulator: EmulatorServer, tag: str) -> list[dict]:
    return [j for j in emulator.admin.jobs() if j.get("tag") == tag]


def test_create_answered_late_is_found_not_uploaded_again(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "here_short", host=emulator.base_url, password=API_KEY, extra={"timeout": 1})
    hook = HereBatchHook("here_short", retry_policy=FAST_RETRIES)
    emulator.admin.inject_fault("create_job", "late", delay=1.0)
    tag = "late-create_af0123456789abcdef"
    job = hook.create_job(LINES, options=JobOptions(tag=tag), reattach_by_tag=True)
    assert job.tag == tag
    assert len(_tagged(emulator, tag)) == 1
    assert emulator.admin.stats()["requests"]["create_job"] == 1


def test_create_landing_after_the_window_fails_the_try_without_a_second_upload(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(
        monkeypatch, "here_short", host=emulator.base_url, password=API_KEY, extra={"timeout": 0.5}
    )
    hook = HereBatchHook("here_short", retry_policy=FAST_RETRIES)
    emulator.admin.inject_fault("create_job", "late", delay=2.5)
    from airflow_here_batch.api.errors import CreateOutcomeUnknownError

    tag = "later-create_af0123456789abcdef"
    started = time.monotonic()
    with pytest.raises(CreateOutcomeUnknownError) as error:
        hook.create_job(LINES, options=JobOptions(tag=tag), reattach_by_tag=True)
    assert time.monotonic() - started < 2.5
    assert "Nothing was uploaded again" in str(error.value)
    assert emulator.admin.stats()["requests"]["create_job"] == 1
    deadline = time.monotonic() + 10
    while not hook.find_jobs_by_tag(tag):  # HERE completes the create later: exactly one job
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len(_tagged(emulator, tag)) == 1


# -- §4 Retry-After wins, bounded by the deadline -------------------------------------------------------


def test_retry_after_above_backoff_max_is_honoured(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    hook._retry_policy = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05)
    emulator.admin.inject_fault("list_jobs", "status", status=429, retry_after=1, count=1)
    started = time.monotonic()
    list(hook.list_jobs())
    assert time.monotonic() - started >= 1.0


def test_retry_after_is_bounded_by_the_hooks_deadline(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    emulator.admin.inject_fault("list_jobs", "status", status=429, retry_after=60, count=5)
    hook.deadline = time.time() + 0.5
    started = time.monotonic()
    with pytest.raises(HereBatchError):
        list(hook.list_jobs())
    assert time.monotonic() - started < 5
