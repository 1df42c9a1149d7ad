"""Griffe extension: the reST bits of this project's docstrings, made readable as Markdown.

The docstrings are Sphinx style (``:param x:``, which griffe parses), but their prose also uses reST
that Markdown would misread:

- doctest lines (``>>> expr`` and its output): fenced as a ``pycon`` block (Markdown would read
  ``[a]\\n[b]`` as a reference link, which --strict reports as a broken cross-reference);
- roles (``:class:`~pkg.mod.Name```, ``:func:`f```): a code span with the name;
- a paragraph ending with ``::`` before an indented block: one ``:`` (the indented block is already
  code in Markdown).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`~?([^`]+)`")


def _short(match: re.Match[str]) -> str:
    target = match[1]
    if match[0].split("`", 1)[1].startswith("~"):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def rst_to_markdown(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].strip())
                i += 1
            out += [f"{indent}```pycon", *(f"{indent}{b}" for b in block), f"{indent}```"]
            continue
        if line.rstrip().endswith("::") and not line.rstrip().endswith(" ::"):
            line = line.rstrip()[:-1]
        out.append(_ROLE.sub(_short, line))
        i += 1
    return "\n".join(out)


class ReSTDocstrings(griffe.Extension):
    """Rewrite each docstring once, when griffe creates the object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and obj.docstring.value:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
