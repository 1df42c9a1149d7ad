"""HTTP client for the emulator's admin API (``/_emulator``), usable against any running emulator.

Stdlib only (``urllib``), so it works in a DAG test, a subprocess or a notebook without extra imports.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["EmulatorAdmin", "EmulatorAdminError"]


class EmulatorAdminError(RuntimeError):
    """An admin call failed (non-2xx answer)."""


class EmulatorAdmin:
    """Client for ``<root_url>/_emulator``; ``root_url`` is e.g. ``http://127.0.0.1:8765``."""

    def __init__(self, root_url: str, timeout: float = 30.0) -> None:
        self.root_url = root_url.rstrip("/")
        if self.root_url.endswith("/v7"):
            self.root_url = self.root_url[: -len("/v7")]
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.root_url}/_emulator{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise EmulatorAdminError(
                f"{method} /_emulator{path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None
        return json.loads(raw) if raw else None

    def inject_fault(
        self,
        endpoint: str = "*",
        kind: str = "status",
        *,
        status: int = 503,
        retry_after: float | None = None,
        count: int = 1,
        delay: float = 1.0,
        code: str | None = None,
        after_processing: bool = False,
    ) -> dict[str, Any]:
        """Answer the next ``count`` requests to ``endpoint`` with a fault.

        ``kind``: ``"status"`` (HTTP ``status`` + HERE ErrorResponse, ``Retry-After`` if ``retry_after``),
        ``"drop"`` (close the connection without an answer), ``"slow"`` (wait ``delay`` s, then answer
        normally), ``"truncate"`` (send half of the body, then close), ``"late"`` (``create_job``: the
        job is created but appears only ``delay`` s later, and the answer is lost), ``"malformed"``
        (the real status with a JSON body cut in half, delivered whole), ``"echo"`` (the next
        ``count`` error answers echo the request URL, its ``Authorization`` header and, on the token
        endpoint, the access key secret). ``after_processing=True`` lets the request take effect
        first (a job is created, then its answer is lost).
        """
        body: dict[str, Any] = {
            "endpoint": endpoint,
            "kind": kind,
            "status": status,
            "count": count,
            "delay": delay,
            "retry_after": retry_after,
            "code": code,
            "after_processing": after_processing,
        }
        return self._call("POST", "/faults", body)["fault"]  # type: ignore[no-any-return]

    def faults(self) -> list[dict[str, Any]]:
        """Faults not yet consumed."""
        return self._call("GET", "/faults")["faults"]  # type: ignore[no-any-return]

    def clear_faults(self) -> None:
        """Remove all pending faults."""
        self._call("DELETE", "/faults")

    def fail_job(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        """Make a job fail now (errors report written); returns its detail body in ``failure``."""
        return self._call("POST", f"/jobs/{job_id}/fail", {"reason": reason} if reason else {})  # type: ignore[no-any-return]

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the emulator knows, deleted ones included, newest first."""
        return self._call("GET", "/jobs")["items"]  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        """``{"requests": {endpoint: count}, "jobs": {status: count}}``."""
        return self._call("GET", "/stats")  # type: ignore[no-any-return]

    def reset_stats(self) -> dict[str, Any]:
        """Clear the request counts and restart ``peak_running`` from the jobs running now."""
        return self._call("DELETE", "/stats")  # type: ignore[no-any-return]

    def requests(self) -> list[dict[str, Any]]:
        """The requests received on HERE's paths, oldest first: ``{"method", "path", "query",
        "headers"}`` each, header names lower-case, ``apiKey`` and ``Authorization`` credentials
        masked (see :mod:`airflow_here_batch.emulator.request_id`)."""
        return self._call("GET", "/requests")["requests"]  # type: ignore[no-any-return]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self._call("DELETE", "/requests")

    def settings(self, **changes: Any) -> dict[str, Any]:
        """Read (no arguments) or change settings, e.g. ``settings(records_per_second=0)``."""
        if not changes:
            return self._call("GET", "/settings")  # type: ignore[no-any-return]
        return self._call("POST", "/settings", changes)  # type: ignore[no-any-return]

    def expire_tokens(self) -> None:
        """Make every issued OAuth token expired now."""
        self._call("POST", "/tokens/expire", {})

    def reset(self) -> None:
        """Forget all jobs, faults, tokens and statistics; restore the start settings."""
        self._call("POST", "/reset", {})
