"""The documentation site builds with ``mkdocs build --strict`` and has a page for every public class.

"Public" is decided here independently of the site's generator (docs/_gen/gen_pages.py): every module
of the installed package is imported and its ``__all__`` read (a module without ``__all__``: its
top-level classes not starting with ``_``); each class found gets its page under the module that
defines it. So a class another engineer adds in a new module must appear without touching mkdocs.yml.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_here_batch
from tests.conftest import REPO_ROOT

#: Not API: the DAG files (they have their own pages) and ``python -m`` entries.
SKIP = ("airflow_here_batch.example_dags", "airflow_here_batch.emulator.__main__")


def public_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    modules = [airflow_here_batch.__name__] + [
        m.name for m in pkgutil.walk_packages(airflow_here_batch.__path__, prefix="airflow_here_batch.")
    ]
    for name in modules:
        if name.startswith(SKIP):
            continue
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            exported = [
                n
                for n, v in vars(module).items()
                if inspect.isclass(v) and v.__module__ == name and not n.startswith("_")
            ]
        for attr in exported:
            value = getattr(module, attr)
            if inspect.isclass(value) and value.__module__.startswith("airflow_here_batch."):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_every_public_class_has_a_page(site: Path) -> None:
    classes = public_classes()
    # The ones a user meets first are among them (the discovery works at all).
    for name in (
        "airflow_here_batch.hooks.here_batch.HereBatchHook",
        "airflow_here_batch.operators.batch_job.SubmitBatchJobOperator",
        "airflow_here_batch.sensors.batch_job.BatchJobSensor",
        "airflow_here_batch.triggers.batch_job.BatchJobTrigger",
        "airflow_here_batch.emulator.runner.EmulatorServer",
        "airflow_here_batch.api.notifications.Notification",
    ):
        assert name in classes, name
    missing = []
    for qualname, cls in classes.items():
        page = site / "reference" / Path(*cls.__module__.split(".")) / cls.__qualname__ / "index.html"
        if not page.is_file() or f"{cls.__module__}.{cls.__qualname__}" not in page.read_text("utf-8"):
            missing.append(qualname)
    assert not missing, f"public classes without an API page: {missing}"


def test_every_argument_of_the_submit_operator_is_documented(site: Path) -> None:
    from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator

    page = site / "reference/airflow_here_batch/operators/batch_job/SubmitBatchJobOperator/index.html"
    text = page.read_text("utf-8")
    params = [
        p
        for p in inspect.signature(SubmitBatchJobOperator.__init__).parameters
        if p not in ("self", "kwargs")
    ]
    assert [p for p in params if f"<code>{p}</code>" not in text] == []


def test_site_pages(site: Path) -> None:
    for page in (
        "getting-started",
        "connection",
        "operators",
        "notifications",
        "cleanup",
        "emulator",
        "troubleshooting",
        "benchmarks",
        "changelog",
    ):
        assert (site / page / "index.html").is_file(), page
    example_files = sorted((REPO_ROOT / "airflow_here_batch" / "example_dags").glob("here_batch_*.py"))
    assert example_files
    for path in example_files:
        html = (site / "examples" / path.stem / "index.html").read_text("utf-8")
        assert "dag_id" in html and path.stem in html  # the DAG file itself is shown
    changelog = (site / "changelog" / "index.html").read_text("utf-8")
    assert airflow_here_batch.__version__ in changelog
