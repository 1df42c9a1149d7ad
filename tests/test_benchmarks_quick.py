"""Smoke test: ``python -m benchmarks --quick`` runs every figure and prints every row id.

Misses are reported, not failures; a crash exits non-zero. Runs the small sizes only (CI budget).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW_IDS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P1-peer", "P8", "P9", "P9-mysql", "P10", "P12")


def test_benchmarks_quick() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| P")]
    for row_id in ROW_IDS:
        assert any(line.startswith(f"| {row_id} ") for line in table), f"no {row_id} row:\n{proc.stdout}"
    assert "CRASHED" not in proc.stdout
