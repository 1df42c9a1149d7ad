"""HERE's notifications (BETA webhooks) in the emulator, over real HTTP, with a real webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_here_batch.emulator import EmulatorServer
from tests.webhook_receiver import WebhookReceiver

from .conftest import KEY, Client, assert_error

BODY = "recId|q\n1|Berlin\n2|Paris\n3|nowhere-at-all-xyz\n"
HOOK_PATH = (
    "/hook/${JOB_ID}?status=${JOB_STATUS}&ok=${JOB_RECORDS_SUCCEEDED}&bad=${JOB_RECORDS_FAILED}"
    "&total=${JOB_RECORDS_TOTAL}&valid=${JOB_RECORDS_VALID}&invalid=${JOB_RECORDS_INVALID}"
    "&name=${JOB_NAME}&type=${JOB_OUTPUT_TYPE}"
)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as rx:
        yield rx


def _create(client: Client, url: str, expect: int = 201) -> dict[str, Any]:
    body = {"type": "webHook", "config": {"url": url}}
    resp = client.session.post(f"{client.base}/batch/notifications", params=KEY, json=body, timeout=10)
    assert resp.status_code == expect, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_webhook_called_with_substituted_job_id_when_job_completes(
    client: Client, receiver: WebhookReceiver
) -> None:
    notification = _create(client, receiver.url + HOOK_PATH)
    assert notification["id"].startswith("NOTIFICATION-") and notification["type"] == "webHook"
    job_id, body = client.run(BODY, tag="nightly-2026", notificationIds=notification["id"])
    assert body["status"] == "completed" and body["notificationIds"] == [notification["id"]]

    (method, path, query), *_ = receiver.wait_for(1)
    assert method == "GET"
    assert path == f"/hook/{job_id}"
    records = body["records"]
    assert query == {
        "status": ["completed"],
        "ok": [str(records["succeeded"])],
        "bad": [str(records["failed"])],
        "total": [str(records["total"])],
        "valid": [str(records["valid"])],
        "invalid": [str(records["invalid"])],
        "name": ["nightly-2026"],
        "type": ["csv"],
    }
    again = client.session.get(f"{client.base}/batch/notifications/{notification['id']}", params=KEY)
    assert again.json()["lastUsedTime"]


def test_failed_job_notifies_with_failure_status(client: Client, receiver: WebhookReceiver) -> None:
    notification = _create(client, receiver.url + "/h?job=${JOB_ID}&s=${JOB_STATUS}")
    job_id, body = client.run("recId|q|x\n1|bad\n2|bad\n", notificationIds=notification["id"])
    assert body["status"] == "failure"
    (_, _, query), *_ = receiver.wait_for(1)
    assert query == {"job": [job_id], "s": ["failure"]}


def test_stopped_job_notifies_only_when_it_ends(
    client: Client, emu: EmulatorServer, receiver: WebhookReceiver
) -> None:
    notification = _create(client, receiver.url + "/h?job=${JOB_ID}&s=${JOB_STATUS}")
    emu.admin.settings(records_per_second=0)  # hold the job in inProgress
    job_id = client.create(BODY, notificationIds=notification["id"]).json()["id"]
    client.wait(job_id, "inProgress")
    client.put(job_id, "stop")
    client.wait(job_id, "stopped")
    emu.admin.settings(records_per_second=float("inf"))
    client.put(job_id, "start")
    client.wait(job_id, "completed")
    # The first (and only) call is for the end: the stop (resumable) called nothing.
    calls = receiver.wait_for(1)
    assert [c[2] for c in calls] == [{"job": [job_id], "s": ["completed"]}]
    deliveries = requests.get(f"{emu.root_url}/_emulator/notifications/deliveries", timeout=10).json()
    assert [d["job_id"] for d in deliveries["deliveries"]] in ([], [job_id])  # recorded once answered


def test_every_webhook_of_a_job_is_called(client: Client, receiver: WebhookReceiver) -> None:
    ids = [_create(client, f"{receiver.url}/n{i}/${{JOB_ID}}")["id"] for i in range(5)]
    job_id, _ = client.run(BODY, notificationIds=",".join(ids))
    paths = sorted(call[1] for call in receiver.wait_for(5))
    assert paths == [f"/n{i}/{job_id}" for i in range(5)]


def test_crud_and_test_endpoint(client: Client, receiver: WebhookReceiver) -> None:
    base = f"{client.base}/batch/notifications"
    first = _create(client, receiver.url + "/a?job=${JOB_ID}")
    second = _create(client, receiver.url + "/b")
    listed = client.session.get(base, params=KEY, timeout=10)
    assert listed.status_code == 200
    assert {n["id"] for n in listed.json()} == {first["id"], second["id"]}
    got = client.session.get(f"{base}/{first['id']}", params=KEY, timeout=10).json()
    assert got == first and "lastUsedTime" not in got

    new_url = receiver.url + "/replaced?job=${JOB_ID}&s=${JOB_STATUS}"
    put = client.session.put(
        f"{base}/{first['id']}", params=KEY, json={"type": "webHook", "config": {"url": new_url}}, timeout=10
    )
    assert put.status_code == 200 and put.json() == {**first, "config": {"url": new_url}}

    tested = client.session.get(f"{base}/{first['id']}/test", params=KEY, timeout=10)
    assert tested.status_code == 204 and tested.content == b""
    # The test call is made before the answer: already received.
    assert receiver.calls == [
        ("GET", "/replaced", {"job": ["JOB-00000000-0000-0000-0000-000000000000"], "s": ["completed"]})
    ]

    deleted = client.session.delete(f"{base}/{first['id']}", params=KEY, timeout=10)
    assert deleted.status_code == 204
    assert_error(client.session.get(f"{base}/{first['id']}", params=KEY, timeout=10), 404, "E6004040")
    assert_error(client.session.delete(f"{base}/{first['id']}", params=KEY, timeout=10), 404)
    assert [n["id"] for n in client.session.get(base, params=KEY, timeout=10).json()] == [second["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "email", "config": {"url": "https://example.com/"}},
        {"type": "webHook", "config": {}},
        {"type": "webHook", "config": {"url": "https://example.com/", "secret": "x"}},
        {"type": "webHook", "config": {"url": "ftp://example.com/"}},
        {"type": "webHook", "config": {"url": "/relative"}},
        ["not", "an", "object"],
    ],
)
def test_bad_notification_bodies_are_refused(client: Client, body: Any) -> None:
    resp = client.session.post(f"{client.base}/batch/notifications", params=KEY, json=body, timeout=10)
    assert_error(resp, 400, "E6004000")


def test_job_with_unknown_or_too_many_notifications_is_refused(client: Client) -> None:
    resp = client.create(
        BODY, expect=None, notificationIds="NOTIFICATION-00000000-0000-0000-0000-000000000001"
    )
    assert "unknown notification" in assert_error(resp, 400)["cause"]
    ids = ",".join(f"NOTIFICATION-{i}" for i in range(6))
    assert_error(client.create(BODY, expect=None, notificationIds=ids), 400)


def test_notifications_need_credentials(client: Client) -> None:
    resp = requests.get(f"{client.base}/batch/notifications", timeout=10)
    assert resp.status_code == 401


def test_health_is_ok_lower_case(client: Client) -> None:
    resp = requests.get(f"{client.base}/health", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


def test_notifications_survive_a_restart(tmp_path: Any) -> None:
    with EmulatorServer(data_dir=tmp_path, queue_delay=0, records_per_second=float("inf")) as emu:
        created = requests.post(
            f"{emu.base_url}/batch/notifications",
            params=KEY,
            json={"config": {"url": "https://example.com/x"}},
            timeout=10,
        ).json()
    with EmulatorServer(data_dir=tmp_path, queue_delay=0, records_per_second=float("inf")) as emu:
        got = requests.get(f"{emu.base_url}/batch/notifications/{created['id']}", params=KEY, timeout=10)
        assert got.json() == created
