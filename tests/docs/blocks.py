"""The Python blocks of README.md and docs/*.md, as a reader copies them.

Every ```` ```python ```` block is a complete module: imports included, nothing left as ``...``. A block
that defines a DAG (``DAG(...)``, ``@dag``) is a complete DAG file. The one convention for a block that
must stay a fragment (a shape, not a program): its first line is a comment starting with
``# fragment:`` followed by the reason, visible to the reader. A fragment must still parse; its names
are not checked and it is never run. Anything else in a Markdown page (``` ```bash ```, ```` ```text ````)
is not Python.

No Airflow import here: ``tests/airflow/dags/docs_examples.py`` loads this file by path.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = "# fragment:"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One ```` ```python ```` block: where it is, its code (dedented), what it defines."""

    path: str  # relative to the repository, e.g. "docs/sql.md"
    line: int  # line of the block's first code line in that file (1-based)
    code: str
    dag_ids: tuple[str, ...] = field(default=())

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def is_fragment(self) -> bool:
        return self.code.lstrip().startswith(FRAGMENT)

    @property
    def defines_dag(self) -> bool:
        return bool(self.dag_ids) or _uses_dag(self.code)

    def compile(self) -> object:
        """The code object; its file name is ``<page>:<line>`` so a traceback points into the page."""
        # blank lines in front keep the page's line numbers in tracebacks
        return compile("\n" * (self.line - 1) + self.code, self.path, "exec")


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every page of docs/ (not docs/_gen/)."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [f for f in files if f.is_file()]


def _dedent(code: str, indent: str) -> str:
    return "".join(line[len(indent) :] if line.startswith(indent) else line for line in code.splitlines(True))


def _literal_dag_id(call: ast.Call) -> str | None:
    for kw in call.keywords:
        if kw.arg == "dag_id" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _is_dag_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "DAG") or (
        isinstance(func, ast.Attribute) and func.attr == "DAG"
    )


def _uses_dag(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "DAG(" in code or "@dag" in code
    for node in ast.walk(tree):
        if _is_dag_call(node):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if (isinstance(target, ast.Name) and target.id == "dag") or (
                    isinstance(target, ast.Attribute) and target.attr == "dag"
                ):
                    return True
    return False


def _dag_ids(code: str) -> tuple[str, ...]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ()
    return tuple(i for node in ast.walk(tree) if _is_dag_call(node) and (i := _literal_dag_id(node)))


def python_blocks(root: Path = ROOT) -> list[Block]:
    """Every ```` ```python ```` block of README.md and docs/*.md, in page order."""
    blocks: list[Block] = []
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            code = _dedent(match["code"], match["indent"])
            line = text.count("\n", 0, match.start("code")) + 1
            rel = path.relative_to(root).as_posix()
            blocks.append(Block(rel, line, code, _dag_ids(code)))
    return blocks


def block_defining(dag_id: str, page: str, root: Path = ROOT) -> Block:
    """The block of ``page`` that defines ``dag_id`` (``LookupError`` naming both when there is none)."""
    for block in python_blocks(root):
        if block.path == page and dag_id in block.dag_ids:
            return block
    raise LookupError(f"no ```python block of {page} defines the DAG {dag_id!r} any more")
