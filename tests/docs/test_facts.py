"""Facts the docs state, checked against the code they describe (README.md and docs/*.md).

- every ``pip install`` keeps a constraints file, and no constraints URL hard-codes a Python version;
- the Airflow range is pyproject's;
- the connection labels are the form's, and the Test button's switch is Airflow's;
- every operator, the sensor and the trigger have an argument table, and each table (drawn from the
  code by docs/_gen/arguments.py) lists every argument the class takes; split_batch_job's hand-written
  table lists its signature with its defaults;
- every emulator option is in docs/emulator.md; the demo takes the same time on every page; no page
  says it is being rewritten.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
import sys
from datetime import timedelta
from importlib.metadata import requires
from types import ModuleType
from typing import Any

import pytest

from tests.docs.blocks import ROOT, doc_files

PAGES = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in doc_files()}
_FENCED = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)
_INLINE = re.compile(r"`([^`\n]+)`")


def _commands(text: str) -> list[str]:
    """Shell lines of the fenced blocks (continuations joined) and the inline code spans."""
    found: list[str] = []
    for block in _FENCED.findall(text):
        found += block.replace("\\\n", " ").splitlines()
    prose = _FENCED.sub("", text)
    found += _INLINE.findall(prose)
    return found


def test_every_pip_install_keeps_the_constraints() -> None:
    lines = [(page, c) for page, text in PAGES.items() for c in _commands(text) if "pip install" in c]
    assert len(lines) >= 4, lines  # the README's and getting-started's install lines at least
    bare = [f"{page}: {c.strip()}" for page, c in lines if not re.search(r"(--constraint|\s-c)\s", c)]
    assert not bare, "pip install without the constraints of the user's Airflow:\n" + "\n".join(bare)


def test_no_constraints_url_names_a_python_version() -> None:
    hard = [page for page, text in PAGES.items() if re.search(r"constraints-3\.\d+\.txt", text)]
    assert not hard, f"a constraints URL with a fixed Python version (use ${{PYTHON_VERSION}}): {hard}"


def test_the_airflow_range_is_pyprojects() -> None:
    from packaging.requirements import Requirement

    # the installed metadata = pyproject.toml (scripts/_venv.sh reinstalls on a change)
    (req,) = [r for r in map(Requirement, requires("airflow-here-batch") or []) if r.name == "apache-airflow"]
    lower_first = sorted(req.specifier, key=lambda s: not s.operator.startswith(">"))
    spec = "apache-airflow" + ",".join(str(s) for s in lower_first)
    ranges = re.compile(r"apache-airflow(?:>=|<=|~=|>|<)[^`\s)\"]*")  # not the ==X.Y.Z of install lines
    stated = {page: ranges.findall(text) for page, text in PAGES.items()}
    wrong = {page: specs for page, specs in stated.items() if any(s != spec for s in specs)}
    assert not wrong, f"pyproject says {spec}; the docs say {wrong}"
    assert spec in PAGES["README.md"] and spec in PAGES["docs/getting-started.md"]


def _form_labels() -> set[str]:
    """The labels of the connection form: relabelled standard fields, untouched ones, the extras."""
    from airflow_here_batch.get_provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR

    hidden = set(UI_FIELD_BEHAVIOUR["hidden-fields"])
    standard = {
        name: UI_FIELD_BEHAVIOUR["relabeling"].get(name, name.capitalize())
        for name in ("host", "schema", "login", "password", "port", "extra")
        if name not in hidden
    }
    return set(standard.values()) | {spec["label"] for spec in CONN_FIELDS.values()}


def _table_labels(text: str) -> set[str]:
    """The bold labels in the first column of a table's rows."""
    labels: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| **"):
            first = line.split(" | ")[0]
            labels |= set(re.findall(r"\*\*([^*]+)\*\*", first))
    return labels


@pytest.mark.parametrize("page", ["docs/connection.md", "README.md"])
def test_the_connection_labels_are_the_forms(page: str) -> None:
    text = PAGES[page]
    if page == "README.md":
        text = text[text.index("## The connection") :]
        text = text[: text.index("\n## ", 5)]
    assert _table_labels(text) == _form_labels()


def test_the_test_button_switch_is_airflows() -> None:
    from airflow.configuration import conf

    assert conf.get_default_value("core", "test_connection") == "Disabled"  # "disables it by default"
    page = PAGES["docs/connection.md"]
    assert "AIRFLOW__CORE__TEST_CONNECTION=Enabled" in page and "[core] test_connection" in page


def test_no_page_says_it_is_being_rewritten() -> None:
    assert not [page for page, text in PAGES.items() if "being rewritten" in text.lower()]


