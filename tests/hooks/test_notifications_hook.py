"""HereBatchHook's notification, health, version and age-filter methods against the emulator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_here_batch.api import JobOptions, NotFoundError
from airflow_here_batch.api.notifications import InvalidNotificationError
from airflow_here_batch.emulator import EmulatorServer
from airflow_here_batch.hooks.here_batch import HereBatchHook
from tests.webhook_receiver import WebhookReceiver


def test_notification_lifecycle(hook: HereBatchHook, emulator: EmulatorServer) -> None:
    with WebhookReceiver() as receiver:
        created = hook.create_notification(receiver.url + "/a?job=${JOB_ID}")
        assert created.id.startswith("NOTIFICATION-") and created.type == "webHook"
        assert created.url == receiver.url + "/a?job=${JOB_ID}" and created.last_used_time is None
        other = hook.create_notification("https://example.com/other")
        assert {n.id for n in hook.list_notifications()} == {created.id, other.id}
        assert hook.get_notification(created.id) == created

        replaced = hook.replace_notification(created.id, receiver.url + "/b?s=${JOB_STATUS}")
        assert replaced.id == created.id and replaced.url.endswith("/b?s=${JOB_STATUS}")
        hook.test_notification(created.id)
        assert receiver.calls == [("GET", "/b", {"s": ["completed"]})]
        assert hook.get_notification(created.id).last_used_time is not None

        hook.delete_notification(created.id)
        with pytest.raises(NotFoundError):
            hook.get_notification(created.id)
        with pytest.raises(NotFoundError):
            hook.delete_notification(created.id)
        assert [n.id for n in hook.list_notifications()] == [other.id]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "absolute http"),
        ("/relative/${JOB_ID}", "absolute http"),
        ("https://example.com/?id=${JOB_UUID}", "JOB_UUID"),
    ],
)
def test_bad_webhook_url_fails_before_sending(
    hook: HereBatchHook, emulator: EmulatorServer, url: str, message: str
) -> None:
    with pytest.raises(InvalidNotificationError, match=message):
        hook.create_notification(url)
    assert emulator.admin.stats().get("requests", {}).get("create_notification", 0) == 0
    assert hook.list_notifications() == []


def test_job_with_notification_ids(hook: HereBatchHook) -> None:
    notification = hook.create_notification("https://example.com/hook?job=${JOB_ID}")
    job = hook.create_job(b"recId|q\n1|Berlin\n", options=JobOptions(notification_ids=[notification.id]))
    assert hook.get_job(job.id).notification_ids == (notification.id,)


def test_health_and_version(hook: HereBatchHook) -> None:
    assert hook.get_health() == "ok"
    version = hook.get_version()
    assert version["apiVersion"] == "7.40.0" and version["serviceVersion"]


def test_list_jobs_created_before(hook: HereBatchHook) -> None:
    first = hook.create_job(b"recId|q\n1|Berlin\n", options=JobOptions(tag="age"))
    second = hook.create_job(b"recId|q\n1|Paris\n", options=JobOptions(tag="age"))
    first_created = hook.get_job(first.id).created
    second_created = hook.get_job(second.id).created
    assert first_created is not None and second_created is not None and first_created < second_created
    between = first_created + (second_created - first_created) / 2
    assert [j.id for j in hook.list_jobs_created_before(between, tag="age")] == [first.id]
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert {j.id for j in hook.list_jobs_created_before(later, tag="age")} == {first.id, second.id}
    with pytest.raises(ValueError, match="timezone-aware"):
        list(hook.list_jobs_created_before(datetime(2030, 1, 1)))
