"""devtools.local_airflow and devtools.airflow_api.wait_for: real processes, real sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.airflow_api import WaitTimeout, wait_for
from devtools.local_airflow import airflow_env, alive, free_port, port_free, spawn, stop_groups


def orphan_sleeper() -> int:
    """The pid of a ``sleep`` in its own process group that is not a child of this process (as a
    ``--keep`` demo's processes are to a later ``--stop``)."""
    code = (
        "import subprocess as s; "
        "print(s.Popen(['sleep', '60'], start_new_session=True, stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout)


def group_gone(pgid: int) -> bool:
    """Whether no live process is left in the group (zombies count as gone)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(stat.parent.name)
    return not members


def test_airflow_env_drops_the_callers_airflow_settings(tmp_path: Path) -> None:
    env = airflow_env(
        home=tmp_path,
        api_port=18001,
        worker_log_port=18002,
        trigger_log_port=18003,
        here_url="http://127.0.0.1:1/v7",
        here_key="k",
        dags_folder=tmp_path / "dags",
        bundles={"mine": tmp_path / "dags"},
        inherit={"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW_CONN_X": "x", "PATH": "/bin"},
        extra={"AIRFLOW__CORE__PARALLELISM": "2"},
    )
    assert env["PATH"] == "/bin" and "AIRFLOW_CONN_X" not in env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "2"  # extra wins
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path}/airflow.db"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18001"
    assert json.loads(env["AIRFLOW_CONN_HERE_BATCH_DEFAULT"]) == {
        "conn_type": "here_batch",
        "host": "http://127.0.0.1:1/v7",
        "password": "k",
    }
    (bundle,) = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert bundle["name"] == "mine" and bundle["kwargs"]["path"] == str(tmp_path / "dags")
    again = airflow_env(
        home=tmp_path,
        api_port=1,
        worker_log_port=2,
        trigger_log_port=3,
        here_url="u",
        here_key="k",
        dags_folder=tmp_path,
        inherit={},
    )
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] != env["AIRFLOW__API_AUTH__JWT_SECRET"]  # fresh secrets


def test_ports() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_free(port)
        found = free_port((port, port + 50))
        assert found != port and port < found <= port + 50
        with pytest.raises(RuntimeError, match="no free port"):
            free_port((port, port))
    assert port_free(port)


def test_stop_groups_terms_every_group_and_kills_the_one_ignoring_term(tmp_path: Path) -> None:
    polite = spawn(["sh", "-c", "sleep 60 & wait"], tmp_path / "polite.log", os.environ)
    stubborn = spawn(["sh", "-c", "trap '' TERM; sleep 60 & wait"], tmp_path / "stubborn.log", os.environ)
    orphan = orphan_sleeper()
    assert alive(polite) and alive(stubborn) and alive(orphan)
    killed = stop_groups({"polite": polite, "stubborn": stubborn, "orphan": orphan}, term_timeout=1)
    assert killed == ["stubborn"]
    assert not alive(polite) and not alive(stubborn) and not alive(orphan)
    for pgid in (polite.pid, stubborn.pid, orphan):  # the children (sleep) went with their group
        wait_for(lambda pgid=pgid: group_gone(pgid), f"group {pgid}", 10, interval=0.1)
    assert stop_groups({"polite": polite}) == []  # already stopped: nothing to do


def test_wait_for_retries_oserrors_and_times_out_with_the_description() -> None:
    calls = []

    def third_time() -> str | None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionRefusedError("not up yet")
        return "ready" if len(calls) == 3 else None

    assert wait_for(third_time, "the third call", 10, interval=0.01) == "ready"
    with pytest.raises(WaitTimeout, match="waiting for nothing\nthe logs"):
        wait_for(lambda: None, "nothing", 0, describe=lambda: "the logs")
    with pytest.raises(ZeroDivisionError):  # anything but an OSError stops the wait
        wait_for(lambda: 1 / 0, "a division", 10)
