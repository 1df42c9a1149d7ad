"""``airflow_here_batch.version_compat`` tells the truth about the installed Airflow.

Runs on every supported version (scripts/test_airflow_versions.sh): each flag is checked against the
feature itself, so a flag set for the wrong version fails here, not in a user's deployment.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import pytest


def test_flags_match_the_installed_airflow() -> None:
    from airflow import __version__
    from airflow.providers_manager import ProvidersManager
    from airflow.triggers.base import BaseTrigger
    from packaging.version import Version

    from airflow_here_batch import version_compat as vc

    version = Version(__version__)
    assert vc.get_base_airflow_version_tuple() == (version.major, version.minor, version.micro)
    assert (version >= Version("3.1")) == vc.AIRFLOW_V_3_1_PLUS
    assert (version >= Version("3.2")) == vc.AIRFLOW_V_3_2_PLUS
    assert (version >= Version("3.3")) == vc.AIRFLOW_V_3_3_PLUS
    # Each feature flag against the feature itself.
    assert ("on_kill" in vars(BaseTrigger)) == vc.TRIGGER_ON_KILL
    assert hasattr(ProvidersManager, "_load_ui_metadata") == vc.DECLARATIVE_CONN_FIELDS
    has_store = importlib.util.find_spec("airflow.sdk.bases.resumablejobmixin") is not None
    assert has_store == vc.HAS_TASK_STATE_STORE
    assert (vc.ResumableJobMixin is not None) == has_store


def test_exceptions_are_the_ones_the_task_runner_handles() -> None:
    """A sensor's fail/timeout must be the classes the installed task runner catches, or a "fail
    without retry" becomes an ordinary retried error. The runner imports them inside a function, from
    airflow.exceptions before 3.2 and from airflow.sdk.exceptions since."""
    import inspect
    import re

    from airflow.sdk.execution_time import task_runner

    from airflow_here_batch import version_compat as vc

    imports = re.findall(r"from ([\w.]+) import \(([^)]*)\)", inspect.getsource(task_runner))
    (module,) = {mod for mod, names in imports if "AirflowFailException" in names}
    for name in ("AirflowFailException", "AirflowSensorTimeout"):
        assert getattr(importlib.import_module(module), name) is getattr(vc, name), (module, name)


def test_base_hook_is_the_one_airflow_resolves_connections_with() -> None:
    from airflow_here_batch.hooks.here_batch import HereBatchHook
    from airflow_here_batch.version_compat import BaseHook

    assert issubclass(HereBatchHook, BaseHook)
    assert callable(HereBatchHook.get_connection)


@pytest.mark.parametrize(
    "module",
    sorted(
        m.name
        for m in pkgutil.walk_packages(
            [str(importlib.util.find_spec("airflow_here_batch").submodule_search_locations[0])],  # type: ignore[union-attr,index]
            "airflow_here_batch.",
        )
        if not m.name.endswith("__main__")
    ),
)
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)
