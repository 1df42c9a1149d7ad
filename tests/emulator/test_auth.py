"""Authentication: apiKey, bearer tokens, the OAuth 1.0a token endpoint, expiry, 401/403 bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

import pytest
import requests

from airflow_here_batch.emulator import EmulatorServer

from .conftest import OAUTH

JOBS = "/batch/jobs"


def enc(value: str) -> str:
    return quote(value, safe="-._~")


def signed_token_request(
    url: str,
    key_id: str,
    secret: str,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
    body: str = "grant_type=client_credentials",
) -> requests.Response:
    """An independent RFC 5849 HMAC-SHA256 signer (not the project's), so the check is real."""
    oauth = {
        "oauth_consumer_key": key_id,
        "oauth_nonce": nonce or secrets.token_hex(8),
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": str(timestamp or int(time.time())),
        "oauth_version": "1.0",
    }
    params = [*oauth.items(), *(tuple(p.split("=", 1)) for p in body.split("&"))]
    norm = "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in params))
    base = "&".join(("POST", enc(url), enc(norm)))
    sig = base64.b64encode(
        hmac.new(f"{enc(secret)}&".encode(), base.encode(), hashlib.sha256).digest()
    ).decode()
    oauth["oauth_signature"] = sig
    header = "OAuth " + ",".join(f'{enc(k)}="{enc(v)}"' for k, v in oauth.items())
    return requests.post(
        url,
        data=body,
        headers={"Authorization": header, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )


def auth_body(resp: requests.Response, status: int) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "error_description"}
    return body  # type: ignore[no-any-return]


def test_any_api_key_without_configured_key(emu: EmulatorServer) -> None:
    assert requests.get(emu.base_url + JOBS, params={"apiKey": "whatever"}, timeout=10).status_code == 200
    body = auth_body(requests.get(emu.base_url + JOBS, timeout=10), 401)
    assert body == {"error": "Unauthorized", "error_description": "No credentials found"}
    auth_body(requests.get(emu.base_url + JOBS, params={"apiKey": ""}, timeout=10), 401)
    assert requests.get(emu.base_url + "/health", timeout=10).status_code == 200  # no auth on health


def test_configured_api_key_and_forbidden_key() -> None:
    with EmulatorServer(api_key="s3cret", forbidden_api_keys={"no-access"}, queue_delay=0) as emu:
        assert requests.get(emu.base_url + JOBS, params={"apiKey": "s3cret"}, timeout=10).status_code == 200
        auth_body(requests.get(emu.base_url + JOBS, params={"apiKey": "wrong"}, timeout=10), 401)
        body = auth_body(requests.get(emu.base_url + JOBS, params={"apiKey": "no-access"}, timeout=10), 403)
        assert body["error"] == "Forbidden"


def test_token_endpoint_and_bearer(emu: EmulatorServer) -> None:
    ((key_id, secret),) = OAUTH.items()
    resp = signed_token_request(emu.token_url, key_id, secret)
    assert resp.status_code == 200, resp.text
    token = resp.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600 and token["access_token"]
    ok = requests.get(
        emu.base_url + JOBS, headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10
    )
    assert ok.status_code == 200
    bad = requests.get(emu.base_url + JOBS, headers={"Authorization": "Bearer forged"}, timeout=10)
    auth_body(bad, 401)


@pytest.mark.parametrize("case", ["wrong_secret", "unknown_key", "stale_timestamp", "no_header", "grant"])
def test_token_endpoint_rejects(emu: EmulatorServer, case: str) -> None:
    ((key_id, secret),) = OAUTH.items()
    if case == "wrong_secret":
        resp = signed_token_request(emu.token_url, key_id, "not-the-secret")
    elif case == "unknown_key":
        resp = signed_token_request(emu.token_url, "someone-else", secret)
    elif case == "stale_timestamp":
        resp = signed_token_request(emu.token_url, key_id, secret, timestamp=int(time.time()) - 3600)
    elif case == "grant":
        resp = signed_token_request(emu.token_url, key_id, secret, body="grant_type=password")
    else:
        resp = requests.post(emu.token_url, data="grant_type=client_credentials", timeout=10)
    assert resp.status_code == (400 if case == "grant" else 401), resp.text
    body = resp.json()
    assert body["error"] and body["error_description"] and "access_token" not in body


def test_replayed_nonce_rejected(emu: EmulatorServer) -> None:
    ((key_id, secret),) = OAUTH.items()
    ts = int(time.time())
    assert signed_token_request(emu.token_url, key_id, secret, timestamp=ts, nonce="n1").status_code == 200
    assert signed_token_request(emu.token_url, key_id, secret, timestamp=ts, nonce="n1").status_code == 401


def test_project_signer_is_accepted(emu: EmulatorServer) -> None:
    from airflow_here_batch.api.oauth import OAuthCredentials, token_request

    ((key_id, secret),) = OAUTH.items()
    creds = OAuthCredentials(access_key_id=key_id, access_key_secret=secret, token_url=emu.token_url)
    req = token_request(creds)
    resp = requests.post(req.url, data=req.body, headers=dict(req.headers), timeout=10)
    assert resp.status_code == 200, resp.text


def test_token_expiry() -> None:
    ((key_id, secret),) = OAUTH.items()
    with EmulatorServer(oauth_credentials=OAUTH, token_ttl=0.3, queue_delay=0) as emu:
        token = signed_token_request(emu.token_url, key_id, secret).json()
        assert token["expires_in"] == 0
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            resp = requests.get(emu.base_url + JOBS, headers=headers, timeout=10)
            if resp.status_code == 401:
                break
            time.sleep(0.05)
        assert "expired" in auth_body(resp, 401)["error_description"]
        fresh = signed_token_request(emu.token_url, key_id, secret).json()["access_token"]
        emu.admin.expire_tokens()
        resp = requests.get(emu.base_url + JOBS, headers={"Authorization": f"Bearer {fresh}"}, timeout=10)
        auth_body(resp, 401)
