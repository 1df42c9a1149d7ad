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
    def from_properties(cls, text: str) -> OAuthCredentials:
        """Parse a HERE ``credentials.properties`` file's text (``here.access.key.id = …`` lines)."""
        values: dict[str, str] = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", "!")):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                key, sep, value = line.partition(":")
            values[key.strip()] = value.strip()
        missing = [k for k in ("here.access.key.id", "here.access.key.secret") if not values.get(k)]
        if missing:
            raise AuthenticationError(f"credentials.properties lacks {', '.join(missing)}")
        return cls(
            access_key_id=values["here.access.key.id"],
            access_key_secret=values["here.access.key.secret"],
            token_url=values.get("here.token.endpoint.url") or DEFAULT_TOKEN_URL,
        )


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
