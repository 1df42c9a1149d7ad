"""Credentials: API keys, OAuth 1.0a-signed token requests (RFC 5849, HMAC-SHA256) and bearer tokens.

HERE's token endpoint takes ``POST`` with the form body ``grant_type=client_credentials`` and an
``Authorization: OAuth ...`` header signed with the access key id as consumer key and the access key
secret as consumer secret (no token). The emulator verifies the signature exactly, so a client's signing
code is tested for real, and issues random opaque bearer tokens that expire after ``token_ttl`` seconds.
"""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import unquote

# One implementation of RFC 5849 signing for client and emulator: the emulator verifies with exactly the
# functions the hook signs with (a mismatch in either is then caught by the token tests).
from airflow_here_batch.api.oauth import hmac_sha256_signature, percent_encode, signature_base_string

__all__ = [
    "TokenIssuer",
    "hmac_sha256_signature",
    "parse_oauth_header",
    "percent_encode",
    "signature_base_string",
]

#: Accepted difference between ``oauth_timestamp`` and the emulator's clock.
TIMESTAMP_TOLERANCE = 300


def parse_oauth_header(header: str) -> dict[str, str] | None:
    """Parse ``OAuth k="v", ...`` into a dict (values percent-decoded); ``None`` if not an OAuth header."""
    if header[:6].lower() != "oauth ":
        return None
    out: dict[str, str] = {}
    for part in header[6:].split(","):
        part = part.strip()
        if not part or "=" not in part:
            continue
        key, value = part.split("=", 1)
        out[unquote(key.strip())] = unquote(value.strip().strip('"'))
    out.pop("realm", None)
    return out


class TokenIssuer:
    """Issued bearer tokens and their expiry (in memory: a restart invalidates them, like a rotation)."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._nonces: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, ttl: float) -> str:
        """A new token valid for ``ttl`` seconds."""
        token = "emu." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + ttl
        return token

    def check(self, token: str) -> str | None:
        """``None`` when valid, else the reason ("expired" / "unknown")."""
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None:
            return "unknown"
        if time.time() >= expiry:
            return "expired"
        return None

    def seen_nonce(self, consumer_key: str, nonce: str, timestamp: str) -> bool:
        """Record a nonce; ``True`` if the same (key, nonce, timestamp) was used before (replay)."""
        key = f"{consumer_key}\0{nonce}\0{timestamp}"
        now = time.time()
        with self._lock:
            for k, t in list(self._nonces.items()):
                if now - t > 2 * TIMESTAMP_TOLERANCE:
                    del self._nonces[k]
            if key in self._nonces:
                return True
            self._nonces[key] = now
            return False

    def expire_all(self) -> None:
        """Make every issued token expired now (tests of token refresh)."""
        with self._lock:
            for key in self._tokens:
                self._tokens[key] = 0.0

    def clear(self) -> None:
        """Forget all tokens (admin reset)."""
        with self._lock:
            self._tokens.clear()
            self._nonces.clear()
