"""The connection as users write it: every README/docs example through Airflow's own parsers, and a
URI-made connection through the UI form and back without losing a part of its base URL.

Runs on every supported Airflow (scripts/test_airflow_versions.sh); needs no emulator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_here_batch.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_here_batch.hooks.here_batch import (
    ConnectionSettings,
    HereBatchHook,
    base_url_from_connection,
    settings_from_connection,
)
from tests.conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("**/*.md"))]
_URI_ARG = re.compile(r"--conn-uri\s+'([^']+)'")
_JSON_ARG = re.compile(r"--conn-json\s+'([^']+)'")
_ENV = re.compile(r"AIRFLOW_CONN_([A-Z0-9_]+)='([^']+)'")
_PLACEHOLDER = re.compile(r"<[^<>]+>")


def _examples() -> list[tuple[str, str, str]]:
    """``(where, kind, text)`` for each connection example: kind is ``uri``, ``json`` or ``env``."""
    found: list[tuple[str, str, str]] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for kind, pattern in (("uri", _URI_ARG), ("json", _JSON_ARG), ("env", _ENV)):
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                value = match.group(match.lastindex or 1)
                found.append((f"{path.relative_to(REPO_ROOT)}:{line}", kind, value))
    return found


EXAMPLES = _examples()


def test_the_docs_have_uri_and_json_examples() -> None:
    """The parametrised test below cannot pass by finding nothing."""
    kinds = {kind for _, kind, _ in EXAMPLES}
    assert {"uri", "env"} <= kinds, EXAMPLES
    assert any(text.startswith("here-batch://") for _, _, text in EXAMPLES)


def test_no_doc_writes_the_scheme_with_an_underscore() -> None:
    offenders = [
        str(p)
        for p in DOCS
        if "here_batch://" in p.read_text(encoding="utf-8").replace("`here_batch://`", "")
    ]
    assert not offenders, f"'here_batch://' is refused by Airflow; write 'here-batch://' in {offenders}"


def _conn_from_env(monkeypatch: pytest.MonkeyPatch, value: str) -> Any:
    """What a task sees: the connection through the hook's own lookup (environment variables)."""
    monkeypatch.setenv("AIRFLOW_CONN_HERE_DOC_EXAMPLE", value)
    return HereBatchHook.get_connection("here_doc_example")


