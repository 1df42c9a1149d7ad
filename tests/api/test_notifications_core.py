"""The notification model, request builders and answers of the sans-I/O core; health and version."""

from __future__ import annotations

import json

import pytest

from airflow_here_batch.api import NotFoundError, ProtocolError, protocol
from airflow_here_batch.api import notifications as n

ITEM = {
    "id": "NOTIFICATION-3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "type": "webHook",
    "lastUsedTime": "2025-08-04T16:48:36.209077Z",
    "config": {"url": "https://myPublicDomain.de?jobId=${JOB_ID}&status=${JOB_STATUS}"},
}


def test_requests() -> None:
    nid = ITEM["id"]
    assert (n.create_notification_request().method, n.create_notification_request().path) == (
        "POST",
        "/batch/notifications",
    )
    assert n.create_notification_request().headers["Content-Type"] == "application/json"
    assert n.get_notification_request(nid).path == f"/batch/notifications/{nid}"
    assert n.replace_notification_request(nid).method == "PUT"
    assert n.delete_notification_request(nid).method == "DELETE"
    assert n.test_notification_request(nid).path == f"/batch/notifications/{nid}/test"
    with pytest.raises(n.InvalidNotificationError):
        n.get_notification_request("../batch/jobs")
    assert json.loads(n.notification_body(ITEM["config"]["url"])) == {
        "type": "webHook",
        "config": ITEM["config"],
    }


def test_interpret_one_and_many() -> None:
    req = n.list_notifications_request()
    one = n.interpret_notification(req, 200, {}, json.dumps(ITEM))
    assert one.id == ITEM["id"] and one.url == ITEM["config"]["url"] and one.last_used_time is not None
    assert one.to_dict()["last_used_time"].startswith("2025-08-04T16:48:36")
    # HERE's spec types the list answer as one Notification; an array is likely: all three are read.
    for body in ([ITEM, ITEM], {"items": [ITEM, ITEM]}, ITEM, []):
        got = n.interpret_notifications(req, 200, {}, json.dumps(body))
        expected = 1 if body is ITEM else len(body if isinstance(body, list) else body["items"])
        assert len(got) == expected
    with pytest.raises(ProtocolError):
        n.interpret_notification(req, 200, {}, b"[1]")
    with pytest.raises(ProtocolError):
        n.interpret_notification(req, 200, {}, json.dumps({"id": "x"}))  # no config
    with pytest.raises(NotFoundError):
        n.interpret_notification(req, 404, {}, b'{"title": "Not found", "status": 404}')


@pytest.mark.parametrize(
    "url",
    ["https://example.com/?jobId=${JOB_ID}", "http://127.0.0.1:8080/${JOB_ID}/${JOB_RECORDS_INVALID}"],
)
def test_valid_webhook_urls(url: str) -> None:
    assert n.validate_webhook_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("example.com/hook", "absolute"),
        ("mailto:x@example.com", "absolute"),
        ("https://example.com/?j=${jobId}", "jobId"),
        ("https://example.com/?j=${JOB_ID}&x=${}", "substitute"),
    ],
)
def test_invalid_webhook_urls(url: str, message: str) -> None:
    with pytest.raises(n.InvalidNotificationError, match=message):
        n.validate_webhook_url(url)


def test_notification_ids() -> None:
    assert n.validate_notification_ids(None) == [] and n.validate_notification_ids("  ") == []
    assert n.validate_notification_ids(" A-1 ,B-2") == ["A-1", "B-2"]
    assert len(n.validate_notification_ids([f"N-{i}" for i in range(5)])) == 5
    with pytest.raises(n.InvalidNotificationError, match="at most 5"):
        n.validate_notification_ids([f"N-{i}" for i in range(6)])


def test_health_and_version_answers() -> None:
    health = protocol.health_request()
    assert protocol.interpret_health(health, 200, {}, b'{"status": "ok"}') == "ok"
    assert protocol.interpret_health(health, 200, {}, b'{"status": "fail"}') == "fail"
    assert protocol.interpret_health(health, 200, {}, b"{}") == "fail"  # HERE's schema default
    version = protocol.version_request()
    body = {"apiVersion": "v7", "serviceVersion": "7.0.17", "dataVersions": [{"name": "x", "version": "1"}]}
    assert protocol.interpret_version(version, 200, {}, json.dumps(body)) == body
    with pytest.raises(ProtocolError):
        protocol.interpret_version(version, 200, {}, b'{"apiVersion": "v7"}')
