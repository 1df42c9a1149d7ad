"""The request log: what every client request looked like on the wire, for conformance tests.

HERE's OpenAPI declares an ``X-Request-ID`` header (a caller's trace token) on every operation; the
emulator echoes it and answers each request with its own ``X-Correlation-ID`` (the ``correlationId`` of
error bodies). This module records, for the last :data:`MAX_RECORDED` requests to HERE's paths, the
method, path, query and headers as they arrived (``Transfer-Encoding`` / ``Content-Length`` included,
so a test can tell a chunked upload from one of known length), with credentials masked: ``apiKey``
values and the ``Authorization`` header's credentials become ``***``.

``install(app)`` adds the recording middleware (outermost, so requests answered by an injected fault
or refused by authentication are recorded too) and the admin routes ``GET`` / ``DELETE
/_emulator/requests``.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["MAX_RECORDED", "RecordedRequest", "RequestLog", "install"]

#: Requests kept; older ones are dropped first.
MAX_RECORDED = 10_000
MASK = "***"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived. ``headers``: lower-case names (repeated headers joined with ``, ``)."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, request: web.BaseRequest) -> RecordedRequest:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            if key == "authorization":
                scheme = value.split(" ", 1)[0]
                value = f"{scheme} {MASK}" if " " in value else MASK
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        query = {k: (MASK if k.lower() == "apikey" else v) for k, v in request.query.items()}
        return cls(request.method, request.path, query, headers)

    def to_dict(self) -> dict[str, Any]:
        """``{"method", "path", "query": {name: value}, "headers": {name: value}}``."""
        return {"method": self.method, "path": self.path, "query": self.query, "headers": self.headers}


class RequestLog:
    """The last ``maxlen`` requests, oldest first (thread-safe: the admin client reads it from tests)."""

    def __init__(self, maxlen: int = MAX_RECORDED) -> None:
        self._entries: collections.deque[RecordedRequest] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


REQUEST_LOG_KEY = web.AppKey("here_batch_request_log", RequestLog)


@web.middleware
async def _record(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith("/_emulator"):
        request.app[REQUEST_LOG_KEY].add(RecordedRequest.of(request))
    return await handler(request)


async def _list(request: web.Request) -> web.Response:
    entries = request.app[REQUEST_LOG_KEY].entries()
    return web.json_response({"requests": [e.to_dict() for e in entries]})


async def _clear(request: web.Request) -> web.Response:
    request.app[REQUEST_LOG_KEY].clear()
    return web.json_response({"cleared": True})


def install(app: web.Application, maxlen: int = MAX_RECORDED) -> RequestLog:
    """Record every request to ``app`` (before any other middleware runs) and serve the log at
    ``/_emulator/requests`` (``GET``: ``{"requests": [...]}``, oldest first; ``DELETE``: clear)."""
    log = RequestLog(maxlen)
    app[REQUEST_LOG_KEY] = log
    app.middlewares.insert(0, _record)
    app.router.add_get("/_emulator/requests", _list, name="admin_requests", allow_head=False)
    app.router.add_delete("/_emulator/requests", _clear, name="admin_requests_clear")
    return log