def test_the_demo_takes_the_same_time_everywhere() -> None:
    said = {
        page: m[1].strip()
        for page, text in PAGES.items()
        for m in [re.search(r"8793 and 8794[^.]*?about ([^;,.(]+)", text.replace("\n", " "))]
        if m
    }
    assert len(said) >= 3 and len(set(said.values())) == 1, said


def test_every_emulator_option_is_documented() -> None:
    from airflow_here_batch.emulator.cli import build_parser

    page = PAGES["docs/emulator.md"]
    flags = [f for a in build_parser()._actions for f in a.option_strings if f.startswith("--")]
    assert [f for f in flags if f != "--help" and f"`{f}" not in page] == []


# -- the argument tables -----------------------------------------------------------------------------

MARKER = re.compile(r"^<!-- arguments: ([\w.]+) -->$", re.M)


@functools.cache
def _generator() -> ModuleType:
    """docs/_gen/arguments.py, the build's own table maker (loaded by path: docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("_docs_arguments", ROOT / "docs" / "_gen" / "arguments.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclass needs its module registered
        spec.loader.exec_module(module)
    return module


@functools.cache
def _package() -> Any:
    """The package as griffe reads it (once: about a second)."""
    return _generator().load(ROOT)


def _classes_needing_a_table() -> list[str]:
    """Every exported operator, sensor and trigger class (not the abstract ``Base...`` ones)."""
    import importlib

    found: list[str] = []
    for module_name in (
        "operators.batch_job",
        "operators.sql",
        "operators.split",
        "sensors.batch_job",
        "triggers.batch_job",
    ):
        module = importlib.import_module(f"airflow_here_batch.{module_name}")
        for name in module.__all__:
            obj = getattr(module, name)
            bases = {c.__name__ for c in obj.mro()} if inspect.isclass(obj) else set()
            if (
                bases & {"BaseOperator", "BaseTrigger"}
                and obj.__module__ == module.__name__
                and not name.startswith("Base")
            ):
                found.append(f"{module_name}.{name}")
    return found


def test_every_operator_sensor_and_trigger_has_an_argument_table() -> None:
    tables = set(MARKER.findall(PAGES["docs/operators.md"]))
    needed = _classes_needing_a_table()
    assert "operators.batch_job.SubmitBatchJobOperator" in needed
    assert [c for c in needed if c not in tables] == []


def _runtime_arguments(path: str) -> set[str]:
    import importlib

    module_name, name = path.rsplit(".", 1)
    obj = getattr(importlib.import_module(f"airflow_here_batch.{module_name}"), name)
    found: set[str] = set()
    for klass in obj.mro():  # the class and its bases inside the package (Airflow's are not tabled)
        init = klass.__dict__.get("__init__")
        if init is None or not klass.__module__.startswith("airflow_here_batch."):
            continue
        found |= {
            n
            for n, p in inspect.signature(init).parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
    return found


@pytest.mark.parametrize("path", MARKER.findall(PAGES["docs/operators.md"]))
def test_each_table_lists_every_argument(path: str) -> None:
    generator = _generator()
    package = _package()
    rows = generator.arguments(package, path)
    own = {r.name for r in rows if not r.inherited}
    assert own == _runtime_arguments(path), path
    assert all(r.meaning for r in rows), [r.name for r in rows if not r.meaning]
    table = generator.table(package, path)
    assert all(f"| `{name}` |" in table for name in own)


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells, as Python-Markdown splits them (no border inside code or after \\)."""
    cells, current, in_code, escaped = [], "", False, False
    for char in row.strip():
        if char == "|" and not in_code and not escaped:
            cells.append(current.strip())
            current = ""
        else:
            current += char
        in_code ^= char == "`"
        escaped = char == "\\"
    return cells[1:]  # before the first border: nothing


def test_split_batch_job_table_is_its_signature() -> None:
    from airflow_here_batch.operators.split import split_batch_job

    text = PAGES["docs/split.md"]
    section = text[text.index("## Parameters") :]
    section = section[: section.index("\n## ", 5)]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = _cells(line)
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    params = {
        n: p.default
        for n, p in inspect.signature(split_batch_job).parameters.items()
        if p.kind is not p.VAR_KEYWORD
    }
    assert set(rows) == set(params)
    for name, default in params.items():
        shown = rows[name]
        if default is inspect.Parameter.empty:
            assert shown == "**required**", name
        else:
            value: Any = eval(shown.strip("`"), {"timedelta": timedelta})  # the table's literal
            assert value == default, f"split.md says {name}={shown}, the code {default!r}"
