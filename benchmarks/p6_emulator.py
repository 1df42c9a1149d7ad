"""P6: the emulator's throughput: a 1,000,000-record geocode job from upload to downloaded results.

The emulator runs in its own process (``records_per_second=inf``, ``queue_delay=0``, otherwise its CLI
defaults: ``--workers 2`` on a multi-core machine, so the job is shared by two worker processes); a
minimal stdlib client (no Airflow, no hook) uploads the input, polls the job every 0.2 s and downloads
the results, so the time is the emulator's. Every address in the input is different (real batches are
mostly distinct addresses); an informational row repeats the run with queries cycling through 1,000
addresses, which the emulator answers from its per-job cache.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks._common import (
    API_KEY,
    GEOCODE,
    Emulator,
    Row,
    wait_completed,
    workdir,
    write_geocode_input,
)

TARGET = 100_000.0


def _job(base_url: str, path: Path, work: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    with path.open("rb") as body:
        request = urllib.request.Request(
            f"{base_url}/batch/jobs?apiKey={API_KEY}&{GEOCODE}",
            data=body,
            method="POST",
            headers={"Content-Type": "text/plain", "Content-Length": str(path.stat().st_size)},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            job_id = json.loads(response.read())["id"]
    t1 = time.perf_counter()
    detail = wait_completed(base_url, job_id, timeout=1800, interval=0.2)
    t2 = time.perf_counter()
    out = work / "results.txt"
    with urllib.request.urlopen(f"{base_url}/batch/jobs/{job_id}/results?apiKey={API_KEY}",
                                timeout=600) as response, out.open("wb") as fh:
        shutil.copyfileobj(response, fh, 1024 * 1024)
    t3 = time.perf_counter()
    size = out.stat().st_size
    out.unlink()
    if detail["records"]["succeeded"] + detail["records"]["failed"] != detail["records"]["valid"]:
        raise RuntimeError(f"unexpected counters {detail['records']}")
    return {"upload": t1 - t0, "process": t2 - t1, "download": t3 - t2, "total": t3 - t0,
            "bytes": size, "records": detail["records"]["total"]}


def run(quick: bool) -> list[Row]:
    records = 50_000 if quick else 1_000_000
    variants = [("distinct addresses", None)] + ([] if quick else [("1,000 repeated addresses", 1000)])
    rows: list[Row] = []
    with workdir("p6-") as work:
        for label, distinct in variants:
            path = work / "input.txt"
            write_geocode_input(path, records, distinct=distinct)
            with Emulator(work / "emu", records_per_second="inf", queue_delay=0, max_running_jobs=5) as emu:
                r = _job(emu.base_url, path, work)
            shutil.rmtree(work / "emu", ignore_errors=True)
            path.unlink()
            rate = records / r["total"]
            print(f"# P6 {label}: {r}", file=sys.stderr, flush=True)
            rows.append(Row(
                "P6", f"emulator: {records:,}-record geocode job, upload to results ({label})",
                f"{rate:,.0f} records/s", f"- (upload {r['upload']:.1f} s, process {r['process']:.1f} s, "
                f"download {r['download']:.1f} s)", f"{rate / TARGET:.2f}x of target",
                f">= {TARGET:,.0f} rec/s", (rate >= TARGET) if distinct is None else None,
            ))
    return rows


__all__ = ["run"]

if __name__ == "__main__":  # pragma: no cover
    for row in run(quick="--quick" in sys.argv):
        print(row)
