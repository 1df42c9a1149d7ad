"""The tests exercise the installed distribution, not whatever happens to sit on ``sys.path``.

The package lives at the top level of the repository (``airflow_here_batch/`` beside ``pyproject.toml``),
and pytest puts the repository root on ``sys.path`` (``tests`` is a package). If the project were installed
as a wheel, a stray checkout could then shadow it; this test fails in that case.
"""

from __future__ import annotations

import json
from importlib.metadata import distribution
from pathlib import Path
from urllib.parse import unquote, urlparse

import airflow_here_batch


def _installed_package_dir() -> Path:
    dist = distribution("airflow-here-batch")
    direct_url = dist.read_text("direct_url.json")
    if direct_url:
        info = json.loads(direct_url)
        if info.get("dir_info", {}).get("editable"):
            return Path(unquote(urlparse(info["url"]).path)) / "airflow_here_batch"
    return Path(str(dist.locate_file("airflow_here_batch")))


def test_imported_package_is_the_installed_distribution() -> None:
    imported = Path(airflow_here_batch.__file__).resolve().parent
    assert imported == _installed_package_dir().resolve(), (
        f"airflow_here_batch was imported from {imported}, not from the installed distribution; "
        "reinstall the project (bash scripts/test.sh does) or run the tests from a clean clone"
    )


def test_version_matches_distribution_metadata() -> None:
    assert airflow_here_batch.__version__ == distribution("airflow-here-batch").version
