"""A local Airflow 3 as separate processes (api-server, scheduler, dag-processor, triggerer): its
environment, starting and stopping. Used by the demo (``devtools.demo``), ``tests/airflow/real_airflow.py``
and the control plane of ``tests/distributed/cluster.py``.

Every process gets its whole configuration from the environment (nothing from the caller's ``AIRFLOW__*``
variables) and runs in its own process group (``start_new_session``), so that stopping it stops its
children (task runners, log servers) too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from devtools.airflow_api import WaitTimeout, wait_for

__all__ = [
    "AIRFLOW_PROCESSES",
    "airflow_command",
    "airflow_env",
    "alive",
    "free_port",
    "migrate",
    "port_free",
    "spawn",
    "start_airflow",
    "stop_groups",
]

AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")


def airflow_command(*args: str) -> list[str]:
    """``airflow <args>`` with this interpreter (the venv's Airflow)."""
    return [sys.executable, "-m", "airflow", *args]


def free_port(port_range: tuple[int, int] | None = None, after: int = 0) -> int:
    """A free loopback port: any, or the first free one in ``port_range`` (inclusive) above ``after``.

    :raises RuntimeError: when ``port_range`` has none.
    """
    if port_range is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    first, last = port_range
    for port in range(max(first, after + 1), last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound the way uvicorn (Airflow's log servers) binds it: all interfaces,
    ``SO_REUSEADDR``."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def airflow_env(
    *,
    home: Path,
    api_port: int,
    worker_log_port: int,
    trigger_log_port: int,
    here_url: str,
    here_key: str,
    dags_folder: Path,
    bundles: Mapping[str, Path] | None = None,
    executor: str = "LocalExecutor",
    parallelism: int = 4,
    paused_at_creation: bool = True,
    sql_alchemy_conn: str | None = None,
    base_url: str | None = None,
    inherit: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every process of one local Airflow.

    :param home: ``AIRFLOW_HOME``.
    :param api_port: the api-server's port on 127.0.0.1; ``AIRFLOW__API__BASE_URL`` is
        ``http://127.0.0.1:<api_port>`` unless ``base_url`` is given (task workers call it).
    :param worker_log_port: the scheduler's (LocalExecutor) log server port.
    :param trigger_log_port: the triggerer's log server port.
    :param here_url: the HERE base URL of connection ``here_batch_default`` (e.g. the emulator's).
    :param here_key: its API key.
    :param dags_folder: ``AIRFLOW__CORE__DAGS_FOLDER``.
    :param bundles: ``{bundle name: folder}`` as ``LocalDagBundle`` s (else the DAGs folder's bundle).
    :param sql_alchemy_conn: the metadata database (default: SQLite ``<home>/airflow.db``).
    :param inherit: the variables passed on (default ``os.environ``) less every ``AIRFLOW__*`` and
        ``AIRFLOW_CONN_*`` one.
    :param extra: more variables, set last (they win).
    :returns: the variables; the API, JWT and Fernet secrets are fresh random ones, shared by every
        process that gets this environment.
    """
    source = os.environ if inherit is None else inherit
    env = {k: v for k, v in source.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused_at_creation),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": base_url or f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
            "AIRFLOW_CONN_HERE_BATCH_DEFAULT": json.dumps(
                {"conn_type": "here_batch", "host": here_url, "password": here_key}
            ),
        }
    )
    if bundles:
        config = [
            {
                "name": name,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path), "refresh_interval": 0},
            }
            for name, path in bundles.items()
        ]
        env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(config)
    env.update(extra or {})
    return env


def migrate(env: Mapping[str, str], *, cwd: Path | None = None, timeout: float = 180) -> None:
    """``airflow db migrate``.

    :raises RuntimeError: when it fails (with the end of its output).
    """
    done = subprocess.run(
        airflow_command("db", "migrate"),
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"airflow db migrate failed ({done.returncode}):\n{output}")


def spawn(
    args: list[str], log: Path, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group, stdout and stderr appended to ``log``, no stdin."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def start_airflow(
    env: Mapping[str, str], log_dir: Path, names: tuple[str, ...] = AIRFLOW_PROCESSES
) -> dict[str, subprocess.Popen[bytes]]:
    """Start ``airflow <name>`` for each of ``names``, logging to ``<log_dir>/<name>.log``.

    :returns: ``{name: process}``; on an error the ones already started are stopped first.
    """
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in names:
            procs[name] = spawn(airflow_command(name), log_dir / f"{name}.log", env)
    except BaseException:
        stop_groups(procs)
        raise
    return procs


def alive(proc: subprocess.Popen[bytes] | int) -> bool:
    """Whether the process (a child, or any pid) still runs; an exited one nobody reaped (a zombie, e.g.
    a ``--keep`` demo's process under an init that does not reap) does not."""
    if isinstance(proc, subprocess.Popen):
        return proc.poll() is None
    try:
        os.kill(proc, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{proc}/stat").read_text().rpartition(")")[2].split()[:1]
    except OSError:  # no /proc (not Linux): kill() answered
        return True
    return state != ["Z"]


def _signal_group(proc: subprocess.Popen[bytes] | int, sig: int) -> None:
    pid = proc.pid if isinstance(proc, subprocess.Popen) else proc
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_groups(procs: Mapping[str, subprocess.Popen[bytes] | int], term_timeout: float = 15.0) -> list[str]:
    """Stop process groups: TERM to every group at once, then KILL to the ones whose leader still runs
    after ``term_timeout`` seconds.

    :param procs: ``{name: process or pid}``; each one leads its own process group.
    :returns: the names that had to be killed.
    """
    running = {name: proc for name, proc in procs.items() if alive(proc)}
    for proc in running.values():
        _signal_group(proc, signal.SIGTERM)
    try:
        wait_for(lambda: not any(alive(p) for p in running.values()), "TERM", term_timeout, interval=0.2)
        return []
    except WaitTimeout:
        pass
    killed = [name for name, proc in running.items() if alive(proc)]
    for name in killed:
        _signal_group(running[name], signal.SIGKILL)
    with contextlib.suppress(WaitTimeout):
        wait_for(lambda: not any(alive(running[n]) for n in killed), "KILL", 10, interval=0.2)
    return killed
