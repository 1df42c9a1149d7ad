"""``python -m benchmarks [--quick] [--only P1,P2]``: run the figures, print the table.

Exit status 0 even when a target is missed (misses are reported, not failures); non-zero only when a
benchmark crashes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import signal
import sys
import time
import traceback
from datetime import datetime, timezone

from benchmarks._common import Row

FIGURES: dict[str, str] = {
    "P1": "benchmarks.p1_triggers",
    "P2": "benchmarks.p2_download",
    "P3": "benchmarks.p3_upload",
    "P4": "benchmarks.p4_polling",
    "P5": "benchmarks.p5_imports",
    "P6": "benchmarks.p6_emulator",
    "P7": "benchmarks.p7_split",
    "P1-PEER": "benchmarks.p1_peer",
    "P8": "benchmarks.p8_incremental",
    "P9": "benchmarks.p9_sink",
    "P9-MYSQL": "benchmarks.p9_mysql",
    "P10": "benchmarks.p10_quality",
    "P12": "benchmarks.p12_dry_run",
}
COLUMNS = ("id", "what", "measured", "baseline", "ratio", "target", "pass/miss")


def render(rows: list[Row]) -> str:
    """The result table as GitHub-flavoured Markdown (also readable on a terminal)."""
    cells = [COLUMNS] + [(r.id, r.what, r.measured, r.baseline, r.ratio, r.target, r.verdict) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test for CI")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. P1,P2")
    args = parser.parse_args(argv)
    wanted = [w.strip().upper() for w in args.only.split(",") if w.strip()] or list(FIGURES)
    unknown = [w for w in wanted if w not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(unknown)}")
    started = time.monotonic()
    print(
        f"# benchmarks {'--quick ' if args.quick else ''}{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        flush=True,
    )
    rows: list[Row] = []
    crashed: list[str] = []
    for fig in wanted:
        t0 = time.monotonic()
        try:
            module = importlib.import_module(FIGURES[fig])
            new = module.run(args.quick)
        except Exception:
            traceback.print_exc()
            crashed.append(fig)
            new = [Row(fig, "CRASHED (see traceback above)", "-", "-", "-", "-", False)]
        rows.extend(new)
        for row in new:
            print(f"{row.id}: {row.what}: {row.measured} vs {row.baseline} -> {row.ratio} [{row.verdict}]",
                  flush=True)
        print(f"# {fig} took {time.monotonic() - t0:.1f} s", flush=True)
    print()
    print(render(rows))
    misses = sum(1 for r in rows if r.ok is False)
    print(f"\n# {len(rows)} rows, {misses} missed, {len(crashed)} crashed, "
          f"wall time {time.monotonic() - started:.1f} s")
    return 1 if crashed else 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds the figures' context managers, which stop the emulators they started
    # (a plain SIGTERM would leave them running).
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main())
