"""The CLI's --max-records, --max-input-bytes and --max-running-jobs answer as HERE documents (shared doc
§3, §4, §11): 413 above the per-job limits (uncompressed size counts), 429 ``E6004291`` with
``Retry-After`` for a start beyond the running-jobs limit, an auto-started job waiting in ``queued``."""

from __future__ import annotations

import gzip
from pathlib import Path

import requests

from airflow_here_batch.emulator import EmulatorAdmin

from .conftest import GEOCODE
from .test_cli_persistence import SECRET, cli, wait_for

PARAMS = {"apiKey": SECRET, "serviceHrn": GEOCODE}
TEXT = {"Content-Type": "text/plain"}


def post(base: str, body: bytes, **params: str) -> requests.Response:
    return requests.post(
        f"{base}/batch/jobs", params={**PARAMS, **params}, data=body, headers=TEXT, timeout=30
    )


def test_per_job_limits_answer_413(tmp_path: Path) -> None:
    with cli(
        "--api-key", SECRET, "--max-records", "3", "--max-input-bytes", "2000", log=tmp_path / "e.log"
    ) as base:
        assert post(base, b"recId|q\n1|a\n2|b\n3|c\n").status_code == 201  # a header is not a record
        for body, extra in (
            (b"recId|q\n1|a\n2|b\n3|c\n4|d\n", {}),  # 4 records
            (b"1|a\n2|b\n3|c\n4|d\n", {"inputColumns": "recId|q"}),  # 4 records, no header
        ):
            resp = post(base, body, **extra)
            assert resp.status_code == 413, resp.text
            assert resp.json()["code"] == "E6004003" and "record count" in resp.json()["title"]
        big = b"q\n" + b"x" * 2100 + b"\n"
        resp = requests.post(
            f"{base}/batch/jobs",
            params=PARAMS,
            data=gzip.compress(big),
            headers={**TEXT, "Content-Encoding": "gzip"},
            timeout=30,
        )
        assert resp.status_code == 413 and "size" in resp.json()["title"]  # the uncompressed size counts


def test_running_jobs_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    args = ("--api-key", SECRET, "--max-running-jobs", "1", "--records-per-second", "0", "--queue-delay", "0")
    with cli(*args, log=tmp_path / "e.log") as base:
        admin = EmulatorAdmin(base)
        first = post(base, b"q\nBerlin\n").json()["id"]
        wait_for(base, first, "inProgress")
        second = post(base, b"q\nRome\n").json()["id"]  # auto-started: waits in queued, no error
        held = post(base, b"q\nOslo\n", startJob="false").json()["id"]
        resp = requests.put(f"{base}/batch/jobs/{held}/start", params={"apiKey": SECRET}, timeout=30)
        assert resp.status_code == 429 and resp.json()["code"] == "E6004291"
        assert float(resp.headers["Retry-After"]) > 0
        assert wait_for(base, second, "queued")["status"] == "queued"
        requests.delete(f"{base}/batch/jobs/{first}", params={"apiKey": SECRET}, timeout=30)
        wait_for(base, second, "inProgress")
        stats = admin.stats()
        assert stats["peak_running"] == 1 and stats["requests"]["start_job_too_many_jobs"] == 1
