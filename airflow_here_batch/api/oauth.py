"""OAuth 2.0 client-credentials tokens from HERE platform credentials, signed with OAuth 1.0a.

HERE's token endpoint wants ``POST grant_type=client_credentials`` signed as OAuth 1.0a with
HMAC-SHA256, the access key id as consumer key and the access key secret as consumer secret (no token).
This module builds that request and reads the answer; the hooks send it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from airflow_here_batch.api.errors import AuthenticationError, error_from_response

DEFAULT_TOKEN_URL = "https://account.api.here.com/oauth2/token"
REFRESH_MARGIN_SECONDS = 60.0  # HERE's own SDK refreshes 60 s before expiry.


@dataclass(frozen=True)
class OAuthCredentials:
    """HERE platform credentials. ``repr`` hides the secret."""

    access_key_id: str
    access_key_secret: str
    token_url: str = DEFAULT_TOKEN_URL

    def __repr__(self) -> str:
        return f"OAuthCredentials(access_key_id={self.access_key_id!r}, token_url={self.token_url!r})"

    @classmethod
    def from_properties(
        cls, text: str | bytes, *, source: str = "credentials.properties"
    ) -> OAuthCredentials:
        """Parse a HERE ``credentials.properties`` file (``here.access.key.id = …`` lines).

        Java ``.properties`` rules (see :func:`parse_properties`). The keys read:
        ``here.access.key.id``, ``here.access.key.secret`` and ``here.token.endpoint.url`` (optional).

        :param text: the file's content: ``bytes`` as read (UTF-8, a BOM is dropped) or text.
        :param source: the file as the user named it, for messages.
        :raises AuthenticationError: naming ``source`` and the problem (binary or not UTF-8 content, a
            key missing or empty); a message never holds a value from the file.
        """
        values = parse_properties(text, source=source)
        missing = [k for k in ("here.access.key.id", "here.access.key.secret") if not values.get(k)]
        if missing:
            # Never a key as written: a line holding only a secret would be read as its key.
            empty = [k for k in missing if k in values]
            near = [k for k in missing if k not in values and k in {_loose(v) for v in values}]
            known = [k for k in _HERE_KEYS if k in values]
            details = [f"{k} is empty" for k in empty]
            details += [f"a key is spelt like {k} but not exactly (keys are case-sensitive)" for k in near]
            details.append(
                f"{len(values)} key/value line{'s' if len(values) != 1 else ''}"
                + (f"; HERE keys found: {', '.join(known)}" if known else "")
            )
            raise AuthenticationError(
                f"{source} lacks {' and '.join(missing)} ({'; '.join(details)}): download the file again "
                "from the HERE platform (Access Manager, 'Create credentials'), or set access_key_id and "
                "access_key_secret in the connection's extras"
            )
        return cls(
            access_key_id=values["here.access.key.id"],
            access_key_secret=values["here.access.key.secret"],
            token_url=values.get("here.token.endpoint.url") or DEFAULT_TOKEN_URL,
        )


#: The keys of a HERE credentials.properties file (named in messages when present).
_HERE_KEYS = (
    "here.user.id",
    "here.client.id",
    "here.access.key.id",
    "here.access.key.secret",
    "here.token.endpoint.url",
)


def _loose(key: str) -> str:
    return key.strip().lower().replace("_", ".").replace("-", ".")


_PROPERTY_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BLANK = " \t\f"


def _unescape(text: str) -> str:
    """Java's backslash escapes: ``\\t``, ``\\n``, ``\\r``, ``\\f``, ``\\uXXXX``; ``\\x`` is ``x``."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(_PROPERTY_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


def _logical_lines(text: str) -> Iterable[str]:
    """Lines joined where one ends with an odd number of backslashes (Java's line continuation)."""
    pending: str | None = None
    for raw in _LINE_BREAK.split(text):
        line = raw.lstrip(_BLANK)
        if pending is None and (not line or line[0] in "#!"):
            continue
        backslashes = len(line) - len(line.rstrip("\\"))
        joined = line if pending is None else pending + line
        if backslashes % 2:
            pending = joined[:-1]
            continue
        pending = None
        yield joined
    if pending is not None:
        yield pending


