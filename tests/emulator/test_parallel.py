"""Worker processes (``workers`` > 1) must not change a single byte of what a job produces.

Every job runs on two emulators side by side: one processing in its own process (``workers=1``) and one
spreading the input over worker processes in many small ranges (``workers=2``, ``parallel_min_records=1``,
tiny chunks, so even a small input is split into dozens of ranges). Status, counters, results and errors
report must be identical: generated recIds (whose value depends on the count of records before a range),
invalid rows, quoted CSV, blank lines, CRLF, bytes that are not UTF-8, backend errors, several results per
record, query-form lines, JSON lines, and a job that fails at a marker in the middle.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_here_batch.emulator import EmulatorServer

from .conftest import Client
from .test_cli_persistence import cli

CITIES = [
    ("10115", "Berlin", "DEU"),
    ("75001", "Paris", "FRA"),
    ("1010", "Wien", "AUT"),
    ("8001", "Zürich", "CHE"),
]
STREETS = ["Hauptstraße", "Rue de Rivoli", "Main Street", "Via Roma"]


@pytest.fixture(scope="module")
def single() -> Iterator[EmulatorServer]:
    with EmulatorServer(records_per_second=float("inf"), queue_delay=0.0) as emu:
        yield emu


@pytest.fixture(scope="module")
def multi() -> Iterator[EmulatorServer]:
    with EmulatorServer(
        records_per_second=float("inf"), queue_delay=0.0, workers=2, parallel_min_records=1, chunk_records=30
    ) as emu:
        yield emu


def _address(rng: random.Random, i: int) -> tuple[str, str]:
    postal, city, cc = rng.choice(CITIES)
    number = rng.choice([str(i + 1), str(i + 10_000), f"{i % 90 + 1}a"])
    return f"{rng.choice(STREETS)} {number}, {postal} {city}", f"countryCode:{cc}"


def mixed_body(n: int, *, generated_ids: bool, seed: int = 1) -> bytes:
    """``n`` lines of every kind a range boundary could fall next to."""
    rng = random.Random(seed)
    lines = [b"q|in|limit" if generated_ids else b"recId|q|in|limit"]
    for i in range(n):
        q, in_value = _address(rng, i)
        rec = "" if generated_ids else f"R{i}|"
        kind = rng.randrange(14)
        if kind == 0:
            line = f"{rec}{q}|{in_value}|3"  # three results: the normal (non fast) path
        elif kind == 1:
            rec = "" if generated_ids else f'"R{i}|x"|'  # a quoted recId containing the delimiter
            line = f'{rec}"Say ""hi"" Rd {i}, Berlin"|DEU|'
        elif kind == 2:
            line = f"{rec}|{in_value}|"  # empty q: the backend rejects it (errors report)
        elif kind == 3:
            line = f"{rec}{q}"  # too few values: invalid
        elif kind == 4:
            line = f'{rec}"unclosed|{in_value}|'  # bad quoting: invalid
        elif kind == 5:
            line = rng.choice(["", "   ", "\t"])  # not a record
        elif kind == 6 and not generated_ids:
            line = f"{'R' * 600}|{q}|{in_value}|"  # recId too long: invalid
        elif kind == 7:
            line = f"{rec}{q} {'x' * 5000}|{in_value}|"  # line too long: invalid
        elif kind == 8:
            line = f"{rec}{q}|{in_value}|\r"  # CRLF
        else:
            line = f"{rec}{q}|{in_value}|"
        lines.append(line.encode())
        if kind == 9:
            # not UTF-8: a Latin-1 "ß", a truncated sequence
            lines[-1] = lines[-1].replace("ß".encode(), b"\xdf").replace(b"Rue", b"R\xc3e")
    return b"\n".join(lines) + b"\n"


def _outcome(emu: EmulatorServer, body: bytes, **params: Any) -> dict[str, Any]:
    client = Client(emu)
    job_id, detail = client.run(body, **params)  # type: ignore[arg-type]
    results = client.download(job_id)
    errors = client.download(job_id, "errors")
    return {
        "status": detail["status"],
        "records": detail["records"],
        "results": results.content if results.status_code == 200 else results.status_code,
        "errors": errors.content if errors.status_code == 200 else errors.status_code,
    }


def _same(single: EmulatorServer, multi: EmulatorServer, body: bytes, **params: Any) -> dict[str, Any]:
    one = _outcome(single, body, **params)
    many = _outcome(multi, body, **params)
    assert many["status"] == one["status"]
    assert many["records"] == one["records"]
    assert many["results"] == one["results"]  # byte for byte
    assert many["errors"] == one["errors"]
    return one


@pytest.mark.parametrize("generated_ids", [False, True])
def test_mixed_input_is_identical(single: EmulatorServer, multi: EmulatorServer, generated_ids: bool) -> None:
    one = _same(single, multi, mixed_body(1500, generated_ids=generated_ids))
    assert one["status"] == "completed"
    r = one["records"]
    assert r["invalid"] > 100 and r["failed"] > 50 and r["succeeded"] > 700  # every kind is there
    assert generated_ids or b'"R1|x"|1|1|' in one["results"] or b'|x"|1|1|' in one["results"]
    # the pool was used: its two processes are children of this one
    assert len(multiprocessing.active_children()) >= 2


def test_generated_ids_follow_records_across_ranges(single: EmulatorServer, multi: EmulatorServer) -> None:
    body = b"q\n" + b"".join(
        (b"\n" if i % 7 == 0 else b"") + f"Main Street {i}, Berlin\n".encode() for i in range(1, 2001)
    )
    one = _same(single, multi, body, outputColumns="addressHouseNumber")
    rows = one["results"].decode().splitlines()[1:]
    assert [row.split("|")[0] for row in rows] == [str(i) for i in range(1, 2001)]
    assert [row.split("|")[-1] for row in rows] == [str(i) for i in range(1, 2001)]


def test_query_form_and_jsonl(single: EmulatorServer, multi: EmulatorServer) -> None:
    rng = random.Random(2)
    lines = []
    for i in range(1200):
        q, in_value = _address(rng, i)
        rec = f"recId=Q{i}&" if i % 3 else ""
        lines.append(f"{rec}q={q.replace(' ', '+')}&in={in_value}" + ("&limit=2" if i % 5 == 0 else ""))
    _same(single, multi, ("\n".join(lines) + "\n").encode())
    body = mixed_body(1200, generated_ids=True, seed=3)
    _same(single, multi, body, outputType="jsonl", outputFilter="address.label,position")


def test_fail_marker_in_the_middle(single: EmulatorServer, multi: EmulatorServer) -> None:
    body = mixed_body(1500, generated_ids=False, seed=4).splitlines(keepends=True)
    body.insert(900, b"R-fail|__EMULATOR_FAIL_JOB__|DEU|\n")
    one = _same(single, multi, b"".join(body))
    assert one["status"] == "failure"
    assert b"Record R-fail asked the emulator to fail the job" in one["errors"]


def _big_body(n: int = 60_000) -> bytes:
    return b"recId|q|in\n" + "".join(
        f"R{i}|{STREETS[i % 4]} {i + 1}, {CITIES[i % 4][0]} {CITIES[i % 4][1]}|{CITIES[i % 4][2]}\n"
        for i in range(n)
    ).encode("utf-8")


def test_stop_in_the_middle_and_resume(single: EmulatorServer, multi: EmulatorServer) -> None:
    body = _big_body()
    reference = _outcome(single, body)
    multi.admin.settings(chunk_records=400)  # about 40 steps of 2 ranges
    try:
        client = Client(multi)
        job_id = client.create(body).json()["id"]
        client.wait(job_id, "inProgress", predicate=lambda b: b["records"]["processed"] > 0)
        assert client.put(job_id, "stop").status_code == 200
        stopped = client.wait(job_id, "stopped")
        processed = stopped["records"]["processed"]
        assert 0 < processed < 60_000
        partial = client.download(job_id).content
        assert (
            partial.splitlines(keepends=True)
            == reference["results"].splitlines(keepends=True)[: processed + 1]
        )
        assert client.put(job_id, "start").status_code == 200
        done = client.wait(job_id, "completed", timeout=60)
        assert done["records"] == reference["records"]
        assert client.download(job_id).content == reference["results"]
    finally:
        multi.admin.settings(chunk_records=30)


def test_delete_in_the_middle(single: EmulatorServer, multi: EmulatorServer) -> None:
    multi.admin.settings(chunk_records=400)
    try:
        client = Client(multi)
        job_id = client.create(_big_body()).json()["id"]
        client.wait(job_id, "inProgress", predicate=lambda b: b["records"]["processed"] > 0)
        assert client.delete(job_id).json()["status"] == "deleted"
        assert client.job(job_id)["status"] == "deleted"
        assert client.download(job_id).status_code == 404
    finally:
        multi.admin.settings(chunk_records=30)
    _same(single, multi, mixed_body(300, generated_ids=True, seed=5))  # the workers carry on


def test_cli_workers_survive_a_restart_in_the_middle(single: EmulatorServer, tmp_path: Path) -> None:
    """``--workers 2`` from the console entry point (spawned workers must not re-run its ``__main__``),
    stopped by SIGTERM in the middle of a job and restarted on the same ``--data-dir``."""
    body = _big_body()
    reference = _outcome(single, body)
    data = tmp_path / "data"
    args = ("--data-dir", str(data), "--queue-delay", "0", "--records-per-second", "inf")
    args += ("--workers", "2", "--parallel-min-records", "1")
    log = tmp_path / "emulator.log"
    with cli(*args, log=log) as base:
        client = Client(SimpleNamespace(base_url=base))  # type: ignore[arg-type]
        settings = base.replace("/v7", "/_emulator/settings")
        client.session.post(settings, json={"chunk_records": 400}, timeout=10)
        job_id = client.create(body).json()["id"]
        client.wait(job_id, "inProgress", predicate=lambda b: b["records"]["processed"] > 0)
    saved = json.loads((data / "jobs" / job_id / "job.json").read_text())
    assert saved["status"] == "inProgress" and 0 < saved["records"]["processed"] < 60_000
    with cli(*args, log=log) as base:
        client = Client(SimpleNamespace(base_url=base))  # type: ignore[arg-type]
        done = client.wait(job_id, "completed", timeout=60)
        assert done["records"] == reference["records"]
        assert client.download(job_id).content == reference["results"]
    assert "Traceback" not in log.read_text()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended (only its parent has not collected it yet)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds child processes in /proc")
def test_workers_end_with_a_killed_emulator(tmp_path: Path) -> None:
    """A worker whose emulator was killed (no graceful shutdown) must not linger."""
    args = ["--port", "0", "--queue-delay", "0", "--records-per-second", "inf", "--quiet"]
    args += ["--workers", "2", "--parallel-min-records", "1", "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_here_batch.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        client = Client(SimpleNamespace(base_url=proc.stdout.readline().decode().strip()))  # type: ignore[arg-type]
        client.run(mixed_body(300, generated_ids=False, seed=6))
        workers = _children(proc.pid)
        assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
    finally:
        proc.kill()
        proc.wait(15)
        proc.stdout.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them behind when the test fails
        os.kill(pid, 9)
    assert not left
