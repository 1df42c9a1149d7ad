"""Fixtures for tests that run real Airflow (``dag.test()``) against the real HERE Batch emulator.

Everything here imports airflow lazily, inside fixtures, so that collecting other test folders stays
fast. The environment (``AIRFLOW_HOME`` in a temp dir, DAG bundles, no examples) is set up by the
top-level ``tests/conftest.py`` before airflow is imported.

Fixtures
--------
``airflow_db`` (session)
    Creates the SQLite metadata DB once per session (the in-process equivalent of
    ``airflow db migrate``, about 4 s). Every fixture below depends on it.

``here_emulator_session`` (session)
    One ``EmulatorServer`` for the whole session, fast pacing (``records_per_second=2000``,
    ``queue_delay=0.2`` so a job really goes through ``accepted``/``running`` and the sensor/trigger has
    to wait), any API key accepted. ``emu.base_url`` is the ``http://127.0.0.1:PORT/v7`` base URL and
    ``emu.admin`` the emulator's control surface (fault injection, job inspection).

``here_conn`` (session)
    Sets ``AIRFLOW_CONN_HERE_BATCH_DEFAULT`` to the session emulator (host = full base URL, password =
    a throwaway API key ``TEST_API_KEY``) and returns the base URL. Tests that need a second connection
    can set another ``AIRFLOW_CONN_<ID>`` with ``monkeypatch.setenv``.

``run_dag`` (function)
    ``run_dag(dag_id_or_path, dag_id=None, *, logical_date=None, run_conf=None, expect="success")``
    loads a DAG file (a path, a file name in ``example_dags/`` or ``tests/airflow/dags/``, or a bare
    dag id found in either folder), runs it with ``dag.test()`` and returns a :class:`DagRunResult`
    with the run state, every task instance's state and try number, and every XCom. ``expect`` asserts
    the final run state (``None`` to skip the check); on failure the message includes each task's state
    and the tail of the failed tasks' logs.

Writing a DAG for a test
------------------------
Put the file in ``tests/airflow/dags/`` (``dag.test()`` only runs DAGs that live in a configured DAG
bundle: a DAG defined inside a test function fails with "dag is not serialized"). Keep the file free
of network and heavy work at top level; read settings from ``os.environ`` if a test must vary them.
Example::

    def test_my_operator(run_dag, here_conn):
        result = run_dag("my_operator_dag")             # tests/airflow/dags/my_operator_dag.py
        assert result.task_states == {"submit": "success", "wait": "success"}
        assert result.xcom("submit")["status"] == "completed"
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import EXAMPLE_DAGS_DIR, TEST_AIRFLOW_HOME, TEST_DAGS_DIR

if TYPE_CHECKING:
    from airflow_here_batch.emulator import EmulatorServer

TEST_API_KEY = "test-api-key-not-a-secret"
CONN_ENV = "AIRFLOW_CONN_HERE_BATCH_DEFAULT"
DAG_DIRS: tuple[Path, ...] = (EXAMPLE_DAGS_DIR, TEST_DAGS_DIR)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create this session's metadata DB (``$AIRFLOW_HOME/airflow.db``) once; returns AIRFLOW_HOME."""
    from airflow.utils import db

    db.initdb()
    return TEST_AIRFLOW_HOME


@pytest.fixture(scope="session")
def here_emulator_session() -> Iterator[EmulatorServer]:
    """One emulator for the session: real HTTP on a free loopback port, fast but not instant jobs."""
    from airflow_here_batch.emulator import EmulatorServer

    with EmulatorServer(records_per_second=2000.0, queue_delay=0.2) as emu:
        yield emu


@pytest.fixture(scope="session")
def here_conn(here_emulator_session: EmulatorServer) -> Iterator[str]:
    """``AIRFLOW_CONN_HERE_BATCH_DEFAULT`` -> the session emulator; yields its base URL."""
    import json

    base_url = here_emulator_session.base_url
    previous = os.environ.get(CONN_ENV)
    os.environ[CONN_ENV] = json.dumps({"conn_type": "here_batch", "host": base_url, "password": TEST_API_KEY})
    try:
        yield base_url
    finally:
        if previous is None:
            os.environ.pop(CONN_ENV, None)
        else:
            os.environ[CONN_ENV] = previous


