"""Download a HERE job's results to ``s3://`` through ``DownloadBatchResultsOperator`` in a fresh process
and print its peak-RSS growth (JSON on stdout). The emulator and the S3 server run in other processes,
so only the operator's memory is measured.

``python s3_probe.py <job_id> <s3 destination>`` with ``AIRFLOW_CONN_HERE_BATCH_DEFAULT`` and
``AIRFLOW_CONN_AWS_MOTO`` in the environment.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` of its own memory map.

    Not ``getrusage().ru_maxrss``: Linux carries the parent's RSS at fork over into the child's
    ``ru_maxrss`` (through exec), so a probe started from a large pytest process would report the
    parent's size as its peak.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def current_rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 1024 / 1024


def main() -> None:
    job_id, destination = sys.argv[1:3]
    from airflow.sdk import ObjectStoragePath

    from airflow_here_batch.operators.batch_job import DownloadBatchResultsOperator

    # Warm up: imports, the S3 filesystem, one small write; then measure the big download only.
    warm = ObjectStoragePath(destination, conn_id="aws_moto").parent / "warm-up.txt"
    warm.write_bytes(b"x")
    # The growth is the peak during the download above the resident size before it (not above the
    # import-time peak, which could hide a download that holds tens of MB).
    baseline = current_rss_mb()
    op = DownloadBatchResultsOperator(
        task_id="probe", job_id=job_id, destination=destination, destination_conn_id="aws_moto"
    )
    result = op.execute({})  # type: ignore[arg-type]
    peak = peak_rss_mb()
    print(json.dumps({**result, "baseline_mb": baseline, "peak_mb": peak, "growth_mb": peak - baseline}))


if __name__ == "__main__":
    main()
