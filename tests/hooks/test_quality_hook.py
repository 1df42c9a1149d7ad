"""Through the hook, over HTTP to the emulator: a geocode job with named output columns asks for the
verdict's columns, and the downloaded results read as every verdict HERE's shapes give."""

from __future__ import annotations

from pathlib import Path

from airflow_here_batch.api import JobOptions, JobStatus, PollSchedule
from airflow_here_batch.api.outputs import iter_rows, with_quality
from airflow_here_batch.api.quality import QUALITY_OUTPUT_COLUMNS, QualityCounts
from airflow_here_batch.hooks.here_batch import HereBatchHook

FAST = PollSchedule(poll_interval=0.05, max_poll_interval=0.2)
INPUT = (
    "recId|q|in|limit\n"
    "exact|Chausseestraße 166, 10115 Berlin|countryCode:DEU|3\n"
    "interp|Schulstraße 7, Berlin|countryCode:DEU|1\n"
    "variant|Lindenallee 7, Berlin|countryCode:DEU|1\n"
    "town|Zürich|countryCode:CHE|1\n"
    "street|Helvetiaplatz, Bern|countryCode:CHE|1\n"
    "ambiguous|Helvetiaplatz|countryCode:CHE|3\n"
    "lisbon|Rua Augusta 157, 1100-148 Lisboa|countryCode:PRT|1\n"
    "failed||countryCode:DEU|1\n"
)


def test_a_job_asks_for_the_verdicts_columns_and_reads_as_verdicts(
    hook: HereBatchHook, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(INPUT, encoding="utf-8")
    options = JobOptions(service="geocode", output_columns=["positionLat", "positionLng", "addressLabel"])
    job = hook.create_job(source, options=options)
    done = hook.wait_for_job(job.id, schedule=FAST, timeout=30)
    assert done.status is JobStatus.COMPLETED
    results = tmp_path / "results.csv"
    hook.download_results(job.id, results)
    header = results.read_text(encoding="utf-8").splitlines()[0].split("|")
    assert set(QUALITY_OUTPUT_COLUMNS) <= set(header)  # asked for automatically
    counts = QualityCounts()
    with results.open("rb") as lines:
        verdicts = {r["recId"]: r["matchQuality"] for r in with_quality(iter_rows(lines), counts=counts)}
    # Without the requests, the results alone: a street or town is not enough (it might be for a house).
    assert verdicts == {
        "exact": "exact",
        "interp": "interpolated",
        "variant": "exact",  # a spelling variant: queryScore 0.91, still above 0.8
        "town": "area",
        "street": "street",
        "ambiguous": "ambiguous",
        "lisbon": "area",
    }
    assert counts.accepted == 3 and counts.by_verdict["failed"] == 0  # failed: in the errors report
