"""The DAGs of the documentation, as written there: the first DAG of docs/getting-started.md and the
table recipe of docs/sql.md, run for real by tests/docs/test_blocks.py (``dag.test()`` only runs DAGs of a
configured bundle, so they are defined from this file of the test bundle).

Each block is executed from the page's text, so a traceback names the page and its line. One change
only: the first poll of each wait is made 1 s (the blocks keep the defaults, 10 s and 30 s, right for
HERE; the test emulator ends a job within a second, so they would only add waiting). When the docs are
not beside the tests (a copy of tests/ alone), this file defines no DAG.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from airflow.sdk import DAG

#: dag id -> the page whose ```python block defines it.
RUN: dict[str, str] = {
    "geocode_addresses": "docs/getting-started.md",
    "geocode_customers": "docs/sql.md",
}

FAST_POLL = 1.0


def _poll_fast(dag: DAG) -> None:
    for task in dag.tasks:
        partial = getattr(task, "partial_kwargs", None)  # a mapped task (the split's parts)
        if isinstance(partial, dict):
            partial["poll_interval"] = FAST_POLL
        elif hasattr(task, "poll_interval"):
            task.poll_interval = FAST_POLL


_BLOCKS = Path(__file__).resolve().parents[2] / "docs" / "blocks.py"  # tests/docs/blocks.py

if _BLOCKS.is_file() and (_BLOCKS.parents[2] / "docs").is_dir():
    _blocks = sys.modules.get("_here_batch_doc_blocks")
    if _blocks is None:
        _spec = importlib.util.spec_from_file_location("_here_batch_doc_blocks", _BLOCKS)
        assert _spec is not None and _spec.loader is not None
        _blocks = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _blocks  # its dataclass needs its module registered
        _spec.loader.exec_module(_blocks)
    for _dag_id, _page in RUN.items():
        _namespace: dict[str, object] = {"__name__": __name__}
        exec(_blocks.block_defining(_dag_id, _page).compile(), _namespace)
        # `with DAG(...):` binds no name (Airflow registers such a DAG itself): find it through a task too
        _found = [v if isinstance(v, DAG) else getattr(v, "dag", None) for v in _namespace.values()]
        _dags = {id(d): d for d in _found if isinstance(d, DAG)}
        for _dag in _dags.values():
            _poll_fast(_dag)
            globals()[f"doc_dag_{_dag.dag_id}"] = _dag
