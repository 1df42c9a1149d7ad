"""Generate the docs site's API reference, example DAG pages, benchmarks and changelog (mkdocs-gen-files).

Run by ``mkdocs build`` (see ``mkdocs.yml``); nothing here is written to ``docs/``.

- ``reference/``: one page per public class, one per module. The public names of a module are its
  ``__all__``, or, without one, its top-level classes and functions not starting with ``_``. A name a
  module re-exports (``from x import Name``) gets its page under the module that defines it. Modules
  are read with :mod:`ast` (nothing is imported), so a class added in a new module gets its page
  without any change to ``mkdocs.yml``. ``reference/SUMMARY.md`` is the navigation (literate-nav).
- ``examples/``: one page per example DAG file, its docstring and its full source, read from
  ``airflow_here_batch/example_dags/``.
- ``benchmarks.md`` and ``changelog.md``: ``benchmarks/README.md`` and ``CHANGELOG.md``, with links
  to repository files pointed at the source repository.
- ``SUMMARY.md``: the site's navigation (literate-nav): the pages of :data:`NAV`, then every other
  ``docs/*.md`` page, then :data:`NAV_END`.
- ``architecture.svg`` and ``pipeline.svg``: the pictures of the floors (``docs/_gen/floors.py``) and of
  the table job (``docs/_gen/pipeline.py``), drawn offline.
- The argument tables: a ``docs/*.md`` page holding ``<!-- arguments: operators.sql.X -->`` lines is
  published with each replaced by the table of X's arguments, drawn from the code
  (``docs/_gen/arguments.py``).
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_here_batch"
SOURCE_URL = "https://github.com/airflow-here-batch/airflow-here-batch/blob/main"
#: Not API: DAG files (documented on their own pages) and the ``python -m`` entry.
SKIPPED_PARTS = ("example_dags", "__main__")


@dataclass
class Module:
    name: str
    path: Path
    doc: str
    classes: dict[str, str] = field(default_factory=dict)  # name -> first docstring line
    functions: list[str] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)  # __all__ (or the public top-level names)
    imports: dict[str, str] = field(default_factory=dict)  # name -> module it is imported from


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_module(path: Path) -> Module:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    mod = Module(module_name(path), path, ast.get_docstring(tree) or "")
    declared: list[str] | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                mod.imports.setdefault(alias.asname or alias.name, node.module)
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            doc = ast.get_docstring(node) or ""
            mod.classes[node.name] = doc.strip().splitlines()[0] if doc.strip() else ""
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mod.functions.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            is_all = any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)
            if is_all and isinstance(node.value, (ast.List, ast.Tuple)):
                declared = [str(ast.literal_eval(e)) for e in node.value.elts]
    if declared is None:
        declared = [n for n in (*mod.classes, *mod.functions) if not n.startswith("_")]
    mod.exported = declared
    return mod


def public_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        rel = path.relative_to(ROOT / PACKAGE)
        if any(part.startswith(SKIPPED_PARTS) for part in rel.parts):
            continue
        mod = read_module(path)
        modules[mod.name] = mod
    return modules


def public_classes(modules: dict[str, Module]) -> dict[str, tuple[str, str]]:
    """``{"pkg.module.Class": (module, Class)}`` for every class some module exports."""
    found: dict[str, tuple[str, str]] = {}
    for mod in modules.values():
        for name in mod.exported:
            owner = mod
            seen = set()
            while name not in owner.classes and name in owner.imports and owner.name not in seen:
                seen.add(owner.name)
                target = modules.get(owner.imports[name])
                if target is None:
                    break
                owner = target
            if name in owner.classes and owner.name.startswith(PACKAGE):
                found[f"{owner.name}.{name}"] = (owner.name, name)
    return dict(sorted(found.items()))


def first_paragraph(doc: str) -> str:
    para = doc.strip().split("\n\n")[0]
    return " ".join(line.strip() for line in para.splitlines())


def md_inline(text: str) -> str:
    """reST inline markup of docstrings to Markdown (``code`` -> `code`, :class:`X` -> `X`)."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def write_reference(modules: dict[str, Module], nav: mkdocs_gen_files.Nav) -> None:
    classes = public_classes(modules)
    by_module: dict[str, list[str]] = {}
    for module, cls in classes.values():
        by_module.setdefault(module, []).append(cls)
    index = [
        "# API reference",
        "",
        "One page per public class; one per module for its functions and constants.",
        "",
    ]
    for name, mod in modules.items():
        own_classes = sorted(by_module.get(name, []))
        others = [n for n in mod.exported if n not in mod.classes and n not in mod.imports]
        if not own_classes and not others:
            continue
        base = Path("reference", *name.split("."))
        nav[tuple(name.split("."))] = (base / "index.md").relative_to("reference").as_posix()
        lines = [f"# `{name}`", "", md_inline(first_paragraph(mod.doc)), ""]
        if own_classes:
            lines += ["## Classes", ""]
            for cls in own_classes:
                summary = md_inline(mod.classes[cls])
                lines.append(f"- [`{cls}`]({cls}.md){': ' + summary if summary else ''}")
            lines.append("")
        if others:
            lines += [
                f"::: {name}",
                "    options:",
                "      show_root_heading: false",
                "      show_root_toc_entry: false",
                "      members:",
                *[f"        - {n}" for n in others],
                "",
            ]
        with mkdocs_gen_files.open(base / "index.md", "w") as fh:
            fh.write("\n".join(lines))
        mkdocs_gen_files.set_edit_path(base / "index.md", mod.path.relative_to(ROOT))
        index.append(f"- [`{name}`]({(base / 'index.md').relative_to('reference').as_posix()})")
        for cls in own_classes:
            page = base / f"{cls}.md"
            nav[(*name.split("."), cls)] = page.relative_to("reference").as_posix()
            with mkdocs_gen_files.open(page, "w") as fh:
                fh.write(f"# `{cls}`\n\n`from {name} import {cls}`\n\n::: {name}.{cls}\n")
            mkdocs_gen_files.set_edit_path(page, mod.path.relative_to(ROOT))
    with mkdocs_gen_files.open("reference/index.md", "w") as fh:
        fh.write("\n".join(index) + "\n")
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as fh:
        fh.write("* [Overview](index.md)\n")
        fh.writelines(nav.build_literate_nav())


