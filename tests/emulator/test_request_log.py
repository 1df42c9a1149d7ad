"""The request log (``/_emulator/requests``): every request on HERE's paths as it arrived, credentials
masked; ``X-Request-ID`` echoed, each answer with its own ``X-Correlation-ID``."""

from __future__ import annotations

import contextlib

import requests

from airflow_here_batch.emulator import EmulatorServer
from tests.emulator.conftest import KEY


def test_requests_are_recorded_as_they_arrived_with_credentials_masked(emu: EmulatorServer) -> None:
    emu.admin.clear_requests()
    session = requests.Session()
    answer = session.get(f"{emu.base_url}/batch/jobs", params={**KEY, "limit": "1"},
                         headers={"X-Request-ID": "rid-1"}, timeout=10)
    assert answer.headers["X-Request-ID"] == "rid-1"
    assert answer.headers["X-Correlation-ID"] not in ("", "rid-1")
    session.post(f"{emu.base_url}/batch/jobs", params=KEY, data=(c for c in [b"recId|q\n", b"1|x\n"]),
                 headers={"Authorization": "Bearer secret-token", "Content-Type": "text/plain"}, timeout=10)
    emu.admin.inject_fault(endpoint="get_job", kind="drop")
    with contextlib.suppress(requests.ConnectionError):
        session.get(f"{emu.base_url}/batch/jobs/JOB-1", params=KEY, timeout=10)
    emu.admin.stats()  # admin calls are not recorded
    listed, created, dropped = emu.admin.requests()
    assert (listed["method"], listed["path"]) == ("GET", "/v7/batch/jobs")
    assert listed["query"] == {"apiKey": "***", "limit": "1"}
    assert listed["headers"]["x-request-id"] == "rid-1"
    assert created["headers"]["transfer-encoding"] == "chunked"
    assert created["headers"]["authorization"] == "Bearer ***"
    assert dropped["path"] == "/v7/batch/jobs/JOB-1"  # recorded before the fault applied
    text = str(emu.admin.requests())
    assert "secret-token" not in text and KEY["apiKey"] not in text
    emu.admin.clear_requests()
    assert emu.admin.requests() == []


def test_error_bodies_carry_the_correlation_id_of_the_answer(emu: EmulatorServer) -> None:
    answer = requests.get(f"{emu.base_url}/batch/jobs/JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6", params=KEY,
                          headers={"X-Request-ID": "rid-2"}, timeout=10)
    assert answer.status_code == 404 and answer.headers["X-Request-ID"] == "rid-2"
    assert answer.json()["correlationId"] == answer.headers["X-Correlation-ID"]
