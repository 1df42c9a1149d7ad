"""Job lifecycle over HTTP: states, start/stop/resume, delete, list, bulk delete, failure, limits."""

from __future__ import annotations

from airflow_here_batch.emulator import EmulatorServer

from .conftest import GEOCODE, KEY, Client, assert_error

BODY = "recId|q\n1|Berlin\n2|Paris\n3|London\n4|Madrid\n5|Rome\n"
DETAIL_KEYS = {
    "id",
    "serviceHrn",
    "billingTags",
    "status",
    "href",
    "created",
    "records",
    "resultsHref",
    "errorsHref",
    "outputType",
}


def test_create_response_and_completion(client: Client) -> None:
    resp = client.create(BODY, tag="demo", billingTags="abcd+efgh+abcd")
    created = resp.json()
    assert created["status"] == "submitted"
    assert set(created) == {"id", "serviceHrn", "status", "tag", "billingTags", "href"}
    assert created["billingTags"] == ["abcd", "efgh"]
    assert created["href"] == f"{client.base}/batch/jobs/{created['id']}"
    done = client.wait(created["id"], "completed")
    assert set(done) == DETAIL_KEYS | {"tag", "started", "ended"}
    assert done["records"] == {
        "total": 5,
        "valid": 5,
        "invalid": 0,
        "processed": 5,
        "pending": 0,
        "succeeded": 5,
        "failed": 0,
    }
    assert done["resultsHref"] == done["href"] + "/results"
    assert done["errorsHref"] == ""


def test_start_job_false_then_start(client: Client) -> None:
    job_id = client.create(BODY, startJob="false").json()["id"]
    body = client.job(job_id)
    assert body["status"] == "submitted" and "started" not in body
    assert body["records"]["total"] == 6  # estimate incl. the header line, as HERE shows it
    resp = client.put(job_id, "start")
    assert resp.status_code == 200 and resp.json()["status"] == "queued"
    assert client.wait(job_id, "completed")["records"]["total"] == 5


