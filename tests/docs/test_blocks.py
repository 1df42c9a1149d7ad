"""Every Python block of README.md and docs/*.md is a complete program, and the recipes run.

- every block parses (a failure names the page and its line);
- every block but a marked fragment (``# fragment: <reason>`` as its first line, see
  :mod:`tests.docs.blocks`) uses no name it does not define or import (ruff's F821);
- every block that defines a DAG is a DAG file: ``DagBag`` imports it without an import error and finds
  the DAGs it names; no two blocks use one dag id (a reader copying two of them into one folder);
- the first DAG of docs/getting-started.md runs through ``dag.test()`` against the emulator, and the
  table recipe of docs/sql.md runs twice on SQLite and PostgreSQL (the second run sends only the row
  that changed). Both are defined, from the pages' text, by ``tests/airflow/dags/docs_examples.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.support import RunDag
from tests.docs.blocks import Block, python_blocks
from tests.tables.databases import Database, any_db, postgres_db, sqlite_db  # noqa: F401 - fixtures

BLOCKS = python_blocks()
DAG_BLOCKS = [b for b in BLOCKS if b.defines_dag and not b.is_fragment]
#: Blocks kept as fragments; each must say why on its first line. Keep this list short.
MAX_FRAGMENTS = 2


def test_the_pages_have_python_blocks() -> None:
    """The parametrised tests below cannot pass by finding nothing."""
    pages = {b.path for b in BLOCKS}
    assert {"README.md", "docs/getting-started.md", "docs/sql.md", "docs/operators.md"} <= pages, pages
    assert len(DAG_BLOCKS) >= 6, [b.where for b in DAG_BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_every_block_parses(block: Block) -> None:
    try:
        block.compile()
    except SyntaxError as exc:
        pytest.fail(f"{block.path}:{exc.lineno}: the ```python block starting at line {block.line} does not "
                    f"parse: {exc.msg}\n{exc.text or ''}")


def test_fragments_are_few_and_say_why() -> None:
    fragments = [b for b in BLOCKS if b.is_fragment]
    assert len(fragments) <= MAX_FRAGMENTS, (
        f"{[b.where for b in fragments]}: make them complete programs (imports, a DAG) instead"
    )
    for block in fragments:
        reason = block.code.lstrip().splitlines()[0].split(":", 1)[1].strip()
        assert len(reason) >= 10, f"{block.where}: say why it is a fragment after '# fragment:'"


def _ruff() -> str:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert found, "ruff is needed (it comes with the test extra)"
    return found


def test_no_block_uses_a_name_it_does_not_define(tmp_path: Path) -> None:
    """Imports included, ``dag`` defined, no ``...`` standing for code: ruff's undefined-name rule."""
    files: dict[str, Block] = {}
    for n, block in enumerate(b for b in BLOCKS if not b.is_fragment):
        name = f"block_{n:03d}.py"
        (tmp_path / name).write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")
        files[name] = block
    proc = subprocess.run(
        [_ruff(), "check", "--isolated", "--select", "F821,F822,F823", "--output-format", "json", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    problems = [
        f"{files[Path(d['filename']).name].path}:{d['location']['row']}: {d['message']}"
        for d in json.loads(proc.stdout or "[]")
    ]
    assert not problems, "Python blocks of the docs that would not run as written:\n" + "\n".join(problems)


def test_no_two_blocks_share_a_dag_id() -> None:
    """Unless they are the same example shown twice (the README and the docs home page)."""
    codes: dict[str, set[str]] = {}
    for block in DAG_BLOCKS:
        for dag_id in block.dag_ids:
            codes.setdefault(dag_id, set()).add(block.code.strip())
    twice = {i: [b.where for b in DAG_BLOCKS if i in b.dag_ids] for i, c in codes.items() if len(c) > 1}
    assert not twice, f"one dag id for different DAGs (copied into one folder they clash): {twice}"


@pytest.mark.parametrize("block", DAG_BLOCKS, ids=[b.where for b in DAG_BLOCKS])
def test_every_dag_block_is_a_dag_file(block: Block, tmp_path: Path, airflow_db: Path) -> None:
    """Saved as a DAG file, the block parses into its DAGs with no import error."""
    from tests.version_compat import DagBag

    stem = re.sub(r"\W", "_", block.where)
    path = tmp_path / f"{stem}.py"
    path.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")  # tracebacks: the page's lines
    bag = DagBag(dag_folder=str(path))  # load_examples is off (tests/conftest.py)
    assert not bag.import_errors, f"{block.where}: {bag.import_errors}"
    assert bag.dags, f"{block.where}: defines no DAG"
    assert set(block.dag_ids) <= set(bag.dags), (block.where, sorted(bag.dags))


# -- the recipes, for real -----------------------------------------------------------------------------


def test_getting_started_first_dag_runs(run_dag: RunDag, emu: Any) -> None:
    """docs/getting-started.md: geocode two inline addresses, deferred, then download the results."""
    result = run_dag("docs_examples.py", "geocode_addresses")
    assert result.task_states == {"submit": "success", "download": "success"}, result.describe()
    submitted = result.xcom("submit")
    assert submitted["status"] == "completed"
    downloaded = result.xcom("download")
    assert downloaded["rows"] == 2 and not downloaded["empty"], downloaded
    assert downloaded["path"] and Path(downloaded["path"].removeprefix("file://")).is_file(), downloaded


#: The recipe's source table, as docs/sql.md describes it.
CUSTOMERS = [
    (1, "Invalidenstraße", "116", "10115", "Berlin", "DEU", True),
    (2, "Marienplatz", "8", "80331", "München", "DEU", True),
    (3, "Domkloster", "4", "50667", "Köln", "DEU", True),
    (4, "Römerberg", "27", "60311", "Frankfurt am Main", "DEU", True),
    (5, "Alter Markt", "1", "24103", "Kiel", "DEU", False),  # not active: never sent
]


def _seed_customers(db: Database) -> None:
    db.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, street TEXT, house_number TEXT, "
        "postal_code TEXT, city TEXT, country TEXT, active BOOLEAN)"
    )
    ph = ", ".join([db.ph] * 7)
    conn = db.connect()
    try:
        conn.cursor().executemany(f"INSERT INTO customers VALUES ({ph})", CUSTOMERS)
        conn.commit()
    finally:
        conn.close()


def test_sql_table_recipe_runs_twice(
    run_dag: RunDag, emu: Any, any_db: Database, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """docs/sql.md: every active row geocoded into customers_geocoded; then only the changed row sent."""
    # The recipe's connection id, "customers_db", pointed at this test's database.
    monkeypatch.setenv("AIRFLOW_CONN_CUSTOMERS_DB", os.environ[f"AIRFLOW_CONN_{any_db.conn_id.upper()}"])
    _seed_customers(any_db)

    first = run_dag("docs_examples.py", "geocode_customers")
    summary = first.xcom("write_results")
    counts = (summary["records_total"], summary["records_sent"], summary["records_written"])
    assert counts == (4, 4, 4), summary
    rows = any_db.query("SELECT rec_id, status, lat, lng FROM customers_geocoded ORDER BY rec_id")
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert all(r[1] == "ok" and r[2] is not None and r[3] is not None for r in rows), rows

    any_db.execute(f"UPDATE customers SET street = {any_db.ph}, house_number = {any_db.ph} WHERE id = 2",
                   ("Odeonsplatz", "1"))
    second = run_dag("docs_examples.py", "geocode_customers")
    summary = second.xcom("write_results")
    counts = (summary["records_total"], summary["records_sent"], summary["records_reused"])
    assert counts == (4, 1, 3), summary
    assert second.task_states["geocode.merge"] == "success", second.describe()
