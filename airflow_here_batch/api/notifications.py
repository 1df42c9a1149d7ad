"""HERE's job notifications (BETA webhooks): model, request builders and answers, with no I/O.

HERE source: the OpenAPI document 7.40.0, tag "Batch notifications (BETA)" (shared doc §2, §4):

- ``POST /batch/notifications`` (201), ``GET /batch/notifications`` (200),
  ``GET|PUT|DELETE /batch/notifications/{notificationId}`` (200 / 200 / 204),
  ``GET /batch/notifications/{notificationId}/test`` (204: HERE calls the webhook with dummy values).
- A notification is ``{"id": "NOTIFICATION-<uuid>" (read-only), "type": "webHook" (the only type),
  "lastUsedTime": date-time (read-only), "config": {"url": ...}}``.
- "This URL is called via a GET request, after the job is completed", with the placeholders
  :data:`PLACEHOLDERS` (``${JOB_ID}`` …) substituted in its path or query.
- A job takes up to :data:`MAX_NOTIFICATIONS_PER_JOB` notification ids (``notificationIds``), which
  must exist beforehand and belong to the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from pendulum import DateTime

from airflow_here_batch.api.errors import ProtocolError
from airflow_here_batch.api.protocol import ApiRequest, raise_for_status

__all__ = [
    "MAX_NOTIFICATIONS_PER_JOB",
    "PLACEHOLDERS",
    "InvalidNotificationError",
    "Notification",
    "create_notification_request",
    "delete_notification_request",
    "get_notification_request",
    "interpret_notification",
    "interpret_notifications",
    "list_notifications_request",
    "notification_body",
    "replace_notification_request",
    "test_notification_request",
    "validate_notification_ids",
    "validate_webhook_url",
]

#: HERE: "Max. 5 per job" (``notificationIds`` of ``POST /batch/jobs``).
MAX_NOTIFICATIONS_PER_JOB = 5
#: The properties HERE substitutes in a webhook URL, written ``${NAME}``.
PLACEHOLDERS: tuple[str, ...] = (
    "JOB_ID",
    "JOB_NAME",
    "JOB_STATUS",
    "JOB_OUTPUT_TYPE",
    "JOB_RECORDS_SUCCEEDED",
    "JOB_RECORDS_FAILED",
    "JOB_RECORDS_TOTAL",
    "JOB_RECORDS_VALID",
    "JOB_RECORDS_INVALID",
)
WEBHOOK = "webHook"
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
# HERE issues ids like NOTIFICATION-<uuid>; their exact format is not specified, so only characters
# that cannot be part of an id are refused (separators, quotes, brackets, spaces: a mis-rendered list).
_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_JSON_HEADERS = {"Content-Type": "application/json"}


class InvalidNotificationError(ValueError):
    """A webhook URL or a list of notification ids HERE would refuse or never call, caught before sending."""


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification as HERE describes it.

    :param id: ``NOTIFICATION-<uuid>``, given by HERE.
    :param url: the webhook URL, placeholders unsubstituted.
    :param type: ``webHook`` (the only type HERE has).
    :param last_used_time: when HERE last called it; None until then.
    """

    id: str
    url: str
    type: str = WEBHOOK
    last_used_time: DateTime | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        """Build from a parsed ``Notification`` body (``id``, ``type`` and ``config`` are required)."""
        try:
            config = data["config"]
            return cls(
                id=str(data["id"]),
                url=str((config or {}).get("url") or ""),
                type=str(data.get("type") or WEBHOOK),
                last_used_time=_parse_time(data.get("lastUsedTime")),
            )
        except (KeyError, AttributeError, TypeError) as exc:
            raise ValueError(f"notification body lacks {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (XCom); the URL is the user's own configuration."""
        return {
            "id": self.id,
            "type": self.type,
            "url": self.url,
            "last_used_time": self.last_used_time.isoformat() if self.last_used_time else None,
        }


def _parse_time(value: Any) -> DateTime | None:
    if not value:
        return None
    import pendulum

    parsed = pendulum.parse(str(value))
    return parsed if isinstance(parsed, DateTime) else None


def validate_webhook_url(url: str) -> str:
    """Check a webhook URL before it is sent to HERE; returns it unchanged.

    Raises :class:`InvalidNotificationError` when it is not an absolute ``http``/``https`` URL with a
    host (HERE calls it from the internet), or when it holds a ``${...}`` placeholder HERE does not
    substitute (it would reach your endpoint verbatim); the message lists the placeholders HERE knows.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidNotificationError(
            "webhook url must be an absolute http:// or https:// URL with a host, e.g. "
            "'https://example.com/here?jobId=${JOB_ID}&status=${JOB_STATUS}'"
        )
    unknown = sorted({name for name in _PLACEHOLDER.findall(url) if name not in PLACEHOLDERS})
    if unknown:
        raise InvalidNotificationError(
            f"webhook url holds placeholders HERE does not substitute: {', '.join(unknown)}; "
            f"use {', '.join('${' + p + '}' for p in PLACEHOLDERS)}"
        )
    return url


def validate_notification_ids(ids: str | Iterable[str] | None) -> list[str]:
    """Normalise ``notification_ids`` (a list, or a comma-separated string) for ``notificationIds``.

    Raises :class:`InvalidNotificationError` for more than :data:`MAX_NOTIFICATIONS_PER_JOB` ids, an
    empty id, or one holding a character no id has (a comma, HERE's separator; a quote, bracket or
    space, as in a list rendered to text by a template). Duplicates are refused too:
    HERE would call the webhook once per listed id, or refuse, and neither is what was meant.
    """
    if ids is None:
        return []
    items = [i.strip() for i in ids.split(",")] if isinstance(ids, str) else [str(i).strip() for i in ids]
    if isinstance(ids, str) and not ids.strip():
        return []
    for i, item in enumerate(items):
        if not _ID.fullmatch(item):
            raise InvalidNotificationError(
                f"notification_ids[{i}] is {item!r}: pass ids such as 'NOTIFICATION-<uuid>' "
                "(create them with HereBatchHook.create_notification); a templated value must render "
                "to ids joined by commas, not to a Python list"
            )
    if len(set(items)) != len(items):
        raise InvalidNotificationError(f"notification_ids lists an id twice: {items}")
    if len(items) > MAX_NOTIFICATIONS_PER_JOB:
        raise InvalidNotificationError(
            f"notification_ids has {len(items)} ids: HERE accepts at most {MAX_NOTIFICATIONS_PER_JOB} per job"
        )
    return items


def _path(notification_id: str, suffix: str = "") -> str:
    if not notification_id or "/" in notification_id:
        raise InvalidNotificationError(f"notification id {notification_id!r} is not valid")
    return f"/batch/notifications/{quote(notification_id, safe='')}{suffix}"


def notification_body(url: str) -> bytes:
    """The JSON body of create and replace: ``{"type": "webHook", "config": {"url": url}}``."""
    return json.dumps({"type": WEBHOOK, "config": {"url": validate_webhook_url(url)}}).encode("utf-8")


def create_notification_request() -> ApiRequest:
    """``POST /batch/notifications`` (body: :func:`notification_body`). Not idempotent."""
    return ApiRequest("POST", "/batch/notifications", "create a notification", headers=_JSON_HEADERS)


def list_notifications_request() -> ApiRequest:
    """``GET /batch/notifications``: every notification of the caller."""
    return ApiRequest("GET", "/batch/notifications", "list notifications")


def get_notification_request(notification_id: str) -> ApiRequest:
    """``GET /batch/notifications/{notificationId}``."""
    return ApiRequest("GET", _path(notification_id), f"get notification {notification_id}")


def replace_notification_request(notification_id: str) -> ApiRequest:
    """``PUT /batch/notifications/{notificationId}`` (body: :func:`notification_body`)."""
    return ApiRequest(
        "PUT", _path(notification_id), f"replace notification {notification_id}", headers=_JSON_HEADERS
    )


def delete_notification_request(notification_id: str) -> ApiRequest:
    """``DELETE /batch/notifications/{notificationId}`` (204)."""
    return ApiRequest("DELETE", _path(notification_id), f"delete notification {notification_id}")


def test_notification_request(notification_id: str) -> ApiRequest:
    """``GET /batch/notifications/{notificationId}/test`` (204): HERE calls the webhook with dummy values."""
    return ApiRequest("GET", _path(notification_id, "/test"), f"test notification {notification_id}")


def _decode(request: ApiRequest, body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(f"HERE answered {request.operation} with a body that is not JSON") from None


def interpret_notification(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str
) -> Notification:
    """Answer of create, get and replace: one ``Notification``."""
    raise_for_status(request, status, headers, body)
    data = _decode(request, body)
    if not isinstance(data, dict):
        raise ProtocolError(f"HERE answered {request.operation} with JSON that is not an object")
    try:
        return Notification.from_dict(data)
    except ValueError as exc:
        raise ProtocolError(
            f"HERE answered {request.operation} with an unreadable notification: {exc}"
        ) from None


def interpret_notifications(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes | str
) -> list[Notification]:
    """Answer of ``GET /batch/notifications``.

    HERE's spec declares a single ``Notification`` as the schema of this list (shared doc §12 #12);
    an array is likely. Accepted, safest first: a JSON array, an object with ``items``, or one object.
    """
    raise_for_status(request, status, headers, body)
    data = _decode(request, body)
    if isinstance(data, dict):
        data = data.get("items", [data]) if "id" not in data else [data]
    if not isinstance(data, list):
        raise ProtocolError(f"HERE answered {request.operation} with JSON that is not a list")
    try:
        return [Notification.from_dict(item) for item in data]
    except ValueError as exc:
        raise ProtocolError(
            f"HERE answered {request.operation} with an unreadable notification: {exc}"
        ) from None