def parse_properties(text: str | bytes, *, source: str = "credentials.properties") -> dict[str, str]:
    """The ``key → value`` pairs of a Java ``.properties`` file.

    The rules of ``java.util.Properties.load``: a line is ``key=value``, ``key:value`` or ``key value``
    (the key ends at the first unescaped ``=``, ``:`` or blank; blanks around the separator are
    dropped; a later ``=`` or ``:`` belongs to the value); ``#`` and ``!`` start a comment line; LF,
    CRLF and CR end lines; a line ending with ``\\`` continues on the next; backslash escapes
    (``\\=``, ``\\:``, ``\\uXXXX``) are decoded; the last of repeated keys wins. Unlike Java, a
    value's trailing blanks are dropped (a credential never ends with one; a stray space would make
    every signature fail), and the content is UTF-8 (an ASCII file reads the same), a UTF-8
    byte-order mark dropped.

    :param text: the content, ``bytes`` as read or text.
    :param source: the file as the user named it, for messages.
    :raises AuthenticationError: for content that is not text (a NUL byte, UTF-16, not UTF-8),
        naming ``source`` and the line, never a value.
    """
    if isinstance(text, (bytes, bytearray)):
        data = bytes(text)
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise AuthenticationError(
                f"{source} is UTF-16 encoded (it starts with a UTF-16 byte-order mark): save it as UTF-8 "
                "or ASCII text"
            )
        if b"\x00" in data:
            line = data[: data.index(b"\x00")].count(b"\n") + 1
            raise AuthenticationError(
                f"{source} holds binary data (a NUL byte on line {line}), not the text of a "
                "credentials.properties file: is it the right file?"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise AuthenticationError(
                f"{source} is not UTF-8 text (line {line}): is it the right file? A credentials.properties "
                "file from the HERE platform is ASCII"
            ) from None
    elif "\x00" in text:
        raise AuthenticationError(f"{source} holds binary data (a NUL character), not a credentials file")
    text = text.removeprefix("\ufeff")
    values: dict[str, str] = {}
    for line in _logical_lines(text):
        end = 0
        while end < len(line) and line[end] not in "=:" + _BLANK:
            end += 2 if line[end] == "\\" else 1
        key = line[:end]
        rest = line[end:].lstrip(_BLANK)
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(_BLANK)
        values[_unescape(key)] = _unescape(rest).rstrip(_BLANK)
    return values


def percent_encode(value: str) -> str:
    """RFC 5849 §3.6 encoding: unreserved characters stay, everything else is %XX (UTF-8)."""
    return quote(value, safe="-._~")


def normalised_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port and not (
        (parts.scheme == "http" and parts.port == 80) or (parts.scheme == "https" and parts.port == 443)
    ):
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path or "/", "", ""))


def signature_base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 §3.4.1: method, base URL and the sorted, encoded parameters (body, query, oauth_*)."""
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in params)
    joined = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join((method.upper(), percent_encode(normalised_url(url)), percent_encode(joined)))


def hmac_sha256_signature(base_string: str, consumer_secret: str, token_secret: str = "") -> str:
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base_string.encode(), hashlib.sha256).digest()).decode()


def parse_authorization_header(value: str) -> dict[str, str]:
    """The ``oauth_*`` parameters of an ``Authorization: OAuth …`` header (for verifiers)."""

    if not value.startswith("OAuth "):
        return {}
    params: dict[str, str] = {}
    for item in value[len("OAuth ") :].split(","):
        key, _, raw = item.strip().partition("=")
        params[unquote(key)] = unquote(raw.strip('"'))
    return params


@dataclass(frozen=True)
class TokenRequest:
    url: str
    headers: Mapping[str, str]
    body: str


def token_request(
    credentials: OAuthCredentials, *, now: float | None = None, nonce: str | None = None
) -> TokenRequest:
    """The signed ``POST`` that asks HERE's token endpoint for an access token."""
    body_params = [("grant_type", "client_credentials")]
    oauth_params = {
        "oauth_consumer_key": credentials.access_key_id,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": str(int(now if now is not None else time.time())),
        "oauth_version": "1.0",
    }
    query = [tuple(p.split("=", 1)) for p in urlsplit(credentials.token_url).query.split("&") if "=" in p]
    base = signature_base_string("POST", credentials.token_url, [*body_params, *query, *oauth_params.items()])
    oauth_params["oauth_signature"] = hmac_sha256_signature(base, credentials.access_key_secret)
    header = "OAuth " + ",".join(
        f'{percent_encode(k)}="{percent_encode(v)}"' for k, v in oauth_params.items()
    )
    return TokenRequest(
        url=credentials.token_url,
        headers={
            "Authorization": header,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        body="grant_type=client_credentials",
    )


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it stops being used (``REFRESH_MARGIN_SECONDS`` before HERE's expiry)."""

    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"AccessToken(expires_at={self.expires_at})"

    def is_fresh(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) < self.expires_at - REFRESH_MARGIN_SECONDS


def interpret_token_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float | None = None,
    scrub: Callable[[str], str] | None = None,
) -> AccessToken:
    """The token in a 200 answer; otherwise the refusal (4xx: ``AuthenticationError``; 429/5xx keep
    their retryable classes), its texts scrubbed by ``scrub``."""
    if status != 200:
        raise error_from_response(
            status,
            headers,
            body,
            operation="issue an OAuth access token",
            error_class=AuthenticationError,
            default_action="check the access key id and secret of the HERE connection",
            scrub=scrub,
        )
    try:
        data: Any = json.loads(body)
        value = str(data["access_token"])
        expires_in = float(data.get("expires_in") or 3600)
    except (ValueError, KeyError, TypeError):
        raise AuthenticationError("HERE's token endpoint answered without an access_token") from None
    return AccessToken(value=value, expires_at=(now if now is not None else time.time()) + expires_in)
