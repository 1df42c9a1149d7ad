"""Fault injection (HTTP admin API and in-process) and the admin inspection endpoints."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_here_batch.emulator import EmulatorAdmin, EmulatorServer

from .conftest import KEY, Client, assert_error


def test_status_fault_with_retry_after(client: Client, emu: EmulatorServer) -> None:
    job_id, _ = client.run("recId|q\n1|Berlin\n")
    fault = emu.admin.inject_fault("get_job", "status", status=429, retry_after=2, count=2)
    assert fault["count"] == 2
    for _ in range(2):
        resp = client.session.get(f"{client.base}/batch/jobs/{job_id}", params=KEY)
        assert_error(resp, 429, "E6004290")
        assert resp.headers["Retry-After"] == "2"
    assert client.job(job_id)["status"] == "completed"  # the third request is normal again
    emu.admin.inject_fault("*", "status", status=503)
    assert_error(client.session.get(f"{client.base}/batch/jobs", params=KEY), 503)
    assert client.session.get(f"{client.base}/batch/jobs", params=KEY).status_code == 200


def test_in_process_fault_and_custom_code(client: Client, emu: EmulatorServer) -> None:
    emu.inject_fault(endpoint="create_job", kind="status", status=500, code="E6005001")
    assert_error(client.create("recId|q\n1|Berlin\n", expect=500), 500, "E6005001")
    assert emu.admin.jobs() == []  # the faulted request created nothing


def test_drop_fault(client: Client, emu: EmulatorServer) -> None:
    emu.admin.inject_fault("list_jobs", "drop")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{client.base}/batch/jobs", params=KEY, timeout=10)
    assert requests.get(f"{client.base}/batch/jobs", params=KEY, timeout=10).status_code == 200


def test_slow_fault(client: Client, emu: EmulatorServer) -> None:
    emu.admin.inject_fault("health", "slow", delay=0.5)
    t0 = time.monotonic()
    assert requests.get(f"{client.base}/health", timeout=10).status_code == 200
    assert time.monotonic() - t0 >= 0.45
    with pytest.raises(requests.Timeout):
        emu.admin.inject_fault("health", "slow", delay=1.0)
        requests.get(f"{client.base}/health", timeout=0.3)


def test_truncate_fault_on_download_and_json(client: Client, emu: EmulatorServer) -> None:
    job_id, _ = client.run("recId|q\n" + "".join(f"{i}|Berlin\n" for i in range(50)))
    full = client.download(job_id).content
    emu.admin.inject_fault("results", "truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{client.base}/batch/jobs/{job_id}/results", params=KEY, timeout=10).content  # noqa: B018
    assert client.download(job_id).content == full
    emu.admin.inject_fault("get_job", "truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{client.base}/batch/jobs/{job_id}", params=KEY, timeout=10).content  # noqa: B018


def test_fault_admin_validation_and_clear(emu: EmulatorServer) -> None:
    admin = EmulatorAdmin(emu.base_url)  # a /v7 URL is accepted too
    with pytest.raises(RuntimeError):
        admin.inject_fault("nope")
    with pytest.raises(RuntimeError):
        admin.inject_fault("get_job", "explode")
    admin.inject_fault("errors", "status", status=502, count=3)
    assert len(admin.faults()) == 1
    admin.clear_faults()
    assert admin.faults() == []


def test_delete_job_underneath_a_waiter(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = client.create("recId|q\n1|Berlin\n").json()["id"]
    client.wait(job_id, "inProgress")
    client.delete(job_id)
    assert client.wait(job_id, "deleted")["status"] == "deleted"


def test_stats_jobs_settings(client: Client, emu: EmulatorServer) -> None:
    client.run("recId|q\n1|Berlin\n")
    stats = emu.admin.stats()
    assert stats["requests"]["create_job"] == 1 and stats["requests"]["get_job"] >= 1
    assert stats["jobs"] == {"completed": 1}
    settings = emu.admin.settings(max_running_jobs=7)
    assert settings["max_running_jobs"] == 7 and settings["records_per_second"] == "inf"
    with pytest.raises(RuntimeError):
        emu.admin.settings(no_such_setting=1)
    emu.admin.reset()
    assert emu.admin.jobs() == [] and emu.admin.settings()["max_running_jobs"] == 5


def test_fault_after_processing(client: Client, emu: EmulatorServer) -> None:
    emu.admin.inject_fault("create_job", "drop", after_processing=True)
    with pytest.raises(requests.ConnectionError):
        client.create("recId|q\n1|Berlin\n", tag="lost-answer")
    jobs = emu.admin.jobs()
    assert len(jobs) == 1 and jobs[0]["tag"] == "lost-answer"  # the job exists, its answer was lost
    emu.admin.inject_fault("delete_job", "status", status=503, after_processing=True)
    assert_error(client.delete(jobs[0]["id"]), 503)
    assert client.job(jobs[0]["id"])["status"] == "deleted"
