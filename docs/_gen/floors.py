"""The architecture picture (``architecture.svg``), drawn at build time from the layers contract.

The floors are read from ``[tool.importlinter]`` in ``pyproject.toml`` (the contract ``lint-imports``
checks), so the picture cannot drift from what CI holds. Plain SVG, no JavaScript, nothing fetched.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import tomllib

#: One line per package, shown in its box.
ROLES = {
    "example_dags": "the shipped DAGs",
    "operators": "arguments -> core objects -> XCom",
    "sensors": "poke / reschedule / deferrable wait",
    "utils": "task helpers: deferral, deadlines, lineage, assets",
    "triggers": "async waits in the triggerer",
    "hooks": "HTTP transports (requests, aiohttp)",
    "tables": "SQL pipeline: dialect, extract, sink",
    "files": "storage I/O: atomic writes, locations, parts",
    "api": "HERE's protocol, no I/O",
}

WIDTH, ROW, GAP, MARGIN, SIDE = 560, 52, 14, 20, 170


def floors(pyproject: Path) -> list[list[str]]:
    """The contract's layers, top first, each a list of sibling packages."""
    config = tomllib.loads(pyproject.read_text("utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    return [[part.strip() for part in layer.replace(":", "|").split("|")] for layer in layers]


def _box(x: float, y: float, w: float, name: str, fill: str) -> str:
    role = escape(ROLES.get(name, ""))
    return (
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{ROW}" rx="6" fill="{fill}" stroke="#455a64"/>'  # noqa: E501
        f'<text x="{x + w / 2:.0f}" y="{y + 21:.0f}" text-anchor="middle" font-weight="bold">{escape(name)}/</text>'  # noqa: E501
        f'<text x="{x + w / 2:.0f}" y="{y + 39:.0f}" text-anchor="middle" font-size="11">{role}</text>'
    )


def svg(pyproject: Path) -> str:
    """The picture: one row per floor, siblings side by side, imports pointing down only."""
    rows = floors(pyproject)
    height = MARGIN * 2 + len(rows) * (ROW + GAP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH + SIDE + MARGIN * 3}" height="{height}" '
        'font-family="sans-serif" font-size="13">',
        '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="4" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#455a64"/></marker></defs>',
    ]
    for i, row in enumerate(rows):
        y = MARGIN + i * (ROW + GAP)
        w = (WIDTH - (len(row) - 1) * 10) / len(row)
        for j, name in enumerate(row):
            shade = "#e3f2fd" if name != "api" else "#c8e6c9"
            parts.append(_box(MARGIN + j * (w + 10), y, w, name, shade))
        if i:
            parts.append(
                f'<line x1="{MARGIN + WIDTH / 2}" y1="{y - GAP}" x2="{MARGIN + WIDTH / 2}" y2="{y - 2}" '
                'stroke="#455a64" marker-end="url(#a)"/>'
            )
    # The emulator: a separate server on the same core, never importing airflow.
    x = MARGIN * 2 + WIDTH
    y = MARGIN + (len(rows) - 2) * (ROW + GAP)
    parts.append(
        f'<rect x="{x}" y="{y}" width="{SIDE}" height="{ROW * 2 + GAP}" rx="6" fill="#fff3e0" stroke="#455a64"/>'  # noqa: E501
        f'<text x="{x + SIDE / 2}" y="{y + 40}" text-anchor="middle" font-weight="bold">emulator/</text>'
        f'<text x="{x + SIDE / 2}" y="{y + 60}" text-anchor="middle" font-size="11">HERE as documented,</text>'  # noqa: E501
        f'<text x="{x + SIDE / 2}" y="{y + 76}" text-anchor="middle" font-size="11">no airflow import</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
