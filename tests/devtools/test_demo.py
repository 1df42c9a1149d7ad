"""devtools.demo without Airflow: its rules, its report helpers and its process bookkeeping. The demo
itself (``bash scripts/demo.sh``) runs end to end in ``.ci/run``."""

from __future__ import annotations

import datetime as dt
import json
import socket
import sqlite3
from pathlib import Path

import pytest

from devtools.demo import (
    CHANGED,
    Demo,
    DemoError,
    change_addresses,
    in_dag_order,
    latest_slot,
    main,
    matching_lines,
    readable,
    state_line,
    summary_lines,
    verdict_line,
)
from devtools.local_airflow import alive
from tests.devtools.test_local_airflow import orphan_sleeper

UTC = dt.timezone.utc


def test_latest_slot_is_the_last_0200_utc() -> None:
    assert latest_slot(dt.datetime(2026, 3, 5, 1, 59, tzinfo=UTC)) == dt.datetime(2026, 3, 4, 2, tzinfo=UTC)
    assert latest_slot(dt.datetime(2026, 3, 5, 2, 0, tzinfo=UTC)) == dt.datetime(2026, 3, 5, 2, tzinfo=UTC)
    assert latest_slot(dt.datetime(2026, 3, 1, 23, 0, tzinfo=UTC)) == dt.datetime(2026, 3, 1, 2, tzinfo=UTC)


def test_task_instances_in_flow_order_with_map_indexes() -> None:
    tis = [
        {"task_id": "geocode.merge", "map_index": -1, "state": None},
        {"task_id": "geocode.run", "map_index": 1, "state": "deferred"},
        {"task_id": "other", "map_index": -1, "state": "success"},
        {"task_id": "geocode.run", "map_index": 0, "state": "success"},
        {"task_id": "seed_addresses", "map_index": -1, "state": "success"},
    ]
    assert state_line(in_dag_order(tis)) == (
        "seed_addresses=success, geocode.run[0]=success, geocode.run[1]=deferred, geocode.merge=none, "
        "other=success"
    )


def test_log_lines_made_readable(tmp_path: Path) -> None:
    record = {"timestamp": "2026-03-05T02:00:07.123Z", "level": "info", "event": "Pausing task as DEFERRED."}
    assert readable(json.dumps({**record, "logger": "airflow.task"})) == (
        "02:00:07 info Pausing task as DEFERRED. [task]"
    )
    assert readable("  plain text  ") == "plain text"
    assert readable("[1, 2]") == "[1, 2]"
    log = tmp_path / "attempt=1.log"
    log.write_text("\n".join([json.dumps(record), "resumed", "nothing", "DEFERRED again"]))
    assert matching_lines(log, ("deferr",)) == ["02:00:07 info Pausing task as DEFERRED.", "DEFERRED again"]
    assert matching_lines(log, ("deferr", "resum"), limit=2) == [
        "02:00:07 info Pausing task as DEFERRED.",
        "resumed",
    ]
    assert matching_lines(tmp_path / "missing.log", ("x",)) == []


def test_change_addresses_updates_the_three_rows(tmp_path: Path) -> None:
    database = tmp_path / "here_batch.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE addresses (id TEXT PRIMARY KEY, address TEXT)")
        rows = [("A0002", "old 2"), ("A0003", "old 3"), ("A0004", "4")]
        conn.executemany("INSERT INTO addresses VALUES (?, ?)", rows)
    conn.close()
    lines = change_addresses(database)
    assert lines[0] == "changed address A0002: 'old 2' -> 'Jungfernstieg 7, 20354 Hamburg'"
    assert lines[2] == "changed address A0010: None -> 'Unter den Linden 77, 10117 Berlin'"
    conn = sqlite3.connect(database)
    rows = dict(conn.execute("SELECT id, address FROM addresses").fetchall())
    conn.close()
    assert rows == {"A0002": CHANGED["A0002"], "A0003": CHANGED["A0003"], "A0004": "4"}


