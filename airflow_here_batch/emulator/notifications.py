"""HERE's job notifications (BETA webhooks) in the emulator: store, routes and webhook calls.

What HERE documents (OpenAPI 7.40.0, tag "Batch notifications (BETA)"), and the emulator does:

- ``POST /v7/batch/notifications`` stores ``{"type": "webHook", "config": {"url": ...}}`` and answers
  201 with the notification and its new ``id`` (``NOTIFICATION-<uuid>``); ``GET`` lists them,
  ``GET|PUT|DELETE /v7/batch/notifications/{id}`` read (200), replace (200) and delete (204) one.
- When a job that lists notification ids ("notificationIds") ends, each webhook URL is called with an
  HTTP GET after substituting ``${JOB_ID}``, ``${JOB_NAME}``, ``${JOB_STATUS}``,
  ``${JOB_OUTPUT_TYPE}``, ``${JOB_RECORDS_SUCCEEDED}``, ``${JOB_RECORDS_FAILED}``,
  ``${JOB_RECORDS_TOTAL}``, ``${JOB_RECORDS_VALID}`` and ``${JOB_RECORDS_INVALID}``; the
  notification's ``lastUsedTime`` is set.
- ``GET /v7/batch/notifications/{id}/test`` calls the webhook with dummy values and answers 204.

Emulator choices where HERE is silent (docs/emulator.md):

- "Ends" means ``completed`` or ``failure`` (HERE: "called ... after the job is completed"; its polling
  script treats both as final). ``stopped`` (resumable) and ``deleted`` fire nothing.
- ``${JOB_NAME}`` is the job's ``tag`` (HERE jobs have no other name); empty without one. Substituted
  values are percent-encoded.
- The list answer is a JSON array (HERE's spec declares a single ``Notification``).
- An unknown notification id answers 404 with the emulator's code ``E6004040``; a bad body 400
  ``E6004000``. A job created with an unknown notification id is refused (HERE: "the notifications need
  to exist up front"), with 400 ``E6004000``.
- A webhook that fails (refused, timeout after 10 s, non-2xx) is logged and recorded, never retried;
  ``test`` answers 204 even then. Every call is recorded for tests: ``GET
  /_emulator/notifications/deliveries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

from aiohttp import ClientSession, ClientTimeout, web

from airflow_here_batch.emulator import constants as c
from airflow_here_batch.emulator.errors import ApiError
from airflow_here_batch.emulator.store import Job, utc_now

if TYPE_CHECKING:
    from airflow_here_batch.emulator.engine import Engine

__all__ = ["NotificationStore", "Notifier", "add_routes", "check_job_notification_ids", "substitute"]

log = logging.getLogger("airflow_here_batch.emulator")

#: The job statuses after which HERE calls a job's webhooks.
FIRING_STATUSES = (c.COMPLETED, c.FAILURE)
WEBHOOK_TIMEOUT = 10.0
MAX_DELIVERIES = 1000
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
#: Values used by ``GET .../test`` (HERE: "dummy parameters"; its values are not documented).
DUMMY_VALUES: dict[str, str] = {
    "JOB_ID": "JOB-00000000-0000-0000-0000-000000000000",
    "JOB_NAME": "test",
    "JOB_STATUS": c.COMPLETED,
    "JOB_OUTPUT_TYPE": "csv",
    "JOB_RECORDS_SUCCEEDED": "0",
    "JOB_RECORDS_FAILED": "0",
    "JOB_RECORDS_TOTAL": "0",
    "JOB_RECORDS_VALID": "0",
    "JOB_RECORDS_INVALID": "0",
}


def job_values(job: Job) -> dict[str, str]:
    """The substitution values of a job, as they are at this moment."""
    r = job.records
    return {
        "JOB_ID": job.id,
        "JOB_NAME": job.tag or "",
        "JOB_STATUS": job.status,
        "JOB_OUTPUT_TYPE": job.output_type,
        "JOB_RECORDS_SUCCEEDED": str(r.succeeded),
        "JOB_RECORDS_FAILED": str(r.failed),
        "JOB_RECORDS_TOTAL": str(r.total),
        "JOB_RECORDS_VALID": str(r.valid),
        "JOB_RECORDS_INVALID": str(r.invalid),
    }


def substitute(url: str, values: dict[str, str]) -> str:
    """Replace each ``${NAME}`` HERE knows with its percent-encoded value; others stay as written."""
    return _PLACEHOLDER.sub(lambda m: quote(values[m[1]], safe="") if m[1] in values else m[0], url)


class NotificationStore:
    """Notifications by id, mirrored to ``<data_dir>/notifications.json`` (survives a restart)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "notifications.json"
        self.items: dict[str, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text("utf-8"))
            self.items = {n["id"]: n for n in data if isinstance(n, dict) and "id" in n}

    def save(self) -> None:
        """Persist atomically (write + rename)."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(list(self.items.values())), "utf-8")
            os.replace(tmp, self.path)

    def clear(self) -> None:
        """Forget every notification and delivery (admin reset)."""
        self.items.clear()
        self.deliveries.clear()
        self.save()

    def check_job_ids(self, ids: Iterable[str] | None) -> None:
        """Refuse a job whose ``notificationIds`` name a notification that does not exist (400)."""
        check_job_notification_ids(self, ids)

    def record(self, delivery: dict[str, Any]) -> None:
        self.deliveries.append(delivery)
        del self.deliveries[:-MAX_DELIVERIES]


class Notifier:
    """Calls webhooks: when a job reaches a :data:`FIRING_STATUSES` status, and for ``test``."""

    def __init__(self, store: NotificationStore) -> None:
        self.store = store
        self._session: ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = ClientSession(timeout=ClientTimeout(total=WEBHOOK_TIMEOUT))

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def watch(self, engine: Any) -> None:
        """Call webhooks when ``engine`` moves a job to a firing status.

        The engine has no status callback; this wraps the instance's ``set_status`` (every status
        change of a job goes through it), so no polling is needed and a job deleted right after it
        completed still notifies. The job's values are read at the transition.
        """
        if getattr(engine, "_here_notifier", None) is self:
            return  # a second app around the same emulator: wrap once
        engine._here_notifier = self
        original: Callable[[Job, str], None] = engine.set_status

        def set_status(job: Job, status: str) -> None:
            original(job, status)
            if status in FIRING_STATUSES and job.notification_ids:
                self.job_ended(job)

        engine.set_status = set_status

    def job_ended(self, job: Job) -> None:
        values = job_values(job)
        for notification_id in job.notification_ids or ():
            self._spawn(self.fire(notification_id, values, job_id=job.id))

    def _spawn(self, coro: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return

        def create() -> None:
            task = loop.create_task(coro)
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            create()
        else:  # set_status called from a worker thread
            loop.call_soon_threadsafe(create)

    async def fire(self, notification_id: str, values: dict[str, str], *, job_id: str | None) -> None:
        """One HTTP GET of the webhook, recorded in :attr:`NotificationStore.deliveries`."""
        item = self.store.items.get(notification_id)
        if item is None:
            return  # deleted since the job was created
        url = substitute(str(item["config"]["url"]), values)
        delivery: dict[str, Any] = {
            "notification_id": notification_id,
            "job_id": job_id,
            "url": url,
            "status": None,
            "error": None,
            "at": utc_now(),
        }
        item["lastUsedTime"] = delivery["at"]
        self.store.save()
        try:
            if self._session is None:
                raise RuntimeError("the emulator is not running")
            async with self._session.get(url, allow_redirects=False) as resp:
                delivery["status"] = resp.status
                await resp.read()
        except Exception as exc:  # a webhook endpoint's failure is the user's, never the emulator's
            delivery["error"] = f"{type(exc).__name__}: {exc}"[:300]
        if delivery["error"] or not 200 <= (delivery["status"] or 0) < 300:
            log.warning(
                "webhook of notification %s for %s failed: %s",
                notification_id,
                job_id or "test",
                delivery["error"] or f"HTTP {delivery['status']}",
            )
        self.store.record(delivery)


# ---- HTTP handlers ------------------------------------------------------------------------------------


class HasNotifications(Protocol):
    """What :func:`add_routes` needs of the emulator (:class:`~.state.Emulator` has it)."""

    notifications: NotificationStore
    notifier: Notifier
    engine: Engine


_STORE_KEY: web.AppKey[NotificationStore] = web.AppKey("here_notifications", NotificationStore)
_NOTIFIER_KEY: web.AppKey[Notifier] = web.AppKey("here_notifier", Notifier)


def _store(request: web.Request) -> NotificationStore:
    return request.app[_STORE_KEY]


def _bad(cause: str) -> ApiError:
    action = 'Send {"type": "webHook", "config": {"url": "https://..."}}'
    return ApiError(400, c.E_ARG_INVALID, "Invalid argument", cause, action)


def _item(request: web.Request) -> dict[str, Any]:
    notification_id = request.match_info["notification_id"]
    item = _store(request).items.get(notification_id)
    if item is None:
        raise ApiError(
            404,
            c.E_NOT_FOUND,
            "Notification not found",
            f"No notification with id {notification_id[:80]}",
            "Use an id returned when the notification was created",
        )
    return item


async def _config(request: web.Request) -> dict[str, Any]:
    """The validated body of create/replace: ``{"type": "webHook", "config": {"url": ...}}``."""
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _bad("The body is not JSON") from None
    if not isinstance(data, dict):
        raise _bad("The body must be a JSON object")
    kind = data.get("type", "webHook")
    if kind != "webHook":
        raise _bad(f"type '{str(kind)[:40]}' is not supported: the only type is webHook")
    config = data.get("config")
    if not isinstance(config, dict) or set(config) != {"url"} or not isinstance(config["url"], str):
        raise _bad("config must be an object with exactly one string property, url")
    url = config["url"]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad("config.url must be an absolute http(s) URL")
    return {"type": "webHook", "config": {"url": url}}


async def create_notification(request: web.Request) -> web.Response:
    """``POST /v7/batch/notifications``."""
    body = await _config(request)
    store = _store(request)
    item = {"id": f"NOTIFICATION-{uuid.uuid4()}", **body}
    store.items[item["id"]] = item
    store.save()
    return web.json_response(item, status=201)


async def list_notifications(request: web.Request) -> web.Response:
    """``GET /v7/batch/notifications``: a JSON array."""
    return web.json_response(list(_store(request).items.values()))


async def get_notification(request: web.Request) -> web.Response:
    """``GET /v7/batch/notifications/{id}``."""
    return web.json_response(_item(request))


async def replace_notification(request: web.Request) -> web.Response:
    """``PUT /v7/batch/notifications/{id}``: type and config replaced; id and lastUsedTime kept."""
    item = _item(request)
    item.update(await _config(request))
    _store(request).save()
    return web.json_response(item)


async def delete_notification(request: web.Request) -> web.Response:
    """``DELETE /v7/batch/notifications/{id}`` (204)."""
    item = _item(request)
    store = _store(request)
    store.items.pop(item["id"], None)
    store.save()
    return web.Response(status=204)


async def test_notification(request: web.Request) -> web.Response:
    """``GET /v7/batch/notifications/{id}/test``: call the webhook with dummy values, then 204."""
    item = _item(request)
    await request.app[_NOTIFIER_KEY].fire(item["id"], DUMMY_VALUES, job_id=None)
    return web.Response(status=204)


async def admin_deliveries(request: web.Request) -> web.Response:
    """``GET /_emulator/notifications/deliveries``: every webhook call so far (newest last)."""
    return web.json_response({"deliveries": list(_store(request).deliveries)})


def check_job_notification_ids(store: NotificationStore, ids: Iterable[str] | None) -> None:
    """Refuse a job whose ``notificationIds`` name a notification that does not exist (400)."""
    unknown = [i for i in ids or () if i not in store.items]
    if unknown:
        raise ApiError(
            400,
            c.E_ARG_INVALID,
            "Invalid argument",
            f"Parameter 'notificationIds': unknown notification {unknown[0][:80]}",
            "Create the notification first (POST /batch/notifications) and pass its id",
        )


def add_routes(app: web.Application, emulator: HasNotifications) -> None:
    """Register the notification routes and the webhook calls of ``emulator`` on ``app``."""
    app[_STORE_KEY] = emulator.notifications
    app[_NOTIFIER_KEY] = emulator.notifier
    r = app.router
    r.add_post("/v7/batch/notifications", create_notification, name="create_notification")
    r.add_get("/v7/batch/notifications", list_notifications, name="list_notifications", allow_head=False)
    base = "/v7/batch/notifications/{notification_id}"
    r.add_get(base, get_notification, name="get_notification", allow_head=False)
    r.add_put(base, replace_notification, name="replace_notification")
    r.add_delete(base, delete_notification, name="delete_notification")
    r.add_get(base + "/test", test_notification, name="test_notification", allow_head=False)
    r.add_get(
        "/_emulator/notifications/deliveries", admin_deliveries, name="admin_deliveries", allow_head=False
    )
    notifier: Notifier = emulator.notifier
    notifier.watch(emulator.engine)

    async def _start(app: web.Application) -> None:
        await notifier.start()

    async def _stop(app: web.Application) -> None:
        await notifier.close()

    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