def write_examples() -> None:
    folder = ROOT / PACKAGE / "example_dags"
    files = sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")
    index = [
        "# Example DAGs",
        "",
        "The example DAGs ship inside the package: once it is installed,",
        "`import airflow_here_batch.example_dags` works and loads no DAG. Airflow runs them only when you",
        "point a DAG folder or a DAG bundle at their directory:",
        "",
        "```bash",
        "export AIRFLOW__CORE__DAGS_FOLDER=\"$(python -c 'import airflow_here_batch.example_dags as m; "
        "print(m.EXAMPLE_DAGS_FOLDER)')\"",
        "```",
        "",
        "Sample inputs are in `data/` beside them. Each page below shows the DAG file as it ships.",
        "",
    ]
    for path in files:
        tree = ast.parse(path.read_text("utf-8"))
        doc = ast.get_docstring(tree) or ""
        title = md_inline(doc.strip().splitlines()[0]) if doc.strip() else path.stem
        rest = md_inline(textwrap.dedent("\n".join(doc.strip().splitlines()[1:])).strip())
        page = Path("examples", f"{path.stem}.md")
        index.append(f"- [`{path.stem}`]({path.stem}.md): {title}")
        with mkdocs_gen_files.open(page, "w") as fh:
            fh.write(f"# `{path.stem}`\n\n{title}\n\n{rest}\n\n")
            fh.write(f"Source: `airflow_here_batch/example_dags/{path.name}`\n\n")
            fh.write("```python\n" + path.read_text("utf-8").rstrip("\n") + "\n```\n")
        mkdocs_gen_files.set_edit_path(page, path.relative_to(ROOT))
    with mkdocs_gen_files.open("examples/index.md", "w") as fh:
        fh.write("\n".join(index) + "\n")
    with mkdocs_gen_files.open("examples/SUMMARY.md", "w") as fh:
        fh.write("* [Overview](index.md)\n")
        fh.writelines(f"* [{p.stem}]({p.stem}.md)\n" for p in files)


