"""The picture of the table job (``pipeline.svg``), drawn at build time: what a night of geocoding does.

Source table -> extract the changed rows -> split into HERE jobs -> wait in the triggerer -> download
-> upsert into the target table -> merged files. Plain SVG, no JavaScript, nothing fetched. The steps
are :data:`STEPS`; each names the class that does it, so a renamed class shows up in review here.
"""

from __future__ import annotations

from html import escape

#: (title, what it does, the class or task doing it); the first row runs left to right, the second
#: (from the fifth step) right to left under it.
STEPS: list[tuple[str, str, str]] = [
    ("source table", "your addresses", "any common.sql database"),
    ("extract changed rows", "new or changed since last run", "SqlToBatchInputOperator"),
    ("split into HERE jobs", "<= 1,000,000 records, 500 MB", "split_batch_job: plan"),
    ("wait (triggerer)", "no worker slot held", "BatchJobTrigger (deferred)"),
    ("download results", "streamed, written atomically", "split_batch_job: run"),
    ("upsert target table", "one transaction per batch", "BatchResultsToSqlOperator"),
    ("merged files", "results + errors, input order", "split_batch_job: merge"),
]

W, H, GAP, MARGIN, TOP = 184, 70, 40, 20, 34
PER_ROW = 4
HERE_W, HERE_GAP = 150, 84


def _xy(i: int) -> tuple[float, float]:
    row, col = divmod(i, PER_ROW)
    if row:  # the second row runs back, under the last three of the first
        col = PER_ROW - 1 - col
    return MARGIN + col * (W + GAP), TOP + row * (H + GAP)


def _box(x: float, y: float, title: str, what: str, who: str, fill: str, database: bool = False) -> str:
    shape = (
        # a cylinder for the tables
        f'<path d="M{x},{y + 8} a{W / 2},8 0 0,0 {W},0 v{H - 16} a{W / 2},8 0 0,1 -{W},0 z" '
        f'fill="{fill}" stroke="#455a64"/>'
        f'<ellipse cx="{x + W / 2}" cy="{y + 8}" rx="{W / 2}" ry="8" fill="{fill}" stroke="#455a64"/>'
        if database
        else f'<rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6" fill="{fill}" stroke="#455a64"/>'
    )
    cx = x + W / 2
    return (
        shape
        + f'<text x="{cx}" y="{y + 27}" text-anchor="middle" font-weight="bold">{escape(title)}</text>'
        + f'<text x="{cx}" y="{y + 44}" text-anchor="middle" font-size="11">{escape(what)}</text>'
        + f'<text x="{cx}" y="{y + 59}" text-anchor="middle" font-size="10" fill="#37474f" '
        f'font-family="monospace">{escape(who)}</text>'
    )


def _arrow(x1: float, y1: float, x2: float, y2: float, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#455a64"{dash} marker-end="url(#a)"/>'
    )


def svg() -> str:
    """The picture, as SVG text."""
    rows = (len(STEPS) + PER_ROW - 1) // PER_ROW
    width = MARGIN * 2 + PER_ROW * W + (PER_ROW - 1) * GAP + HERE_GAP + HERE_W
    height = TOP + rows * H + (rows - 1) * GAP + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="13" role="img" '
        'aria-label="The table job: source table, extract changed rows, split into HERE jobs, wait in '
        'the triggerer, download results, upsert the target table, merged files">',
        '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#455a64"/></marker></defs>',
    ]
    # The mapped part of the split: one wait and one download per HERE job.
    wx, wy = _xy(3)
    dx, dy = _xy(4)
    parts.append(
        f'<rect x="{wx - 8}" y="{wy - 22}" width="{W + 16}" height="{dy + H - wy + 30}" rx="8" '
        'fill="none" stroke="#90a4ae" stroke-dasharray="6 4"/>'
        f'<text x="{wx + W / 2}" y="{wy - 8}" text-anchor="middle" font-size="11" fill="#37474f">'
        "one per HERE job, side by side</text>"
    )
    for i, (title, what, who) in enumerate(STEPS):
        x, y = _xy(i)
        database = title.endswith("table")
        fill = "#fff8e1" if database else "#e8f5e9" if title == "merged files" else "#e3f2fd"
        parts.append(_box(x, y, title, what, who, fill, database))
        if i:
            px, py = _xy(i - 1)
            if py == y and px < x:  # same row, left to right
                parts.append(_arrow(px + W, y + H / 2, x - 2, y + H / 2))
            elif py == y:  # same row, right to left
                parts.append(_arrow(px, y + H / 2, x + W + 2, y + H / 2))
            else:  # down to the next row
                parts.append(_arrow(px + W / 2, py + H, x + W / 2, y - 2))
    # HERE (or the local emulator), beside the mapped steps.
    hx = MARGIN + PER_ROW * W + (PER_ROW - 1) * GAP + HERE_GAP
    hy = wy
    hh = dy + H - wy
    parts.append(
        f'<rect x="{hx}" y="{hy}" width="{HERE_W}" height="{hh}" rx="10" fill="#fff3e0" stroke="#455a64"/>'
        f'<text x="{hx + HERE_W / 2}" y="{hy + hh / 2 - 8}" text-anchor="middle" font-weight="bold">'
        "HERE Batch API v7</text>"
        f'<text x="{hx + HERE_W / 2}" y="{hy + hh / 2 + 10}" text-anchor="middle" font-size="11">'
        "(or the local emulator)</text>"
    )
    parts.append(_arrow(wx + W + 8, wy + H / 2, hx - 2, wy + H / 2, dashed=True))
    parts.append(
        f'<text x="{(wx + W + 8 + hx) / 2}" y="{wy + H / 2 - 6}" text-anchor="middle" font-size="10">'
        "upload, poll</text>"
    )
    parts.append(_arrow(hx, dy + H / 2, dx + W + 10, dy + H / 2, dashed=True))
    parts.append(
        f'<text x="{(dx + W + 8 + hx) / 2}" y="{dy + H / 2 - 6}" text-anchor="middle" font-size="10">'
        "results</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
