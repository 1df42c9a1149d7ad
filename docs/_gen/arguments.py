"""Argument tables of the operators, sensor, trigger and task-group factories, drawn from the code.

A docs page asks for a table with a marker line of its own::

    <!-- arguments: operators.batch_job.SubmitBatchJobOperator -->

(the path of a class or function below ``airflow_here_batch``). When the site is built,
``docs/_gen/gen_pages.py`` replaces each marker with a table of every argument: name, type and default
from the signature (the ``__init__`` of the class and of its bases inside the package, as they are
forwarded through ``**kwargs``), meaning from the ``:param name:`` lines of the docstrings. So the
table cannot drift from the code: an argument added to an ``__init__`` appears by itself, and one
without a ``:param:`` line fails the build, naming it. Nothing is imported: griffe reads the source
(no Airflow needed, no side effect of importing it).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import griffe

PACKAGE = "airflow_here_batch"
MARKER = re.compile(r"^<!-- arguments: ([\w.]+) -->$", re.MULTILINE)
_BASE_ARGUMENTS = "`task_id`, `retries`, `execution_timeout`, `pool`, ..."
_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`~?([^`]+)`")


@dataclass(frozen=True)
class Argument:
    """One row of a table."""

    name: str
    type: str  # the annotation as written, "" when none
    default: str | None  # source text of the default (module constants resolved); None = required
    meaning: str  # Markdown, one line
    inherited: str = ""  # documented here but taken by an Airflow base class (BaseSensorOperator ...)


class UndocumentedArgument(Exception):
    """An argument of a documented class has no ``:param:`` line in any docstring that could hold it."""


def load(root: Path) -> griffe.Module:
    """The package, read statically (nothing imported)."""
    return griffe.load(PACKAGE, search_paths=[str(root)], resolve_aliases=True)  # type: ignore[return-value]


def _short_role(match: re.Match[str]) -> str:
    target = re.sub(r"\s+", "", match[1])  # a path the docstring wrapped over two lines
    return f"`{target.rsplit('.', 1)[-1]}`"


def markdown_cell(text: str) -> str:
    """Docstring prose (reST) -> one Markdown table cell."""
    text = _ROLE.sub(_short_role, text).replace("``", "`")
    text = " ".join(line.strip() for line in text.splitlines()).strip()
    # a "|" outside code would end the cell; inside code Python-Markdown keeps it (and would show "\|")
    return "".join(part if i % 2 else part.replace("|", "\\|") for i, part in enumerate(text.split("`")))


_PARAM = re.compile(r"^(\s*):param\s+(?:[^:]*\s)?(\w+):\s*(.*)$")


def _documented(obj: griffe.Object) -> dict[str, str]:
    """``{param: description}`` from the ``:param name:`` lines of an object's docstring.

    A description is its line and the lines indented deeper below it (Sphinx's rule), so a paragraph
    after the last ``:param:`` is not taken for part of it.
    """
    if obj.docstring is None:
        return {}
    lines = obj.docstring.value.splitlines()
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = _PARAM.match(line)
        if not match:
            continue
        indent, text = len(match[1]), [match[3]]
        for more in lines[i + 1 :]:
            if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                break
            text.append(more.strip())
        found.setdefault(match[2], "\n".join(text))
    return found


def _in_package(obj: griffe.Object) -> bool:
    return obj.path.startswith(PACKAGE + ".")


def _mro(cls: griffe.Class) -> list[griffe.Class]:
    """The class and its bases inside the package (Airflow's BaseOperator and the like stop the walk)."""
    try:
        bases = cls.mro()
    except (griffe.AliasResolutionError, ValueError):  # pragma: no cover - an unresolvable base
        bases = []
    return [cls, *(b for b in bases if _in_package(b))]


def _all_classes(module: griffe.Module) -> list[griffe.Class]:
    found: list[griffe.Class] = []
    for member in module.members.values():
        if member.is_alias:
            continue
        if member.is_module:
            found += _all_classes(member)  # type: ignore[arg-type]
        elif member.is_class:
            found.append(member)  # type: ignore[arg-type]
    return found


def _default_text(package: griffe.Module, default: Any) -> str | None:
    """The default as source text; a module constant (``DEFAULT_CONN_ID``) shown by its value."""
    if default is None:
        return None
    if isinstance(default, griffe.ExprName):
        try:
            path = default.canonical_path
            if path.startswith(PACKAGE + "."):
                target = package[path[len(PACKAGE) + 1 :]]
                if target.is_attribute and target.value is not None:
                    return _python(str(target.value))
        except (KeyError, griffe.AliasResolutionError):
            pass
    return _python(str(default))


def _python(text: str) -> str:
    """A string literal in double quotes, as the docs write Python (griffe renders ``'x'``)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else text


def _parameters(function: griffe.Function) -> list[griffe.Parameter]:
    return [
        p
        for p in function.parameters
        if p.name not in ("self", "cls")
        and p.kind not in (griffe.ParameterKind.var_positional, griffe.ParameterKind.var_keyword)
    ]


def arguments(package: griffe.Module, path: str) -> list[Argument]:
    """Every argument of the class (its ``__init__`` and its bases' inside the package) or function.

    :raises UndocumentedArgument: an argument no docstring describes (the build fails, naming it).
    :raises KeyError: ``path`` names nothing in the package.
    """
    obj = package[path]
    rows: list[Argument] = []
    seen: set[str] = set()
    if obj.is_function:
        owners: list[tuple[griffe.Object, griffe.Function]] = [(obj, obj)]  # type: ignore[list-item]
        docs_of = [obj]
    else:
        chain = _mro(obj)  # type: ignore[arg-type]
        owners = [(c, c.members["__init__"]) for c in chain if "__init__" in c.members]  # type: ignore[misc]
        docs_of = list(chain)
    classes = [] if obj.is_function else _all_classes(package)
    for owner, init in owners:
        # Where an argument may be described: this object, its bases, then any class of the package
        # built on the one that takes the argument (a base documents nothing, its subclass does).
        heirs = sorted(
            (c for c in classes if c is not obj and owner in _mro(c)[1:]), key=lambda c: c.path
        )
        for param in _parameters(init):
            if param.name in seen:
                continue
            seen.add(param.name)
            meaning = next(
                (d[param.name] for d in map(_documented, [*docs_of, *heirs]) if param.name in d), None
            )
            if meaning is None:
                raise UndocumentedArgument(
                    f"{PACKAGE}.{path}: argument {param.name!r} has no ':param {param.name}:' line in the "
                    f"docstring of {obj.name}: document it (the argument tables of the docs are drawn "
                    "from the docstrings)"
                )
            rows.append(
                Argument(
                    name=param.name,
                    type=str(param.annotation) if param.annotation is not None else "",
                    default=_default_text(package, param.default),
                    meaning=markdown_cell(meaning),
                )
            )
    # Documented keywords a base class outside the package takes (the sensor's mode, timeout, ...).
    if not obj.is_function:
        base = next((str(b) for b in obj.bases), "")  # type: ignore[attr-defined]
        variadic = {p.name for _, init in owners for p in init.parameters if p not in _parameters(init)}
        for name, meaning in _documented(obj).items():
            if name not in seen and name not in variadic:
                seen.add(name)
                rows.append(Argument(name, "", None, markdown_cell(meaning), inherited=base))
    return rows


def _code(text: str) -> str:
    return f"`{text}`" if text else ""  # Python-Markdown's tables split no cell inside a code span


def table(package: griffe.Module, path: str) -> str:
    """The Markdown table of :func:`arguments`."""
    lines = ["| argument | type | default | meaning |", "|---|---|---|---|"]
    for arg in arguments(package, path):
        if arg.inherited:
            default = f"{arg.inherited}'s"
        elif arg.default is None:
            default = "**required**"
        else:
            default = _code(arg.default)
        lines.append(f"| `{arg.name}` | {_code(arg.type)} | {default} | {arg.meaning} |")
    obj = package[path]
    if obj.is_class and "Trigger" not in obj.name:
        lines += ["", f"Plus the arguments of every Airflow task ({_BASE_ARGUMENTS})."]
    return "\n".join(lines)


def expand(package: griffe.Module, text: str) -> str:
    """``text`` with every marker line replaced by its table."""
    return MARKER.sub(lambda m: table(package, m[1]), text)


def markers(text: str) -> list[str]:
    """The paths a page asks tables for."""
    return MARKER.findall(text)
