"""HERE-shaped error answers: :class:`ApiError` and the helpers that build error bodies.

``ApiError`` is rendered as HERE's ``ErrorResponse`` (title, status, code, cause, action,
correlationId); credential failures and the token endpoint answer in their own shapes. :class:`Dropped`
is the other way a request can end badly: no answer at all (fault injection). Handlers raise, the
middleware in :mod:`.server` renders; nothing here knows the emulator's state.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from airflow_here_batch.emulator import constants as c

__all__ = [
    "CORRELATION",
    "TRUNCATE",
    "ApiError",
    "Dropped",
    "auth_error",
    "bad_arg",
    "error_response",
    "json_response",
    "token_error",
    "too_long",
]

_RequestKey = getattr(web, "RequestKey", None)
#: Request key: the ``correlationId`` of this request's error body (set by the middleware).
CORRELATION: Any = _RequestKey("correlation_id", str) if _RequestKey else "correlation_id"
#: Request key: ``True`` when a ``truncate`` fault cuts this request's answer in half.
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


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """``data`` as a JSON answer with ``status`` and extra ``headers``."""
    return web.json_response(data, status=status, headers=headers)


def error_response(request: web.Request, err: ApiError) -> web.Response:
    """HERE's ``ErrorResponse`` for ``err`` (status and headers of ``err``; this request's
    correlationId)."""
    body = {
        "title": err.title,
        "status": err.status,
        "code": err.code,
        "cause": err.cause,
        "action": err.action,
        "correlationId": request.get(CORRELATION, ""),
    }
    return json_response(body, err.status, err.headers)


def auth_error(status: int, description: str) -> web.Response:
    """A credential failure (401 ``Unauthorized`` / 403 ``Forbidden``): ``{"error", "error_description"}``."""
    error = "Unauthorized" if status == 401 else "Forbidden"
    return json_response({"error": error, "error_description": description}, status)


def bad_arg(name: str, cause: str) -> ApiError:
    """400 ``Invalid argument`` for query parameter ``name``."""
    return ApiError(
        400,
        c.E_ARG_INVALID,
        "Invalid argument",
        f"Parameter '{name}': {cause}",
        "Correct the parameter and retry",
    )


def too_long(name: str, limit: int) -> ApiError:
    """400: query parameter ``name`` is longer than ``limit`` characters."""
    return ApiError(
        400,
        c.E_ARG_TOO_LONG,
        f"Argument exceeds maximum length limit ({limit} characters)",
        f"Parameter '{name}' is longer than {limit} characters",
        "Shorten the parameter",
    )


class Dropped(Exception):
    """The connection was closed on purpose (fault injection)."""


def token_error(status: int, error: str, message: str, code: int) -> web.Response:
    """An answer of the token endpoint that refuses: HERE's OAuth error shape with ``errorCode`` ``code``."""
    return json_response(
        {
            "error": error,
            "error_description": f"errorCode: '{code}'. {message}",
            "errorCode": code,
            "httpStatus": status,
            "message": message,
        },
        status,
    )
