"""Issue 19: a HERE credentials.properties is read by Java's .properties rules, and every way it can be
wrong is an error naming the file and the problem, never the secret."""

from __future__ import annotations

import pytest

from airflow_here_batch.api.errors import AuthenticationError
from airflow_here_batch.api.oauth import DEFAULT_TOKEN_URL, OAuthCredentials, parse_properties

SECRET = "Zm9v=YmFy:baz/+=="  # HERE secrets are base64-like: '=' and ':' may be inside


def _read(data: str | bytes) -> OAuthCredentials:
    return OAuthCredentials.from_properties(data, source="credentials_file '/x/credentials.properties'")


@pytest.mark.parametrize(
    "content",
    [
        f"here.access.key.id = AK\nhere.access.key.secret = {SECRET}\n",
        f"here.access.key.id=AK\nhere.access.key.secret={SECRET}",  # no spaces, no final LF
        f"here.access.key.id: AK\nhere.access.key.secret: {SECRET}\n",  # ':' separator
        f"here.access.key.id AK\nhere.access.key.secret\t{SECRET}\n",  # blank separator
        f"here.access.key.id\t =  AK  \r\nhere.access.key.secret =\t{SECRET} \r\n",  # CRLF, blanks
        f"here.access.key.id = AK\rhere.access.key.secret = {SECRET}\r",  # CR only
        f"\ufeffhere.access.key.id = AK\nhere.access.key.secret = {SECRET}\n",  # BOM as text
        f"# HERE credentials\n! another comment\n\n   here.access.key.id = AK\n"
        f"here.access.key.secret = {SECRET[:6]}\\\n    {SECRET[6:]}\n",  # comments, continuation
    ],
)
def test_java_properties_forms(content: str) -> None:
    creds = _read(content)
    assert (creds.access_key_id, creds.access_key_secret, creds.token_url) == (
        "AK",
        SECRET,
        DEFAULT_TOKEN_URL,
    )
    assert _read(content.encode("utf-8")) == creds  # as bytes read from the file
    if not content.startswith("\ufeff"):
        assert _read(b"\xef\xbb\xbf" + content.encode("utf-8")) == creds  # UTF-8 BOM in the file


def test_token_url_value_keeps_its_colons_and_equals_signs() -> None:
    creds = _read(
        "here.access.key.id: AK\nhere.access.key.secret: S\n"
        "here.token.endpoint.url: https://account.api.here.com/oauth2/token?a=b\n"
    )
    assert creds.token_url == "https://account.api.here.com/oauth2/token?a=b"


def test_escapes_and_repeated_keys() -> None:
    values = parse_properties("a\\=b = c\\u00e9\\tz\nk = 1\nk = 2\nhere.x = \\#not-a-comment\n")
    assert values == {"a=b": "cé\tz", "k": "2", "here.x": "#not-a-comment"}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + SECRET.encode(),
            "holds binary data (a NUL byte on line 3)",
        ),
        (
            f"here.access.key.id = AK\nhere.access.key.secret = {SECRET}\xe9\n".encode("latin-1"),
            "is not UTF-8 text (line 2)",
        ),
        (
            f"here.access.key.id = AK\nhere.access.key.secret = {SECRET}\n".encode("utf-16"),
            "is UTF-16 encoded",
        ),
    ],
)
def test_content_that_is_not_text_is_named(data: bytes, problem: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        _read(data)
    message = str(info.value)
    assert message.startswith(f"credentials_file '/x/credentials.properties' {problem}")
    assert SECRET not in message and info.value.__cause__ is None


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("here.access.key.id = AK\nhere.access.key.secret =\n", "here.access.key.secret is empty"),
        (
            f"HERE.ACCESS.KEY.ID = AK\nhere.access.key.secret = {SECRET}\n",
            "a key is spelt like here.access.key.id",
        ),
        (f"here.user.id = U\n{SECRET}\n", "2 key/value lines; HERE keys found: here.user.id"),
        ("", "0 key/value lines"),
    ],
)
def test_missing_keys_are_named_never_the_values(content: str, detail: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        _read(content)
    message = str(info.value)
    assert message.startswith("credentials_file '/x/credentials.properties' lacks here.access.key")
    assert detail in message and "access_key_secret in the connection's extras" in message
    assert SECRET not in message and SECRET.split("=")[0] not in message
