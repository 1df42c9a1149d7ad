"""The installed distribution's metadata, as pip, Airflow's providers page and pytest see it."""

from __future__ import annotations

import re
from importlib.metadata import distribution, entry_points

import airflow_here_batch
from tests.conftest import REPO_ROOT

DOCS_URL = "https://airflow-here-batch.github.io/airflow-here-batch/"


def test_project_urls_and_classifiers() -> None:
    meta = distribution("airflow-here-batch").metadata
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert urls["Documentation"] == DOCS_URL
    assert urls["Changelog"] == DOCS_URL + "changelog/"
    assert {"Source", "Issues"} <= set(urls)
    classifiers = meta.get_all("Classifier") or []
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    minimum = re.fullmatch(r">=3\.(\d+)", meta["Requires-Python"])
    assert minimum, meta["Requires-Python"]
    versions = sorted(int(c.rsplit(".", 1)[1]) for c in classifiers if re.fullmatch(r".*Python :: 3\.\d+", c))
    assert versions and versions[0] == int(minimum[1]), versions
    assert meta["License-Expression"] == "Apache-2.0"


def test_licence_file_in_repo_and_distribution() -> None:
    text = (REPO_ROOT / "LICENSE").read_text("utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub
    files = [str(f) for f in distribution("airflow-here-batch").files or []]
    assert any(f.endswith("licenses/LICENSE") for f in files), files[:20]


def test_changelog_lists_this_version() -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text("utf-8")
    assert f"## [{airflow_here_batch.__version__}] - " in changelog
    assert "Keep a Changelog" in changelog


def test_no_global_pytest_plugin() -> None:
    assert not [e for e in entry_points(group="pytest11") if e.value.startswith("airflow_here_batch")]


def test_airflow_shows_the_documentation_url() -> None:
    from airflow.providers_manager import ProvidersManager

    info = ProvidersManager().providers["airflow-here-batch"]
    assert info.version == airflow_here_batch.__version__
    assert info.data["documentation-url"] == DOCS_URL
