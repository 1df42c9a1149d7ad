"""OAuth bearer tokens: fetched from the emulator's signed token endpoint, cached, refreshed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_here_batch.api import AuthenticationError, JobOptions, JobStatus
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks import here_batch
from airflow_here_batch.hooks.here_batch import HereBatchAsyncHook, HereBatchHook
from tests.hooks.conftest import FAST_RETRIES, set_connection

KEY_ID, SECRET = "AKID-123", "very-secret-value"


@pytest.fixture
def oauth_emulator() -> Iterator[EmulatorServer]:
    here_batch._tokens.clear()
    with EmulatorServer(
        oauth_credentials={KEY_ID: SECRET}, queue_delay=0, records_per_second=1_000_000
    ) as emu:
        yield emu
    here_batch._tokens.clear()


def _oauth_connection(
    monkeypatch: pytest.MonkeyPatch, emu: EmulatorServer, conn_id: str, secret: str
) -> None:
    extra = {"access_key_id": KEY_ID, "access_key_secret": secret, "token_url": emu.token_url}
    set_connection(monkeypatch, conn_id, host=emu.base_url, extra=extra)


def test_token_fetched_cached_and_refreshed(
    oauth_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _oauth_connection(monkeypatch, oauth_emulator, "here_oauth", SECRET)
    hook = HereBatchHook("here_oauth", retry_policy=FAST_RETRIES)
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=JobOptions(start_job=False))
    assert hook.get_job(job.id).status is JobStatus.SUBMITTED
    assert oauth_emulator.admin.stats()["requests"]["token"] == 1  # one token for both calls
    # The token reaches its refresh margin: the next call fetches a new one.
    ((key, token),) = here_batch._tokens.items()
    here_batch._tokens[key] = here_batch.AccessToken(token.value, expires_at=0)
    hook.get_job(job.id)
    assert oauth_emulator.admin.stats()["requests"]["token"] == 2


def test_revoked_token_is_refreshed_once(
    oauth_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _oauth_connection(monkeypatch, oauth_emulator, "here_oauth", SECRET)
    hook = HereBatchHook("here_oauth", retry_policy=FAST_RETRIES)
    list(hook.list_jobs())
    ((key, token),) = here_batch._tokens.items()
    here_batch._tokens[key] = here_batch.AccessToken("forged-token", expires_at=token.expires_at)
    assert list(hook.list_jobs()) == []
    assert oauth_emulator.admin.stats()["requests"]["token"] == 2


def test_credentials_file(
    oauth_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    props = tmp_path / "credentials.properties"
    props.write_text(
        f"here.access.key.id = {KEY_ID}\nhere.access.key.secret = {SECRET}\n"
        f"here.token.endpoint.url = {oauth_emulator.token_url}\n"
    )
    set_connection(
        monkeypatch, "here_props", host=oauth_emulator.base_url, extra={"credentials_file": str(props)}
    )
    assert HereBatchHook("here_props").test_connection()[0]


def test_wrong_secret_is_refused(oauth_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _oauth_connection(monkeypatch, oauth_emulator, "here_oauth_bad", "wrong-secret")
    with pytest.raises(AuthenticationError) as caught:
        HereBatchHook("here_oauth_bad").get_job("JOB-1")
    assert "wrong-secret" not in str(caught.value)


async def test_async_hook_uses_tokens(
    oauth_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _oauth_connection(monkeypatch, oauth_emulator, "here_oauth", SECRET)
    job = HereBatchHook("here_oauth").create_job(b"recId|q\n1|Berlin\n", options=JobOptions(start_job=False))
    here_batch._tokens.clear()
    async with HereBatchAsyncHook("here_oauth") as ahook:
        assert (await ahook.get_job(job.id)).id == job.id
        assert (await ahook.get_job(job.id)).id == job.id
    assert (
        oauth_emulator.admin.stats()["requests"]["token"] == 2
    )  # one by the sync hook, one by the async hook


def test_no_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "here_empty", host="http://127.0.0.1:1/v7")
    with pytest.raises(AuthenticationError, match="put the HERE API key in the password"):
        HereBatchHook("here_empty").get_job("JOB-1")