def repo_links(text: str, folder: str) -> str:
    """Point relative links at repository files to the source repository."""

    def fix(match: re.Match[str]) -> str:
        label, target = match[1], match[2]
        if re.match(r"^[a-z]+:|^#", target):
            return match[0]
        return f"[{label}]({SOURCE_URL}/{(Path(folder) / target).as_posix()})"

    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", fix, text)


def write_copies() -> None:
    for source, page, folder in (
        ("benchmarks/README.md", "benchmarks.md", "benchmarks"),
        ("CHANGELOG.md", "changelog.md", "."),
    ):
        text = (ROOT / source).read_text("utf-8")
        with mkdocs_gen_files.open(page, "w") as fh:
            fh.write(repo_links(text, folder))
        mkdocs_gen_files.set_edit_path(page, source)


#: The site's navigation, in order: (title, page). Any other ``docs/*.md`` page (added by anyone, with
#: no change here) is listed after them under its first heading, so that no page is left out of the nav.
NAV: list[tuple[str, str]] = [
    ("Home", "index.md"),
    ("Getting started", "getting-started.md"),
    ("Geocoding a database table", "sql.md"),
    ("Inputs of any size", "split.md"),
    ("The connection", "connection.md"),
    ("Operators reference", "operators.md"),
    ("Notifications (webhooks)", "notifications.md"),
    ("Cleaning up old jobs", "cleanup.md"),
    ("Example DAGs", "examples/"),
    ("The emulator", "emulator.md"),
    ("Demo and tests", "demo.md"),
]
NAV_END: list[tuple[str, str]] = [
    ("Conformance", "conformance.md"),
    ("Troubleshooting", "troubleshooting.md"),
    ("Benchmarks", "benchmarks.md"),
    ("API reference", "reference/"),
    ("Changelog", "changelog.md"),
]


def page_title(path: Path) -> str:
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip().strip("`")
    return path.stem.replace("-", " ").replace("_", " ").capitalize()


def write_nav() -> None:
    listed = {page for _, page in (*NAV, *NAV_END)}
    others = [
        (page_title(path), path.name)
        for path in sorted((ROOT / "docs").glob("*.md"))
        if path.name not in listed and path.name != "SUMMARY.md"
    ]
    lines = [f"* [{title}]({page})\n" for title, page in (*NAV, *others, *NAV_END)]
    with mkdocs_gen_files.open("SUMMARY.md", "w") as fh:
        fh.writelines(lines)


def write_pictures() -> None:
    """``architecture.svg``, drawn from the layers contract in pyproject.toml (docs/_gen/floors.py), and
    ``pipeline.svg``, the table job (docs/_gen/pipeline.py)."""
    from floors import svg
    from pipeline import svg as pipeline_svg

    with mkdocs_gen_files.open("architecture.svg", "w") as fh:
        fh.write(svg(ROOT / "pyproject.toml"))
    with mkdocs_gen_files.open("pipeline.svg", "w") as fh:
        fh.write(pipeline_svg())


def write_argument_tables() -> None:
    """Each ``docs/*.md`` page with ``<!-- arguments: ... -->`` lines, published with its tables."""
    import arguments

    package = None
    for path in sorted((ROOT / "docs").glob("*.md")):
        text = path.read_text("utf-8")
        if not arguments.markers(text):
            continue
        package = package or arguments.load(ROOT)
        with mkdocs_gen_files.open(path.name, "w") as fh:
            fh.write(arguments.expand(package, text))
        mkdocs_gen_files.set_edit_path(path.name, path.relative_to(ROOT))


sys.path.insert(0, str(Path(__file__).parent))  # floors, pipeline, arguments
write_reference(public_modules(), mkdocs_gen_files.Nav())
write_pictures()
write_argument_tables()
write_examples()
write_copies()
write_nav()
