"""The emulator's fault kinds for issue 10: ``late`` creates, ``malformed`` bodies and ``echo`` of
secrets in every error text (plain HTTP, independent of the provider's client)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from airflow_here_batch.emulator import EmulatorServer

from .conftest import GEOCODE, KEY, OAUTH, Client


def test_late_create_drops_the_answer_and_shows_the_job_later(client: Client, emu: EmulatorServer) -> None:
    emu.admin.inject_fault("create_job", "late", delay=0.8)
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{client.base}/batch/jobs",
            params={**KEY, "serviceHrn": GEOCODE, "tag": "late-1"},
            data=b"recId|q\n1|Berlin\n",
            headers={"Content-Type": "text/plain"},
            timeout=10,
        )
    listed = requests.get(f"{client.base}/batch/jobs", params={**KEY, "tag": "late-1"}, timeout=10).json()
    assert listed["items"] == []  # not there yet: HERE is still completing the create
    deadline = time.monotonic() + 10
    while not requests.get(f"{client.base}/batch/jobs", params={**KEY, "tag": "late-1"}, timeout=10).json()[
        "items"
    ]:
        assert time.monotonic() < deadline, "the late job never appeared"
        time.sleep(0.05)
    assert len(emu.admin.jobs()) == 1


def test_late_applies_to_create_only(emu: EmulatorServer) -> None:
    with pytest.raises(Exception, match="create_job"):
        emu.admin.inject_fault("get_job", "late")


def test_malformed_answer_is_whole_but_not_json(client: Client, emu: EmulatorServer) -> None:
    job_id, _ = client.run("recId|q\n1|Berlin\n")
    emu.admin.inject_fault("get_job", "malformed")
    resp = requests.get(f"{client.base}/batch/jobs/{job_id}", params=KEY, timeout=10)
    assert resp.status_code == 200 and resp.text.startswith('{"')
    with pytest.raises(ValueError):
        json.loads(resp.text)
    assert requests.get(f"{client.base}/batch/jobs/{job_id}", params=KEY, timeout=10).json()["id"] == job_id


def test_echo_quotes_the_request_in_every_error_text(client: Client, emu: EmulatorServer) -> None:
    emu.admin.inject_fault("*", "echo", count=3)
    emu.admin.inject_fault("get_job", "status", status=503)
    injected = requests.get(f"{client.base}/batch/jobs/JOB-x", params=KEY, timeout=10)
    assert injected.status_code == 503 and f"apiKey={KEY['apiKey']}" in injected.json()["cause"]
    unknown = requests.get(f"{client.base}/batch/jobs/JOB-x", params=KEY, timeout=10)
    assert unknown.status_code == 400  # a real error of the emulator (bad job id), echoed too
    assert all(f"apiKey={KEY['apiKey']}" in unknown.json()[k] for k in ("title", "cause", "action"))
    bearer = requests.get(
        f"{client.base}/batch/jobs", headers={"Authorization": "Bearer nope-token"}, timeout=10
    )
    assert bearer.status_code == 401 and "Bearer nope-token" in bearer.json()["error_description"]
    # count used up: the next error is plain again, and successes are never touched
    assert "apiKey" not in requests.get(f"{client.base}/batch/jobs/JOB-x", params=KEY, timeout=10).text


def test_echo_on_the_token_endpoint_includes_the_secret(client: Client, emu: EmulatorServer) -> None:
    ((key_id, secret),) = OAUTH.items()
    emu.admin.inject_fault("token", "echo")
    header = f'OAuth oauth_consumer_key="{key_id}",oauth_signature_method="HMAC-SHA256",oauth_signature="bad"'
    resp = requests.post(
        emu.token_url,
        data="grant_type=client_credentials",
        headers={"Authorization": header, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert resp.status_code == 401 and f"secret={secret}" in resp.text
