"""The DAGs of the documentation, as written there: the first DAG of docs/getting-started.md and the
table recipe of docs/sql.md, run for real by tests/docs/test_blocks.py (``dag.test()`` only runs DAGs of a
configured bundle, so they are defined from this file of the test bundle).

Each block is executed from the page's text, so a traceback names the page and its line. When the docs
are not beside the tests (a copy of tests/ alone), this file defines no DAG.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from airflow.sdk import DAG

#: dag id -> the page whose ```python block defines it.
RUN: dict[str, str] = {
    "geocode_addresses": "docs/getting-started.md",
    "geocode_customers": "docs/sql.md",
}

_BLOCKS = Path(__file__).resolve().parents[2] / "docs" / "blocks.py"  # tests/docs/blocks.py

if _BLOCKS.is_file() and (_BLOCKS.parents[2] / "docs").is_dir():
    _spec = importlib.util.spec_from_file_location("_here_batch_doc_blocks", _BLOCKS)
    assert _spec is not None and _spec.loader is not None
    _blocks = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_blocks)
    for _dag_id, _page in RUN.items():
        _namespace: dict[str, object] = {"__name__": __name__}
        exec(_blocks.block_defining(_dag_id, _page).compile(), _namespace)
        for _value in _namespace.values():
            if isinstance(_value, DAG):
                globals()[f"doc_dag_{_value.dag_id}"] = _value
