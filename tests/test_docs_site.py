"""The documentation site builds with ``mkdocs build --strict`` and has a page for every public class.

"Public" is decided here independently of the site's generator (docs/_gen/gen_pages.py, which reads
modules with :mod:`ast`): griffe loads the package statically (nothing is imported, so modules that
need an optional extra count too), each module's ``__all__`` is read (a module without ``__all__``: its
top-level classes not starting with ``_``) and re-exports are followed to the defining module, where
the class must have its page. So a class another engineer adds in a new module must appear without
touching mkdocs.yml.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import airflow_here_batch
from tests.conftest import REPO_ROOT

#: Not API: the DAG files (they have their own pages) and ``python -m`` entries.
SKIP = ("airflow_here_batch.example_dags", "airflow_here_batch.emulator.__main__")


def _modules(module: Any) -> Iterator[Any]:
    yield module
    for sub in module.modules.values():
        yield from _modules(sub)


def public_classes() -> dict[str, tuple[str, str]]:
    """``{"pkg.mod.Class": ("pkg.mod", "Class")}`` for every class a module of the package exports."""
    import griffe

    package = griffe.load("airflow_here_batch", search_paths=[str(REPO_ROOT)], resolve_aliases=True)
    found: dict[str, tuple[str, str]] = {}
    for module in _modules(package):
        if module.path.startswith(SKIP):
            continue
        if module.exports is not None:
            names = [str(name) for name in module.exports]
        else:
            names = [n for n, m in module.members.items() if not m.is_alias and m.is_class]
        for name in names:
            member = module.members.get(name)
            if member is None or name.startswith("_"):
                continue
            try:
                target = member.final_target if member.is_alias else member
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue  # imported from outside the package
            if target.is_class and target.path.startswith("airflow_here_batch."):
                found[target.path] = (target.parent.path, target.name)
    return dict(sorted(found.items()))


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
    for path, (module, name) in classes.items():
        page = site / "reference" / Path(*module.split(".")) / name / "index.html"
        if not page.is_file() or path not in page.read_text("utf-8"):
            missing.append(path)
    assert not missing, f"public classes without an API page: {missing}"


def test_every_argument_of_the_submit_operator_is_documented(site: Path) -> None:
    from airflow_here_batch.operators.batch_job import SubmitBatchJobOperator
    from airflow_here_batch.operators.split import operator_arguments

    page = site / "reference/airflow_here_batch/operators/batch_job/SubmitBatchJobOperator/index.html"
    text = page.read_text("utf-8")
    params = list(operator_arguments(SubmitBatchJobOperator))  # its own and its base's
    assert len(params) > 20
    assert [p for p in params if f"<code>{p}</code>" not in text] == []


def test_site_pages(site: Path) -> None:
    for page in (
        "getting-started",
        "sql",
        "split",
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


def test_the_argument_tables_and_pictures_are_built(site: Path) -> None:
    """docs/operators.md's markers became tables (docs/_gen/arguments.py); the pictures are drawn."""
    operators = (site / "operators" / "index.html").read_text("utf-8")
    assert "<!-- arguments:" not in operators
    assert operators.count("<th>default</th>") >= 12  # one table per operator, sensor and trigger
    for argument in ("here_conn_id", "on_bad_record", "key_column", "max_records_per_job", "deadline_reason"):
        assert f"<code>{argument}</code>" in operators, argument
    for picture, page in (("pipeline.svg", "index.html"), ("architecture.svg", "architecture/index.html")):
        assert (site / picture).is_file() and picture in (site / page).read_text("utf-8"), picture
    svg = (site / "pipeline.svg").read_text("utf-8")
    for step in ("source table", "extract changed rows", "split into HERE jobs", "wait (triggerer)",
                 "download results", "upsert target table", "merged files"):
        assert step in svg, step


def test_the_table_job_is_near_the_top_of_the_sidebar(site: Path) -> None:
    html = (site / "index.html").read_text("utf-8")
    nav = html[html.index("md-nav--primary") :]
    titles = ("Getting started", "Geocoding a database table", "The connection")
    order = [nav.index(title) for title in titles]
    assert order == sorted(order), "the table job comes right after Getting started in the sidebar"