def test_summary_lines_of_both_runs() -> None:
    first = {
        "records_sent": 322,
        "records_total": 322,
        "records_reused": 0,
        "records_failed": 4,
        "records_written": 322,
        "job_ids": ["J1"],
    }
    second = {
        **first,
        "records_sent": 3,
        "records_reused": 319,
        "records_failed": 0,
        "records_written": 3,
        "job_ids": ["J2"],
    }
    lines, ok = summary_lines({"first": first, "second": second})
    assert ok
    assert lines[1:] == [
        "  first  run: records_sent=322 of records_total=322 (reused 0, failed 4, written 322, jobs ['J1'])",
        "  second run: records_sent=3 of records_total=322 (reused 319, failed 0, written 3, jobs ['J2'])",
    ]
    lines, ok = summary_lines({"first": first, "second": {**second, "records_sent": 4}})
    assert not ok and lines[-1] == "  expected the second run to send exactly 3 records"
    lines, ok = summary_lines({"first": first, "second": None})
    assert not ok and "  second run: no summary" in lines


def test_summary_lines_give_the_counts_by_verdict() -> None:
    first = {
        "records_sent": 322,
        "records_total": 322,
        "records_reused": 0,
        "records_failed": 4,
        "records_written": 322,
        "job_ids": ["J1"],
        "records_accepted": 286,
        "records_review": 36,
        "verdicts": {"exact": 280, "interpolated": 12, "street": 10, "area": 13, "ambiguous": 3,
                     "no_match": 0, "failed": 4},
    }
    lines, _ = summary_lines({"first": first, "second": None})
    assert lines[2] == verdict_line(first) == (
        "             by verdict: exact=280 interpolated=12 street=10 area=13 ambiguous=3 failed=4; "
        "accepted 286, review table 36 rows"
    )


def test_api_key_found_in_airflow_logs_only(tmp_path: Path) -> None:
    demo = Demo(tmp_path, environ={})
    (demo.log_dir / "tasks").mkdir(parents=True)
    (demo.log_dir / "emulator.log").write_text(f"accepting {demo.api_key}")
    (demo.log_dir / "scheduler.log").write_text("nothing secret")
    assert demo.key_leaked() == []
    (demo.log_dir / "tasks" / "attempt=1.log").write_text(f"key={demo.api_key}")
    assert demo.key_leaked() == [demo.log_dir / "tasks" / "attempt=1.log"]


def test_a_busy_log_server_port_stops_the_demo_before_it_starts_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setenv("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(port))
        busy = f"port {port} \\(Airflow triggerer log server\\) is already in use"
        with pytest.raises(DemoError, match=busy):
            Demo(tmp_path).check_ports()
        assert main([], root=tmp_path) == 1
    err = capsys.readouterr().err
    assert f"demo: port {port} (Airflow triggerer log server) is already in use" in err
    assert not (tmp_path / ".demo").exists()


def test_a_kept_demo_is_refused_then_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = socket.socket()  # a busy log-server port: were the demo not refused, it would stop at once
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    monkeypatch.setenv("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", str(listener.getsockname()[1]))
    assert main(["--stop"], root=tmp_path) == 0
    assert capsys.readouterr().out == "demo: nothing running\n"
    pid = orphan_sleeper()  # as a --keep run leaves its processes: not children of this process
    pid_dir = tmp_path / ".demo" / "pids"
    pid_dir.mkdir(parents=True)
    (pid_dir / "emulator.pid").write_text(str(pid))
    (pid_dir / "scheduler.pid").write_text("999999999")  # long gone
    assert main([], root=tmp_path) == 1
    assert capsys.readouterr().err == (
        f"demo: a previous demo is still running (emulator={pid} ); "
        "stop it with: bash scripts/demo.sh --stop\n"
    )
    assert main(["--stop"], root=tmp_path) == 0
    assert capsys.readouterr().out == f"demo: stopping emulator={pid} \n"
    assert not alive(pid)
    assert list(pid_dir.iterdir()) == []
    listener.close()
