"""The provider registers with Airflow: valid provider info, connection type, hook, CLI listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from airflow_here_batch import __version__
from airflow_here_batch.get_provider_info import get_provider_info


def test_provider_info_matches_airflows_schema() -> None:
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_listed_modules_and_classes_exist() -> None:
    import importlib

    info = get_provider_info()
    assert info["package-name"] == "airflow-here-batch" and info["versions"] == [__version__]
    for section in ("hooks", "operators", "sensors", "triggers"):
        for group in info[section]:
            for module in group["python-modules"]:
                importlib.import_module(module)
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == conn["connection-type"] == "here_batch"
        assert set(hook.get_ui_field_behaviour()) == {"hidden_fields", "relabeling", "placeholders"}


def test_entry_point_is_installed() -> None:
    (ep,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_here_batch")
    ]
    assert ep.load()() == get_provider_info()


def test_providers_manager_sees_connection_type_and_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-here-batch" in manager.providers
    hook_info = manager.hooks["here_batch"]
    assert hook_info is not None and hook_info.hook_class_name.endswith("HereBatchHook")
    widgets = manager.connection_form_widgets
    assert "extra__here_batch__access_key_secret" in widgets
    assert widgets["extra__here_batch__access_key_secret"].is_sensitive
    assert manager.field_behaviours["here_batch"]["relabeling"]["password"] == "API key"


def test_ui_connection_form_shows_every_field() -> None:
    """What the UI's API serves for the form, on every supported Airflow (3.2+: conn-fields; 3.0/3.1: the
    hook's get_connection_form_widgets / get_ui_field_behaviour, read with wtforms stood in).

    In a fresh process, as in the API server: a ProvidersManager that already built the widgets with
    the real wtforms in this process would hand those to the service instead.
    """
    from airflow_here_batch.get_provider_info import CONN_FIELDS

    code = (
        "import json\n"
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "print(json.dumps([m.model_dump(mode='json') for m in HookMetaService.hook_meta_data()"
        " if m.connection_type == 'here_batch']))\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    (meta,) = json.loads(out.stdout.strip().splitlines()[-1])
    extra = meta["extra_fields"] or {}
    assert set(extra) == set(CONN_FIELDS)
    assert {k: v["schema"].get("title") for k, v in extra.items()} == {
        k: v["label"] for k, v in CONN_FIELDS.items()
    }
    assert extra["access_key_secret"]["schema"].get("format") == "password"
    std = meta["standard_fields"]
    assert std["login"]["hidden"] and not std["host"]["hidden"] and not std["port"]["hidden"]
    assert (std["host"]["title"], std["url_schema"]["title"], std["password"]["title"]) == (
        "Host or base URL",
        "Path",
        "API key",
    )


@pytest.mark.parametrize("command", [["providers", "list"], ["providers", "hooks"]])
def test_cli_lists_the_provider(command: list[str], airflow_db: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *command, "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert ("airflow-here-batch" if command[1] == "list" else "here_batch") in out.stdout


def test_env_var_connection_reaches_the_server(here_conn: str) -> None:
    """AIRFLOW_CONN_HERE_BATCH_DEFAULT (set by the fixture to the emulator) is all a hook needs."""
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    ok, message = HereBatchHook().test_connection()
    assert ok, message
