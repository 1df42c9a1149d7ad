"""HERE-shaped error answers: :class:`ApiError` and the helpers that build error bodies.

``ApiError`` is rendered as HERE's ``ErrorResponse`` (title, status, code, cause, action,
correlationId); credential failures and the token endpoint answer in their own shapes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from airflow_here_batch.emulator import constants as c

_RequestKey = getattr(web, "RequestKey", None)
CORRELATION: Any = _RequestKey("correlation_id", str) if _RequestKey else "correlation_id"
TRUNCATE: Any = _RequestKey("truncate", bool) if _RequestKey else "truncate"


class ApiError(Exception):
    """Raised by handlers; rendered as HERE's ``ErrorResponse``."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        cause: str = "",
        action: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status, self.code, self.title = status, code, title
        self.cause = cause or title
        self.action = action or "See the HERE Batch API v7 documentation."
        self.headers = headers or {}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _error_body(request: web.Request, err: ApiError) -> web.Response:
    body = {
        "title": err.title,
        "status": err.status,
        "code": err.code,
        "cause": err.cause,
        "action": err.action,
        "correlationId": request.get(CORRELATION, ""),
    }
    return _json(body, err.status, err.headers)


def _auth_error(status: int, description: str) -> web.Response:
    error = "Unauthorized" if status == 401 else "Forbidden"
    return _json({"error": error, "error_description": description}, status)


def _bad_arg(name: str, cause: str) -> ApiError:
    return ApiError(
        400,
        c.E_ARG_INVALID,
        "Invalid argument",
        f"Parameter '{name}': {cause}",
        "Correct the parameter and retry",
    )


def _too_long(name: str, limit: int) -> ApiError:
    return ApiError(
        400,
        c.E_ARG_TOO_LONG,
        f"Argument exceeds maximum length limit ({limit} characters)",
        f"Parameter '{name}' is longer than {limit} characters",
        "Shorten the parameter",
    )


class _Dropped(Exception):
    """The connection was closed on purpose (fault injection)."""


def _token_error(status: int, error: str, message: str, code: int) -> web.Response:
    return _json(
        {
            "error": error,
            "error_description": f"errorCode: '{code}'. {message}",
            "errorCode": code,
            "httpStatus": status,
            "message": message,
        },
        status,
    )
