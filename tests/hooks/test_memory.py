"""Memory stays flat with file size: 200 MB up and down through the hook with a bounded peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

PROBE = Path(__file__).with_name("memory_probe.py")
KEY = "memory-test-key"
RECORDS = 1_000_000  # HERE's maximum per job; about 200 MB of input and of results here
MAX_GROWTH_MB = 64


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A separate emulator process (its memory must not count against the hook's)."""
    data_dir = tmp_path_factory.mktemp("emulator")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_here_batch.emulator",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--data-dir",
            str(data_dir),
            "--queue-delay",
            "0",
            "--records-per-second",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), base_url
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_upload_and_download_memory_is_flat(emulator_process: str, tmp_path: Path) -> None:
    source = tmp_path / "input.csv"
    with source.open("w", encoding="utf-8") as handle:
        handle.write("recId|q\n")
        for i in range(RECORDS):
            handle.write(
                f"{i:07d}|Invalidenstrasse {i} 10115 Berlin Germany, Mitte district, ref {i:0140d}\n"
            )
    assert source.stat().st_size > 190_000_000

    upload = _probe("upload", emulator_process, KEY, str(source))
    assert upload["bytes"] == source.stat().st_size
    assert upload["growth_mb"] < MAX_GROWTH_MB, upload

    # Let the job run (unpaced), then download its results.
    job_id = upload["job_id"]
    requests.post(
        f"{emulator_process.removesuffix('/v7')}/_emulator/settings",
        json={"records_per_second": 1e12},
        timeout=10,
    ).raise_for_status()
    requests.put(f"{emulator_process}/batch/jobs/{job_id}/start", params={"apiKey": KEY}, timeout=10)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = requests.get(
            f"{emulator_process}/batch/jobs/{job_id}", params={"apiKey": KEY}, timeout=10
        ).json()
        if status["status"] == "completed":
            break
        time.sleep(0.5)
    assert status["status"] == "completed", status
    results = tmp_path / "results.csv"
    download = _probe("download", emulator_process, KEY, str(results), job_id)
    assert download["bytes"] == results.stat().st_size > 150_000_000
    assert download["growth_mb"] < MAX_GROWTH_MB, download
