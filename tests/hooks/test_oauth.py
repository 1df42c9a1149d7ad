"""OAuth bearer tokens: fetched from the emulator's signed token endpoint, cached, refreshed."""

from __future__ import annotations

import os
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


# -- issue 19: credentials.properties as people save it ----------------------------------------------

EQ_SECRET = "c2VjcmV0=:ok=="  # '=' and ':' inside the secret


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbfhere.access.key.id = {id}\r\nhere.access.key.secret = {secret}\r\n"
        b"here.token.endpoint.url = {url}\r\n",  # BOM + CRLF (Notepad)
        b"here.access.key.id:{id}\nhere.access.key.secret:{secret}\nhere.token.endpoint.url:{url}\n",
        b"# HERE\nhere.access.key.id {id}\nhere.access.key.secret\t{secret}\nhere.token.endpoint.url {url}",
    ],
    ids=["bom-crlf", "colon", "blank-separator"],
)
def test_credentials_file_forms_reach_a_token(
    content: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    here_batch._tokens.clear()
    with EmulatorServer(oauth_credentials={KEY_ID: EQ_SECRET}, queue_delay=0) as emu:
        props = tmp_path / "credentials.properties"
        props.write_bytes(
            content.replace(b"{id}", KEY_ID.encode())
            .replace(b"{secret}", EQ_SECRET.encode())
            .replace(b"{url}", emu.token_url.encode())
        )
        set_connection(monkeypatch, "here_forms", host=emu.base_url, extra={"credentials_file": str(props)})
        ok, message = HereBatchHook("here_forms").test_connection()
        assert ok, message
        assert emu.admin.stats()["requests"]["token"] == 1
    here_batch._tokens.clear()


def _refused(monkeypatch: pytest.MonkeyPatch, path: str) -> str:
    set_connection(
        monkeypatch, "here_bad_file", host="http://127.0.0.1:1/v7", extra={"credentials_file": path}
    )
    with pytest.raises(AuthenticationError) as info:
        HereBatchHook("here_bad_file").get_job("JOB-1")
    assert info.value.__cause__ is None and type(info.value) is AuthenticationError
    message = str(info.value)
    assert SECRET not in message
    return message


def test_credentials_file_problems_name_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    good = f"here.access.key.id = {KEY_ID}\nhere.access.key.secret = {SECRET}\n"
    binary = tmp_path / "binary.properties"
    binary.write_bytes(b"\x00\x01" + SECRET.encode() + b"\xff")
    assert f"credentials_file {str(binary)!r} holds binary data" in _refused(monkeypatch, str(binary))
    latin = tmp_path / "latin1.properties"
    latin.write_bytes((good + "here.user.id = Jürgen\n").encode("latin-1"))
    assert f"{str(latin)!r} is not UTF-8 text (line 3)" in _refused(monkeypatch, str(latin))
    utf16 = tmp_path / "utf16.properties"
    utf16.write_text(good, encoding="utf-16")
    assert "is UTF-16 encoded" in _refused(monkeypatch, str(utf16))
    folder = tmp_path / "here"
    folder.mkdir()
    assert f"{str(folder)!r} is a directory: name the credentials.properties file in it" in _refused(
        monkeypatch, str(folder)
    )
    missing = tmp_path / "nope.properties"
    assert f"{str(missing)!r} does not exist" in _refused(monkeypatch, str(missing))
    empty_secret = tmp_path / "empty.properties"
    empty_secret.write_text(f"here.access.key.id = {KEY_ID}\nhere.access.key.secret =\n")
    assert "lacks here.access.key.secret (here.access.key.secret is empty" in _refused(
        monkeypatch, str(empty_secret)
    )
    huge = tmp_path / "huge.properties"
    huge.write_bytes(good.encode() * 4000)
    assert "is larger than 64 KB" in _refused(monkeypatch, str(huge))
    assert "is not a regular file" in _refused(monkeypatch, "/dev/null")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permissions cannot refuse it")
def test_unreadable_credentials_file_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    props = tmp_path / "credentials.properties"
    props.write_text(f"here.access.key.id = {KEY_ID}\nhere.access.key.secret = {SECRET}\n")
    props.chmod(0)
    assert f"{str(props)!r} cannot be read: permission denied" in _refused(monkeypatch, str(props))