def test_states_are_observable_with_slow_pacing(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(queue_delay=0.4, records_per_second=0)
    job_id = client.create(BODY).json()["id"]
    seen = {client.wait(job_id, "queued")["status"]}
    pending = client.wait(job_id, "pending")
    assert pending["records"] == {
        "total": 6,
        "valid": 0,
        "invalid": 0,
        "processed": 0,
        "pending": 0,
        "succeeded": 0,
        "failed": 0,
    }
    held = client.wait(job_id, "inProgress")
    assert held["records"]["pending"] == 5 and "started" in held and "ended" not in held
    seen |= {"pending", "inProgress"}
    emu.admin.settings(records_per_second=1000)
    client.wait(job_id, "completed")
    assert seen == {"queued", "pending", "inProgress"}


def test_stop_resume_and_partial_results(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=20)
    job_id = client.create("recId|q\n" + "".join(f"{i}|Berlin {i}\n" for i in range(1, 201))).json()["id"]
    client.wait(job_id, "inProgress", predicate=lambda b: b["records"]["processed"] >= 2)
    assert client.put(job_id, "stop").status_code == 200
    stopped = client.wait(job_id, "stopped")
    r = stopped["records"]
    assert 0 < r["processed"] < 200 and r["pending"] == 0 and r["processed"] == r["succeeded"]
    assert "ended" in stopped and stopped["resultsHref"].endswith("/results")
    partial = client.download(job_id)
    assert partial.status_code == 200
    assert len(partial.text.splitlines()) == r["processed"] + 1
    # stop on a stopped job is a no-op
    assert client.put(job_id, "stop").json()["status"] == "stopped"
    emu.admin.settings(records_per_second=float("inf"))
    assert client.put(job_id, "start").json()["status"] == "queued"
    done = client.wait(job_id, "completed")
    assert done["records"]["processed"] == 200 and "ended" in done
    lines = client.download(job_id).text.splitlines()
    assert len(lines) == 201
    assert [ln.split("|")[0] for ln in lines[1:]] == [str(i) for i in range(1, 201)]  # resumed, not restarted


def test_start_running_job_is_noop(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = client.create(BODY).json()["id"]
    client.wait(job_id, "inProgress")
    assert client.put(job_id, "start").json()["status"] == "inProgress"
    completed_id = client.create(BODY, startJob="false").json()["id"]
    emu.admin.settings(records_per_second=float("inf"))
    client.wait(job_id, "completed")
    client.put(completed_id, "start")
    client.wait(completed_id, "completed")
    assert client.put(completed_id, "start").json()["status"] == "completed"


def test_delete_job(client: Client, emu: EmulatorServer) -> None:
    job_id, done = client.run(BODY)
    resp = client.delete(job_id)
    assert resp.status_code == 200
    assert resp.json()["status"] == "deleted"
    body = client.job(job_id)
    assert body["status"] == "deleted"
    assert body["resultsHref"] == "" and body["errorsHref"] == ""
    assert body["records"] == done["records"]
    assert body["started"] == done["started"] and body["ended"] == done["ended"]
    assert not (emu.data_dir / "jobs" / job_id / "results.txt").exists()
    assert not (emu.data_dir / "jobs" / job_id / "input.txt").exists()
    listed = client.session.get(f"{client.base}/batch/jobs", params=KEY).json()
    assert job_id not in [j["id"] for j in listed["items"]]
    assert job_id in [j["id"] for j in emu.admin.jobs()]
    assert_error(client.download(job_id), 404, "E6004042")
    assert client.delete(job_id).status_code == 200  # idempotent
    assert_error(client.put(job_id, "start"), 400, "E6004006")


def test_delete_running_job(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = client.create(BODY).json()["id"]
    client.wait(job_id, "inProgress")
    assert client.delete(job_id).json()["status"] == "deleted"
    body = client.job(job_id)
    assert body["status"] == "deleted" and "ended" in body and body["records"]["pending"] == 0


def test_list_paging_and_filters(client: Client, emu: EmulatorServer) -> None:
    ids = [client.create(BODY, startJob="false", tag="a" if i % 2 else "b").json()["id"] for i in range(7)]
    url = f"{client.base}/batch/jobs"
    seen: list[str] = []
    offset = 0
    while True:
        page = client.session.get(url, params={**KEY, "limit": 3, "offset": offset}).json()
        assert page["limit"] == 3 and page["count"] == len(page["items"])
        seen += [j["id"] for j in page["items"]]
        if page["count"] < 3:
            break
        offset += 3
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    assert seen == list(reversed(ids))  # newest first
    tagged = client.session.get(url, params={**KEY, "tag": "a"}).json()
    assert tagged["count"] == 3 and all(j["tag"] == "a" for j in tagged["items"])
    client.put(ids[0], "start")
    client.wait(ids[0], "completed")
    done = client.session.get(url, params={**KEY, "status": "completed"}).json()
    assert [j["id"] for j in done["items"]] == [ids[0]]
    empty = client.session.get(url, params={**KEY, "status": "failure"}).json()
    assert empty == {"limit": 100, "count": 0, "items": []}
    assert_error(client.session.get(url, params={**KEY, "limit": 101}), 400)
    assert_error(client.session.get(url, params={**KEY, "offset": -1}), 400)
    assert_error(client.session.get(url, params={**KEY, "status": "deleted"}), 400)


def test_bulk_delete(client: Client, emu: EmulatorServer) -> None:
    url = f"{client.base}/batch/jobs"
    a = [client.create(BODY, startJob="false", tag="x").json()["id"] for _ in range(2)]
    b = client.create(BODY, startJob="false", tag="y").json()["id"]
    assert_error(client.session.delete(url, params=KEY), 400)
    none = client.session.delete(url, params={**KEY, "status": "completed"}).json()
    assert none == {"total": 0, "jobIds": []}
    resp = client.session.delete(url, params={**KEY, "status": "submitted", "tag": "x"}).json()
    assert resp["total"] == 2 and sorted(resp["jobIds"]) == sorted(a)
    assert client.job(b)["status"] == "submitted"
    rest = client.session.delete(url, params={**KEY, "status": "any"}).json()
    assert rest["jobIds"] == [b]
    assert all(j["status"] == "deleted" for j in emu.admin.jobs())


def test_failure_by_admin(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(records_per_second=0)
    job_id = client.create(BODY).json()["id"]
    client.wait(job_id, "inProgress")
    failed = emu.admin.fail_job(job_id, reason="disk on fire")
    assert failed["status"] == "failure"
    body = client.job(job_id)
    assert "outputType" not in body and body["resultsHref"] == ""
    assert body["errorsHref"].endswith("/errors") and "started" in body and "ended" in body
    r = body["records"]
    assert r["pending"] == 0 and r["succeeded"] + r["failed"] == r["total"] == 5
    errors = client.download(job_id, "errors").text.splitlines()
    assert errors[0] == "recId|errorCode|errorMessage" and len(errors) == 6
    assert "disk on fire" in errors[1]
    assert client.download(job_id).status_code == 204
    # a failed job can be started again (HERE: "you can restart the job")
    assert client.put(job_id, "start").json()["status"] == "queued"
    emu.admin.settings(records_per_second=float("inf"))
    assert client.wait(job_id, "completed")["records"]["succeeded"] == 5


def test_failure_from_input_marker_and_all_invalid(client: Client) -> None:
    job_id, body = client.run("recId|q\n1|Berlin\n2|__EMULATOR_FAIL_JOB__\n3|Paris\n")
    assert body["status"] == "failure"
    assert body["records"]["succeeded"] == 1 and body["records"]["failed"] == 2
    job_id, body = client.run("recId|q|x\n1|Berlin\n2|Paris\n")  # every record has too few values
    assert body["status"] == "failure"
    assert body["records"] == {
        "total": 2,
        "valid": 0,
        "invalid": 2,
        "processed": 0,
        "pending": 0,
        "succeeded": 0,
        "failed": 2,
    }
    assert len(client.download(job_id, "errors").text.splitlines()) == 3


def test_max_running_jobs(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(max_running_jobs=1, records_per_second=0)
    first = client.create(BODY).json()["id"]
    client.wait(first, "inProgress")
    second = client.create(BODY).json()["id"]
    client.wait(second, "queued")
    third = client.create(BODY, startJob="false").json()["id"]
    resp = client.put(third, "start")
    assert_error(resp, 429, "E6004291")
    assert resp.headers.get("Retry-After")
    assert client.job(second)["status"] == "queued"
    client.delete(first)
    client.wait(second, "inProgress")


def test_startable_queue_limit(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(max_startable_jobs=2)
    client.create(BODY, startJob="false")
    client.create(BODY, startJob="false")
    resp = client.create(BODY, expect=429)
    assert_error(resp, 429)
    assert resp.headers.get("Retry-After")


def test_records_and_size_limits(client: Client, emu: EmulatorServer) -> None:
    emu.admin.settings(max_records=3, max_input_bytes=10_000)
    client.create("recId|q\n1|a\n2|b\n3|c\n")
    assert_error(client.create("recId|q\n1|a\n2|b\n3|c\n4|d\n", expect=413), 413, "E6004003")
    big = "q\n" + ("x" * 2000 + "\n") * 6
    assert_error(client.create(big, expect=413), 413, "E6004003")
    assert_error(client.create(big, gz=True, expect=413), 413, "E6004003")  # uncompressed size counts


def test_id_and_service_errors(client: Client) -> None:
    assert_error(client.session.get(f"{client.base}/batch/jobs/not-a-job", params=KEY), 400, "E6004001")
    missing = "JOB-3fa85f64-5717-4562-b3fc-2c963f66afa6"
    for resp in (
        client.session.get(f"{client.base}/batch/jobs/{missing}", params=KEY),
        client.delete(missing),
        client.put(missing, "start"),
        client.put(missing, "stop"),
        client.download(missing),
        client.download(missing, "errors"),
    ):
        assert_error(resp, 404, "E6004041")
    assert_error(client.create(BODY, service="hrn:here:service::olp-here:nope", expect=404), 404, "E6004043")


def test_parameter_errors(client: Client) -> None:
    assert_error(client.create(BODY, tag="t" * 257, expect=400), 400, "E6004002")
    assert_error(client.create(BODY, outputColumns="a" * 1025, expect=400), 400, "E6004002")
    assert_error(client.create(BODY, outputDelimiter=".", expect=400), 400, "E6004005")
    assert_error(client.create(BODY, inputDelimiter="ab", expect=400), 400, "E6004005")
    assert_error(client.create("", expect=400), 400, "E6004004")
    assert_error(client.create("recId|q\n", expect=400), 400, "E6004004")
    assert_error(client.create(BODY, ctype="application/json", expect=400), 400, "E6004004")
    assert_error(client.create(BODY, billingTags="ab", expect=400), 400)
    assert_error(client.create(BODY, billingTags="abcd+efgh,ijkl", expect=400), 400)
    assert_error(client.create(BODY, outputType="xml", expect=400), 400)
    assert_error(client.create(BODY, startJob="maybe", expect=400), 400)
    assert_error(client.create("recId,q\n1,Berlin\n", expect=400), 400, "E6004005")  # wrong delimiter
    resp = client.session.post(
        f"{client.base}/batch/jobs", params=KEY, data=BODY, headers={"Content-Type": "text/plain"}
    )
    assert_error(resp, 400)
    assert client.create(BODY, ctype="text/csv").status_code == 201


def test_unknown_path_and_method(client: Client) -> None:
    assert_error(client.session.get(f"{client.emu.root_url}/v7/nothing", params=KEY), 404)
    assert_error(client.session.patch(f"{client.base}/batch/jobs", params=KEY), 405)


def test_headers_health_version(client: Client) -> None:
    resp = client.session.get(f"{client.base}/health", headers={"X-Request-ID": "trace-1"})
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "trace-1"
    assert resp.headers["X-Correlation-ID"]
    version = client.session.get(f"{client.base}/version", params=KEY).json()
    assert version["apiVersion"] == "7.40.0"
    err = client.session.get(f"{client.base}/batch/jobs/x", params=KEY, headers={"X-Request-ID": "t2"})
    assert err.headers["X-Request-ID"] == "t2" and err.headers["X-Correlation-ID"]


def test_geocode_default_service_unchanged(client: Client) -> None:
    _, body = client.run(BODY)
    assert body["serviceHrn"] == GEOCODE
