"""Fixtures for the emulator tests: one fast emulator per module, reset before every test.

Everything goes over real HTTP with plain ``requests``: the emulator is tested independently of the
provider's own client.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from airflow_here_batch.emulator import EmulatorServer

GEOCODE = "hrn:here:service::olp-here:search-geocode-7"
REVGEOCODE = "hrn:here:service::olp-here:search-revgeocode-7"
LOOKUP = "hrn:here:service::olp-here:search-lookup-7"
KEY = {"apiKey": "test-key"}
OAUTH = {"test-key-id": "test-key-secret"}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(records_per_second=float("inf"), queue_delay=0.0, oauth_credentials=OAUTH) as emu:
        yield emu


@pytest.fixture
def emu(server: EmulatorServer) -> EmulatorServer:
    """The module's emulator, with no jobs, faults or statistics left from earlier tests."""
    server.admin.reset()
    return server


class Client:
    """Tiny HERE Batch client over requests, for the tests only."""

    def __init__(self, emu: EmulatorServer) -> None:
        self.emu = emu
        self.base = emu.base_url
        self.session = requests.Session()

    def create(
        self,
        body: str | bytes,
        *,
        service: str = GEOCODE,
        gz: bool = False,
        ctype: str = "text/plain",
        expect: int | None = 201,
        **params: Any,
    ) -> requests.Response:
        data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": ctype}
        if gz:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        q = {**KEY, "serviceHrn": service, **params}
        resp = self.session.post(f"{self.base}/batch/jobs", params=q, data=data, headers=headers, timeout=30)
        if expect is not None:
            assert resp.status_code == expect, resp.text
        return resp

    def job(self, job_id: str) -> dict[str, Any]:
        resp = self.session.get(f"{self.base}/batch/jobs/{job_id}", params=KEY, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def put(self, job_id: str, action: str) -> requests.Response:
        return self.session.put(f"{self.base}/batch/jobs/{job_id}/{action}", params=KEY, timeout=30)

    def delete(self, job_id: str) -> requests.Response:
        return self.session.delete(f"{self.base}/batch/jobs/{job_id}", params=KEY, timeout=30)

    def download(self, job_id: str, kind: str = "results", **headers: str) -> requests.Response:
        return self.session.get(
            f"{self.base}/batch/jobs/{job_id}/{kind}", params=KEY, headers=headers, timeout=30
        )

    def wait(
        self,
        job_id: str,
        *statuses: str,
        timeout: float = 20.0,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is in one of ``statuses`` (and ``predicate`` holds); fail at the deadline."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.job(job_id)
            if body["status"] in statuses and (predicate is None or predicate(body)):
                return body
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} not in {statuses} after {timeout}s: {body}")

    def run(self, body: str, **params: Any) -> tuple[str, dict[str, Any]]:
        """Create a job and wait for it to end."""
        job_id = self.create(body, **params).json()["id"]
        return job_id, self.wait(job_id, "completed", "failure")


@pytest.fixture
def client(emu: EmulatorServer) -> Client:
    return Client(emu)


def assert_error(resp: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is HERE's ErrorResponse with this status (and code)."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"title", "status", "code", "cause", "action", "correlationId"}, body
    assert body["status"] == status
    assert body["correlationId"] == resp.headers["X-Correlation-ID"]
    if code is not None:
        assert body["code"] == code, body
    return body  # type: ignore[no-any-return]
