"""A real local HTTP server that records the webhook calls it receives (for notification tests)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit


class WebhookReceiver:
    """``with WebhookReceiver() as rx:`` listens on a free loopback port; ``rx.url`` is its address.

    Every request is recorded as ``(method, path, query)``; :meth:`wait_for` blocks (on a condition
    variable, not a sleep) until ``count`` requests have arrived or the timeout passes.
    """

    def __init__(self, status: int = 200) -> None:
        self.calls: list[tuple[str, str, dict[str, list[str]]]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                with receiver._cond:
                    receiver.calls.append(("GET", parts.path, parse_qs(parts.query)))
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[tuple[str, str, dict[str, list[str]]]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError(f"expected {count} webhook calls within {timeout} s, got {self.calls}")
            return list(self.calls)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