@dataclass
class TaskResult:
    """One task instance after the run."""

    task_id: str
    map_index: int
    state: str | None
    try_number: int
    log_text: str = ""

    @property
    def key(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


@dataclass
class DagRunResult:
    """What a test needs from a ``dag.test()`` run; plain data, detached from any DB session."""

    dag_id: str
    run_id: str
    state: str | None
    logical_date: datetime | None
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    # (task_id, map_index, key) -> deserialised value
    xcoms: dict[tuple[str, int, str], Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def task_states(self) -> dict[str, str | None]:
        """``{task_id (or "task_id[i]" for mapped tasks): state}``."""
        return {key: ti.state for key, ti in self.tasks.items()}

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The XCom value pushed by ``task_id`` (``KeyError`` when there is none)."""
        return self.xcoms[(task_id, map_index, key)]

    def describe(self, log_tail: int = 40) -> str:
        """Run and task states, plus the log tail of every task that did not succeed."""
        lines = [f"dag {self.dag_id} run {self.run_id}: {self.state} in {self.duration_s:.1f} s"]
        for key, ti in sorted(self.tasks.items()):
            lines.append(f"  {key}: {ti.state} (try {ti.try_number})")
        failed = [key for key, ti in sorted(self.tasks.items()) if ti.state not in ("success", "skipped")]
        for key in failed:
            ti = self.tasks[key]
            if ti.log_text:
                tail = "\n".join(ti.log_text.splitlines()[-log_tail:])
                lines.append(f"--- log tail of {key} ---\n{tail}")
        if failed and not any(self.tasks[key].log_text for key in failed):
            # dag.test() without an executor logs to stdout, which pytest shows under "Captured stdout".
            lines.append("(task logs: see the captured stdout of this test)")
        return "\n".join(lines)


def resolve_dag_file(dag_id_or_path: str | Path) -> tuple[Path, str | None]:
    """Map a path, a file name or a bare dag id to ``(file, dag_id or None)``.

    A bare dag id is looked for as ``<dag_id>.py`` in ``example_dags/`` then ``tests/airflow/dags/``,
    then by grepping the files of both folders for the id in quotes.
    """
    candidate = Path(dag_id_or_path)
    if candidate.suffix == ".py":
        if candidate.is_absolute() and candidate.is_file():
            return candidate, None
        for folder in DAG_DIRS:
            if (folder / candidate).is_file():
                return folder / candidate, None
        raise FileNotFoundError(f"no DAG file {candidate} in {', '.join(str(d) for d in DAG_DIRS)}")
    dag_id = str(dag_id_or_path)
    for folder in DAG_DIRS:
        if (folder / f"{dag_id}.py").is_file():
            return folder / f"{dag_id}.py", dag_id
    for folder in DAG_DIRS:
        for path in sorted(folder.glob("*.py")):
            text = path.read_text(encoding="utf-8")
            if f'"{dag_id}"' in text or f"'{dag_id}'" in text:
                return path, dag_id
    raise LookupError(f"dag id {dag_id!r} not found in {', '.join(str(d) for d in DAG_DIRS)}")


def load_dag(path: Path, dag_id: str | None = None) -> Any:
    """Parse one DAG file with a ``DagBag`` (fails on import errors) and return the DAG."""
    from tests.version_compat import DagBag

    bag = DagBag(dag_folder=str(path))  # load_examples is off (tests/conftest.py)
    assert not bag.import_errors, f"import errors in {path}: {bag.import_errors}"
    if dag_id is None:
        assert len(bag.dags) == 1, f"{path} defines {sorted(bag.dags)}; pass dag_id"
        dag_id = next(iter(bag.dags))
    assert dag_id in bag.dags, f"{path} defines {sorted(bag.dags)}, not {dag_id!r}"
    return bag.dags[dag_id]


def _read_task_log(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    folder = TEST_AIRFLOW_HOME / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    if map_index >= 0:
        folder = folder / f"map_index={map_index}"
    for name in (f"attempt={try_number}.log", f"attempt={max(try_number, 1)}.log"):
        if (folder / name).is_file():
            return (folder / name).read_text(encoding="utf-8", errors="replace")
    return ""


def collect_result(dag_id: str, run_id: str, duration_s: float = 0.0) -> DagRunResult:
    """Read a finished run's states and XComs from the metadata DB into a :class:`DagRunResult`."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dr = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        result = DagRunResult(
            dag_id=dag_id,
            run_id=run_id,
            state=str(dr.state.value if hasattr(dr.state, "value") else dr.state),
            logical_date=dr.logical_date,
            duration_s=duration_s,
        )
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        for ti in tis:
            state = ti.state.value if hasattr(ti.state, "value") else ti.state
            task = TaskResult(ti.task_id, ti.map_index, state, ti.try_number)
            if state not in ("success", "skipped"):
                task.log_text = _read_task_log(dag_id, run_id, ti.task_id, ti.map_index, ti.try_number)
            result.tasks[task.key] = task
        rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id)).all()
        for row in rows:
            result.xcoms[(row.task_id, row.map_index, row.key)] = XComModel.deserialize_value(row)
    return result


RunDag = Callable[..., DagRunResult]


@pytest.fixture
def run_dag(airflow_db: Path) -> RunDag:
    """Run a DAG file with ``dag.test()``; see the module docstring."""

    def _run(
        dag_id_or_path: str | Path,
        dag_id: str | None = None,
        *,
        logical_date: datetime | None = None,
        run_conf: dict[str, Any] | None = None,
        expect: str | None = "success",
    ) -> DagRunResult:
        path, found_id = resolve_dag_file(dag_id_or_path)
        dag = load_dag(path, dag_id or found_id)
        if logical_date is None:
            from airflow.sdk import timezone

            logical_date = timezone.utcnow()
        start = time.monotonic()
        dr = dag.test(logical_date=logical_date, run_conf=run_conf)
        result = collect_result(dag.dag_id, dr.run_id, time.monotonic() - start)
        if expect is not None:
            assert result.state == expect, result.describe()
        return result

    return _run


#: Emulator pacing for operator tests: jobs really queue and progress, but finish in about a second.
FAST = {"records_per_second": 2000.0, "queue_delay": 0.2}


@pytest.fixture
def emu(here_emulator_session: EmulatorServer, here_conn: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The session emulator with no faults and fast pacing, before and after each test.

    ``HERE_TEST_EMULATOR_ROOT`` tells test DAG files where the emulator's admin API is.
    """
    admin = here_emulator_session.admin
    admin.clear_faults()
    admin.settings(**FAST)
    monkeypatch.setenv("HERE_TEST_EMULATOR_ROOT", here_emulator_session.root_url)
    yield here_emulator_session
    admin.clear_faults()
    admin.settings(**FAST)
