"""Who may call: the credential check of each HERE request (apiKey or bearer token) and the OAuth
token endpoint ``POST /oauth2/token``."""

from __future__ import annotations

import hmac
import time
from urllib.parse import parse_qsl

from aiohttp import web

from airflow_here_batch.emulator.auth import (
    TIMESTAMP_TOLERANCE,
    hmac_sha256_signature,
    parse_oauth_header,
    signature_base_string,
)
from airflow_here_batch.emulator.errors import auth_error, json_response, token_error
from airflow_here_batch.emulator.state import Emulator, emulator_of

__all__ = ["check_credentials", "token"]


def check_credentials(request: web.Request, emu: Emulator) -> web.Response | None:
    """The 401/403 answer a HERE request gets for its credentials (a bearer token or ``apiKey``), or
    ``None`` when they are accepted."""
    authz = request.headers.get("Authorization", "")
    if authz[:7].lower() == "bearer ":
        token = authz[7:].strip()
        problem = emu.tokens.check(token) if token else "unknown"
        if problem == "expired":
            return auth_error(401, "Token Validation Failure - token is expired")
        if problem:
            return auth_error(401, "Invalid or incorrectly encoded authorization token.")
        return None
    key = request.query.get("apiKey")
    if not key:
        return auth_error(401, "No credentials found")
    if key in emu.forbidden_api_keys:
        return auth_error(403, "These credentials do not authorize access")
    if emu.api_key is not None and key != emu.api_key:
        return auth_error(401, "apiKey invalid. apiKey not found.")
    return None


async def token(request: web.Request) -> web.Response:
    """``POST /oauth2/token``: verify an OAuth 1.0a HMAC-SHA256 signed request, issue a bearer token."""
    emu = emulator_of(request)
    oauth = parse_oauth_header(request.headers.get("Authorization", ""))
    if oauth is None:
        return token_error(401, "invalid_request", "Missing OAuth 1.0 Authorization header.", 401202)
    body = (await request.content.read(65536)).decode("utf-8", "replace")
    form = parse_qsl(body, keep_blank_values=True)
    if oauth.get("oauth_signature_method") != "HMAC-SHA256":
        return token_error(401, "invalid_request", "Signature method must be HMAC-SHA256.", 401203)
    consumer_key = oauth.get("oauth_consumer_key", "")
    secret = emu.oauth_credentials.get(consumer_key)
    if secret is None:
        return token_error(401, "invalid_client", "Invalid client credentials.", 401300)
    try:
        ts = int(oauth.get("oauth_timestamp", ""))
    except ValueError:
        ts = 0
    if abs(time.time() - ts) > TIMESTAMP_TOLERANCE:
        return token_error(401, "invalid_request", "Timestamp out of the accepted range.", 401204)
    signature = oauth.pop("oauth_signature", "")
    params = [(k, v) for k, v in oauth.items()] + form + list(request.query.items())
    url = str(request.url.with_query(None).with_fragment(None))
    expected = hmac_sha256_signature(signature_base_string(request.method, url, params), secret)
    if not hmac.compare_digest(expected, signature):
        return token_error(
            401,
            "invalid_client",
            "Signature mismatch. Authorization signature or client credential is wrong.",
            401300,
        )
    if emu.tokens.seen_nonce(consumer_key, oauth.get("oauth_nonce", ""), str(ts)):
        return token_error(401, "invalid_request", "Nonce already used.", 401205)
    if dict(form).get("grant_type") != "client_credentials":
        return token_error(400, "unsupported_grant_type", "grant_type must be client_credentials.", 400200)
    ttl = emu.settings.token_ttl
    access = emu.tokens.issue(ttl)
    return json_response({"access_token": access, "token_type": "bearer", "expires_in": max(0, round(ttl))})
