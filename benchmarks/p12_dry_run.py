"""P12: what a dry run costs over a 1,000,000-record input, against the validation pass alone.

One child process (the code under test never runs in the runner's process), CPU time of the process
(the machine is shared), best of 3 each, the two sides interleaved, on the same file in the same run:

* **Measured**: a split's dry run as ``PlanSplitOperator.execute(dry_run=True)`` does it: the input read
  from ``file://`` through :func:`~airflow_here_batch.files.parts.binary_lines`, validated and cut into
  parts of at most 400,000 records by :func:`~airflow_here_batch.files.parts.plan_parts` (nothing
  written), then the spend bound checked and the estimate computed
  (:class:`~airflow_here_batch.api.spend.SpendBound`);
* **Baseline**: the validation pass alone (:func:`~airflow_here_batch.api.inputs.validate_lines` over
  the same file, read the same way), which every real run does before its upload anyway.

Target: <= 1.2x (issue 21).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Row, child_env, run_child, workdir, write_geocode_input

TARGET = 1.2


def _child(p: dict[str, Any]) -> dict[str, Any]:
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.api.inputs import validate_lines
    from airflow_here_batch.api.spend import SendReason, SpendBound, SpendLimitExceeded
    from airflow_here_batch.api.split import SplitLimits
    from airflow_here_batch.files.parts import binary_lines, plan_parts

    uri = f"file://{p['input']}"
    folder = ObjectStoragePath(f"file://{p['folder']}")
    limits = SplitLimits(max_records=400_000)
    bound = SpendBound(p["records"] - 1, "benchmark", price_per_1000=0.5)

    def validation() -> float:
        started = time.process_time()
        with binary_lines(uri) as lines:
            report = validate_lines(lines, service="geocode")
        assert report.records == p["records"]
        return time.process_time() - started

    def dry_run() -> float:
        started = time.process_time()
        with binary_lines(uri) as lines:
            parts = plan_parts(lines, folder, limits=limits, service="geocode")
        records = sum(part["records"] for part in parts)
        try:
            bound.check(records, {SendReason.INPUT.value: records}, what="this split")
        except SpendLimitExceeded:
            pass  # reported by a dry run, as here: the bound is one below the count
        else:
            raise AssertionError("the bound was not applied")
        bound.describe(records, {SendReason.INPUT.value: records}, dry_run=True)
        elapsed = time.process_time() - started
        assert records == p["records"] and len(parts) == -(-p["records"] // 400_000)
        assert not Path(p["folder"]).exists(), "a dry run writes nothing"
        return elapsed

    validation()  # warm-up: imports, page cache
    base, measured = [], []
    for _ in range(p["repeat"]):
        base.append(validation())
        measured.append(dry_run())
    return {"base": min(base), "measured": min(measured), "parts": -(-p["records"] // 400_000)}


def run(quick: bool) -> list[Row]:
    records = 50_000 if quick else 1_000_000
    with workdir("p10-") as work:
        path = work / "input.csv"
        size = write_geocode_input(path, records)
        payload = {
            "input": str(path),
            "folder": str(work / "parts"),
            "records": records,
            "repeat": 1 if quick else 3,
        }
        env = child_env(airflow_home=work / "airflow")
        result = run_child("benchmarks.p12_dry_run", payload, env, timeout=3600, log=work / "child.log")
    print(f"# P12 {json.dumps(result)}", file=sys.stderr, flush=True)
    ratio = result["measured"] / result["base"]
    return [
        Row(
            "P12",
            f"dry run of a split, {records:,} records ({size / 1e6:.0f} MB): validate, plan "
            f"{result['parts']} parts, bound, estimate (CPU)",
            f"{result['measured']:.2f} s",
            f"{result['base']:.2f} s (validation pass alone)",
            f"{ratio:.2f}x",
            f"<= {TARGET}x",
            ratio <= TARGET,
        )
    ]


__all__ = ["run"]

if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))), flush=True)
    else:
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        for row in run(quick="--quick" in sys.argv):
            print(row)
