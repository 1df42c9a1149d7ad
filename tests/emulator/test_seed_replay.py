"""Replay HERE's job-status document (the seed): drive jobs through every state and compare each body,
key by key, with the seed's JSON for that state.

The seed's eight JSON bodies are vendored in ``tests/fixtures/seed/<status>.json`` (see the
README there), so the test runs in a clean clone with no file from outside the repository.
"""

from __future__ import annotations

from typing import Any

from airflow_here_batch.emulator import EmulatorServer
from tests.seed import seed_bodies

from .conftest import GEOCODE, Client


def relations(r: dict[str, int]) -> dict[str, bool]:
    """The counter relations HERE's examples exhibit (shared doc §6); compared state by state."""
    return {
        "total=valid+invalid": r["total"] == r["valid"] + r["invalid"],
        "valid=processed+pending": r["valid"] == r["processed"] + r["pending"],
        "processed=succeeded+failed": r["processed"] == r["succeeded"] + r["failed"],
        "succeeded+failed=total": r["succeeded"] + r["failed"] == r["total"],
        "pending=0": r["pending"] == 0,
        "processed<valid": r["processed"] < r["valid"],
        "valid=0": r["valid"] == 0,
        "processed=0": r["processed"] == 0,
    }


def compare(state: str, ours: dict[str, Any], seed: dict[str, Any]) -> None:
    assert ours["status"] == seed["status"] == state
    assert set(ours) == set(seed), (
        f"{state}: keys differ: only ours {set(ours) - set(seed)}, only seed {set(seed) - set(ours)}"
    )
    assert set(ours["records"]) == set(seed["records"])
    assert relations(ours["records"]) == relations(seed["records"]), (state, ours["records"], seed["records"])
    for key in ("resultsHref", "errorsHref"):
        if key in seed:
            assert (ours[key] == "") == (seed[key] == ""), (state, key, ours[key])
            if ours[key]:
                assert ours[key] == f"{ours['href']}/{key[:-4]}"
    assert ours["billingTags"] == seed["billingTags"] and ours["serviceHrn"] == seed["serviceHrn"]
    assert ours["href"].endswith(f"/v7/batch/jobs/{ours['id']}")


# Five records after a header: the seed's own numbers (total 6 estimated, 5 real).
BODY = "recId|q\n1|Berlin\n2|Paris\n3|London\n4|Madrid\n5|Rome\n"


def test_seed_replay(client: Client, emu: EmulatorServer) -> None:
    seed = seed_bodies()
    assert set(seed) == {
        "submitted",
        "queued",
        "pending",
        "inProgress",
        "completed",
        "stopped",
        "deleted",
        "failure",
    }
    ours: dict[str, dict[str, Any]] = {}
    emu.admin.settings(queue_delay=0.6, records_per_second=0)
    job_id = client.create(BODY, service=GEOCODE, startJob="false").json()["id"]
    ours["submitted"] = client.job(job_id)
    client.put(job_id, "start")
    ours["queued"] = client.wait(job_id, "queued")
    ours["pending"] = client.wait(job_id, "pending")
    ours["inProgress"] = client.wait(job_id, "inProgress")
    emu.admin.settings(records_per_second=float("inf"))
    ours["completed"] = client.wait(job_id, "completed")
    client.delete(job_id)
    ours["deleted"] = client.job(job_id)

    emu.admin.settings(queue_delay=0, records_per_second=4)
    stop_id = client.create(BODY).json()["id"]
    client.wait(stop_id, "inProgress", predicate=lambda b: b["records"]["processed"] >= 1)
    client.put(stop_id, "stop")
    ours["stopped"] = client.wait(stop_id, "stopped")

    emu.admin.settings(records_per_second=float("inf"))
    fail_id = client.create("recId|q|x\n" + "".join(f"{i}|bad\n" for i in range(1, 7))).json()["id"]
    ours["failure"] = client.wait(fail_id, "failure")

    for state, body in seed.items():
        compare(state, ours[state], body)
    # Where the seed's counters are reproducible exactly, they match exactly.
    for state in ("submitted", "queued", "pending", "inProgress", "completed", "deleted", "failure"):
        assert ours[state]["records"] == seed[state]["records"], state
