"""The console entry point as a subprocess: first stdout line, --port 0, --data-dir persistence across a
restart, --api-key, and no secret in the logs. Plus the pytest plugin's fixture."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from airflow_here_batch.emulator import EmulatorServer

from .conftest import GEOCODE

SECRET = "very-secret-key-123"


@contextmanager
def cli(*args: str, log: Path) -> Iterator[str]:
    """Run ``python -m airflow_here_batch.emulator --port 0 ...``; yield its printed base URL."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_here_batch.emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("http://127.0.0.1:") and line.endswith("/v7"), line
        yield line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def wait_for(base: str, job_id: str, status: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 20
    body: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        body = requests.get(f"{base}/batch/jobs/{job_id}", params={"apiKey": SECRET}, timeout=10).json()
        if body.get("status") == status:
            return body
        time.sleep(0.05)
    raise AssertionError(body)


def test_cli_restart_keeps_jobs_and_logs_no_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "emulator.log"
    args = ("--data-dir", str(data), "--api-key", SECRET, "--queue-delay", "0", "--records-per-second", "inf")
    with cli(*args, log=log) as base:
        assert requests.get(f"{base}/batch/jobs", params={"apiKey": "other"}, timeout=10).status_code == 401
        resp = requests.post(
            f"{base}/batch/jobs",
            params={"apiKey": SECRET, "serviceHrn": GEOCODE},
            data="recId|q\n1|Berlin\n2|Paris\n",
            headers={"Content-Type": "text/plain"},
            timeout=10,
        )
        done_id = resp.json()["id"]
        done = wait_for(base, done_id, "completed")
        results = requests.get(
            f"{base}/batch/jobs/{done_id}/results", params={"apiKey": SECRET}, timeout=10
        ).text
        # a held job, to resume after the restart
        requests.post(base.replace("/v7", "/_emulator/settings"), json={"records_per_second": 0}, timeout=10)
        held_id = requests.post(
            f"{base}/batch/jobs",
            params={"apiKey": SECRET, "serviceHrn": GEOCODE},
            data="recId|q\n1|Rome\n",
            headers={"Content-Type": "text/plain"},
            timeout=10,
        ).json()["id"]
        wait_for(base, held_id, "inProgress")
    with cli(*args, log=log) as base:
        again = wait_for(base, done_id, "completed")
        assert again == {**done, "href": again["href"], "resultsHref": again["resultsHref"]}
        assert (
            requests.get(f"{base}/batch/jobs/{done_id}/results", params={"apiKey": SECRET}, timeout=10).text
            == results
        )
        assert wait_for(base, held_id, "completed")["records"]["succeeded"] == 1
    text = log.read_text()
    assert "apiKey=***" in text
    assert SECRET not in text


def test_server_context_manager_cleans_up() -> None:
    with EmulatorServer(queue_delay=0) as emu:
        tmp = emu.data_dir
        assert emu.base_url == f"http://127.0.0.1:{emu.port}/v7"
        assert emu.token_url == f"http://127.0.0.1:{emu.port}/oauth2/token"
        assert tmp.exists()
    assert not tmp.exists()


def test_pytest_plugin_fixture(here_emulator: EmulatorServer) -> None:
    assert requests.get(here_emulator.base_url + "/health", timeout=10).status_code == 200
    assert here_emulator.admin.settings()["records_per_second"] == "inf"
