"""Top-level test configuration: a hermetic Airflow environment for the whole session.

This module runs before any test module is imported, so it sets every Airflow setting through
environment variables *before anything imports airflow* (Airflow reads its configuration once, at
import). It must not import airflow itself: most tests (API core, hooks with plain HTTP, emulator) do
not need it, and ``import airflow`` costs about 2 s.

What it sets (process-wide, for this pytest session only):

- ``AIRFLOW_HOME``: a fresh temporary directory per session (SQLite metadata DB ``airflow.db`` and task
  logs live there). Removed at exit unless ``HERE_BATCH_KEEP_TEST_HOME=1`` (then its path is printed,
  handy for reading task logs of a failed run).
- ``AIRFLOW__CORE__DAGS_FOLDER`` = ``example_dags/``, plus a DAG bundle list with two local bundles,
  ``here_example_dags`` (``example_dags/``) and ``here_test_dags`` (``tests/airflow/dags/``), so that
  ``dag.test()`` finds DAGs from either folder (it syncs the owning bundle to the DB before running).
- ``AIRFLOW__CORE__LOAD_EXAMPLES=False``, ``AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS=False``,
  ``AIRFLOW__CORE__UNIT_TEST_MODE=True`` (Airflow's own test configuration; among others it lets a test
  call ``operator.execute(context)`` directly), with ``[scheduler] create_cron_data_intervals`` and
  ``create_delta_data_intervals`` put back to Airflow 3's production default (False), and
  ``AIRFLOW__CORE__EXECUTOR=LocalExecutor`` (``dag.test()`` runs tasks in-process anyway).
- ``HERE_BATCH_OUTPUT_DIR``: a temporary folder, so the example DAGs never write into the checkout.
- ``HERE_BATCH_POLL_INTERVAL=1``: the example DAGs poll the (fast) emulator every second.
- Any ``AIRFLOW_CONN_*`` inherited from the caller's shell is removed; ``tests/airflow/support.py``
  sets ``AIRFLOW_CONN_HERE_BATCH_DEFAULT`` to the session emulator.

Public names for tests: ``REPO_ROOT``, ``EXAMPLE_DAGS_DIR``, ``TEST_DAGS_DIR``, ``TEST_AIRFLOW_HOME``,
``TEST_OUTPUT_DIR`` (import them with ``from tests.conftest import ...`` or ``from conftest import ...``;
the fixtures ``repo_root`` and ``airflow_home`` return the same paths).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# The ``here_emulator`` fixture: opted in exactly as a user of the provider does (no pytest11 entry point).
# The Airflow fixtures (run_dag, emu, here_conn ...) for every folder that runs DAGs (tests/airflow,
# tests/operators, tests/sensors, tests/utils); support.py imports no airflow at module level.
pytest_plugins = ["airflow_here_batch.emulator.pytest_plugin", "tests.airflow.support"]

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
# The imported package's (the checkout's, or an installed wheel's when the tests run from a copy, as in
# scripts/test_airflow_versions.sh). find_spec does not import the package.
EXAMPLE_DAGS_DIR: Path = Path(importlib.util.find_spec("airflow_here_batch").origin).parent / "example_dags"  # type: ignore[arg-type,union-attr]
TEST_DAGS_DIR: Path = REPO_ROOT / "tests" / "airflow" / "dags"

if "airflow" in sys.modules:  # pragma: no cover - a plugin imported airflow before us
    raise RuntimeError(
        "airflow was imported before tests/conftest.py could configure it; "
        "find the pytest plugin that imports airflow at module level"
    )

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="here-batch-tests-"))
TEST_AIRFLOW_HOME: Path = _SESSION_TMP / "airflow"
TEST_OUTPUT_DIR: Path = _SESSION_TMP / "output"
TEST_AIRFLOW_HOME.mkdir()
TEST_OUTPUT_DIR.mkdir()

for _name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__"))]:
    del os.environ[_name]

_BUNDLES = [
    {
        "name": "here_example_dags",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(EXAMPLE_DAGS_DIR), "refresh_interval": 0},
    },
    {
        "name": "here_test_dags",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(TEST_DAGS_DIR), "refresh_interval": 0},
    },
]

os.environ.update(
    {
        "AIRFLOW_HOME": str(TEST_AIRFLOW_HOME),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE_DAGS_DIR),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # unit_tests.cfg switches these to True; keep Airflow 3's defaults so cron schedules behave as
        # in production (CronTriggerTimetable).
        "AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS": "False",
        "AIRFLOW__SCHEDULER__CREATE_DELTA_DATA_INTERVALS": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{TEST_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(_BUNDLES),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(TEST_AIRFLOW_HOME / "logs"),
        "HERE_BATCH_OUTPUT_DIR": str(TEST_OUTPUT_DIR),
        "HERE_BATCH_POLL_INTERVAL": "1",
        "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore::DeprecationWarning"),
    }
)


def _cleanup() -> None:
    if os.environ.get("HERE_BATCH_KEEP_TEST_HOME"):
        print(f"\nkept the test AIRFLOW_HOME: {TEST_AIRFLOW_HOME}", file=sys.stderr)
        return
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


atexit.register(_cleanup)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """This session's temporary ``AIRFLOW_HOME`` (the metadata DB and task logs live here)."""
    return TEST_AIRFLOW_HOME
