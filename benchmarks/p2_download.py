"""P2: results download through the hook and the download operator, vs ``curl`` of the same URL.

The results file: HERE caps a job at 1M records, and a 1 GB result needs more than 1M records of the
default CSV. One job does it honestly: ``outputType=jsonl`` and a ``limit`` column of 3 in the input,
so each record returns 3 full items (~1.8 KB per record: 1 GB from ~590k records). The queries cycle
through 1,000 addresses so the emulator answers from its per-job cache (the download is measured, not
the geocoder). Each size is its own job.

Both sides ask for ``Accept-Encoding: gzip`` (the hook always does; ``curl --compressed``), so the
emulator does the same work and the same bytes cross the socket. Throughput is decompressed bytes per
second of wall time, best of the repetitions, which interleave curl / hook / operator so a burst of
load from other tenants hits every side alike. The hook and the operator run in fresh child
processes; their peak RSS growth is measured there (current RSS sampled every 5 ms during each
transfer, peak minus start).
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    API_KEY,
    GEOCODE,
    Emulator,
    Row,
    RssSampler,
    child_env,
    create_job,
    run_child,
    wait_completed,
    workdir,
    write_geocode_input,
)

MB = 1024 * 1024
RATIO_TARGET = 0.8
RSS_TARGET_MB = 100.0


def _child(p: dict[str, Any]) -> dict[str, Any]:
    from airflow_here_batch.hooks.here_batch import HereBatchHook
    from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator

    dest = Path(p["dest"])
    hook = HereBatchHook()
    hook.get_job(p["job_id"])  # warm up: connection lookup, session, imports
    operator = DownloadBatchResultsOperator(task_id="download", job_id=p["job_id"], destination=str(dest))
    out: dict[str, Any] = {}
    for mode in ("hook", "operator"):
        seconds: list[float] = []
        growth = 0.0
        for _ in range(p["reps"]):
            gc.collect()
            with RssSampler() as rss:
                t0 = time.perf_counter()
                if mode == "operator":
                    operator.execute({})  # type: ignore[arg-type]
                else:
                    hook.download_results(p["job_id"], dest)
                seconds.append(time.perf_counter() - t0)
            growth = max(growth, rss.growth_mb)
            if dest.stat().st_size != p["expected"]:
                raise RuntimeError(f"downloaded {dest.stat().st_size} bytes, expected {p['expected']}")
            dest.unlink()
        out[mode] = {"seconds": seconds, "growth_mb": growth}
    return out


def _curl(url: str, dest: Path) -> float:
    """Seconds of ``curl --compressed -o`` (the same ``Accept-Encoding: gzip`` as the hook)."""
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "--compressed", "-o", str(dest), url], check=True, timeout=1800)
    return time.perf_counter() - t0


def _make_job(emu: Emulator, work: Path, target_bytes: int, per_record: float) -> tuple[str, int]:
    records = math.ceil(target_bytes / per_record)
    if records > 1_000_000:
        raise RuntimeError(f"{target_bytes} bytes would need {records} records, more than HERE allows")
    src = work / "input.txt"
    write_geocode_input(src, records, limit=3, distinct=1000)
    job = create_job(emu.base_url, src.read_bytes(), GEOCODE + "&outputType=jsonl")
    src.unlink()
    wait_completed(emu.base_url, job["id"], timeout=900, interval=0.2)
    size = (emu.data_dir / "jobs" / job["id"] / "results.txt").stat().st_size
    return job["id"], size


def run(quick: bool) -> list[Row]:
    sizes = [(10, 1)] if quick else [(10, 5), (100, 3), (1024, 2)]  # (MB, repetitions)
    rows: list[Row] = []
    with workdir("p2-") as work:
        home = work / "airflow"
        home.mkdir()
        with Emulator(work / "emu", records_per_second="inf", queue_delay=0) as emu:
            _calib_id, calib_size = _make_job(emu, work, 2 * MB, 1800.0)
            per_record = calib_size / math.ceil(2 * MB / 1800.0)
            env = child_env(emu.base_url, home)
            for mb, reps in sizes:
                job_id, size = _make_job(emu, work, mb * MB, per_record)
                url = f"{emu.base_url}/batch/jobs/{job_id}/results?apiKey={API_KEY}"
                dest = work / "out.jsonl"
                # Interleaved (curl, hook, operator) per repetition, so a burst of load from other
                # tenants hits all sides alike; best of the repetitions on each side.
                curl_s: list[float] = []
                runs: list[dict[str, Any]] = []
                payload = {"job_id": job_id, "dest": str(dest), "reps": 1, "expected": size}
                for _ in range(reps):
                    curl_s.append(_curl(url, dest))
                    if dest.stat().st_size != size:
                        raise RuntimeError(f"curl wrote {dest.stat().st_size} bytes, expected {size}")
                    dest.unlink()
                    runs.append(run_child("benchmarks.p2_download", payload, env, timeout=1800))
                results = {
                    mode: {
                        "seconds": [s for r in runs for s in r[mode]["seconds"]],
                        "growth_mb": max(r[mode]["growth_mb"] for r in runs),
                    }
                    for mode in ("hook", "operator")
                }
                curl_tput = size / MB / min(curl_s)
                for mode, label in (("hook", "HereBatchHook.download_results"),
                                    ("operator", "DownloadBatchResultsOperator.execute")):
                    r = results[mode]
                    tput = size / MB / min(r["seconds"])
                    ratio = tput / curl_tput
                    rows.append(Row(
                        "P2", f"download {size / MB:.0f} MB, {label}",
                        f"{tput:.0f} MB/s, peak RSS +{r['growth_mb']:.1f} MB",
                        f"{curl_tput:.0f} MB/s (curl --compressed)",
                        f"{ratio:.2f}x",
                        f">= {RATIO_TARGET}x, <= {RSS_TARGET_MB:.0f} MB",
                        ratio >= RATIO_TARGET and r["growth_mb"] <= RSS_TARGET_MB,
                    ))
                print(f"# P2 {mb} MB: curl {curl_s}, {json.dumps(results)}", file=sys.stderr, flush=True)
                (emu.data_dir / "jobs" / job_id / "results.txt").unlink(missing_ok=True)
    return rows


__all__ = ["run"]

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))), flush=True)
    else:  # pragma: no cover
        for row in run(quick="--quick" in sys.argv):
            print(row)
