"""Run one hook transfer in a fresh process and print how much its peak RSS grew (JSON on stdout).

``python memory_probe.py upload|download <base_url> <api_key> <path> [job_id]``. The emulator runs in
another process, so only the hook's memory is measured.
"""

from __future__ import annotations

import json
import os
import resource
import sys


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    mode, base_url, api_key, path = sys.argv[1:5]
    os.environ["AIRFLOW_CONN_HERE_PROBE"] = json.dumps(
        {"conn_type": "here_batch", "host": base_url, "password": api_key}
    )
    from airflow_here_batch.api import JobOptions
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    hook = HereBatchHook("here_probe")
    hook.create_job(b"recId|q\n1|Berlin\n", options=JobOptions(start_job=False))  # warm up everything
    baseline = peak_rss_mb()
    if mode == "upload":
        job = hook.create_job(path, options=JobOptions(start_job=False), compress=True)
        size = os.path.getsize(path)
        result = {"job_id": job.id}
    else:
        size = hook.download_results(sys.argv[5], path) or 0
        result = {}
    print(
        json.dumps({**result, "bytes": size, "baseline_mb": baseline, "growth_mb": peak_rss_mb() - baseline})
    )


if __name__ == "__main__":
    main()