@pytest.mark.parametrize(("where", "kind", "text"), EXAMPLES, ids=[w for w, _, _ in EXAMPLES])
def test_every_documented_example_parses(
    where: str, kind: str, text: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow.cli.commands.connection_command import _valid_uri
    from airflow.models.connection import Connection

    if "credentials_file" in text:
        # A documented `~/.here/credentials.properties`: give it a HOME that has one.
        monkeypatch.setenv("HOME", str(tmp_path))
        (tmp_path / ".here").mkdir()
        (tmp_path / ".here" / "credentials.properties").write_text(
            "here.access.key.id=DOC-KEY-ID\nhere.access.key.secret=DOC-KEY-SECRET\n"
            "here.token.endpoint.url=https://account.api.here.com/oauth2/token\n"
        )

    if kind == "uri":
        # `airflow connections add --conn-uri` checks this first, then stores Connection(uri=...).
        assert _valid_uri(text), f"{where}: the CLI refuses {text!r}"
        stored = Connection(conn_id="here_doc_example", uri=text)
        assert stored.conn_type == "here_batch", where
        conn = _conn_from_env(monkeypatch, text)  # the same URI as AIRFLOW_CONN_<ID>
    elif kind == "json":
        conn = Connection.from_json(text, conn_id="here_doc_example")
    else:
        conn = _conn_from_env(monkeypatch, text)
    assert conn.conn_type == "here_batch", f"{where}: parsed into conn_type {conn.conn_type!r}"
    if _PLACEHOLDER.search(text):
        return  # e.g. "<emulator base URL>" in a table: only the shape is an example
    settings = settings_from_connection(conn)
    assert re.fullmatch(r"https?://[^/]+/v7", settings.base_url), (where, settings.base_url)
    assert settings.api_key or settings.oauth, where


@pytest.mark.parametrize(
    ("uri", "base_url"),
    [
        ("here-batch://:KEY@batch.search.hereapi.com/v7", "https://batch.search.hereapi.com/v7"),
        ("here-batch://:KEY@127.0.0.1:8765/v7?scheme=http", "http://127.0.0.1:8765/v7"),
        ("here-batch://:KEY@gateway.example:8443/here/v7", "https://gateway.example:8443/here/v7"),
        ("here-batch://?access_key_id=ID&access_key_secret=SECRET", "https://batch.search.hereapi.com/v7"),
        ("here-batch://:KEY@http%3A%2F%2F127.0.0.1%3A8765%2Fv7", "http://127.0.0.1:8765/v7"),
    ],
)
def test_uri_connection_survives_the_ui_form(uri: str, base_url: str) -> None:
    """A URI-made connection shown in the form and saved again gives the same settings.

    The form shows the standard fields that ``hidden-fields`` does not hide and the declared extras
    (``conn-fields``); saving writes back only those. So: nothing the URI set may sit in a hidden
    field or an undeclared extra, and the connection rebuilt from the visible fields must resolve to
    the same base URL and credentials.
    """
    from airflow.models.connection import Connection

    conn = Connection(conn_id="here_form", uri=uri)
    hidden = set(UI_FIELD_BEHAVIOUR["hidden-fields"])
    for name in ("host", "port", "schema", "login", "password"):
        if getattr(conn, name):
            assert name not in hidden, f"{uri}: {name}={getattr(conn, name)!r} is hidden in the form"
    extras = conn.extra_dejson
    undeclared = {k for k in extras if k.removeprefix("extra__here_batch__") not in CONN_FIELDS}
    assert not undeclared, f"{uri}: extras {undeclared} have no field in the form"

    visible = {
        n: getattr(conn, n) for n in ("host", "port", "schema", "login", "password") if n not in hidden
    }
    saved = Connection(conn_id="here_form", conn_type="here_batch", extra=json.dumps(extras), **visible)
    before, after = settings_from_connection(conn), settings_from_connection(saved)
    assert before.base_url == after.base_url == base_url
    assert _comparable(before) == _comparable(after)
    # And the URI Airflow writes for it (`airflow connections get -o uri`, export) reads back the same.
    again = Connection(conn_id="here_form", uri=saved.get_uri())
    assert settings_from_connection(again).base_url == base_url


def _comparable(settings: ConnectionSettings) -> tuple[Any, ...]:
    return (settings.base_url, settings.api_key, settings.oauth, settings.timeout, settings.proxies)


@pytest.mark.parametrize(
    ("host", "port", "schema", "scheme", "expected"),
    [
        (None, None, None, None, "https://batch.search.hereapi.com/v7"),
        ("", 8443, None, None, "https://batch.search.hereapi.com:8443/v7"),
        ("127.0.0.1", 8765, "v7", "http", "http://127.0.0.1:8765/v7"),
        ("http://127.0.0.1:8765/v7", None, None, None, "http://127.0.0.1:8765/v7"),
        ("http://127.0.0.1:8765/v7/", 8765, "/v7/", "HTTP", "http://127.0.0.1:8765/v7"),  # same parts twice
        ("http://127.0.0.1:8765", None, None, None, "http://127.0.0.1:8765/v7"),  # path defaults to v7
        ("127.0.0.1:8765/v7", None, None, "http", "http://127.0.0.1:8765/v7"),
        ("gateway.example", "8443", "here/v7", None, "https://gateway.example:8443/here/v7"),
        ("http://[::1]:8765/v7", None, None, None, "http://[::1]:8765/v7"),
    ],
)
def test_base_url_from_the_fields(host: Any, port: Any, schema: Any, scheme: Any, expected: str) -> None:
    assert base_url_from_connection(host, port, schema, scheme) == expected


@pytest.mark.parametrize(
    ("host", "port", "schema", "scheme", "message"),
    [
        ("http://127.0.0.1:8765/v7", None, None, "https", "scheme in Host (http) differs"),
        ("http://127.0.0.1:8765/v7", 9000, None, None, "port in Host (8765) differs"),
        ("http://127.0.0.1:8765/v7", None, "v8", None, "path in Host (v7) differs"),
        ("ftp://127.0.0.1/v7", None, None, None, "https or http, not 'ftp'"),
        ("127.0.0.1", None, None, "ftp", "https or http, not 'ftp'"),
        ("https://batch.search.hereapi.com/v7?apiKey=K", None, None, None, "API key"),
        ("https://user:pw@batch.search.hereapi.com/v7", None, None, None, "API key"),
        ("http://127.0.0.1:99999/v7", None, None, None, "invalid port"),
    ],
)
def test_contradicting_fields_are_refused(
    host: str, port: Any, schema: Any, scheme: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        base_url_from_connection(host, port, schema, scheme)


def test_the_error_names_the_connection() -> None:
    from airflow.models.connection import Connection

    conn = Connection(conn_id="here_twice", uri="here-batch://:KEY@127.0.0.1:8765/v7?scheme=http")
    conn.host = "https://127.0.0.1:8765/v7"
    with pytest.raises(ValueError, match="connection 'here_twice': the scheme in Host") as caught:
        settings_from_connection(conn)
    assert "KEY" not in str(caught.value)


def test_form_declares_every_base_url_part() -> None:
    """Host, Port and Path (schema) are visible and the scheme is a declared field: no hidden part."""
    hidden = set(UI_FIELD_BEHAVIOUR["hidden-fields"])
    assert not {"host", "port", "schema", "password"} & hidden
    assert "scheme" in CONN_FIELDS
    assert UI_FIELD_BEHAVIOUR["relabeling"]["schema"] == "Path"
